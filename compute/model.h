/* model.h - a network built from a JSON spec, with PyTorch state_dict names: build, init, forward, backward,
 * freeze. Presets: mlp, cnn, resnet18, resnet34.
 *
 * Not for: losses (loss.h), updates (optim.h), files (safetensors), the training loop (train).
 *
 * The spec (jansson json_t) is an object (docs/model-spec.md is the user-facing reference):
 *   {"input": [features] | [C, H, W], "init": "pytorch" (default) | "torchvision",
 *    "layers": [ {"type": "...", "name": "...", ...fields}, ... ]}
 * The layers run in order, like torch.nn.Sequential; a layer's "name" is its state_dict prefix and defaults to
 * its index in the list (as nn.Sequential names them: "0.weight", "2.bias"). Layer types and fields (defaults
 * in brackets; the input size of each layer is inferred from the previous one):
 *   linear       out_features, bias [true]                         -> NAME.weight [out,in], NAME.bias [out]
 *   conv2d       out_channels, kernel_size (int or [kh,kw]), stride [1], padding [0], dilation [1], bias [true]
 *                                                                  -> NAME.weight [O,I,kh,kw], NAME.bias [O]
 *   batchnorm2d  eps [1e-5], momentum [0.1]  -> NAME.weight, NAME.bias, NAME.running_mean, NAME.running_var,
 *                                               NAME.num_batches_tracked (I64 scalar)
 *   relu, tanh, sigmoid, gelu (exact erf form), leaky_relu (negative_slope [0.01])
 *   maxpool2d    kernel_size, stride [kernel_size], padding [0]    (floor mode, like PyTorch's default)
 *   avgpool2d    kernel_size, stride [kernel_size], padding [0]    (count_include_pad true, PyTorch's default)
 *   global_avg_pool                                                 (nn.AdaptiveAvgPool2d(1): [N,C,H,W] -> [N,C,1,1])
 *   flatten                                                         ([N,C,H,W] -> [N,C*H*W])
 *   dropout      p [0.5]                                            (training only)
 *   basic_block  out_channels, stride [1]     torchvision's ResNet BasicBlock: NAME.conv1, NAME.bn1, NAME.conv2,
 *                NAME.bn2 and, when stride != 1 or channels change, NAME.downsample.0 (conv 1x1, no bias) and
 *                NAME.downsample.1 (batchnorm)
 * Limits: at most MODEL_LAYERS_MAX layers, every size at most MODEL_DIM_MAX, at most MODEL_PARAMS_MAX scalars.
 * Bad specs (unknown type or field, zero/negative/too large sizes, impossible shapes) are refused with -EINVAL
 * and an ft_error naming the layer and field, e.g.
 *   layers[0] ("big"): kernel 7x7 (dilation 1x1) larger than the padded input 5x5
 *   layers[2] ("fc"): "linear" needs flat input [features], got [8, 5, 5]: add a "flatten" layer
 * with err->param the JSON path ("layers[0].kernel_size"). Unknown fields are errors, not ignored.
 *
 * Threads: building, init, freeze and tensor access need no context; model_prepare, forward and backward run
 * on the thread that owns the context given to model_prepare. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/common.h"
#include "compute/context.h"
#include "compute/tensor.h"

#define MODEL_LAYERS_MAX 512
#define MODEL_DIM_MAX (1 << 20) /* any single size: features, channels, H, W */
#define MODEL_PARAMS_MAX (1ull << 30) /* total scalars in parameters + buffers */
#define MODEL_BATCH_MAX 65536

struct model;

/* Preset specs. name: "mlp" | "cnn" | "resnet18" | "resnet34"; opts may be NULL (all defaults):
 *   mlp:      {"inputs": 784, "hidden": [512, 256], "outputs": 10, "activation": "relu"
 *              (relu|leaky_relu|gelu|tanh|sigmoid), "dropout": 0.0}
 *             -> Sequential names: Linear at 0, activation, [dropout], Linear ...
 *   cnn:      {"in_channels": 1, "input_size": [28, 28], "channels": [32, 64], "hidden": 128, "outputs": 10}
 *             -> per channel entry: conv 3x3 (no padding) + relu + maxpool 2; then flatten, linear(hidden), relu,
 *             linear(outputs). With the defaults this is the benchmark CNN (fc 1600 -> 128 -> 10).
 *   resnet18, resnet34: {"num_classes": 1000, "in_channels": 3, "input_size": [224, 224]}
 *             -> torchvision topology and names (conv1, bn1, relu, maxpool, layer1.0.conv1 ..., avgpool, fc)
 * Returns a new spec (caller owns the reference) or -EINVAL with err->param naming the option ("hidden");
 * unknown options are errors. */
int model_preset_spec(const char *name, const json_t *opts, json_t **ret_spec, struct ft_error *err);

