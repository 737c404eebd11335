/* backend.h - the seam between the model (model.c) and what executes it (private to compute/): the backend op
 * table. One table per backend; a compute context has one (compute_ctx.ops). oneDNN's is backend_onednn_ops
 * (compute/backend/onednn/); a CUDA backend sits beside it as compute/backend/cuda/ with its own table.
 *
 * A backend sees the model's layer graph (nn.h: nodes, values, tensors) and owns everything that runs it: a plan
 * per (model, batch size) with its primitives, memories and activation buffers, and the layout of the weights
 * between steps (struct backend_params). Inside a backend, work is split by layer family (its own per-kind table:
 * compute/backend/onednn/onednn.h's layer_ops); this table is what model.c calls and is the same for every backend.
 *
 * Rules a backend keeps:
 *   - Parameters, gradients and buffers live in the model's arena ([params][grads][buffers], model.h model_grads);
 *     a backend reads and writes them in place and allocates none of them. Between steps it may keep a weight,
 *     its gradient and its followers (tensor.follow) permuted into its own layout; params_plain puts them back.
 *   - Backward overwrites the gradient of every trainable parameter it reaches and never writes a frozen one.
 *   - Nothing is allocated per step: a plan allocates when it is made and on its first backward.
 *   - Errors: a negative errno and an ft_error naming the layer ("onednn: convolution forward for layer \"c1\"").
 *
 * Not for: spec parsing or shapes (model.c), losses, optimizers. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"

struct model;
struct model_kernel;
struct compute_ctx;
struct backend_plan; /* one per (model, batch size), owned by the backend */
struct backend_params; /* the backend's layout of each parameter, owned by the backend, hung on the model */

/* The backend op table. All calls on the context's thread. */
struct backend_ops {
        const char *name; /* compute_ctx_backend_name: "onednn" */
        /* the backend's per-context state (engine, stream, device): *ret is stored in ctx->backend */
        int (*ctx_new)(struct compute_ctx *ctx, void **ret, struct ft_error *err);
        void (*ctx_free)(void *backend);
        /* primitives and buffers for batch size `batch` */
        int (*plan_new)(struct model *m, struct compute_ctx *ctx, int batch, struct backend_plan **ret,
                        struct ft_error *err);
        void (*plan_free)(struct backend_plan *p);
        /* forward x [batch, input numel]; *ret_out [batch, outputs] owned by the plan */
        int (*forward)(struct model *m, struct backend_plan *p, const float *x, bool training, const float **ret_out,
                       struct ft_error *err);
        /* create the backward's primitives and buffers of p without running anything (backward does it on its
         * first call) */
        int (*plan_backward)(struct model *m, struct backend_plan *p, struct ft_error *err);
        /* backward from d_out [batch, outputs] after a training forward with the same plan */
        int (*backward)(struct model *m, struct backend_plan *p, const float *d_out, struct ft_error *err);
        /* the model input's gradient ([batch, input numel], plain) of the last backward of p, made in input-gradient
         * mode (model_set_input_grad); owned by the plan. NULL in a backend without it (-EOPNOTSUPP) */
        int (*input_grad)(struct model *m, struct backend_plan *p, const float **ret, struct ft_error *err);
        /* parameters (data, grad, followers) back to PyTorch layout; forward and backward move them to the
         * backend's (model_sync) */
        int (*params_plain)(struct model *m, struct ft_error *err);
        /* release the model's layout state (after params_plain) */
        void (*params_free)(struct model *m);
        /* what the plan's primitives run, one entry per primitive created so far (model_kernels) */
        size_t (*kernels)(const struct backend_plan *p, const struct model_kernel **ret);
};

extern const struct backend_ops backend_onednn_ops;
