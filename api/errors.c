/* errors.c - the one table from API error codes to HTTP statuses, and the one
 * function that builds the error envelope (Janus apierror.h style). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"

static const struct {
        const char *name;
        unsigned status;
} error_table[_API_ERR_MAX] = {
        [API_ERR_INVALID_REQUEST] = {"invalid_request", 400},
        [API_ERR_UNAUTHORIZED] = {"unauthorized", 401},
        [API_ERR_NOT_FOUND] = {"not_found", 404},
        [API_ERR_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405},
        [API_ERR_CONFLICT] = {"conflict", 409},
        [API_ERR_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413},
        [API_ERR_UNSUPPORTED_MEDIA_TYPE] = {"unsupported_media_type", 415},
        [API_ERR_IDEMPOTENCY_MISMATCH] = {"idempotency_key_reused", 422},
        [API_ERR_RATE_LIMITED] = {"rate_limited", 429},
        [API_ERR_INTERNAL] = {"internal_error", 500},
        [API_ERR_UNAVAILABLE] = {"unavailable", 503},
};

const char *api_error_code_name(enum api_error_code code) {
        return (unsigned)code < _API_ERR_MAX ? error_table[code].name : "internal_error";
}

unsigned api_error_http_status(enum api_error_code code) {
        return (unsigned)code < _API_ERR_MAX ? error_table[code].status : 500;
}

enum MHD_Result api_reply_json(struct api_request *req, unsigned status, json_t *body) {
        char *text = json_dumps(body, JSON_COMPACT);
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
        enum MHD_Result ret = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

enum MHD_Result api_reply_error(struct api_request *req, enum api_error_code code, const char *param,
                                const char *fmt, ...) {
        char message[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        json_t *body = json_pack("{s:{s:s,s:s,s:o}}", "error", "code", api_error_code_name(code), "message",
                                 message, "param", param && *param ? json_string(param) : json_null());
        if (!body)
                return MHD_NO;
        return api_reply_json(req, api_error_http_status(code), body);
}
