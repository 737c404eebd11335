/* routes.c - the route table (with what the OpenAPI document says about each
 * route) and the dispatcher that matches a request to it.
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

/* Query arguments shared by the lists. */
#define PAGE_QUERY                                                                                                     \
        {"limit", API_T_INT, 1, API_PAGE_LIMIT_MAX, NULL, "items per page (default 20)"}, {                            \
                "after", API_T_STRING, 0, 0, NULL, "the id of the last item of the previous page (next_after)"         \
        }

static const struct api_query_param page_query[] = {PAGE_QUERY, {NULL}};
static const char *const job_states[] = {"queued", "running", "cancelling", "succeeded", "failed", "cancelled", NULL};
static const struct api_query_param jobs_query[] = {
        PAGE_QUERY,
        {"state", API_T_STRING, 0, 0, job_states, "only jobs in this state"},
        {NULL},
};
static const struct api_query_param events_query[] = {
        {"after", API_T_INT, 0, 9e15, NULL, "only events with a larger sequence number (default 0)"},
        {"limit", API_T_INT, 1, 1000, NULL, "events per page (default 100; JSON only)"},
        {"stream", API_T_BOOL, 0, 0, NULL,
         "true: answer text/event-stream (also chosen by Accept: text/event-stream); replays from "
         "Last-Event-ID or after, then pushes each new event, ending after the terminal status event"},
        {NULL},
};
static const struct api_query_param upload_query[] = {
        {"name", API_T_STRING, 0, 0, NULL, "a name for the dataset (default: the file name or 'dataset')"},
        {NULL},
};

static const char *const e_list[] = {"400", "401", NULL};
static const char *const e_get[] = {"401", "404", NULL};
static const char *const e_delete[] = {"401", "404", "409", NULL};
static const char *const e_upload[] = {"400", "401", "413", "415", NULL};
static const char *const e_create[] = {"400", "401", "404", "413", "415", NULL};
static const char *const e_jobs_create[] = {"400", "401", "413", "415", "422", "429", NULL};
static const char *const e_predict[] = {"400", "401", "404", "409", "413", "415", NULL};
static const char *const e_cancel[] = {"401", "404", "409", NULL};

const struct api_route api_routes[] = {
        {"GET", "/healthz", handle_healthz, .flags = API_ROUTE_PUBLIC, .tag = "service",
         .summary = "liveness: {\"status\":\"ok\"} while the daemon serves"},
        {"GET", "/v1/version", handle_version, .tag = "service",
         .summary = "the daemon's version, the oneDNN version and ISA, and whether CUDA is available"},
        {"GET", "/v1/openapi.json", api_openapi_get, .flags = API_ROUTE_PUBLIC, .tag = "service",
         .summary = "this OpenAPI 3 document, generated from the daemon's route table"},

        {"POST", "/v1/datasets", api_datasets_create, .flags = API_ROUTE_UPLOAD, .query = upload_query,
         .tag = "datasets", .success = 201, .errors = e_upload,
         .summary = "upload a dataset: a CSV file or IDX(.gz) images as the raw body, or an IDX pair as "
                    "multipart/form-data with the parts 'images' and 'labels'",
         .description = "The body is streamed to the blob store under the upload cap, then validated with "
                        "the CSV/IDX readers; the answer carries the detected schema (columns, rows, "
                        "classes, image shape)."},
        {"GET", "/v1/datasets", api_datasets_list, .query = page_query, .tag = "datasets", .errors = e_list,
         .summary = "list datasets, newest first (cursor pagination)"},
        {"GET", "/v1/datasets/{id}", api_datasets_get, .tag = "datasets", .errors = e_get,
         .summary = "one dataset with its schema"},
        {"DELETE", "/v1/datasets/{id}", api_datasets_delete, .tag = "datasets", .errors = e_delete,
         .summary = "delete a dataset; 409 while a queued or running job uses it"},

        {"POST", "/v1/models", api_models_create, .flags = API_ROUTE_JSON | API_ROUTE_UPLOAD,
         .body = api_model_create_fields, .body_max = 0, .tag = "models", .success = 201, .errors = e_create,
         .summary = "register a model: JSON {name, preset, config} or {name, spec}, or multipart/form-data "
                    "with a 'weights' safetensors file plus 'spec' or 'preset' (and 'config') parts"},
        {"GET", "/v1/models", api_models_list, .query = page_query, .tag = "models", .errors = e_list,
         .summary = "list models, newest first (cursor pagination)"},
        {"GET", "/v1/models/{id}", api_models_get, .tag = "models", .errors = e_get,
         .summary = "one model: its spec, where it came from, whether it has weights"},
        {"DELETE", "/v1/models/{id}", api_models_delete, .tag = "models", .errors = e_delete,
         .summary = "delete a model; 409 while a queued or running job uses it"},
        {"GET", "/v1/models/{id}/weights", api_models_weights, .flags = API_ROUTE_BINARY, .tag = "models",
         .errors = e_get, .summary = "download the model's weights as safetensors"},
        {"POST", "/v1/models/{id}/predict", api_models_predict, .flags = API_ROUTE_JSON, .body = api_predict_fields,
         .body_max = 16u << 20, .tag = "models", .errors = e_predict,
         .summary = "predict: rows of features or images -> labels with class probabilities (or values), "
                    "applying the preprocessing the model was trained with"},

        {"POST", "/v1/jobs", api_jobs_create, .flags = API_ROUTE_JSON, .tag = "jobs", .success = 201,
         .errors = e_jobs_create, .summary = "create a fine-tuning job from a job spec (docs/job-spec.md)",
         .description = "Validated before it is queued: every field, the model and dataset ids, the target "
                        "column. An Idempotency-Key header makes a retried POST return the original job "
                        "(422 if the body differs). 429 with Retry-After when too many jobs are queued."},
        {"GET", "/v1/jobs", api_jobs_list, .query = jobs_query, .tag = "jobs", .errors = e_list,
         .summary = "list jobs, newest first, optionally in one state (cursor pagination)"},
        {"GET", "/v1/jobs/{id}", api_jobs_get, .tag = "jobs", .errors = e_get,
         .summary = "one job: state, attempt, progress (epoch, step, ETA), metrics when done, error when failed"},
        {"POST", "/v1/jobs/{id}/cancel", api_jobs_cancel, .flags = API_ROUTE_JSON, .tag = "jobs", .errors = e_cancel,
         .summary = "cancel a job: a queued job at once, a running one within one batch; 409 if finished"},
        {"DELETE", "/v1/jobs/{id}", api_jobs_delete, .tag = "jobs", .errors = e_delete,
         .summary = "delete a finished job with its events and checkpoints (the model it produced stays); 409 while "
                    "queued, running or cancelling"},
        {"GET", "/v1/jobs/{id}/events", api_jobs_events, .flags = API_ROUTE_STREAM, .query = events_query,
         .tag = "jobs", .errors = e_get,
         .summary = "the job's events (status, epoch, checkpoint, metrics) as JSON, or as Server-Sent Events"},
        {"GET", "/v1/jobs/{id}/checkpoints", api_jobs_checkpoints, .query = page_query, .tag = "jobs", .errors = e_get,
         .summary = "the job's checkpoints, oldest first"},
        {"GET", "/v1/jobs/{id}/artifacts/{name}", api_jobs_artifact, .flags = API_ROUTE_BINARY, .tag = "jobs",
         .errors = e_get, .produces = (const char *const[]){"application/octet-stream", "application/json", NULL},
         .summary = "a finished job's artifact: 'model.safetensors' (loads with load_state_dict) or "
                    "'metrics.json'"},

        {"GET", "/", api_static_index, .flags = API_ROUTE_PUBLIC | API_ROUTE_BINARY, .tag = "dashboard",
         .produces = (const char *const[]){"text/html", NULL},
         .summary = "the web dashboard (text/html), embedded in the binary; needs no token (docs/dashboard.md)"},
        {"GET", "/static/{name}", api_static_file, .flags = API_ROUTE_PUBLIC | API_ROUTE_BINARY, .tag = "dashboard",
         .produces = (const char *const[]){"text/javascript", "text/css", NULL},
         .summary = "the dashboard's scripts, styles and Chart.js, with ETag revalidation"},
        {"GET", "/metrics", api_handle_metrics, .flags = API_ROUTE_BINARY, .tag = "service",
         .produces = (const char *const[]){"text/plain", NULL},
         .summary = "Prometheus metrics (text exposition format 0.0.4): HTTP requests by route and status, jobs, "
                    "training progress, the process (docs/operations.md)"},
};
const size_t api_routes_count = ARRAY_SIZE(api_routes);

