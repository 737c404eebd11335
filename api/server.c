/* server.c - libmicrohttpd glue: starting/stopping the daemon, collecting the
 * request body under a size cap, and handing complete requests to the router.
 * Not for: route logic (routes.c) or resource handlers. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/internal.h"
#include "api/metrics.h"
#include "common/log.h"

#define API_DEFAULT_BODY_MAX (1u << 20)

/* Per-connection state, allocated on the first callback of a request. */
struct request_ctx {
        char *body;
        size_t size, cap;
        bool too_large;
        double started;             /* metrics: monotonic seconds at the first callback */
        const char *method, *route; /* metrics labels (static strings) */
};

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        vsnprintf(buf, sizeof(buf), fmt, ap);
        log_debug("http: %s", buf);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        struct api_server *server = cls;
        struct request_ctx *ctx = *con_cls;

        if (!ctx) {
                ctx = calloc(1, sizeof(*ctx));
                if (!ctx)
                        return MHD_NO;
                *con_cls = ctx;
                ctx->started = ft_now_monotonic();
                ctx->method = api_metrics_method_label(method);
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                if (ctx->too_large || ctx->size + n > API_DEFAULT_BODY_MAX) {
                        ctx->too_large = true;
                        return MHD_YES;
                }
                if (ctx->size + n + 1 > ctx->cap) {
                        size_t cap = FT_MAX(ctx->cap * 2, ctx->size + n + 1);
                        char *b = realloc(ctx->body, cap);
                        if (!b)
                                return MHD_NO;
                        ctx->body = b;
                        ctx->cap = cap;
                }
                memcpy(ctx->body + ctx->size, upload_data, n);
                ctx->size += n;
                ctx->body[ctx->size] = '\0';
                return MHD_YES;
        }

        struct api_request req = {
                .server = server,
                .conn = conn,
                .method = method,
                .url = url,
                .body = ctx->body,
                .body_size = ctx->size,
        };
        if (ctx->too_large)
                return api_reply_error(&req, API_ERR_PAYLOAD_TOO_LARGE, NULL, "request body exceeds %u bytes",
                                       API_DEFAULT_BODY_MAX);
        enum MHD_Result ret = api_dispatch(&req);
        ctx->route = req.route;
        return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        struct request_ctx *ctx = *con_cls;
        if (!ctx)
                return;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci && ci->http_status)
                api_metrics_http_observe(ctx->method, ctx->route, ci->http_status, ft_now_monotonic() - ctx->started);
        free(ctx->body);
        free(ctx);
        *con_cls = NULL;
}

int api_server_start(const struct api_options *opts, struct api_server **ret, struct ft_error *err) {
        struct api_server *server = calloc(1, sizeof(*server));
        if (!server)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        server->opts = *opts;
        compute_runtime_info(&server->runtime);

        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG;
        server->mhd = MHD_start_daemon(
                flags, 0, NULL, NULL, on_request, server,
                MHD_OPTION_LISTEN_SOCKET, (MHD_socket)opts->listen_fd,
                MHD_OPTION_THREAD_POOL_SIZE, (unsigned)FT_MAX(opts->http_threads, 1u),
                MHD_OPTION_CONNECTION_LIMIT, (unsigned)FT_MAX(opts->max_connections, 16u),
                MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)opts->max_connections_per_ip,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opts->connection_timeout_s,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, server,
                MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, server,
                MHD_OPTION_END);
        if (!server->mhd) {
                free(server);
                return ft_error_set(err, -EIO, NULL, "cannot start the HTTP server");
        }
        *ret = server;
        return 0;
}

void api_server_stop(struct api_server *server) {
        if (!server)
                return;
        MHD_socket fd = MHD_quiesce_daemon(server->mhd);
        MHD_stop_daemon(server->mhd);
        if (fd != MHD_INVALID_SOCKET)
                close(fd);
        free(server);
}
