/* server.c - libmicrohttpd glue: starting/stopping the daemon and the life of
 * one request before its handler runs: route lookup, bearer-token auth, body
 * caps (413) and media types (415) checked on the first callback, JSON bodies
 * buffered under a cap, uploads streamed into the blob store (raw body or
 * multipart/form-data parts).
 * Not for: route logic (routes.c), resource handlers, SSE (sse.c). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/internal.h"
#include "api/prometheus.h"
#include "common/log.h"
#include "store/store.h"

#define UPLOAD_DEFAULT_MAX (1ull << 30)
#define UPLOAD_DISCARD_SLACK (16u << 20) /* bytes read past a cap before the connection is dropped */

/* ---- connections: deadlines, caps, the reserve ---------------------------------------------
 *
 * libmicrohttpd's connection timeout restarts with every byte, so a client sending a header byte every second
 * holds a connection for ever, and its per-address cap answers with a reset. Every connection is tracked here
 * (from MHD_OPTION_NOTIFY_CONNECTION): a reaper thread shuts down the socket of one whose request header has
 * not arrived within --http-timeout, or whose upload body runs slower than BODY_MIN_RATE once past that time.
 * Past the per-address cap, or past the global cap less CONN_RESERVE, a request is answered 503 with
 * Retry-After (and the connection closed); /healthz and /metrics are always answered, out of the reserve.
 * libmicrohttpd's own limits stay above ours (per address: cap + CONN_RESERVE; global: the cap) as the last
 * line, where the kernel's reset is the only answer left. */
#define CONN_RESERVE 16
#define BODY_MIN_RATE 1024.0 /* bytes per second, averaged over the body */
#define REAPER_INTERVAL_MS 250

struct conn_track {
        struct conn_track *prev, *next;
        int fd;
        struct sockaddr_storage addr;
        socklen_t addr_len;
        double started; /* monotonic: accepted, or the end of the previous request on a kept-alive one */
        double body_started; /* 0: no body being read */
        uint64_t body_bytes;
        bool in_request; /* the current request's header arrived */
        bool reaped;
};

struct conn_table {
        pthread_mutex_t lock;
        struct conn_track *head;
        unsigned n;
        pthread_t reaper;
        bool reaper_started;
        pthread_cond_t stop_cond;
        bool stop;
        double header_deadline_s;
};

static bool addr_equal(const struct conn_track *a, const struct conn_track *b) {
        if (a->addr.ss_family != b->addr.ss_family)
                return false;
        if (a->addr.ss_family == AF_INET)
                return memcmp(&((const struct sockaddr_in *)&a->addr)->sin_addr,
                              &((const struct sockaddr_in *)&b->addr)->sin_addr, sizeof(struct in_addr)) == 0;
        if (a->addr.ss_family == AF_INET6)
                return memcmp(&((const struct sockaddr_in6 *)&a->addr)->sin6_addr,
                              &((const struct sockaddr_in6 *)&b->addr)->sin6_addr, sizeof(struct in6_addr)) == 0;
        return false;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
        struct api_server *server = cls;
        struct conn_table *t = server->conns;
        if (code == MHD_CONNECTION_NOTIFY_STARTED) {
                struct conn_track *c = calloc(1, sizeof(*c));
                if (!c)
                        return;
                const union MHD_ConnectionInfo *fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                const union MHD_ConnectionInfo *ai = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
                c->fd = fi ? (int)fi->connect_fd : -1;
                if (ai && ai->client_addr) {
                        socklen_t len = ai->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                               : sizeof(struct sockaddr_in);
                        memcpy(&c->addr, ai->client_addr, len);
                        c->addr_len = len;
                }
                c->started = ft_now_monotonic();
                pthread_mutex_lock(&t->lock);
                c->next = t->head;
                if (t->head)
                        t->head->prev = c;
                t->head = c;
                t->n++;
                pthread_mutex_unlock(&t->lock);
                *socket_context = c;
        } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
                struct conn_track *c = *socket_context;
                if (!c)
                        return;
                pthread_mutex_lock(&t->lock); /* after this the reaper never touches c->fd again */
                if (c->prev)
                        c->prev->next = c->next;
                else
                        t->head = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                t->n--;
                pthread_mutex_unlock(&t->lock);
                free(c);
                *socket_context = NULL;
        }
}

