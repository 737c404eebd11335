/* api.h - the HTTP surface: libmicrohttpd + jansson, routing, the error
 * envelope, limits, auth, event streams. The daemon creates one api_server;
 * everything else about HTTP stays inside api/.
 *
 * Not for: training or SQL directly (handlers call store/ and compute/).
 */
#pragma once

#include "common/common.h"
#include "common/netaddr.h"

#define API_TOKEN_MAX 256 /* one token */
#define API_TOKENS_MAX 16 /* tokens in one token file */
/* The token set as api_token_load hands it over: "admin TOKEN\nread TOKEN\n". */
#define API_TOKEN_SET_MAX (API_TOKENS_MAX * (API_TOKEN_MAX + 8))

struct api_server;

struct api_options {
        int listen_fd; /* a bound, listening socket (api_listen); owned by the server from start */
        const char *state_dir; /* the daemon's state directory */
        const char *store_url; /* NULL/"": SQLite in state_dir; else the shared PostgreSQL store (--store) */
        unsigned http_threads; /* libmicrohttpd thread pool size */
        unsigned max_connections;
        unsigned max_connections_per_ip; /* 0: unlimited */
        unsigned connection_timeout_s; /* idle connections are closed after this */
        /* The bearer tokens (api_token_load's token set, or one bare token, an
         * admin token) required on every non-public route; NULL/"": none. */
        const char *token;
        uint64_t upload_max; /* largest dataset/model upload in bytes (0: 1 GiB) */
        unsigned max_queued_jobs; /* POST /v1/jobs answers 429 beyond this many queued jobs (0: 1000) */
        /* The live progress of a running job, fresher than the database copy
         * (which workers write at most once a second): malloc'd JSON text, or
         * NULL when this process is not running the job. May be NULL. */
        char *(*job_progress)(void *userdata, const char *job_id);
        void *job_progress_userdata;
        unsigned job_threads; /* compute threads per job in this daemon's workers (replays, dry runs); 0: unknown */
        unsigned job_workers; /* this daemon's workers, for a dry run's warning; 0: unknown */
        /* Internal addresses a webhook URL may name (--webhook-allow); NULL: none. Copied at start. */
        const struct netaddr_list *webhook_allow;
        /* The workers run jobs with resources.ranks above 1 (serve --mpirun); false: such jobs get a 400. */
        bool distributed;
};

/* Resolve host:port (numeric or a name such as localhost), create, bind and
 * listen on a socket. Returns the fd in *ret_fd and the bound address (with
 * the real port when port was 0) as "host:port" in bound. Errors name the
 * address: "cannot bind 127.0.0.1:8080: Address already in use". */
int api_listen(const char *host, const char *port, int *ret_fd, char *bound, size_t bound_size, struct ft_error *err);

/* Is host a loopback name or address (127.0.0.0/8, ::1, localhost)? The daemon
 * refuses to listen elsewhere without a token. */
bool api_host_is_loopback(const char *host);

/* Read the bearer tokens from path, a file not readable by group or others:
 * one token per line, 16..API_TOKEN_MAX printable characters, each either
 * bare or after a scope ("admin TOKEN": every route, the default; "read
 * TOKEN": GET and HEAD only, for dashboards), at most API_TOKENS_MAX; blank
 * lines and lines starting with '#' are skipped. Errors name the file and the
 * line. ret_token receives the token set ("admin TOKEN\nread TOKEN\n"), size
 * at least API_TOKEN_SET_MAX + 1. */
int api_token_load(const char *path, char *ret_token, size_t size, struct ft_error *err);

/* Start serving on opts->listen_fd with libmicrohttpd's own threads. */
int api_server_start(const struct api_options *opts, struct api_server **ret, struct ft_error *err);

/* Replace the bearer tokens (SIGHUP re-reads the token file) with a token
 * set or one bare token; "" or NULL turns auth off. Thread-safe: requests in flight see the old or the new one. */
int api_server_set_token(struct api_server *server, const char *token, struct ft_error *err);

/* Stop accepting, close every connection, join the HTTP threads, free. */
void api_server_stop(struct api_server *server);

/* POST /v1/models/{id}/explain without HTTP, for `finetuned explain` (api/explain.c): body is the request's JSON
 * object (validated here as the API validates it: {"images": [[pixels]], "image_shape", "target", "method",
 * "steps", "baseline"}, docs/api.md), the model the safetensors file weights_path holds (its spec: spec_json, or
 * NULL for the file's own "finetuned.spec"); model_id goes into messages and the answer. *ret (a jansson json_t *,
 * the caller decrefs) is the answer the API gives. -EINVAL with err->param naming the field for a bad request or a
 * model that does not take images. */
int api_explain_file(const char *weights_path, const char *spec_json, const char *model_id, const void *body,
                     void **ret, struct ft_error *err);
