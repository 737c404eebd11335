/* api.h - the HTTP surface: libmicrohttpd + jansson, routing, the error
 * envelope, limits. The daemon creates one api_server; everything else about
 * HTTP stays inside api/.
 *
 * Not for: training or SQL directly (handlers call store/ and compute/).
 */
#pragma once

#include "common/common.h"

struct api_server;

struct api_options {
        int listen_fd;          /* a bound, listening socket (api_listen); owned by the server from start */
        const char *state_dir;  /* the daemon's state directory */
        unsigned http_threads;  /* libmicrohttpd thread pool size */
        unsigned max_connections;
        unsigned max_connections_per_ip;
        unsigned connection_timeout_s;
};

/* Resolve host:port (numeric or a name such as localhost), create, bind and
 * listen on a socket. Returns the fd in *ret_fd and the bound address (with
 * the real port when port was 0) as "host:port" in bound. Errors name the
 * address: "cannot bind 127.0.0.1:8080: Address already in use". */
int api_listen(const char *host, const char *port, int *ret_fd, char *bound, size_t bound_size,
               struct ft_error *err);

/* Start serving on opts->listen_fd with libmicrohttpd's own threads. */
int api_server_start(const struct api_options *opts, struct api_server **ret, struct ft_error *err);

/* Stop accepting, close every connection, join the HTTP threads, free. */
void api_server_stop(struct api_server *server);