static struct conn_track *conn_track_of(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        return ci ? ci->socket_context : NULL;
}

/* The first callback of a request: how many connections its address and everyone hold. */
static void conn_request_started(struct api_server *server, struct conn_track *c, unsigned *ret_same_addr,
                                 unsigned *ret_total) {
        struct conn_table *t = server->conns;
        unsigned same = 0;
        pthread_mutex_lock(&t->lock);
        if (c) {
                c->in_request = true;
                for (struct conn_track *o = t->head; o; o = o->next)
                        same += addr_equal(o, c);
        }
        *ret_total = t->n;
        pthread_mutex_unlock(&t->lock);
        *ret_same_addr = same;
}

static void conn_body_bytes(struct api_server *server, struct conn_track *c, size_t n) {
        if (!c)
                return;
        pthread_mutex_lock(&server->conns->lock);
        if (!c->body_started)
                c->body_started = ft_now_monotonic();
        c->body_bytes += n;
        pthread_mutex_unlock(&server->conns->lock);
}

/* The request is answered: a kept-alive connection has --http-timeout for its next header again. */
static void conn_request_done(struct api_server *server, struct conn_track *c) {
        if (!c)
                return;
        pthread_mutex_lock(&server->conns->lock);
        c->in_request = false;
        c->body_started = 0;
        c->body_bytes = 0;
        c->started = ft_now_monotonic();
        pthread_mutex_unlock(&server->conns->lock);
}

static void *reaper_main(void *arg) {
        struct api_server *server = arg;
        struct conn_table *t = server->conns;
        pthread_mutex_lock(&t->lock);
        while (!t->stop) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += REAPER_INTERVAL_MS * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&t->stop_cond, &t->lock, &ts);
                double now = ft_now_monotonic();
                for (struct conn_track *c = t->head; c && !t->stop; c = c->next) {
                        if (c->reaped || c->fd < 0)
                                continue;
                        const char *why = NULL;
                        if (!c->in_request && now - c->started > t->header_deadline_s)
                                why = "no complete request header";
                        else if (c->body_started && now - c->body_started > t->header_deadline_s &&
                                 (double)c->body_bytes < BODY_MIN_RATE * (now - c->body_started))
                                why = "request body slower than 1 KiB/s";
                        if (!why)
                                continue;
                        /* MHD sees the end of the stream and closes the connection itself */
                        shutdown(c->fd, SHUT_RDWR);
                        c->reaped = true;
                        log_debug("http: connection closed: %s within %.0f s", why, t->header_deadline_s);
                }
        }
        pthread_mutex_unlock(&t->lock);
        return NULL;
}

/* Per-request state, allocated on the first callback of a request. */
struct request_ctx {
        struct api_request req;
        unsigned early_status; /* 404/405/401/413/415 decided from the headers */
        char allow[128];
        char *body;
        size_t size, cap;
        uint64_t received, limit;
        bool too_large;
        bool upload; /* the body goes to files, not to memory */
        struct MHD_PostProcessor *pp;
        struct api_upload uploads[API_UPLOAD_PARTS_MAX];
        unsigned n_uploads;
        int upload_error; /* a write failed or too many parts: 500/400 at the end */
        char upload_error_msg[160];
        double started; /* metrics: monotonic seconds at the first callback */
        const char *method; /* metrics label (a static string) */
        bool close; /* the framing is in doubt: close the connection after the answer */
        struct conn_track *track;
        unsigned over_cap; /* 503: 1 per address, 2 everyone */
};

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        vsnprintf(buf, sizeof(buf), fmt, ap);
        size_t n = strlen(buf);
        if (n && buf[n - 1] == '\n')
                buf[n - 1] = '\0';
        log_debug("http: %s", buf);
}

/* Which token the Authorization header carries, compared in constant time:
 * every token is compared in full whatever matched, so the time taken depends
 * only on the tokens' lengths, never on which one matched or where a wrong
 * one differs. */
enum auth_result { AUTH_FAIL, AUTH_READ, AUTH_ADMIN };