/* The preset names above, NULL-terminated: the one list (the API's choices and messages, the CLI's, the
 * sizing below all come from it). */
extern const char *const model_preset_names[];
bool model_preset_exists(const char *name);
/* "mlp, cnn, resnet18, resnet34" into buf (for messages); returns buf. */
const char *model_preset_list(char *buf, size_t size);

/* A preset sized to an input and an output count: mlp gets "inputs" = features; cnn and resnet*
 * "in_channels" = channels and "input_size" = [height, width]; each its output option ("outputs",
 * "num_classes") = outputs. An option given in opts (may be NULL) wins over the size. */
struct model_preset_size {
        size_t features; /* a flat input */
        size_t channels, height, width; /* an image input */
        size_t outputs;
};
int model_preset_spec_sized(const char *name, const struct model_preset_size *size, const json_t *opts,
                            json_t **ret_spec, struct ft_error *err);

/* Check a spec without allocating weights; on success *ret_canonical (may be NULL) is the canonical spec (every
 * default filled in, every layer named). For the API's request validation. */
int model_spec_validate(const json_t *spec, json_t **ret_canonical, struct ft_error *err);
/* The input shape (as model_input_shape: *ret_ndim 1 or 3) and output count of the model a spec builds, checked
 * as model_spec_validate checks it and without allocating weights. */
int model_spec_io(const json_t *spec, int64_t ret_shape[3], int *ret_ndim, size_t *ret_outputs, struct ft_error *err);

/* Build a model from a spec: layers, shapes, one arena with every parameter, gradient and buffer (weights zero,
 * running_var 1: call model_init or load weights; layout: model_grads). The spec is copied; the caller keeps its
 * reference. */
int model_new(const json_t *spec, struct model **ret, struct ft_error *err);
/* NULL is a no-op. Releases the backend's primitives too: call it on the context's thread, before
 * compute_ctx_free of the context given to model_prepare. */
void model_free(struct model *m);

/* The canonical spec (borrowed, valid while m lives). It goes into safetensors metadata; model_new on it
 * rebuilds the same model. */
const json_t *model_spec(const struct model *m);

/* Input shape without the batch: ndim 1 ([features]) or 3 ([C, H, W]); returns ndim, fills shape[0..ndim). */
int model_input_shape(const struct model *m, int64_t shape[3]);
size_t model_input_numel(const struct model *m); /* floats per sample */
size_t model_output_count(const struct model *m); /* floats per sample of the last layer (classes) */

/* Forward floating-point operations per sample (2 per multiply-add of linear and conv layers; elementwise layers
 * not counted). A training step costs about 3x this per sample. For throughput reports. */
double model_forward_flops(const struct model *m);

/* Tensors in state_dict order (the order PyTorch's model.state_dict() lists them). */
size_t model_tensor_count(const struct model *m);
struct tensor *model_tensor_at(struct model *m, size_t i);
struct tensor *model_tensor_find(struct model *m, const char *name); /* NULL when absent */
size_t model_param_numel(const struct model *m); /* scalars in parameters (not buffers) */

/* Initialise every parameter and buffer as PyTorch does on construction, from a deterministic generator
 * seeded with `seed` (the same distributions as torch, not torch's random stream):
 *   Linear / Conv2d weight: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias: same bound;
 *   BatchNorm: weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0;
 *   in resnet18/34 (spec "init": "torchvision", set by the presets): conv weights kaiming_normal(fan_out, relu),
 *   BN weight 1 bias 0, fc as Linear. Also resets the dropout generator to `seed`. */
void model_init(struct model *m, uint64_t seed);
/* Re-initialise the parameters and buffers whose names start with `prefix` followed by '.' (e.g. "fc" for head
 * replacement) with the distributions above. -ENOENT when no tensor matches. */
int model_init_prefix(struct model *m, const char *prefix, uint64_t seed, struct ft_error *err);

/* Freeze (frozen=true) or unfreeze the parameters whose names match the fnmatch(3) glob `pattern`
 * ("conv1.*", "layer1.*", "*"). *ret_count (may be NULL) gets the number of parameters matched; a pattern
 * that matches nothing is -ENOENT with err naming it. Frozen parameters get no weight gradient and no update;
 * backward stops below the lowest layer that has a trainable parameter. */
int model_freeze(struct model *m, const char *pattern, bool frozen, size_t *ret_count, struct ft_error *err);
/* When on, a BatchNorm layer whose weight and bias are both frozen uses its running statistics during training
 * forward and does not update them (train_batchnorm=false). Off by default. */
