/* context.h - a per-thread compute context: the oneDNN engine and stream and the thread count.
 *
 * Create it on the worker thread that uses it, and use it (prepare a model, run forward/backward, step an
 * optimizer) only on that thread: oneDNN primitives are created and executed on the same thread, and the
 * OpenMP thread count is a per-thread setting.
 *
 * Not for: choosing CPU vs CUDA per layer. A context has one backend; "cpu" (oneDNN) is the only one today. */
#pragma once

#include "common/common.h"

struct compute_ctx;

#define COMPUTE_THREADS_MAX 1024

/* Create a context for the calling thread with `threads` OpenMP threads (0: all cores, as omp_get_num_procs).
 * Sets the calling thread's OpenMP thread count. -EINVAL for threads < 0 or > COMPUTE_THREADS_MAX, -EIO when
 * oneDNN cannot create its engine or stream; err says which. */
int compute_ctx_new(int threads, struct compute_ctx **ret, struct ft_error *err);
void compute_ctx_free(struct compute_ctx *ctx); /* NULL is a no-op */
int compute_ctx_threads(const struct compute_ctx *ctx);
/* The backend's name: "onednn". */
const char *compute_ctx_backend_name(const struct compute_ctx *ctx);
