/* context.h - a per-thread compute context: the device it runs on (device selection: "auto", "cpu", "cuda"),
 * the backend, and the thread count.
 *
 * Create it on the worker thread that uses it, and use it (prepare a model, run forward/backward, step an
 * optimizer) only on that thread: oneDNN primitives are created and executed on the same thread, the OpenMP
 * thread count is a per-thread setting, and a CUDA context is made current on the creating thread.
 *
 * Device selection (compute_ctx_new_on): "cpu" is oneDNN; "cuda" needs a build with -Dcuda=enabled, a driver,
 * the device, enough free memory on it and a CUDA backend that trains, and fails naming which one is missing;
 * "auto" takes the GPU when "cuda" would succeed, else the CPU, and says why. Today the CUDA backend has its
 * device layer (driver, kernels) but not yet its layer families, so every training context is on the CPU
 * and the reason says so (docs/decisions.md "issue 15").
 *
 * Not for: choosing CPU vs CUDA per layer. A context has one backend. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

struct compute_ctx;

#define COMPUTE_THREADS_MAX 1024
#define COMPUTE_GPUS_MAX 64
#define COMPUTE_DEVICE_REASON_MAX FT_ERROR_MSG_MAX

/* The order of jobspec_device (JOBSPEC_DEVICE_AUTO, _CPU, _CUDA). */
enum compute_device {
        COMPUTE_DEVICE_AUTO,
        COMPUTE_DEVICE_CPU,
        COMPUTE_DEVICE_CUDA,
};

/* Create a context for the calling thread with `threads` OpenMP threads (0: all cores, as omp_get_num_procs).
 * Sets the calling thread's OpenMP thread count. -EINVAL for threads < 0 or > COMPUTE_THREADS_MAX, -EIO when
 * oneDNN cannot create its engine or stream; err says which. The CPU, as compute_ctx_new_on(..CPU..). */
int compute_ctx_new(int threads, struct compute_ctx **ret, struct ft_error *err);
/* The same on `device`, GPU number `gpu` (0 .. COMPUTE_GPUS_MAX - 1) for "cuda" and "auto". "cuda" that
 * cannot run fails with err->param "device" and a message naming why: -ENOTSUP (not compiled in, or the
 * CUDA backend does not train yet), -ENODEV (no driver, no device, no such device, no kernel image for it),
 * -ENOMEM (out of memory on the device), -EIO (a driver error). */
int compute_ctx_new_on(int threads, enum compute_device device, int gpu, struct compute_ctx **ret,
                       struct ft_error *err);
void compute_ctx_free(struct compute_ctx *ctx); /* NULL is a no-op */
int compute_ctx_threads(const struct compute_ctx *ctx);
/* The backend's name: "onednn". */
const char *compute_ctx_backend_name(const struct compute_ctx *ctx);
/* The device the context runs on: "cpu" or "cuda". */
const char *compute_ctx_device(const struct compute_ctx *ctx);
/* Why that device: "'device' is 'cpu'", "no CUDA device", "cuda is not available in this build", ... */
const char *compute_ctx_device_reason(const struct compute_ctx *ctx);

/* What "cuda" would find for GPU `gpu` without creating a context that trains: 1 and the device's name in
 * reason when it is usable, 0 and the reason when not (the same reasons as compute_ctx_new_on). */
int compute_cuda_check(int gpu, char *reason, size_t size);