void model_set_frozen_bn_eval(struct model *m, bool on);
/* Data-parallel SyncBatchNorm: while set, every BatchNorm layer of a training forward normalizes with the
 * statistics of all replicas' batches (its per-channel sums go through allreduce_f64, in place, summed over the
 * replicas) and its backward sums the gradient's statistics the same way; every replica must then run the same
 * forwards and backwards. The backward's result is for this replica's mean loss, like a local one. NULL: each
 * replica's own statistics (the default). sync must outlive the setting. */
struct model_bn_sync {
        void *userdata;
        int (*allreduce_f64)(void *userdata, double *buf, size_t n, struct ft_error *err);
};
void model_set_bn_sync(struct model *m, const struct model_bn_sync *sync);

/* Inference mode (on) for a model that only predicts: plans made from then on run forward_inference primitives
 * (no pooling or fused-ReLU workspaces, no batch-statistics BatchNorm), keep an activation only until its last
 * reader ran (the buffers are reused along the forward: peak memory is a few activations, not all of them) and
 * have no backward: a training forward and model_backward are refused (-EINVAL). Switching releases the plans made
 * so far (call it on the context's thread, or before model_prepare); turning it on turns input-gradient mode off.
 * Off by default; parameters' gradients are never touched in this mode. */
void model_set_inference(struct model *m, bool on);
bool model_is_inference(const struct model *m);

/* Input-gradient mode (on), for saliency (explain.h): plans made from then on also compute the gradient of the
 * output with respect to the model input, through the first layer's backward data, and no parameter's gradient
 * (every parameter is treated as frozen: backward never writes the gradient span, and the freeze state is kept
 * for when the mode is off). model_backward is allowed after an evaluation forward too (running statistics, no
 * dropout: the gradient of what predict computes); model_input_grad then gives d(input). Unlike inference mode
 * the plans keep every activation for backward (a training step's memory without the parameter gradients), so a
 * model that only predicts stays in inference mode and explain builds its own. Turning it on turns inference mode
 * off (and model_set_inference(on) turns it off); switching releases the plans made so far (on the context's
 * thread, or before model_prepare). Off by default. */
void model_set_input_grad(struct model *m, bool on);
bool model_is_input_grad(const struct model *m);
/* The gradient with respect to the input of the last model_backward in input-gradient mode: *ret [batch, input
 * numel] floats (NCHW per sample, as x), owned by the model, valid until the next forward or backward. -EINVAL
 * when the mode is off or no backward ran since the last forward; -EOPNOTSUPP on a backend without it. */
int model_input_grad(struct model *m, const float **ret, struct ft_error *err);

/* Create the backend's primitives and buffers for batches of 1..max_batch on ctx's thread. Forward at a
 * batch size seen before reuses its primitives; nothing is allocated per step after the first step at a batch
 * size. -EINVAL for max_batch < 1 or > MODEL_BATCH_MAX. Calling it again with another ctx re-binds. */
int model_prepare(struct model *m, struct compute_ctx *ctx, int max_batch, struct ft_error *err);

/* Forward a contiguous batch x ([batch, input numel] floats, NCHW per sample). training: BatchNorm uses batch
 * statistics and updates its running stats (momentum, unbiased running_var, num_batches_tracked += 1), dropout
 * is active; otherwise eval (running stats, no dropout). *ret_out: [batch, output count] floats owned by the
 * model, valid until the next forward. batch must be 1..max_batch of model_prepare: -EINVAL otherwise. */
int model_forward(struct model *m, const float *x, int batch, bool training, const float **ret_out,
                  struct ft_error *err);
/* Backward from d(out) ([batch, output count], the batch of the last forward, which must have been a training
 * forward, or any forward in input-gradient mode): writes (overwrites, does not accumulate) the grad of every
 * trainable parameter (none in input-gradient mode: the input's, model_input_grad). */
int model_backward(struct model *m, const float *d_out, struct ft_error *err);
/* Set every parameter gradient to zero (the whole gradient span). */
void model_zero_grad(struct model *m);

/* The arena is laid out [params][grads][buffers], each span contiguous (llm.c's ParameterTensors):
 *   params:  every parameter's data in state_dict order (weight, bias, bn weight, bn bias, ...), each part starting
 *            on a 64-byte boundary (MODEL_SPAN_ALIGN floats: oneDNN's kernels assume aligned buffers), the gaps
 *            between parts zero;
 *   grads:   every parameter's gradient at the same offsets (t->grad - grads == (float *)t->data - params);
 *   buffers: BatchNorm running_mean / running_var / num_batches_tracked.
 * model_params and model_grads give the first two spans: *ret_n floats each (at least model_param_numel: the
 * parts and the gaps), borrowed, valid while m lives; tensors' data and grad point into them. For work over all
 * gradients at once: zeroing, norms, scaling, accumulation, a sum-allreduce across data-parallel replicas.
 * Frozen parameters keep their part of the span; backward never writes it, so it stays zero (model_freeze zeroes
 * it), and the gaps stay zero, so elementwise work over the whole span leaves them zero (0 * c, 0 + 0) and adds
 * nothing to a norm.
 * Layout inside a part: between steps a weight's gradient may be permuted into the backend's layout with its
 * weight (model_sync). The span stays contiguous and each part keeps its place and size, so elementwise work over
 * the span (zero, norm, scale, sum-allreduce) is layout-independent as long as every replica holds the same layout
 * (same backend and oneDNN ISA, same first plan); anything that reads a part as PyTorch layout calls model_sync
 * first. */