static enum auth_result auth_check(struct api_server *server, struct MHD_Connection *conn) {
        enum auth_result res = AUTH_FAIL;
        pthread_rwlock_rdlock(&server->token_lock);
        if (server->n_tokens == 0)
                res = AUTH_ADMIN;
        else {
                const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
                if (h && strncasecmp(h, "Bearer ", 7) == 0) {
                        h += 7;
                        size_t n = strlen(h);
                        unsigned admin = 0, read = 0;
                        for (size_t t = 0; t < server->n_tokens; t++) {
                                const struct api_token *tok = &server->tokens[t];
                                unsigned char diff = (unsigned char)(n != tok->len);
                                for (size_t i = 0; i < tok->len; i++)
                                        diff |= (unsigned char)(tok->value[i] ^ (i < n ? h[i] : 0));
                                unsigned match = diff == 0;
                                admin |= match & !tok->read_only;
                                read |= match & tok->read_only;
                        }
                        res = admin ? AUTH_ADMIN : read ? AUTH_READ : AUTH_FAIL;
                }
        }
        pthread_rwlock_unlock(&server->token_lock);
        return res;
}

/* One line of a token set: "admin TOKEN", "read TOKEN" or a bare TOKEN. */
static int token_parse(const char *line, size_t len, struct api_token *ret, struct ft_error *err) {
        const char *sp = memchr(line, ' ', len);
        const char *value = line;
        bool read_only = false;
        if (sp) {
                size_t scope = (size_t)(sp - line);
                if (scope == 4 && memcmp(line, "read", 4) == 0)
                        read_only = true;
                else if (!(scope == 5 && memcmp(line, "admin", 5) == 0))
                        return ft_error_set(err, -EINVAL, "token-file", "unknown token scope '%.*s' (admin or read)",
                                            (int)FT_MIN(scope, 32), line);
                value = sp + 1;
                len -= scope + 1;
        }
        if (len == 0 || len > API_TOKEN_MAX)
                return ft_error_set(err, -EINVAL, "token-file", "a token must have 1 to %d characters", API_TOKEN_MAX);
        memcpy(ret->value, value, len);
        ret->value[len] = '\0';
        ret->len = len;
        ret->read_only = read_only;
        return 0;
}

int api_server_set_token(struct api_server *server, const char *token, struct ft_error *err) {
        struct api_token *fresh = calloc(API_TOKENS_MAX, sizeof(*fresh));
        size_t n = 0;
        int r = 0;
        if (!fresh)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        for (const char *p = token ? token : ""; *p && r == 0;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t)(nl - p) : strlen(p);
                if (len > 0) {
                        if (n == API_TOKENS_MAX)
                                r = ft_error_set(err, -EINVAL, "token-file", "more than %d tokens", API_TOKENS_MAX);
                        else
                                r = token_parse(p, len, &fresh[n++], err);
                }
                p += len + (nl != NULL);
        }
        if (r == 0) {
                pthread_rwlock_wrlock(&server->token_lock);
                explicit_bzero(server->tokens, sizeof(server->tokens));
                memcpy(server->tokens, fresh, n * sizeof(*fresh));
                server->n_tokens = n;
                pthread_rwlock_unlock(&server->token_lock);
        }
        explicit_bzero(fresh, API_TOKENS_MAX * sizeof(*fresh));
        free(fresh);
        return r;
}

static bool media_type_is(const char *ct, const char *want) {
        size_t n = strlen(want);
        if (!ct || strncasecmp(ct, want, n) != 0)
                return false;
        return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

static void set_upload_error(struct request_ctx *ctx, int status, const char *fmt, ...) _printf_(3, 4);
static void set_upload_error(struct request_ctx *ctx, int status, const char *fmt, ...) {
        if (ctx->upload_error)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->upload_error_msg, sizeof(ctx->upload_error_msg), fmt, ap);
        va_end(ap);
        ctx->upload_error = status;
}

