/* context.c - per-thread compute contexts: the oneDNN CPU engine and stream, and the OpenMP thread count.
 * Not for: primitives (backend_onednn.c). */
#include "compute/context.h"

#include <omp.h>
#include <stdlib.h>

#include <oneapi/dnnl/dnnl.h>

#include "compute/nn.h"

int compute_ctx_new(int threads, struct compute_ctx **ret, struct ft_error *err) {
        if (threads < 0 || threads > COMPUTE_THREADS_MAX)
                return ft_error_set(err, -EINVAL, "threads", "\"threads\" must be from 0 to %d", COMPUTE_THREADS_MAX);
        if (threads == 0)
                threads = omp_get_num_procs();
        struct compute_ctx *c = calloc(1, sizeof(*c));
        if (!c)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        omp_set_num_threads(threads);
        c->threads = threads;
        c->ops = &backend_onednn_ops;
        dnnl_engine_t eng;
        dnnl_stream_t st;
        if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success) {
                free(c);
                return ft_error_set(err, -EIO, NULL, "onednn: cannot create the cpu engine");
        }
        if (dnnl_stream_create(&st, eng, dnnl_stream_default_flags) != dnnl_success) {
                dnnl_engine_destroy(eng);
                free(c);
                return ft_error_set(err, -EIO, NULL, "onednn: cannot create a stream");
        }
        c->engine = eng;
        c->stream = st;
        *ret = c;
        return 0;
}

void compute_ctx_free(struct compute_ctx *ctx) {
        if (!ctx)
                return;
        dnnl_stream_destroy(ctx->stream);
        dnnl_engine_destroy(ctx->engine);
        free(ctx);
}

int compute_ctx_threads(const struct compute_ctx *ctx) {
        return ctx->threads;
}

const char *compute_ctx_backend_name(const struct compute_ctx *ctx) {
        return ctx->ops->name;
}
