/* onednn.h - inside the oneDNN backend (private to compute/backend/onednn/): the plan and its per-node and
 * per-value state, the helpers every layer family uses, and layer_ops, the interface between the generic plan
 * code (core.c) and the layer families (one file each: conv.c, linear.c, batchnorm.c, eltwise.c, pool.c,
 * flatten.c, dropout.c, add.c; weighted.c is what conv and linear share).
 *
 * How a plan runs a node (core.c does the generic part, the node's family the rest):
 *   plan (forward):  core allocates the family's state (layer_ops.state_size bytes, zeroed: bnode.state), then
 *                    fwd_init creates the forward primitives, makes its inputs read the formats it wants
 *                    (onednn_conform_init: a reorder only where the producer wrote another format) and creates
 *                    its output value (onednn_value_init). A node a family marks `absorbed` (the ReLU a batchnorm
 *                    fuses) gets no call at all: its value is its input's.
 *   forward:         core runs the input conforms, then forward.
 *   plan (backward): core creates every value's diff and each input's diff target (bnode.in[j].dmem: the
 *                    producer's diff, or a scratch that core merges into it), then bwd_init.
 *   backward:        called for a node whose output needs a gradient; need[j]: input j needs one (write
 *                    in[j].dmem then, all of it). Core merges the input diffs afterwards (sums for values with
 *                    several consumers). Trainable parameters' gradients are overwritten, frozen ones never
 *                    written (write into a scratch instead when a primitive insists).
 * Parameters: a family that reads a weight through a primitive wraps it with onednn_wview_init, which also
 * decides (on the first plan) the format the weight lives in between steps (core.c: param_md, params_move).
 *
 * Adding a layer family: a file with its layer_ops and its row in core.c's table (indexed by enum node_kind),
 * a line in compute/meson.build.
 *
 * Not for: anything outside this backend; model.c sees only backend.h. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "compute/nn.h"

/* converts a producer's format to the format a layer reads (and, in backward, the diff back) */
struct conform {
        bool needed;
        dnnl_memory_desc_t md;
        dnnl_memory_t mem, dmem;
        dnnl_primitive_t fwd, bwd;
};

/* a parameter in the format a primitive wants */
struct wview {
        dnnl_memory_desc_t md;
        dnnl_memory_t user; /* over tensor data (or grad), in the format param_md decided */
        dnnl_memory_t mem; /* == user when the formats are the same */
        dnnl_primitive_t reorder;
};

/* one value (a node's output; value 0 the model input) in the plan */
struct bvalue {
        dnnl_memory_desc_t md;
        dnnl_memory_t mem, dmem;
        size_t nfloats; /* floats in the buffer, padding included */
        bool written; /* its diff has been written during this backward */
        bool pooled; /* inference plans: the buffer comes from the plan's pool (values_assign in core.c) */
};

/* the plan's part of one node that every family shares */
struct bnode {
        struct conform in[2]; /* input j in the format the node reads; in[j].dmem: where it writes j's diff */
        dnnl_memory_t din_scratch[2]; /* diff target when the producer has several consumers or a conform */
        bool absorbed; /* the node before does this node's work (a relu fused into a batchnorm): no calls, its
                        * value is its input's */
        const struct layer_ops *ops; /* the node's family */
        void *state; /* the family's, layer_ops.state_size bytes */
};

struct backend_plan {
        int batch;
        /* made for a model in inference mode (model_set_inference): forward_inference primitives, no workspaces,
         * no backward; a value's buffer is reused once its last reader ran (values_assign) */
        bool inference;
        void **bufs; /* the pool's buffers (inference plans) */
        size_t n_bufs;
        dnnl_engine_t eng;
        dnnl_stream_t st;
        struct bvalue *vals;
        struct bnode *nodes;
        int n_nodes;
        dnnl_memory_t x_mem;
        dnnl_memory_t out_mem, dout_mem; /* plain [batch, outputs] */
        dnnl_primitive_t out_reorder, dout_reorder;
        float *out;
        bool bwd_ready;
        bool *rg;
        /* everything to release */
        dnnl_memory_t *mems;
        size_t n_mems, cap_mems;
        dnnl_primitive_t *prims;
        size_t n_prims, cap_prims;
        dnnl_primitive_desc_t *pds;
        size_t n_pds, cap_pds;
        /* what runs: one entry per primitive created (model_kernels) */
        struct model_kernel *kernels;
        size_t n_kernels, cap_kernels;
};

/* A layer family: what core.c calls for each node of the kinds it serves. fwd_init and forward are required;
 * bwd_init, backward and state_free may be NULL (nothing to do). All return 0 or a negative errno with err set. */
