/* errors.c - the one table from API error codes to HTTP statuses, the one
 * function that builds the error envelope (Janus apierror.h style) with its
 * JSON Schema beside it, and the other reply helpers. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/log.h"

static const struct {
        const char *name;
        unsigned status;
        const char *description; /* for the OpenAPI document */
} error_table[_API_ERR_MAX] = {
        [API_ERR_INVALID_REQUEST] = {"invalid_request", 400,
                                     "invalid request: a bad field (param names it), query argument, header or JSON"},
        [API_ERR_UNAUTHORIZED] = {"unauthorized", 401, "missing or wrong bearer token"},
        [API_ERR_FORBIDDEN] = {"forbidden", 403, "the bearer token is read-only: GET and HEAD only"},
        [API_ERR_NOT_FOUND] = {"not_found", 404, "no such resource (or a malformed id)"},
        [API_ERR_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405, "the path exists, the method does not (Allow)"},
        [API_ERR_CONFLICT] = {"conflict", 409, "conflict with the resource's state (in use, already finished)"},
        [API_ERR_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413, "request body over this endpoint's cap"},
        [API_ERR_UNSUPPORTED_MEDIA_TYPE] = {"unsupported_media_type", 415, "unsupported Content-Type"},
        [API_ERR_IDEMPOTENCY_MISMATCH] = {"idempotency_key_reused", 422,
                                          "Idempotency-Key reused with a different body"},
        [API_ERR_RATE_LIMITED] = {"rate_limited", 429, "too many queued jobs; retry after Retry-After seconds"},
        [API_ERR_INTERNAL] = {"internal_error", 500, "internal error (logged by the daemon)"},
        [API_ERR_NOT_IMPLEMENTED] = {"not_implemented", 501,
                                     "this daemon's store cannot do it yet (a feature not ported to PostgreSQL)"},
        [API_ERR_INSUFFICIENT_STORAGE] = {"insufficient_storage", 507,
                                          "the daemon's disk is full: nothing was stored; retry when space is freed"},
        [API_ERR_UNAVAILABLE] = {"unavailable", 503, "the store cannot be reached; retry later"},
};

const char *api_error_code_name(enum api_error_code code) {
        return (unsigned)code < _API_ERR_MAX ? error_table[code].name : "internal_error";
}

unsigned api_error_http_status(enum api_error_code code) {
        return (unsigned)code < _API_ERR_MAX ? error_table[code].status : 500;
}

const char *api_error_description(enum api_error_code code) {
        return (unsigned)code < _API_ERR_MAX ? error_table[code].description : "error";
}

/* The envelope reply_error_va() builds. */
json_t *api_error_schema(void) {
        json_t *codes = json_array();
        for (size_t i = 0; i < _API_ERR_MAX; i++)
                json_array_append_new(codes, json_string(error_table[i].name));
        return json_pack("{s:s,s:{s:{s:s,s:{s:{s:s,s:o},s:{s:s},s:{s:[ss],s:s}},s:[sss],s:b}},s:[s],s:b}", "type",
                         "object", "properties", "error", "type", "object", "properties", "code", "type", "string",
                         "enum", codes, "message", "type", "string", "param", "type", "string", "null", "description",
                         "the field (dots and indices), query argument or header at fault, or null", "required", "code",
                         "message", "param", "additionalProperties", 0, "required", "error", "additionalProperties", 0);
}