static int upload_open(struct request_ctx *ctx, const char *name, const char *filename, bool is_file) {
        if (ctx->n_uploads >= API_UPLOAD_PARTS_MAX) {
                set_upload_error(ctx, 400, "too many parts in the request (at most %d)", API_UPLOAD_PARTS_MAX);
                return -E2BIG;
        }
        struct api_upload *u = &ctx->uploads[ctx->n_uploads];
        memset(u, 0, sizeof(*u));
        snprintf(u->name, sizeof(u->name), "%s", name ? name : "");
        snprintf(u->filename, sizeof(u->filename), "%s", filename ? filename : "");
        u->is_file = is_file;
        if (is_file) {
                struct ft_error err = {0};
                struct store *st = api_store_thread(ctx->req.server, &err);
                int r = st ? store_blob_begin(st, (int64_t)ctx->limit, &u->writer, &err) : -EIO;
                if (r < 0) {
                        log_error("cannot start an upload: %s", err.message);
                        set_upload_error(ctx, r == -ENOSPC || r == -EDQUOT ? 507 : 500, "cannot store the upload");
                        return r;
                }
        }
        ctx->n_uploads++;
        return 0;
}

static int upload_write(struct request_ctx *ctx, struct api_upload *u, const char *data, size_t n) {
        if (!u->is_file) {
                if (u->size + n > API_FORM_FIELD_MAX) {
                        set_upload_error(ctx, 413, "form field '%s' is longer than %u bytes", u->name,
                                         API_FORM_FIELD_MAX);
                        return -EFBIG;
                }
                char *t = realloc(u->text, u->size + n + 1);
                if (!t)
                        return -ENOMEM;
                memcpy(t + u->size, data, n);
                u->text = t;
                u->size += n;
                t[u->size] = '\0';
                return 0;
        }
        struct ft_error err = {0};
        int r = store_blob_write(u->writer, data, n, &err);
        if (r < 0) {
                if (r == -EFBIG) {
                        ctx->too_large = true;
                        return r;
                }
                log_error("cannot write an upload: %s", err.message);
                set_upload_error(ctx, r == -ENOSPC || r == -EDQUOT ? 507 : 500, "cannot store the upload");
                return r;
        }
        u->size += n;
        return 0;
}

static enum MHD_Result on_post_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                    const char *content_type, const char *transfer_encoding, const char *data,
                                    uint64_t off, size_t size) {
        struct request_ctx *ctx = cls;
        if (ctx->upload_error || ctx->too_large)
                return MHD_YES;
        struct api_upload *cur = ctx->n_uploads ? &ctx->uploads[ctx->n_uploads - 1] : NULL;
        if (!cur || off == 0 || strcmp(cur->name, key ? key : "") != 0) {
                for (unsigned i = 0; i < ctx->n_uploads; i++)
                        if (strcmp(ctx->uploads[i].name, key ? key : "") == 0) {
                                /* which of two would count is a guess: refuse instead */
                                set_upload_error(ctx, 400, "part '%.64s' is given twice", key ? key : "");
                                return MHD_YES;
                        }
                if (upload_open(ctx, key, filename, filename != NULL) < 0)
                        return MHD_YES;
                cur = &ctx->uploads[ctx->n_uploads - 1];
        }
        if (size > 0)
                upload_write(ctx, cur, data, size);
        return MHD_YES;
}

/* Commit every file part to the blob store; 0 or the HTTP status to answer. */
static int uploads_commit(struct request_ctx *ctx) {
        for (unsigned i = 0; i < ctx->n_uploads; i++) {
                struct api_upload *u = &ctx->uploads[i];
                if (!u->is_file)
                        continue;
                struct ft_error err = {0};
                int64_t size = 0;
                struct store_blob_writer *w = u->writer;
                u->writer = NULL;
                int r = store_blob_commit(w, u->sha256, &size, &err);
                struct store *st = r == 0 ? api_store_thread(ctx->req.server, &err) : NULL;
                if (r == 0)
                        r = st ? store_blob_path(st, u->sha256, u->path, sizeof(u->path), &err) : -EIO;
                if (r < 0) {
                        log_error("cannot store an upload: %s", err.message);
                        set_upload_error(ctx, r == -ENOSPC || r == -EDQUOT ? 507 : 500, "cannot store the upload");
                        return ctx->upload_error;
                }
                u->size = (uint64_t)size;
        }
        return 0;
}