struct layer_ops {
        size_t state_size; /* bytes of bnode.state, zeroed */
        /* writes its input's diff even for the model input, which needs none (core gives it a scratch there) */
        bool diff_src_always;
        int (*fwd_init)(struct model *m, struct backend_plan *p, int ni, struct ft_error *err);
        int (*forward)(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err);
        int (*bwd_init)(struct model *m, struct backend_plan *p, int ni, struct ft_error *err);
        int (*backward)(struct model *m, struct backend_plan *p, int ni, const bool need[2], struct ft_error *err);
        void (*state_free)(void *state); /* what the state holds besides oneDNN objects (the plan tracks those) */
};

extern const struct layer_ops onednn_linear_ops, onednn_conv_ops, onednn_batchnorm_ops, onednn_eltwise_ops,
        onednn_pool_ops, onednn_flatten_ops, onednn_dropout_ops, onednn_add_ops;

/* Return -EIO with "onednn: WHAT for layer \"NAME\" failed: STATUS" unless call succeeds; needs `name` and `err`
 * in scope. */
#define CHK(call, what)                                                                                                \
        do {                                                                                                           \
                dnnl_status_t s_ = (call);                                                                             \
                if (s_ != dnnl_success)                                                                                \
                        return ft_error_set(err, -EIO, NULL, "onednn: %s for layer '%s' failed: %s", what, name,       \
                                            dnnl_status2str(s_));                                                      \
        } while (0)

/* ---- objects the plan owns (core.c): created, tracked, released with the plan ---------------------------- */

/* a memory over `handle` (DNNL_MEMORY_ALLOCATE: its own buffer; DNNL_MEMORY_NONE: set later) */
int onednn_mem_new(struct backend_plan *p, const dnnl_memory_desc_t *md, void *handle, dnnl_memory_t *ret,
                   const char *name, struct ft_error *err);
/* a primitive, recorded for model_kernels */
int onednn_prim_new(struct backend_plan *p, dnnl_primitive_desc_t pd, dnnl_primitive_t *ret, const char *name,
                    struct ft_error *err);
/* a primitive descriptor (hint: the forward's, for backward descriptors) */
int onednn_pd_new(struct backend_plan *p, const void *desc, const_dnnl_primitive_desc_t hint,
                  dnnl_primitive_desc_t *ret, const char *what, const char *name, struct ft_error *err);
/* the same, but *ret NULL (and 0) when oneDNN has no implementation for desc */
int onednn_pd_try(struct backend_plan *p, const void *desc, const_dnnl_primitive_desc_t hint,
                  dnnl_primitive_desc_t *ret, const char *what, const char *name, struct ft_error *err);
/* a reorder primitive from src to dst, recorded */
int onednn_reorder_new(struct backend_plan *p, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                       dnnl_primitive_t *ret, const char *name, struct ft_error *err);
/* Record a kernel that is not a oneDNN primitive (pd NULL: our own loops over dnnl_sgemm, named by
 * prim_override and pass_override), or a primitive's (onednn_prim_new and onednn_reorder_new do that). */
void onednn_kernel_record(struct backend_plan *p, const char *layer, const_dnnl_primitive_desc_t pd,
                          const char *prim_override, const char *pass_override);

/* ---- values and parameters ------------------------------------------------------------------------------ */

/* value v's memory in format md (its diff comes with the plan's first backward: eval-only plans never have one).
 * In an inference plan the memory has no buffer until the plan is complete (values_assign gives it one from the
 * pool): read its handle at run time, never at init. */
int onednn_value_init(struct backend_plan *p, struct bvalue *v, const dnnl_memory_desc_t *md, const char *name,
                      struct ft_error *err);
/* make input j of node ni read format md (a reorder from its producer's format when they differ) */
int onednn_conform_init(struct backend_plan *p, struct model *m, int ni, int j, const dnnl_memory_desc_t *md,
                        struct ft_error *err);
/* A view of parameter t (data: its data or grad, in the format decided for it between steps) in the format a
 * primitive wants, with the reorder between them when they differ (to_user: from the view to the parameter, for
 * gradients). The first plan decides the parameter's format: `want`, when it is a permutation of numel floats. */
int onednn_wview_init(struct backend_plan *p, struct model *m, struct wview *w, const struct tensor *t, void *data,
                      const dnnl_memory_desc_t *want, bool to_user, const char *name, struct ft_error *err);

/* ---- running ---------------------------------------------------------------------------------------------- */

