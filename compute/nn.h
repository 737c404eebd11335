/* nn.h - the layer graph inside a model (private to compute/): nodes, values and the backend op table.
 *
 * A model is a list of nodes; node i reads one or two values and produces value i + 1 (value 0 is the model
 * input). A basic_block in the spec expands to conv, bn, relu, conv, bn, [conv, bn], add, relu nodes.
 * Nodes describe the math (shapes, hyperparameters, tensors); the backend (backend_*.c) owns everything that
 * executes it (primitives, memory formats, buffers), so another backend can sit beside oneDNN's.
 *
 * Not for: the public API (model.h) or spec parsing (model.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "compute/context.h"
#include "compute/model.h"
#include "compute/tensor.h"

enum node_kind {
        NODE_LINEAR,
        NODE_CONV,
        NODE_BN,
        NODE_ACT,
        NODE_MAXPOOL,
        NODE_AVGPOOL,
        NODE_GAP,
        NODE_FLATTEN,
        NODE_DROPOUT,
        NODE_ADD,
};

enum act_kind {
        ACT_RELU,
        ACT_LEAKY_RELU,
        ACT_GELU,
        ACT_TANH,
        ACT_SIGMOID,
};

/* Per-sample shape of a value: ndim 1 (c = features, h = w = 1) or 3 (c, h, w). */
struct value_shape {
        int ndim;
        int64_t c, h, w;
};

struct node {
        enum node_kind kind;
        int n_in;
        int in[2]; /* value indices */
        struct value_shape out; /* shape of value (index + 1) */
        char name[TENSOR_NAME_MAX];
        /* tensors (indices into model->tensors, -1 when absent), resolved to pointers after the arena exists */
        int ti_weight, ti_bias, ti_rmean, ti_rvar, ti_nbt;
        struct tensor *weight, *bias, *running_mean, *running_var, *num_batches_tracked;
        /* conv, pools */
        int64_t kh, kw, sh, sw, ph, pw, dh, dw;
        /* act */
        enum act_kind act;
        float alpha; /* leaky_relu slope; dropout p */
        /* bn */
        float eps, momentum;
        bool torchvision_init; /* conv: kaiming_normal(fan_out, relu) instead of torch's default */
};

struct backend_plan; /* one per (model, batch size), owned by the backend */
struct backend_params;

/* The backend op table. All calls on the context's thread. */
struct backend_ops {
        const char *name;
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
        /* parameters (data, grad, followers) back to PyTorch layout; forward and backward move them to the
         * backend's (model_sync) */
        int (*params_plain)(struct model *m, struct ft_error *err);
        /* release the model's layout state (after params_plain) */
        void (*params_free)(struct model *m);
        /* what the plan's primitives run, one entry per primitive created so far (model_kernels) */
        size_t (*kernels)(const struct backend_plan *p, const struct model_kernel **ret);
};

extern const struct backend_ops backend_onednn_ops;

#define MODEL_PLANS_MAX 4

struct model {
        json_t *spec; /* canonical */
        struct value_shape input;
        int n_nodes;
        struct node *nodes;
        int n_values;
        int *consumers; /* per value: how many node inputs read it */
        size_t n_tensors;
        struct tensor *tensors;
        struct arena arena;
        bool frozen_bn_eval;
        struct model_rng_state rng;

        struct compute_ctx *ctx;
        int max_batch;
        int n_plans;
        int plan_batch[MODEL_PLANS_MAX];
        struct backend_plan *plans[MODEL_PLANS_MAX];
        unsigned plan_used[MODEL_PLANS_MAX]; /* LRU stamps */
        unsigned plan_clock;
        struct backend_plan *last_plan; /* of the last forward */
        bool last_training;
        struct backend_params *params; /* the backend's layout of each parameter (owned by ctx->ops) */
        bool params_native; /* some parameters are in the backend's layout now */
};

/* dnnl context internals the backend needs */
struct compute_ctx {
        int threads;
        const struct backend_ops *ops;
        void *engine; /* dnnl_engine_t */
        void *stream; /* dnnl_stream_t */
};

/* value shape helpers */
static inline int64_t value_numel(const struct value_shape *s) {
        return s->c * s->h * s->w;
}

/* The dropout mask for element i of a draw with (seed, counter): true = keep. */
bool nn_dropout_keep(uint64_t seed, uint64_t counter, uint64_t i, float p);
/* requires_grad of every value for the current freeze state: out[v] for v < n_values. */
void nn_requires_grad(const struct model *m, bool *out);
/* whether node n has a parameter that is trainable */
bool nn_node_trainable(const struct node *n);
