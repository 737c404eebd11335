/* routes.c - the route table and the dispatcher that matches a request to it.
 * Not for: handler bodies (each resource has its own file). */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "config.h"

static enum MHD_Result handle_healthz(struct api_request *req) {
        return api_reply_json(req, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

static enum MHD_Result handle_version(struct api_request *req) {
        const struct compute_runtime_info *rt = &req->server->runtime;
        return api_reply_json(req, MHD_HTTP_OK,
                              json_pack("{s:s,s:{s:s,s:s},s:{s:b,s:b}}", "version", FINETUNED_VERSION, "onednn",
                                        "version", rt->onednn_version, "isa", rt->onednn_isa, "cuda", "compiled",
                                        rt->cuda_compiled, "device", rt->cuda_device));
}

const struct api_route api_routes[] = {
        {"GET", "/healthz", handle_healthz},
        {"GET", "/v1/version", handle_version},
        {"GET", "/", api_static_index},
        {"GET", "/static/{name}", api_static_file},
};
const size_t api_routes_count = ARRAY_SIZE(api_routes);

/* Match url against pattern segment by segment. On success store {name}
 * captures into req (pointing into scratch, which must outlive the request). */
static bool route_match(const char *pattern, const char *url, char *scratch, size_t scratch_size,
                        const char **params, unsigned *n_params) {
        const char *p = pattern, *u = url;
        size_t used = 0;
        unsigned n = 0;
        while (*p && *u) {
                if (*p != '/' || *u != '/')
                        return false;
                p++;
                u++;
                const char *pe = strchrnul(p, '/'), *ue = strchrnul(u, '/');
                size_t plen = (size_t)(pe - p), ulen = (size_t)(ue - u);
                if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
                        if (ulen == 0 || n >= API_MAX_PATH_PARAMS || used + ulen + 1 > scratch_size)
                                return false;
                        memcpy(scratch + used, u, ulen);
                        scratch[used + ulen] = '\0';
                        params[n++] = scratch + used;
                        used += ulen + 1;
                } else if (plen != ulen || memcmp(p, u, plen) != 0) {
                        return false;
                }
                p = pe;
                u = ue;
        }
        if (*p || *u)
                return false;
        *n_params = n;
        return true;
}

enum MHD_Result api_dispatch(struct api_request *req) {
        char scratch[512];
        char allow[128] = "";
        const char *params[API_MAX_PATH_PARAMS];
        unsigned n_params = 0;
        bool path_known = false;

        for (size_t i = 0; i < api_routes_count; i++) {
                const struct api_route *route = &api_routes[i];
                if (!route_match(route->pattern, req->url, scratch, sizeof(scratch), params, &n_params))
                        continue;
                if (strcmp(route->method, req->method) == 0 ||
                    (strcmp(req->method, "HEAD") == 0 && strcmp(route->method, "GET") == 0)) {
                        memcpy(req->path_params, params, sizeof(params));
                        req->n_path_params = n_params;
                        return route->handler(req);
                }
                path_known = true;
                if (!strstr(allow, route->method)) {
                        size_t len = strlen(allow);
                        snprintf(allow + len, sizeof(allow) - len, "%s%s", len ? ", " : "", route->method);
                }
        }
        if (!path_known)
                return api_reply_error(req, API_ERR_NOT_FOUND, NULL, "no route for %s '%s'", req->method, req->url);

        char *text = NULL;
        json_t *body = json_pack("{s:{s:s,s:s,s:n}}", "error", "code", api_error_code_name(API_ERR_METHOD_NOT_ALLOWED),
                                 "message", "method not allowed", "param");
        text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!text)
                return MHD_NO;
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(text);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
        enum MHD_Result ret = MHD_queue_response(req->conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
        MHD_destroy_response(resp);
        return ret;
}
