/* internal.h - private to api/: the request object handlers see, the route
 * table, response helpers and the error-code table. Nothing outside api/
 * includes this. */
#pragma once

#include <microhttpd.h>
#include <jansson.h>

#include "api/api.h"
#include "compute/compute.h"

#define API_MAX_PATH_PARAMS 4

struct api_server {
        struct MHD_Daemon *mhd;
        struct api_options opts;
        struct compute_runtime_info runtime;
};

struct api_request {
        struct api_server *server;
        struct MHD_Connection *conn;
        const char *method;
        const char *url;
        const char *path_params[API_MAX_PATH_PARAMS]; /* {id} captures, NUL-terminated copies */
        unsigned n_path_params;
        const char *body; /* request body (NULL when none) */
        size_t body_size;
};

/* Every API error code, mapped to its HTTP status in one table (errors.c). */
enum api_error_code {
        API_ERR_INVALID_REQUEST,  /* 400 */
        API_ERR_UNAUTHORIZED,     /* 401 */
        API_ERR_NOT_FOUND,        /* 404 */
        API_ERR_METHOD_NOT_ALLOWED, /* 405 */
        API_ERR_CONFLICT,         /* 409 */
        API_ERR_PAYLOAD_TOO_LARGE, /* 413 */
        API_ERR_UNSUPPORTED_MEDIA_TYPE, /* 415 */
        API_ERR_IDEMPOTENCY_MISMATCH, /* 422 */
        API_ERR_RATE_LIMITED,     /* 429 */
        API_ERR_INTERNAL,         /* 500 */
        API_ERR_UNAVAILABLE,      /* 503 */
        _API_ERR_MAX,
};

const char *api_error_code_name(enum api_error_code code);
unsigned api_error_http_status(enum api_error_code code);

/* Queue a JSON response (steals the reference to body). */
enum MHD_Result api_reply_json(struct api_request *req, unsigned status, json_t *body);
/* Queue {"error":{"code","message","param"}}; param may be NULL (-> JSON null). */
enum MHD_Result api_reply_error(struct api_request *req, enum api_error_code code, const char *param,
                                const char *fmt, ...) _printf_(4, 5);

typedef enum MHD_Result (*api_handler_fn)(struct api_request *req);

struct api_route {
        const char *method;  /* "GET", "POST", ... */
        const char *pattern; /* "/v1/jobs/{id}" - a {name} segment captures one path segment */
        api_handler_fn handler;
};

/* The route table (routes.c) and dispatch: 404 for an unknown path, 405 with
 * Allow for a known path with another method. */
extern const struct api_route api_routes[];
extern const size_t api_routes_count;
enum MHD_Result api_dispatch(struct api_request *req);

/* The embedded dashboard (static.c): GET / and GET /static/{name}. */
enum MHD_Result api_static_index(struct api_request *req);
enum MHD_Result api_static_file(struct api_request *req);
