/* context.c - per-thread compute contexts: the OpenMP thread count and the backend (oneDNN's CPU engine and
 * stream live in its per-context state, compute/backend/onednn/core.c).
 * Not for: primitives (compute/backend/). */
#include "compute/context.h"

#include <omp.h>
#include <stdlib.h>

#include "compute/nn.h"

int compute_ctx_new(int threads, struct compute_ctx **ret, struct ft_error *err) {
        if (threads < 0 || threads > COMPUTE_THREADS_MAX)
                return ft_error_set(err, -EINVAL, "threads", "'threads' must be from 0 to %d", COMPUTE_THREADS_MAX);
        if (threads == 0)
                threads = omp_get_num_procs();
        struct compute_ctx *c = calloc(1, sizeof(*c));
        if (!c)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        omp_set_num_threads(threads);
        c->threads = threads;
        c->ops = &backend_onednn_ops;
        int r = c->ops->ctx_new(c, &c->backend, err);
        if (r < 0) {
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void compute_ctx_free(struct compute_ctx *ctx) {
        if (!ctx)
                return;
        ctx->ops->ctx_free(ctx->backend);
        free(ctx);
}

int compute_ctx_threads(const struct compute_ctx *ctx) {
        return ctx->threads;
}

const char *compute_ctx_backend_name(const struct compute_ctx *ctx) {
        return ctx->ops->name;
}