#define MODEL_SPAN_ALIGN 16
void model_params(struct model *m, float **ret, size_t *ret_n);
void model_grads(struct model *m, float **ret, size_t *ret_n);
/* An array laid out like the spans (model_grads' n floats: a gradient accumulator) to the parameters packed back to
 * back in state_dict order (model_param_numel floats at its start), in place; unpack moves them back and zeroes
 * the gaps. For files, whose format must not depend on the span's alignment. */
void model_span_pack(const struct model *m, float *span);
void model_span_unpack(const struct model *m, float *span);

/* Between steps the backend keeps weights, their gradients and the arrays that follow them in the layout its
 * kernels read (forward moves them there; that saves two weight reorders per layer and step). Call model_sync
 * before reading or writing parameter data, gradients or optimizer state on the host after a forward or backward:
 * it puts them back in PyTorch layout (a no-op when they are). The library's own readers and writers (safetensors
 * save and load, checkpoints, train_run before it returns) call it themselves. */
int model_sync(struct model *m, struct ft_error *err);
/* Let `buf` (numel floats, e.g. an optimizer's exp_avg for parameter t) follow t's layout; -ENOSPC beyond
 * TENSOR_FOLLOW_MAX - 1. Puts the model in PyTorch layout first (buf's contents are read as PyTorch layout).
 * model_unfollow removes it, before buf is freed; buf's contents are then in whatever layout t had. */
int model_follow(struct model *m, struct tensor *t, float *buf, struct ft_error *err);
void model_unfollow(struct tensor *t, float *buf);

/* One primitive the backend created for a layer: its family, pass, implementation and memory formats, as
 * oneDNN names them ("convolution", "backward_weights", "jit:avx2", "src:aBcd8b wei:ABcd8b8a dst:aBcd8b").
 * Convolutions the backend runs as its own per-tap GEMMs say "per_tap:dnnl_sgemm". */
struct model_kernel {
        char layer[TENSOR_NAME_MAX]; /* the node's name ("layer1.0.conv1"), "input" / "output" for the model's own */
        char primitive[32]; /* "convolution", "inner_product", "batch_normalization", "pooling", "eltwise",
                             * "binary", "reorder" */
        char pass[24]; /* "forward_training", "forward_inference", "backward_data", "backward_weights",
                        * "backward" (batch normalization), "" for reorders and binary */
        char impl[64];
        char formats[192];
};

/* Build the step for batch size `batch` without running it: the forward's primitives and buffers (what the first
 * forward at that batch size creates) and, with backward, the backward's. Buffers are allocated, not touched. For
 * looking at the kernels a step will run (model_kernels) before running it. */
int model_plan(struct model *m, int batch, bool backward, struct ft_error *err);
/* The kernels of the plan for batch size `batch`: everything its forwards and backwards created so far (a
 * backward's primitives appear after the first backward). *ret (owned by the model, valid until the next
 * forward or backward or model_free) and *ret_n; -ENOENT when no forward ran (or model_plan) at that batch size. */
int model_kernels(struct model *m, int batch, const struct model_kernel **ret, size_t *ret_n, struct ft_error *err);
/* The kernels of the plan for `batch` as a report (new reference, NULL when none ran at that batch or out of
 * memory): {"isa": "avx2", "primitives": N, "implementations": {"convolution backward_weights jit:avx2": 3, ...},
 * "reference": [{"layer", "primitive", "pass", "impl", "formats"}, ...]} counting the checked families
 * (convolution, inner product, batch normalization, pooling, eltwise, binary; reorders are counted apart in
 * "reorders"); with all, also "kernels": every entry as an object. */
json_t *model_kernels_report(struct model *m, int batch, bool all);
/* Whether k is one of oneDNN's reference implementations ("ref:any", "gemm:ref", "ref_fused"...): correct but
 * often 10-100x slower than a jit kernel, never what a training step should run. */
bool model_kernel_is_reference(const struct model_kernel *k);

/* The dropout generator: a counter-based generator (seed, counter). Save and restore it with checkpoints to
 * resume bit-identically. */
struct model_rng_state {
        uint64_t seed;
        uint64_t counter;
};
void model_rng_get(const struct model *m, struct model_rng_state *ret);
void model_rng_set(struct model *m, const struct model_rng_state *state);