struct api_upload *api_upload_get(struct api_request *req, const char *name) {
        for (unsigned i = 0; i < req->n_uploads; i++)
                if (strcmp(req->uploads[i].name, name) == 0)
                        return &req->uploads[i];
        return NULL;
}

static void ctx_free(struct request_ctx *ctx) {
        if (!ctx)
                return;
        if (ctx->pp)
                MHD_destroy_post_processor(ctx->pp);
        for (unsigned i = 0; i < ctx->n_uploads; i++) {
                store_blob_abort(ctx->uploads[i].writer);
                free(ctx->uploads[i].text);
        }
        free(ctx->body);
        free(ctx);
}

#define QUERY_PARAMS_MAX 64 /* no route takes more than a handful */

struct framing {
        unsigned content_lengths, transfer_encodings, query_params;
        bool lengths_differ;
        const char *first_length;
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        struct framing *f = cls;
        if (kind == MHD_GET_ARGUMENT_KIND) {
                f->query_params++;
        } else if (key && strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
                if (f->content_lengths++ == 0)
                        f->first_length = value;
                else if (!value || !f->first_length || strcmp(value, f->first_length) != 0)
                        f->lengths_differ = true;
        } else if (key && strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
                f->transfer_encodings++;
        }
        return MHD_YES;
}

/* Request smuggling hygiene (RFC 9112 6.3): a body's length must be told one way. Two different Content-Length
 * headers, or Content-Length with Transfer-Encoding, are refused with 400 before anything else; so is a query
 * string of more parameters than any route reads. 0, or the message. */
static const char *framing_check(struct MHD_Connection *conn) {
        struct framing f = {0};
        MHD_get_connection_values(conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, count_framing, &f);
        if (f.lengths_differ)
                return "the request has Content-Length headers that disagree";
        if (f.content_lengths && f.transfer_encodings)
                return "the request has both Content-Length and Transfer-Encoding: send one";
        if (f.transfer_encodings > 1)
                return "the request has more than one Transfer-Encoding header";
        if (f.query_params > QUERY_PARAMS_MAX)
                return "the query string has more than 64 parameters";
        return NULL;
}

/* The first callback of a request: everything that can be decided from the
 * request line and headers is decided here, before any body is read. */
static void request_begin(struct request_ctx *ctx) {
        struct api_request *req = &ctx->req;
        unsigned status = 0, same = 0, total = 0;
        conn_request_started(req->server, ctx->track, &same, &total);
        const char *bad = framing_check(req->conn);
        if (bad) {
                snprintf(ctx->upload_error_msg, sizeof(ctx->upload_error_msg), "%s", bad);
                ctx->early_status = 400;
                ctx->close = true;
                return;
        }
        req->route = api_route_find(req, ctx->allow, sizeof(ctx->allow), &status);
        bool reserved = req->route &&
                        (strcmp(req->route->pattern, "/healthz") == 0 || strcmp(req->route->pattern, "/metrics") == 0);
        const struct api_options *o = &req->server->opts;
        if (!reserved && o->max_connections_per_ip && same > o->max_connections_per_ip) {
                ctx->over_cap = 1;
                ctx->early_status = 503;
                return;
        }
        if (!reserved && total + CONN_RESERVE > FT_MAX(o->max_connections, 16u + CONN_RESERVE)) {
                ctx->over_cap = 2;
                ctx->early_status = 503;
                return;
        }
        bool public_route = req->route && (req->route->flags & API_ROUTE_PUBLIC);
        if (!public_route) {
                enum auth_result auth = auth_check(req->server, req->conn);
                if (auth == AUTH_FAIL) {
                        ctx->early_status = 401;
                        return;
                }
                if (auth == AUTH_READ && strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
                        ctx->early_status = 403;
                        return;
                }
        }
        if (!req->route) {
                ctx->early_status = status;
                return;
        }
        const struct api_route *r = req->route;
        const char *ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        /* A route that takes JSON or files: the media type says which this request sends. */
        ctx->upload = (r->flags & API_ROUTE_UPLOAD) &&
                      !((r->flags & API_ROUTE_JSON) && media_type_is(ct, "application/json"));
        if (ctx->upload)
                ctx->limit = r->body_max ? r->body_max : req->server->opts.upload_max;
        else if (r->flags & API_ROUTE_JSON)
                ctx->limit = r->body_max ? r->body_max : API_JSON_BODY_MAX;
        else
                ctx->limit = 0;

        const char *cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
                char *end;
                errno = 0;
                unsigned long long n = strtoull(cl, &end, 10);
                if (errno || *end) {
                        ctx->early_status = 413;
                        return;
                }
                if (n > ctx->limit) {
                        /* A body a little over the cap is read and dropped before the 413 goes out: answering
                         * first and closing with the client still sending makes its TCP stack see a reset, and
                         * curl reports "Send failure: Broken pipe" instead of the answer. Beyond the slack the
                         * answer goes out at once (a client sending Expect: 100-continue still reads it). */
                        if (!ctx->limit || n > (unsigned long long)ctx->limit + UPLOAD_DISCARD_SLACK) {
                                ctx->early_status = 413;
                                return;
                        }
                        ctx->too_large = true;
                }
        }
        bool has_body = (cl && strcmp(cl, "0") != 0) ||
                        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        if (has_body && !ctx->upload && (r->flags & API_ROUTE_JSON) && !media_type_is(ct, "application/json")) {
                ctx->early_status = 415;
                return;
        }
        if (ctx->upload) {
                if (ct && media_type_is(ct, "multipart/form-data")) {
                        ctx->pp = MHD_create_post_processor(req->conn, 64 * 1024, on_post_part, ctx);
                        if (!ctx->pp) {
                                ctx->early_status = 400;
                                return;
                        }
                } else if (r->flags & API_ROUTE_JSON) {
                        ctx->early_status = 415; /* JSON or multipart, nothing else */
                        return;
                } else if (ct && media_type_is(ct, "application/json")) {
                        /* a file goes as itself (any other type: curl --data-binary sends a form type) */
                        ctx->early_status = 415;
                        return;
                } else if (upload_open(ctx, "", NULL, true) < 0) {
                        ctx->early_status = ctx->upload_error;
                        return;
                }
        }
}

