/* tensor.h - named tensors and the arena they live in.
 *
 * A struct tensor is a *view*: its data (and grad) point into an arena owned by a model or by an optimizer (its
 * state). A model's arena is [params][grads][buffers]: every parameter's data in one span, every gradient in the
 * next at the same offsets, then the BatchNorm buffers (model.h: model_grads). Names are PyTorch state_dict names
 * ("layer1.0.bn1.running_mean"), so weights move between finetuned and PyTorch with no mapping table.
 *
 * Layout: on the host every tensor is dense, contiguous, row-major in PyTorch's layout (Linear [out, in], Conv
 * [O, I, kH, kW]). Between training steps the backend may keep a weight, its gradient and the arrays that follow it
 * (optimizer state, the gradient accumulator) permuted into the layout its kernels read, in place (model.h:
 * model_sync); that is a permutation of the same numel floats, so elementwise code (optimizers, clipping,
 * accumulation) runs on either. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

enum tensor_dtype {
        TENSOR_F32 = 0, /* float: parameters, running stats, optimizer state */
        TENSOR_I64 = 1, /* int64_t: num_batches_tracked, the optimizer's step */
};

#define TENSOR_NAME_MAX 128
#define TENSOR_NDIM_MAX 4
#define TENSOR_FOLLOW_MAX 4

struct tensor {
        char name[TENSOR_NAME_MAX]; /* state_dict name, NUL-terminated */
        enum tensor_dtype dtype;
        int ndim; /* 0 (a scalar, numel 1) .. TENSOR_NDIM_MAX */
        int64_t shape[TENSOR_NDIM_MAX]; /* shape[i] for i < ndim; unused entries are 1 */
        size_t numel; /* product of shape (1 for a scalar) */
        void *data; /* numel elements of dtype, in the owner's arena */
        float *grad; /* numel floats for a parameter (also when frozen: then never written
                      * by backward, kept at zero); NULL for buffers and optimizer state */
        bool is_param; /* a trainable parameter (weight, bias); false for buffers */
        bool frozen; /* parameter excluded from training: no weight gradient, no update.
                      * Set it with model_freeze(), not by writing the field */
        float lr_mult; /* parameter group learning-rate multiplier, 1.0 by default; the
                        * trainer may write it directly (optim reads it at every step) */
        float *follow[TENSOR_FOLLOW_MAX]; /* arrays of numel floats laid out like data, NULL-terminated:
                                           * model_follow() */
};

static inline float *tensor_f32(const struct tensor *t) {
        return (float *)t->data;
}
static inline int64_t *tensor_i64(const struct tensor *t) {
        return (int64_t *)t->data;
}
/* Bytes of data: numel * 4 (F32) or numel * 8 (I64). */
size_t tensor_nbytes(const struct tensor *t);
/* "F32" / "I64" (the safetensors dtype names). */
const char *tensor_dtype_name(enum tensor_dtype dtype);

/* One contiguous, 64-byte aligned, zero-initialised allocation carved into pieces. Owned by a model or an
 * optimizer; its pieces never move and are freed together. */
struct arena {
        uint8_t *base;
        size_t size;
        size_t used;
};

/* Allocate `size` bytes (zeroed). -ENOMEM on failure. */
int arena_init(struct arena *a, size_t size);
void arena_deinit(struct arena *a);
/* Carve `size` bytes (64-byte aligned) out of a; NULL when it does not fit (a programmer error: size the arena
 * first with arena_size_add). */
void *arena_alloc(struct arena *a, size_t size);
/* Add the space a piece of `size` bytes needs to *total (alignment included); false on overflow. */
bool arena_size_add(size_t *total, size_t size);