enum MHD_Result api_reply_json_headers(struct api_request *req, unsigned status, json_t *body,
                                       const char *const *headers) {
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!text)
                return MHD_NO;
        size_t n = strlen(text);
        /* A trailing newline makes curl output readable; JSON parsers ignore it. */
        char *withnl = realloc(text, n + 2);
        if (!withnl) {
                free(text);
                return MHD_NO;
        }
        withnl[n] = '\n';
        withnl[n + 1] = '\0';
        struct MHD_Response *resp = MHD_create_response_from_buffer(n + 1, withnl, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(withnl);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        for (const char *const *h = headers; h && h[0] && h[1]; h += 2)
                MHD_add_response_header(resp, h[0], h[1]);
        enum MHD_Result ret = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

enum MHD_Result api_reply_json(struct api_request *req, unsigned status, json_t *body) {
        return api_reply_json_headers(req, status, body, NULL);
}

/* Messages may quote client input (a CSV cell, a file name): keep them valid
 * UTF-8 without control characters, or jansson would refuse the envelope. */
static void utf8_sanitize(char *s) {
        unsigned char *p = (unsigned char *)s;
        while (*p) {
                unsigned n = *p < 0x80             ? 0
                             : (*p & 0xe0) == 0xc0 ? 1
                             : (*p & 0xf0) == 0xe0 ? 2
                             : (*p & 0xf8) == 0xf0 ? 3
                                                   : 9;
                bool ok = n != 9 && !(n == 1 && *p < 0xc2);
                for (unsigned i = 1; ok && i <= n; i++)
                        ok = (p[i] & 0xc0) == 0x80;
                if (!ok) {
                        *p++ = '?';
                        continue;
                }
                if (n == 0 && *p < 0x20)
                        *p = ' ';
                p += n + 1;
        }
}

static enum MHD_Result reply_error_va(struct api_request *req, enum api_error_code code, const char *param,
                                      const char *const *headers, const char *fmt, va_list ap) {
        char raw[1024], message[1024];
        vsnprintf(raw, sizeof(raw), fmt, ap);
        /* every answer, whichever layer wrote the message: clients see the names they gave, never server paths */
        const char *state = req->server ? req->server->opts.state_dir : NULL;
        if (state && state[0])
                ft_scrub_paths(state, NULL, raw, message, sizeof(message));
        else
                snprintf(message, sizeof(message), "%s", raw);
        if (strcmp(raw, message) != 0)
                log_info("%s %s: %s", req->method, req->url, raw); /* the log keeps the path */
        utf8_sanitize(message);
        char param_buf[FT_ERROR_PARAM_MAX];
        if (param) {
                snprintf(param_buf, sizeof(param_buf), "%s", param);
                utf8_sanitize(param_buf);
                param = param_buf;
        }
        json_t *body = json_pack("{s:{s:s,s:s,s:o}}", "error", "code", api_error_code_name(code), "message", message,
                                 "param", param && *param ? json_string(param) : json_null());
        if (!body)
                return MHD_NO;
        return api_reply_json_headers(req, api_error_http_status(code), body, headers);
}

enum MHD_Result api_reply_error(struct api_request *req, enum api_error_code code, const char *param, const char *fmt,
                                ...) {
        va_list ap;
        va_start(ap, fmt);
        enum MHD_Result r = reply_error_va(req, code, param, NULL, fmt, ap);
        va_end(ap);
        return r;
}

enum MHD_Result api_reply_error_headers(struct api_request *req, enum api_error_code code, const char *param,
                                        const char *const *headers, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        enum MHD_Result r = reply_error_va(req, code, param, headers, fmt, ap);
        va_end(ap);
        return r;
}

enum MHD_Result api_reply_ft_error(struct api_request *req, int r, const struct ft_error *err) {
        const char *param = err && err->param[0] ? err->param : NULL;
        const char *msg = err && err->message[0] ? err->message : strerror(-r);
        switch (r) {
        case -ENOENT: return api_reply_error(req, API_ERR_NOT_FOUND, param, "%s", msg);
        case -EBUSY:
        case -EEXIST:
        case -EALREADY: return api_reply_error(req, API_ERR_CONFLICT, param, "%s", msg);
        case -EINVAL:
        case -ERANGE:
        case -EBADMSG:
        case -EDOM: return api_reply_error(req, API_ERR_INVALID_REQUEST, param, "%s", msg);
        case -EFBIG:
        case -E2BIG: return api_reply_error(req, API_ERR_PAYLOAD_TOO_LARGE, param, "%s", msg);
        case -EOPNOTSUPP: return api_reply_error(req, API_ERR_NOT_IMPLEMENTED, param, "%s", msg);
        case -EAGAIN:
                return api_reply_error_headers(req, API_ERR_RATE_LIMITED, param,
                                               (const char *const[]){"Retry-After", "5", NULL}, "%s", msg);
        case -ENOTCONN: /* the shared store (PostgreSQL) is unreachable: the next request reconnects */
                log_warning("%s %s: %s", req->method, req->url, msg);
                return api_reply_error_headers(req, API_ERR_UNAVAILABLE, NULL,
                                               (const char *const[]){"Retry-After", "1", NULL}, "%s",
                                               "the database cannot be reached; retry later");
        default:
                log_error("%s %s: %s (%s)", req->method, req->url, msg, strerror(-r));
                return api_reply_error(req, API_ERR_INTERNAL, NULL, "internal error");
        }
}

enum MHD_Result api_reply_file(struct api_request *req, const char *path, const char *ctype,
                               const char *download_name) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                int e = errno;
                if (fd >= 0)
                        close(fd);
                if (e == ENOENT)
                        return api_reply_error(req, API_ERR_NOT_FOUND, NULL, "file not found");
                log_error("cannot open '%s': %s", path, strerror(e));
                return api_reply_error(req, API_ERR_INTERNAL, NULL, "internal error");
        }
        struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
        if (!resp) {
                close(fd);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype ? ctype : "application/octet-stream");
        if (download_name) {
                char cd[256];
                snprintf(cd, sizeof(cd), "attachment; filename=\"%s\"", download_name);
                MHD_add_response_header(resp, "Content-Disposition", cd);
        }
        enum MHD_Result ret = MHD_queue_response(req->conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

const struct api_field api_deleted_shape[] = {
        {"id", API_T_STRING},
        {"object", API_T_STRING, .choices = (const char *const[]){"dataset", "model", "job", "webhook", NULL}},
        {"deleted", API_T_BOOL},
        {NULL},
};

enum MHD_Result api_reply_deleted(struct api_request *req, const char *object, const char *id) {
        return api_reply_json(req, MHD_HTTP_OK, json_pack("{s:s,s:s,s:b}", "id", id, "object", object, "deleted", 1));
}