static enum MHD_Result reply_early(struct request_ctx *ctx) {
        struct api_request *req = &ctx->req;
        switch (ctx->early_status) {
        case 401:
                return api_reply_error_headers(req, API_ERR_UNAUTHORIZED, NULL,
                                               (const char *const[]){"WWW-Authenticate", "Bearer", NULL},
                                               "missing or invalid bearer token");
        case 403:
                return api_reply_error(req, API_ERR_FORBIDDEN, NULL,
                                       "this bearer token is read-only: %s '%s' needs an admin token", req->method,
                                       req->url);
        case 404: return api_reply_error(req, API_ERR_NOT_FOUND, NULL, "no route for %s '%s'", req->method, req->url);
        case 405:
                return api_reply_error_headers(req, API_ERR_METHOD_NOT_ALLOWED, NULL,
                                               (const char *const[]){MHD_HTTP_HEADER_ALLOW, ctx->allow, NULL},
                                               "method %s not allowed on '%s' (allowed: %s)", req->method, req->url,
                                               ctx->allow);
        case 413:
                if (ctx->limit == 0)
                        return api_reply_error(req, API_ERR_PAYLOAD_TOO_LARGE, NULL, "%s '%s' takes no request body",
                                               req->method, req->url);
                return api_reply_error(req, API_ERR_PAYLOAD_TOO_LARGE, NULL,
                                       "request body exceeds the limit of %llu bytes for %s '%s'",
                                       (unsigned long long)ctx->limit, req->method, req->route->pattern);
        case 415:
                if ((req->route->flags & API_ROUTE_UPLOAD) && (req->route->flags & API_ROUTE_JSON))
                        return api_reply_error(req, API_ERR_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                                               "send JSON ('Content-Type: application/json') or "
                                               "multipart/form-data (curl -F)");
                if (req->route->flags & API_ROUTE_UPLOAD)
                        return api_reply_error(req, API_ERR_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                                               "send the file as the raw body (curl --data-binary @FILE) or as "
                                               "multipart/form-data (curl -F), not as JSON");
                return api_reply_error(req, API_ERR_UNSUPPORTED_MEDIA_TYPE, "Content-Type",
                                       "the request body must be JSON with 'Content-Type: application/json'");
        case 503:
                return api_reply_error_headers(
                        req, API_ERR_UNAVAILABLE, NULL,
                        (const char *const[]){"Retry-After", "1", MHD_HTTP_HEADER_CONNECTION, "close", NULL},
                        ctx->over_cap == 1 ? "too many connections from this address (at most %u): retry later"
                                           : "too many connections (at most %u): retry later",
                        ctx->over_cap == 1 ? req->server->opts.max_connections_per_ip
                                           : req->server->opts.max_connections - CONN_RESERVE);
        case 507:
                return api_reply_error(req, API_ERR_INSUFFICIENT_STORAGE, NULL,
                                       "the daemon's disk is full: the upload was not stored (nothing stored before "
                                       "is lost); retry when space is freed");
        case 500:
                return api_reply_error(req, API_ERR_INTERNAL, NULL, "%s",
                                       ctx->upload_error_msg[0] ? ctx->upload_error_msg : "internal error");
        default:
                if (ctx->close) /* what follows on this connection cannot be trusted to be a request */
                        return api_reply_error_headers(req, API_ERR_INVALID_REQUEST, NULL,
                                                       (const char *const[]){MHD_HTTP_HEADER_CONNECTION, "close", NULL},
                                                       "%s", ctx->upload_error_msg);
                return api_reply_error(req, API_ERR_INVALID_REQUEST, NULL, "%s",
                                       ctx->upload_error_msg[0] ? ctx->upload_error_msg : "malformed request");
        }
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
                ctx->req.server = server;
                ctx->req.conn = conn;
                ctx->req.method = method;
                ctx->req.url = url;
                ctx->track = conn_track_of(conn);
                request_begin(ctx);
                if (ctx->early_status)
                        return reply_early(ctx);
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                ctx->received += n;
                conn_body_bytes(server, ctx->track, n);
                if (ctx->too_large || ctx->received > ctx->limit) {
                        /* Chunked bodies have no Content-Length: the cap is found mid-way. Read (and
                         * drop) a little more so the 413 can be delivered, then give up on the peer. */
                        ctx->too_large = true;
                        return ctx->received > ctx->limit + UPLOAD_DISCARD_SLACK ? MHD_NO : MHD_YES;
                }
                if (ctx->upload_error)
                        return MHD_YES;
                if (ctx->upload) {
                        if (ctx->pp) {
                                if (MHD_post_process(ctx->pp, upload_data, n) != MHD_YES && !ctx->upload_error) {
                                        ctx->upload_error = 400;
                                        snprintf(ctx->upload_error_msg, sizeof(ctx->upload_error_msg),
                                                 "malformed multipart/form-data body");
                                }
                        } else {
                                upload_write(ctx, &ctx->uploads[0], upload_data, n);
                        }
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

        /* The whole request has arrived. */
        if (ctx->upload_error && !ctx->too_large) {
                ctx->early_status = (unsigned)ctx->upload_error;
                return reply_early(ctx);
        }
        if (ctx->pp) {
                /* flushes the last part; MHD_NO: the body did not end with the closing boundary, or had bytes
                 * that are no part (a cut-off upload must not be stored as if it were whole) */
                bool complete = MHD_destroy_post_processor(ctx->pp) == MHD_YES;
                ctx->pp = NULL;
                if (!complete && !ctx->too_large)
                        set_upload_error(ctx, 400,
                                         "malformed multipart/form-data body: it does not end with the closing "
                                         "boundary");
                if (ctx->upload_error && !ctx->too_large) {
                        ctx->early_status = (unsigned)ctx->upload_error;
                        return reply_early(ctx);
                }
        }
        if (ctx->too_large) {
                ctx->early_status = 413;
                return reply_early(ctx);
        }
        if (uploads_commit(ctx)) {
                ctx->early_status = (unsigned)ctx->upload_error;
                return reply_early(ctx);
        }
        ctx->req.body = ctx->body;
        ctx->req.body_size = ctx->size;
        ctx->req.uploads = ctx->uploads;
        ctx->req.n_uploads = ctx->n_uploads;
        return api_dispatch(&ctx->req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        struct request_ctx *ctx = *con_cls;
        if (!ctx)
                return;
        conn_request_done(ctx->req.server, ctx->track);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci && ci->http_status)
                api_metrics_http_observe(ctx->method, ctx->req.route ? ctx->req.route->pattern : NULL, ci->http_status,
                                         ft_now_monotonic() - ctx->started);
        ctx_free(ctx);
        *con_cls = NULL;
}

static void conn_table_free(struct conn_table *t) {
        if (!t)
                return;
        if (t->reaper_started) {
                pthread_mutex_lock(&t->lock);
                t->stop = true;
                pthread_cond_signal(&t->stop_cond);
                pthread_mutex_unlock(&t->lock);
                pthread_join(t->reaper, NULL);
        }
        pthread_cond_destroy(&t->stop_cond);
        pthread_mutex_destroy(&t->lock);
        free(t);
}

int api_server_start(const struct api_options *opts, struct api_server **ret, struct ft_error *err) {
        struct api_server *server = calloc(1, sizeof(*server));
        if (!server)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        server->opts = *opts;
        if (opts->webhook_allow)
                server->webhook_allow = *opts->webhook_allow;
        server->opts.webhook_allow = &server->webhook_allow;
        if (!server->opts.upload_max)
                server->opts.upload_max = UPLOAD_DEFAULT_MAX;
        if (!server->opts.max_queued_jobs)
                server->opts.max_queued_jobs = 1000;
        pthread_rwlock_init(&server->token_lock, NULL);
        if (api_server_set_token(server, opts->token, err) < 0) {
                pthread_rwlock_destroy(&server->token_lock);
                free(server);
                return -EINVAL;
        }
        server->opts.token = NULL; /* never kept outside server->token */
        compute_runtime_info(&server->runtime);

        int r = api_openapi_build(server);
        if (r < 0) {
                free(server);
                return ft_error_set(err, r, NULL, "cannot build the OpenAPI document");
        }
        r = api_sse_hub_new(server, &server->sse);
        if (r < 0) {
                free(server->openapi);
                free(server);
                return ft_error_set(err, r, NULL, "cannot start the event-stream hub");
        }

        server->conns = calloc(1, sizeof(*server->conns));
        if (!server->conns) {
                api_sse_hub_free(server->sse);
                free(server->openapi);
                free(server);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        pthread_mutex_init(&server->conns->lock, NULL);
        pthread_cond_init(&server->conns->stop_cond, NULL);
        server->conns->header_deadline_s = opts->connection_timeout_s ? (double)opts->connection_timeout_s : 30.0;
        unsigned per_ip_hard = opts->max_connections_per_ip ? opts->max_connections_per_ip + CONN_RESERVE : 0;

        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
        server->mhd = MHD_start_daemon(
                flags, 0, NULL, NULL, on_request, server, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)opts->listen_fd,
                MHD_OPTION_THREAD_POOL_SIZE, (unsigned)FT_MAX(opts->http_threads, 1u), MHD_OPTION_CONNECTION_LIMIT,
                (unsigned)FT_MAX(opts->max_connections, 16u), MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip_hard,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opts->connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                (size_t)(256 * 1024), MHD_OPTION_NOTIFY_COMPLETED, on_completed, server, MHD_OPTION_NOTIFY_CONNECTION,
                on_connection, server, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, server, MHD_OPTION_END);
        if (server->mhd && pthread_create(&server->conns->reaper, NULL, reaper_main, server) == 0)
                server->conns->reaper_started = true;
        if (!server->mhd || !server->conns->reaper_started) {
                if (server->mhd)
                        MHD_stop_daemon(server->mhd);
                conn_table_free(server->conns);
                api_sse_hub_free(server->sse);
                free(server->openapi);
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
        api_sse_shutdown(server->sse); /* resumes and ends every stream, so the connections can close */
        MHD_stop_daemon(server->mhd);
        conn_table_free(server->conns);
        api_sse_hub_free(server->sse);
        if (fd != MHD_INVALID_SOCKET)
                close(fd);
        api_store_close_all();
        explicit_bzero(server->tokens, sizeof(server->tokens));
        pthread_rwlock_destroy(&server->token_lock);
        free(server->openapi);
        free(server);
}
