/* context.c - per-thread compute contexts: device selection ("auto", "cpu", "cuda"), the OpenMP thread count
 * and the backend (oneDNN's CPU engine and stream live in its per-context state, compute/backend/onednn/core.c;
 * the CUDA device layer is compute/backend/cuda/).
 * Not for: primitives (compute/backend/). */
#include "compute/context.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define FP_MODE_FLUSH 0x8040u /* MXCSR: FTZ (bit 15), DAZ (bit 6) */
#endif

#include "compute/nn.h"
#include "config.h"
#if HAVE_CUDA
#include "compute/backend/cuda/cuda.h"
#endif

/* Denormal floats flushed to zero in the calling thread and in each of its OpenMP threads; returns the calling
 * thread's mode before. A training run whose gradients shrink towards zero (a loss near 0) otherwise computes on
 * denormals, which x86 cores handle in microcode: an MLP of test_api_jobctl's slowed from 8,100 to 980 samples/s
 * over 8 epochs (15.1 s against 0.97 s flushed). Values below 1.2e-38 become 0, far under every tolerance we
 * check against PyTorch; TensorFlow flushes by default too (docs/decisions.md). */
static unsigned fp_mode_flush(int threads) {
#ifdef FP_MODE_FLUSH
        unsigned before = _mm_getcsr();
#pragma omp parallel num_threads(threads)
        _mm_setcsr(_mm_getcsr() | FP_MODE_FLUSH);
        _mm_setcsr(before | FP_MODE_FLUSH);
        return before;
#else
        (void)threads;
        return 0;
#endif
}

static void fp_mode_restore(unsigned before) {
#ifdef FP_MODE_FLUSH
        _mm_setcsr((_mm_getcsr() & ~FP_MODE_FLUSH) | (before & FP_MODE_FLUSH));
#else
        (void)before;
#endif
}

/* Whether GPU `gpu` can train: 0, or a negative errno with err saying why (param "device"). */
static int cuda_usable(int gpu, struct ft_error *err) {
#if HAVE_CUDA
        struct cuda_device *d = NULL;
        int r = cuda_device_open(gpu, &d, err);
        if (r < 0)
                return r;
        char name[CUDA_NAME_MAX];
        snprintf(name, sizeof(name), "%s", cuda_device_name(d));
        cuda_device_close(d);
        /* The device layer works; the layer families (cuDNN, cuBLAS) are not ported yet: say so rather than
         * train on a half backend. When backend_cuda_ops exists, this returns 0. */
        return ft_error_set(err, -ENOTSUP, "device",
                            "CUDA device %d '%s' is usable, but the CUDA backend of this build does not train yet", gpu,
                            name);
#else
        (void)gpu;
        return ft_error_set(err, -ENOTSUP, "device", "cuda is not available in this build");
#endif
}

int compute_cuda_check(int gpu, char *reason, size_t size) {
        struct ft_error e = {0};
        if (gpu < 0 || gpu >= COMPUTE_GPUS_MAX) {
                snprintf(reason, size, "GPU numbers are from 0 to %d", COMPUTE_GPUS_MAX - 1);
                return 0;
        }
        int r = cuda_usable(gpu, &e);
        snprintf(reason, size, "%s", r < 0 ? e.message : "usable");
        return r < 0 ? 0 : 1;
}

int compute_ctx_new_on(int threads, enum compute_device device, int gpu, struct compute_ctx **ret,
                       struct ft_error *err) {
        if (threads < 0 || threads > COMPUTE_THREADS_MAX)
                return ft_error_set(err, -EINVAL, "threads", "'threads' must be from 0 to %d", COMPUTE_THREADS_MAX);
        if (gpu < 0 || gpu >= COMPUTE_GPUS_MAX)
                return ft_error_set(err, -EINVAL, "gpu", "GPU numbers are from 0 to %d", COMPUTE_GPUS_MAX - 1);
        char reason[COMPUTE_DEVICE_REASON_MAX];
        switch (device) {
        case COMPUTE_DEVICE_CPU: snprintf(reason, sizeof(reason), "'device' is 'cpu'"); break;
        case COMPUTE_DEVICE_AUTO:
        case COMPUTE_DEVICE_CUDA: {
                struct ft_error e = {0};
                int r = cuda_usable(gpu, &e);
                if (r < 0 && device == COMPUTE_DEVICE_CUDA)
                        return ft_error_set(err, r, "device", "'device' 'cuda': %s", e.message);
                /* r == 0 cannot happen until the CUDA backend trains (cuda_usable) */
                snprintf(reason, sizeof(reason), "%s", e.message);
                break;
        }
        default: return ft_error_set(err, -EINVAL, "device", "unknown 'device' %d", (int)device);
        }
        if (threads == 0)
                threads = omp_get_num_procs();
        struct compute_ctx *c = calloc(1, sizeof(*c));
        if (!c)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        omp_set_num_threads(threads);
        c->threads = threads;
        c->fp_mode_saved = fp_mode_flush(threads);
        c->ops = &backend_onednn_ops;
        c->device = "cpu";
        snprintf(c->device_reason, sizeof(c->device_reason), "%s", reason);
        int r = c->ops->ctx_new(c, &c->backend, err);
        if (r < 0) {
                fp_mode_restore(c->fp_mode_saved);
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int compute_ctx_new(int threads, struct compute_ctx **ret, struct ft_error *err) {
        return compute_ctx_new_on(threads, COMPUTE_DEVICE_CPU, 0, ret, err);
}

void compute_ctx_free(struct compute_ctx *ctx) {
        if (!ctx)
                return;
        ctx->ops->ctx_free(ctx->backend);
        fp_mode_restore(ctx->fp_mode_saved);
        free(ctx);
}

int compute_ctx_threads(const struct compute_ctx *ctx) {
        return ctx->threads;
}

const char *compute_ctx_backend_name(const struct compute_ctx *ctx) {
        return ctx->ops->name;
}

const char *compute_ctx_device(const struct compute_ctx *ctx) {
        return ctx->device;
}

const char *compute_ctx_device_reason(const struct compute_ctx *ctx) {
        return ctx->device_reason;
}