int onednn_run(struct backend_plan *p, dnnl_primitive_t prim, int n, const dnnl_exec_arg_t *args, const char *name,
               struct ft_error *err);
int onednn_run_reorder(struct backend_plan *p, dnnl_primitive_t prim, dnnl_memory_t src, dnnl_memory_t dst,
                       const char *name, struct ft_error *err);

/* ---- small helpers ------------------------------------------------------------------------------------------ */

/* The buffer of a memory this plan created with a buffer (cannot fail for those). */
static inline void *onednn_mem_ptr(dnnl_memory_t m) {
        void *h = NULL;
        dnnl_memory_get_data_handle(m, &h);
        return h;
}

static inline const dnnl_memory_desc_t *onednn_q_md(const_dnnl_primitive_desc_t pd, dnnl_query_t q) {
        return dnnl_primitive_desc_query_md(pd, q, 0);
}

/* [batch, features] nc or [batch, c, h, w] nchw */
static inline dnnl_status_t onednn_md_plain(dnnl_memory_desc_t *md, int batch, const struct value_shape *s) {
        if (s->ndim == 1) {
                dnnl_dims_t d = {batch, s->c};
                return dnnl_memory_desc_init_by_tag(md, 2, d, dnnl_f32, dnnl_nc);
        }
        dnnl_dims_t d = {batch, s->c, s->h, s->w};
        return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nchw);
}

/* the same shape in whatever format the primitive prefers */
static inline dnnl_status_t onednn_md_any(dnnl_memory_desc_t *md, int batch, const struct value_shape *s) {
        if (s->ndim == 1) {
                dnnl_dims_t d = {batch, s->c};
                return dnnl_memory_desc_init_by_tag(md, 2, d, dnnl_f32, dnnl_format_tag_any);
        }
        dnnl_dims_t d = {batch, s->c, s->h, s->w};
        return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_format_tag_any);
}

/* tensor t in PyTorch layout (x, oi, oihw) */
static inline dnnl_status_t onednn_md_tensor(dnnl_memory_desc_t *md, const struct tensor *t) {
        dnnl_dims_t d;
        for (int i = 0; i < t->ndim; i++)
                d[i] = t->shape[i];
        dnnl_format_tag_t tag = t->ndim == 1 ? dnnl_x : t->ndim == 2 ? dnnl_oi : dnnl_oihw;
        return dnnl_memory_desc_init_by_tag(md, t->ndim, d, dnnl_f32, tag);
}

/* the prop kind of a plan's forward primitives */
static inline dnnl_prop_kind_t onednn_fwd_prop(const struct backend_plan *p) {
        return p->inference ? dnnl_forward_inference : dnnl_forward_training;
}

/* ---- layers with a weight and a bias (weighted.c): what linear and conv share ------------------------------ */

struct weighted {
        dnnl_primitive_desc_t fwd_pd;
        dnnl_primitive_t fwd, bwd_data, bwd_weights;
        struct wview w_fwd, w_bwd, dw; /* the weight as forward and backward data read it; its gradient */
        dnnl_memory_t bias, dbias, dbias_scratch, dw_scratch; /* scratches: for frozen parameters */
        struct conform bw_src, bw_ddst; /* backward weights reads another format than forward left */
        struct conform bd_ddst, bd_dsrc; /* backward data reads / writes other formats (bd_dsrc.fwd: back) */
};

/* the weight in format `any` and the bias (*ret_bmd NULL when the node has none) */
int onednn_weighted_mds(const struct node *n, dnnl_memory_desc_t *wmd, dnnl_memory_desc_t *bmd,
                        dnnl_memory_desc_t **ret_bmd, struct ft_error *err);
/* with w->fwd_pd made: the forward primitive, input conform, weight view, output value, bias */
int onednn_weighted_fwd_finish(struct model *m, struct backend_plan *p, int ni, struct weighted *w,
                               struct ft_error *err);
int onednn_weighted_forward(struct model *m, struct backend_plan *p, int ni, struct weighted *w, struct ft_error *err);
/* with the backward data (dpd, NULL when the input needs no diff) and backward weights (wpd, NULL in input-gradient
 * mode: model_set_input_grad) descriptors made */
int onednn_weighted_bwd_finish(struct model *m, struct backend_plan *p, int ni, struct weighted *w,
                               dnnl_primitive_desc_t dpd, dnnl_primitive_desc_t wpd, const dnnl_memory_desc_t *bmd,
                               struct ft_error *err);
int onednn_weighted_backward(struct model *m, struct backend_plan *p, int ni, struct weighted *w, const bool need[2],
                             struct ft_error *err);