/* Match url against pattern segment by segment. On success store {name}
 * captures into params (pointing into scratch, which must outlive the request). */
static bool route_match(const char *pattern, const char *url, char *scratch, size_t scratch_size, const char **params,
                        unsigned *n_params) {
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

const struct api_route *api_route_find(struct api_request *req, char *allow, size_t allow_size, unsigned *ret_status) {
        char scratch[512];
        const char *params[API_MAX_PATH_PARAMS];
        unsigned n_params = 0;
        bool path_known = false;

        allow[0] = '\0';
        for (size_t i = 0; i < api_routes_count; i++) {
                const struct api_route *route = &api_routes[i];
                if (!route_match(route->pattern, req->url, scratch, sizeof(scratch), params, &n_params))
                        continue;
                if (strcmp(route->method, req->method) == 0 ||
                    (strcmp(req->method, "HEAD") == 0 && strcmp(route->method, "GET") == 0)) {
                        /* captures must outlive this frame: copy into the request's own scratch */
                        size_t used = 0;
                        for (unsigned k = 0; k < n_params; k++) {
                                size_t len = strlen(params[k]) + 1;
                                memcpy(req->scratch + used, params[k], len);
                                req->path_params[k] = req->scratch + used;
                                used += len;
                        }
                        req->n_path_params = n_params;
                        return route;
                }
                path_known = true;
                if (!strstr(allow, route->method)) {
                        size_t len = strlen(allow);
                        snprintf(allow + len, allow_size - len, "%s%s", len ? ", " : "", route->method);
                }
        }
        *ret_status = path_known ? 405 : 404;
        return NULL;
}

enum MHD_Result api_dispatch(struct api_request *req) {
        enum MHD_Result ret;
        if (!req->route) {
                char allow[128];
                unsigned status = 404;
                req->route = api_route_find(req, allow, sizeof(allow), &status);
                if (!req->route) {
                        if (status == 404)
                                return api_reply_error(req, API_ERR_NOT_FOUND, NULL, "no route for %s '%s'",
                                                       req->method, req->url);
                        return api_reply_error_headers(req, API_ERR_METHOD_NOT_ALLOWED, NULL,
                                                       (const char *const[]){MHD_HTTP_HEADER_ALLOW, allow, NULL},
                                                       "method %s not allowed on '%s' (allowed: %s)", req->method,
                                                       req->url, allow);
                }
        }
        if (!api_query_check(req, &ret))
                return ret;
        return req->route->handler(req);
}
