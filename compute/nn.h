/* nn.h - the layer graph inside a model (private to compute/): nodes, values, the model and context structs.
 *
 * A model is a list of nodes; node i reads one or two values and produces value i + 1 (value 0 is the model
 * input). A basic_block in the spec expands to conv, bn, relu, conv, bn, [conv, bn], add, relu nodes.
 * Nodes describe the math (shapes, hyperparameters, tensors); the backend (backend.h, compute/backend/onednn/)
 * owns everything that executes it (primitives, memory formats, buffers), so another backend can sit beside
 * oneDNN's.
 *
 * Adding a layer: a node kind here, a row in model.c's layer_types table (spec fields, builder, init), and a
 * family file in each backend with its row in that backend's layer_ops table (compute/backend/onednn/core.c).
 *
 * Not for: the public API (model.h), spec parsing (model.c) or the backend op table (backend.h). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "compute/backend.h"
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
        NODE_KINDS /* the number of kinds */
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
        struct arena arena; /* [params][grads][buffers] (model.h model_grads) */
        float *params_span, *grads_span; /* every parameter's data, every parameter's grad: n_span floats each */
        size_t n_span;
        bool frozen_bn_eval;
        const struct model_bn_sync *bn_sync; /* model_set_bn_sync; NULL: per replica */
        bool inference; /* model_set_inference: plans are forward_inference only */
        bool input_grad; /* model_set_input_grad: plans compute the input's gradient and no parameter's */
        bool input_grad_ready; /* the last backward ran in that mode: model_input_grad has it */
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

/* a compute context: its thread count and its backend (ops->ctx_new made `backend`) */
struct compute_ctx {
        int threads;
        const struct backend_ops *ops;
        void *backend;
        const char *device; /* "cpu", "cuda" (compute_ctx_device) */
        char device_reason[COMPUTE_DEVICE_REASON_MAX];
        unsigned fp_mode_saved; /* the creating thread's MXCSR before the context (compute_ctx_free restores it) */
};

/* value shape helpers */
static inline int64_t value_numel(const struct value_shape *s) {
        return s->c * s->h * s->w;
}
/* The shape of node n's first input: the model input or the output of an earlier node. */
static inline const struct value_shape *node_in_shape(const struct model *m, const struct node *n) {
        return n->in[0] == 0 ? &m->input : &m->nodes[n->in[0] - 1].out;
}

/* The dropout mask for element i of a draw with (seed, counter): true = keep. */
bool nn_dropout_keep(uint64_t seed, uint64_t counter, uint64_t i, float p);
/* requires_grad of every value for the current freeze state: out[v] for v < n_values. */
void nn_requires_grad(const struct model *m, bool *out);
/* whether node n has a parameter that is trainable (none is in input-gradient mode: model_set_input_grad) */
bool nn_node_trainable(const struct model *m, const struct node *n);
/* whether backward writes parameter t's gradient: t is not frozen and the model is not in input-gradient mode */
static inline bool nn_param_grad(const struct model *m, const struct tensor *t) {
        return t && !t->frozen && !m->input_grad;
}
