/* routes.c - the route table (with what the OpenAPI document says about each
 * route: arguments, bodies, the answer's schema, the errors) and the
 * dispatcher that matches a request to it.
 * Not for: handler bodies (each resource has its own file), the document
 * itself (openapi.c). */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "api/prometheus.h"
#include "config.h"

static const struct api_field health_reason_shape[] = {
        {"code", API_T_STRING, .choices = (const char *const[]){"disk_low", "disk_full_wait", NULL}},
        {"message", API_T_STRING},
        {NULL},
};
static const struct api_field health_disk_shape[] = {
        {"free_bytes", API_T_INT, .description = "free for the daemon on the state directory's file system"},
        {"size_bytes", API_T_INT},
        {"low_bytes", API_T_INT, .description = "--disk-low-mb: below this the status is degraded (0: never)"},
        {"wait_bytes", API_T_INT,
         .description = "free bytes the workers wait for before they claim again, after a job's checkpoint did "
                        "not fit (0: not waiting)"},
        {NULL},
};
const struct api_field api_health_shape[] = {
        {"status", API_T_STRING, .choices = (const char *const[]){"ok", "degraded", NULL},
         .description = "degraded: the daemon serves, but the disk is almost full or workers wait for space"},
        {"reasons", API_T_ARRAY_OBJECT, .fields = health_reason_shape, .description = "why it is degraded"},
        {"disk", API_T_OBJECT, .fields = health_disk_shape},
        {NULL},
};

static void mib(uint64_t bytes, char buf[32]) {
        snprintf(buf, 32, "%.1f MiB", (double)bytes / (1 << 20));
}

/* 200 in both states: a degraded daemon still answers and trains what fits; a load balancer that should
 * stop sending it uploads reads "status". */
static enum MHD_Result handle_healthz(struct api_request *req) {
        struct api_disk_status d;
        api_disk_status(&d);
        json_t *reasons = json_array();
        char a[32], b[32];
        if (d.low) {
                mib(d.free_bytes, a);
                mib(d.low_bytes, b);
                json_array_append_new(reasons,
                                      json_pack("{s:s,s:s+++}", "code", "disk_low", "message",
                                                "the disk is almost full: ", a, " free, below --disk-low-mb ", b));
        }
        if (d.wait_bytes) {
                mib(d.free_bytes, a);
                mib(d.wait_bytes, b);
                json_array_append_new(reasons, json_pack("{s:s,s:s++++}", "code", "disk_full_wait", "message",
                                                         "a checkpoint did not fit: workers claim no job until ", b,
                                                         " are free (", a, " now)"));
        }
        bool degraded = json_array_size(reasons) > 0;
        return api_reply_json(req, MHD_HTTP_OK,
                              json_pack("{s:s,s:o,s:{s:I,s:I,s:I,s:I}}", "status", degraded ? "degraded" : "ok",
                                        "reasons", reasons, "disk", "free_bytes", (json_int_t)d.free_bytes,
                                        "size_bytes", (json_int_t)d.size_bytes, "low_bytes", (json_int_t)d.low_bytes,
                                        "wait_bytes", (json_int_t)d.wait_bytes));
}

static const struct api_field onednn_shape[] = {
        {"version", API_T_STRING},
        {"isa", API_T_STRING, .description = "the instruction set oneDNN dispatches to on this CPU"},
        {NULL},
};
static const struct api_field cuda_shape[] = {
        {"compiled", API_T_BOOL, .description = "the build has the CUDA backend"},
        {"device", API_T_BOOL, .description = "a GPU is there to use"},
        {"devices", API_T_INT, .description = "how many GPUs the driver sees (0 without a driver)"},
        {"name", API_T_STRING, .description = "GPU 0's name (\"\" when there is none)"},
        {"memory_bytes", API_T_INT, .description = "GPU 0's memory (0 when there is none)"},
        {"driver_version", API_T_INT, .description = "the driver's CUDA version, 13000 for 13.0 (0: no driver)"},
        {"reason", API_T_STRING,
         .description = "why there is no GPU: \"cuda is not available in this build\", \"no NVIDIA driver: ...\", "
                        "\"no CUDA device\" (\"\" when there is one)"},
        {NULL},
};
const struct api_field api_version_shape[] = {
        {"version", API_T_STRING},
        {"onednn", API_T_OBJECT, .fields = onednn_shape},
        {"cuda", API_T_OBJECT, .fields = cuda_shape},
        {NULL},
};

static enum MHD_Result handle_version(struct api_request *req) {
        const struct compute_runtime_info *rt = &req->server->runtime;
        return api_reply_json(req, MHD_HTTP_OK,
                              json_pack("{s:s,s:{s:s,s:s},s:{s:b,s:b,s:i,s:s,s:I,s:i,s:s}}", "version",
                                        FINETUNED_VERSION, "onednn", "version", rt->onednn_version, "isa",
                                        rt->onednn_isa, "cuda", "compiled", rt->cuda_compiled, "device",
                                        rt->cuda_device, "devices", rt->cuda_devices, "name", rt->cuda_device_name,
                                        "memory_bytes", (json_int_t)rt->cuda_memory_bytes, "driver_version",
                                        rt->cuda_driver_version, "reason", rt->cuda_reason));
}

/* Query arguments shared by the lists. */
#define PAGE_QUERY                                                                                                     \
        {"limit", API_T_INT, 1, API_PAGE_LIMIT_MAX, NULL, "items per page (default 20)"}, {                            \
                "after", API_T_STRING, 0, 0, NULL, "the id of the last item of the previous page (next_after)"         \
        }

static const struct api_query_param page_query[] = {PAGE_QUERY, {NULL}};
const char *const api_job_states[] = {"queued", "running",   "cancelling", "succeeded",
                                      "failed", "cancelled", "paused",     NULL};
static const struct api_query_param jobs_query[] = {
        PAGE_QUERY,
        {"state", API_T_STRING, 0, 0, api_job_states, "only jobs in this state"},
        /* min: the longest value, max: the longest KEY (api_query_arg_check) */
        {"metadata", API_T_OBJECT, 512, 64, NULL,
         "metadata[KEY]=VALUE: only jobs with that label (up to 4, all must match)"},
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
static const struct api_query_param jobs_create_query[] = {
        {"dry_run", API_T_BOOL, 0, 0, NULL,
         "validate as a submit does, then time a few real batches on this machine and answer the estimate "
         "(200, object dry_run) instead of queueing; one at a time (429 while another runs)"},
        {NULL},
};
static const struct api_query_param examples_query[] = {
        {"order", API_T_STRING, 0, 0, api_examples_orders,
         "index (dataset order, the default), loss (highest first), confident_mistakes (mistakes only, by "
         "p_predicted, highest first), suspected (suspected label errors only, by p_label, lowest first)"},
        {"label", API_T_STRING, 0, 0, NULL, "only examples the data labels with this class", 1024},
        {"predicted", API_T_STRING, 0, 0, NULL,
         "only examples predicted as this class (with label: one cell of the confusion matrix)", 1024},
        {"limit", API_T_INT, 1, 1000, NULL, "examples per page (default 100)"},
        {"after", API_T_INT, 0, 9e15, NULL, "the position of the last example of the previous page (next_after)"},
        {NULL},
};
static const struct api_query_param images_query[] = {
        {"indices", API_T_STRING, 0, 0, NULL, "1 to 100 image indices (0-based), separated by commas", 1400},
        {NULL},
};
static const struct api_query_param upload_query[] = {
        {"name", API_T_STRING, 0, 0, NULL, "a name for the dataset (default: the file name or 'dataset')"},
        {NULL},
};

#define E(...)                                                                                                         \
        (const enum api_error_code[]) {                                                                                \
                __VA_ARGS__, _API_ERR_MAX                                                                              \
        }
#define E_400 API_ERR_INVALID_REQUEST
#define E_401 API_ERR_UNAUTHORIZED
#define E_403 API_ERR_FORBIDDEN /* a read-only token on a write */
#define E_404 API_ERR_NOT_FOUND
#define E_409 API_ERR_CONFLICT
#define E_413 API_ERR_PAYLOAD_TOO_LARGE
#define E_415 API_ERR_UNSUPPORTED_MEDIA_TYPE
#define E_507 API_ERR_INSUFFICIENT_STORAGE /* the disk is full */
#define e_list E(E_400, E_401)
#define e_get E(E_401, E_404)
#define e_delete E(E_401, E_403, E_404, E_409)
#define e_upload E(E_400, E_401, E_403, E_413, E_415, E_507)
#define e_create E(E_400, E_401, E_403, E_404, E_413, E_415, E_507)
#define e_jobs_create E(E_400, E_401, E_403, E_413, E_415, API_ERR_IDEMPOTENCY_MISMATCH, API_ERR_RATE_LIMITED)
#define e_predict E(E_400, E_401, E_403, E_404, E_409, E_413, E_415)
#define e_cancel E(E_401, E_403, E_404, E_409)
#define e_predictions                                                                                                  \
        E(E_400, E_401, E_403, E_404, E_409, E_413, E_415, API_ERR_IDEMPOTENCY_MISMATCH, API_ERR_RATE_LIMITED)
#define e_replay E(E_400, E_401, E_403, E_404, E_409, API_ERR_RATE_LIMITED)
#define e_clone E(E_400, E_401, E_403, E_404, E_413, E_415, API_ERR_IDEMPOTENCY_MISMATCH, API_ERR_RATE_LIMITED)

/* The parts of a dataset upload: datasets.c refuses any other. */
static const struct api_field dataset_parts[] = {
        {"file", API_T_BINARY, .description = "a CSV file (or give it as the raw body)"},
        {"images", API_T_BINARY, .description = "IDX (or IDX.gz) images; needs 'labels'"},
        {"labels", API_T_BINARY, .description = "IDX (or IDX.gz) labels of 'images'"},
        {NULL},
};

/* What POST /v1/jobs accepts beyond the job spec: jobs.c's check_spec() wants
 * ids, not the presets, paths and inline specs that finetuned train takes. */
static const struct api_field job_refs[] = {
        {"model", API_T_STRING, .required = true, .id_prefix = "mdl", .max_len = API_ID_MAX,
         .description = "a model id, from POST /v1/models"},
        {"training_file", API_T_STRING, .required = true, .id_prefix = "ds", .max_len = API_ID_MAX,
         .description = "a dataset id, from POST /v1/datasets (an IDX pair is one dataset)"},
        {"validation_file", API_T_STRING, .id_prefix = "ds", .max_len = API_ID_MAX},
        {NULL},
};

const struct api_route api_routes[] = {
        {"GET", "/healthz", handle_healthz, .flags = API_ROUTE_PUBLIC, .tag = "service", .reply = "Health",
         .summary = "liveness: {\"status\":\"ok\"} while the daemon serves"},
        {"GET", "/v1/version", handle_version, .tag = "service", .reply = "Version",
         .summary = "the daemon's version, the oneDNN version and ISA, and whether CUDA is available"},
        {"GET", "/v1/openapi.json", api_openapi_get, .flags = API_ROUTE_PUBLIC, .tag = "service",
         .summary = "this OpenAPI 3 document, generated from the daemon's route table"},

        {"POST", "/v1/datasets", api_datasets_create, .flags = API_ROUTE_UPLOAD, .query = upload_query,
         .tag = "datasets", .success = 201, .errors = e_upload, .parts = dataset_parts, .reply = "Dataset",
         .summary = "upload a dataset: a CSV file or IDX(.gz) images as the raw body, or an IDX pair as "
                    "multipart/form-data with the parts 'images' and 'labels'",
         .description = "The body is streamed to the blob store under the upload cap, then validated with "
                        "the CSV/IDX readers; the answer carries the detected schema (columns, rows, "
                        "classes, image shape)."},
        {"GET", "/v1/datasets", api_datasets_list, .query = page_query, .tag = "datasets", .errors = e_list,
         .reply = "DatasetList", .summary = "list datasets, newest first (cursor pagination)"},
        {"GET", "/v1/datasets/{id}", api_datasets_get, .tag = "datasets", .errors = e_get, .reply = "Dataset",
         .summary = "one dataset with its schema"},
        {"GET", "/v1/datasets/{id}/images", api_datasets_images, .query = images_query, .tag = "datasets",
         .errors = E(E_400, E_401, E_404), .reply = "Images",
         .summary = "an IDX dataset's images by index (the dashboard's per-example grid): the file's bytes as "
                    "base64, with their labels"},
        {"DELETE", "/v1/datasets/{id}", api_datasets_delete, .tag = "datasets", .errors = e_delete, .reply = "Deleted",
         .summary = "delete a dataset; 409 while a queued or running job uses it"},

        {"POST", "/v1/models", api_models_create, .flags = API_ROUTE_JSON | API_ROUTE_UPLOAD,
         .body = api_model_create_fields, .body_max = 0, .tag = "models", .success = 201, .errors = e_create,
         .parts = api_model_create_parts, .reply = "Model",
         .summary = "register a model: JSON {name, preset, config} or {name, spec}, or multipart/form-data "
                    "with a 'weights' safetensors file plus 'spec' or 'preset' (and 'config') parts"},
        {"GET", "/v1/models", api_models_list, .query = page_query, .tag = "models", .errors = e_list,
         .reply = "ModelList", .summary = "list models, newest first (cursor pagination)"},
        {"GET", "/v1/models/{id}", api_models_get, .tag = "models", .errors = e_get, .reply = "Model",
         .summary = "one model: its spec, where it came from, whether it has weights"},
        {"DELETE", "/v1/models/{id}", api_models_delete, .tag = "models", .errors = e_delete, .reply = "Deleted",
         .summary = "delete a model; 409 while a queued or running job uses it"},
        {"GET", "/v1/models/{id}/weights", api_models_weights, .flags = API_ROUTE_BINARY, .tag = "models",
         .errors = e_get, .summary = "download the model's weights as safetensors"},
        {"POST", "/v1/models/{id}/predict", api_models_predict, .flags = API_ROUTE_JSON, .body = api_predict_fields,
         .body_max = 16u << 20, .tag = "models", .errors = e_predict, .reply = "Prediction",
         .summary = "predict: rows of features or images -> labels with class probabilities (or values), "
                    "applying the preprocessing the model was trained with"},
        {"POST", "/v1/models/{id}/explain", api_models_explain, .flags = API_ROUTE_JSON, .body = api_explain_fields,
         .body_max = 16u << 20, .tag = "models", .errors = e_predict, .reply = "Explanation",
         .summary = "explain: one image -> a per-pixel saliency map for a class (integrated gradients or gradient x "
                    "input), from the engine's own backward pass to the input",
         .description = "The image is preprocessed as predict does; the map is over the model's input (after "
                        "resize), each pixel its channels' attributions summed. 400 for a model that does not take "
                        "images; at most 256 integrated-gradients steps and 3*1024*1024 image values."},

        {"POST", "/v1/models/{id}/evaluate", api_models_evaluate, .flags = API_ROUTE_JSON, .body = api_evaluate_fields,
         .tag = "models", .errors = e_predict, .reply = "Evaluation",
         .summary = "evaluate the model on a labelled dataset: the job's final metrics plus log loss, ROC-AUC, "
                    "ROC and precision-recall curves and calibration (ECE, reliability diagram)",
         .description = "Runs while the request waits (the dataset's size is bounded by the upload limit); "
                        "for predictions of a whole dataset as a file, use /predictions."},
        {"POST", "/v1/models/{id}/predictions", api_models_predictions, .flags = API_ROUTE_JSON | API_ROUTE_IDEMPOTENT,
         .body = api_predictions_fields, .tag = "models", .success = 201, .errors = e_predictions, .reply = "Job",
         .summary = "queue a predictions job: the model over a whole dataset into predictions.csv (GET "
                    "/v1/jobs/{id}/artifacts/predictions.csv), with progress like any job",
         .description = "A job of kind 'predictions': it has progress, events, cancel and an Idempotency-Key "
                        "like a fine-tuning job; with labels its metrics are the evaluation's."},

        {"POST", "/v1/jobs", api_jobs_create, .flags = API_ROUTE_JSON | API_ROUTE_IDEMPOTENT, .tag = "jobs",
         .query = jobs_create_query, .success = 201, .errors = e_jobs_create, .body_schema = "JobCreate",
         .body = job_refs, .reply = "Job", .summary = "create a fine-tuning job from a job spec (docs/job-spec.md)",
         .description = "Validated before it is queued: every field, the model and dataset ids, the target "
                        "column. An Idempotency-Key header makes a retried POST return the original job "
                        "(422 if the body differs). 429 with Retry-After when too many jobs are queued."},
        {"GET", "/v1/jobs", api_jobs_list, .query = jobs_query, .tag = "jobs", .errors = e_list, .reply = "JobList",
         .summary = "list jobs, newest first, optionally in one state (cursor pagination)"},
        {"GET", "/v1/jobs/{id}", api_jobs_get, .tag = "jobs", .errors = e_get, .reply = "Job",
         .summary = "one job: state, attempt, progress (epoch, step, ETA), metrics when done, error when failed"},
        {"POST", "/v1/jobs/{id}/cancel", api_jobs_cancel, .flags = API_ROUTE_JSON, .tag = "jobs", .errors = e_cancel,
         .reply = "Job",
         .summary = "cancel a job: a queued job at once, a running one within one batch; 409 if finished"},
        {"POST", "/v1/jobs/{id}/pause", api_jobs_pause, .flags = API_ROUTE_JSON, .tag = "jobs", .errors = e_cancel,
         .reply = "Job",
         .summary = "pause a job: a queued one at once, a running one checkpoints within one batch and frees its "
                    "worker (pause_requested until then); it stays paused until resumed; 409 if cancelling or "
                    "finished"},
        {"POST", "/v1/jobs/{id}/resume", api_jobs_resume, .flags = API_ROUTE_JSON, .tag = "jobs", .errors = e_cancel,
         .reply = "Job",
         .summary = "resume a paused job: queued again, it continues from its checkpoint and ends bit-identical to "
                    "a run never paused (a pause not yet done is withdrawn); 409 unless paused"},
        {"POST", "/v1/jobs/{id}/clone", api_jobs_clone, .flags = API_ROUTE_JSON | API_ROUTE_IDEMPOTENT, .tag = "jobs",
         .success = 201, .errors = e_clone, .body_schema = "JobSpec", .reply = "Job",
         .summary = "a new job with this job's spec and a partial spec merged over it (RFC 7386: objects merge, "
                    "null removes a field back to its default), validated and queued like POST /v1/jobs"},
        {"POST", "/v1/jobs/{id}/checkpoints/{n}/model", api_jobs_checkpoint_model, .flags = API_ROUTE_JSON,
         .body = api_checkpoint_model_fields, .tag = "jobs", .success = 201, .errors = e_create, .reply = "Model",
         .summary = "register one of the job's checkpoints as a model (201; 200 with the same model when it was "
                    "registered before): its weights, spec, preprocessing and classes, to predict with or to "
                    "fine-tune from"},
        {"POST", "/v1/jobs/{id}/replay", api_jobs_replay, .flags = API_ROUTE_JSON, .tag = "jobs", .success = 201,
         .errors = e_replay, .reply = "Job",
         .summary = "run a succeeded job again from its receipt: 201 with the new job and replay {of, "
                    "expect_identical, reasons} (why it may differ: ISA, threads, versions, GPU); 409 when its data "
                    "or base model changed; the new job's replay.identical says whether it was"},
        {"DELETE", "/v1/jobs/{id}", api_jobs_delete, .tag = "jobs", .errors = e_delete, .reply = "Deleted",
         .summary = "delete a finished job with its events and checkpoints (the model it produced stays); 409 while "
                    "queued, running, cancelling or paused"},
        {"GET", "/v1/jobs/{id}/events", api_jobs_events, .flags = API_ROUTE_STREAM, .query = events_query,
         .tag = "jobs", .errors = e_get, .reply = "EventList",
         .summary = "the job's events (status, epoch, checkpoint, metrics) as JSON, or as Server-Sent Events"},
        {"GET", "/v1/jobs/{id}/checkpoints", api_jobs_checkpoints, .query = page_query, .tag = "jobs", .errors = e_get,
         .reply = "CheckpointList", .summary = "the job's checkpoints, oldest first"},
        {"GET", "/v1/jobs/{id}/artifacts/{name}", api_jobs_artifact, .flags = API_ROUTE_BINARY, .tag = "jobs",
         .errors = e_get,
         .produces = (const char *const[]){"application/octet-stream", "application/json", "text/csv", NULL},
         .summary = "a finished job's artifact: 'model.safetensors' (loads with load_state_dict) or "
                    "'metrics.json' or 'examples.csv' (classification: per-example diagnostics as CSV)"},
        {"GET", "/v1/jobs/{id}/diagnostics", api_jobs_diagnostics, .tag = "jobs", .errors = E(E_401, E_404, E_409),
         .reply = "Diagnostics",
         .summary = "a finished classification job's per-example diagnostics: highest losses, most confident "
                    "mistakes, suspected label errors (docs/diagnostics.md)"},
        {"GET", "/v1/jobs/{id}/examples", api_jobs_examples, .query = examples_query, .tag = "jobs",
         .errors = E(E_400, E_401, E_404, E_409), .reply = "ExampleList",
         .summary = "every evaluated example with its label, prediction, probabilities and loss; sorted, "
                    "filtered by class pair and paged"},

        {"POST", "/v1/webhooks", api_webhooks_create, .flags = API_ROUTE_JSON, .body = api_webhook_create_fields,
         .tag = "webhooks", .success = 201, .errors = E(E_400, E_401, E_403, E_413, E_415), .reply = "WebhookCreated",
         .summary = "register an endpoint for signed job events (Standard Webhooks); the answer carries its "
                    "secret, the only time it is shown",
         .description = "At most 16 endpoints. Events: job.queued, job.running, job.paused, job.succeeded, "
                        "job.failed, job.cancelled, job.warning (the default set) and job.epoch (opt-in). Each "
                        "is POSTed with webhook-id, webhook-timestamp and webhook-signature "
                        "(v1,base64 HMAC-SHA256 of id.timestamp.body), retried with exponential backoff for a "
                        "day (docs/api.md)."},
        {"GET", "/v1/webhooks", api_webhooks_list, .query = page_query, .tag = "webhooks", .errors = e_list,
         .reply = "WebhookList", .summary = "list webhook endpoints, newest first (no secrets)"},
        {"GET", "/v1/webhooks/{id}", api_webhooks_get, .tag = "webhooks", .errors = e_get, .reply = "Webhook",
         .summary = "one webhook endpoint (no secret)"},
        {"DELETE", "/v1/webhooks/{id}", api_webhooks_delete, .tag = "webhooks", .errors = E(E_401, E_403, E_404),
         .reply = "Deleted", .summary = "delete an endpoint with its delivery log; pending deliveries are dropped"},
        {"POST", "/v1/webhooks/{id}/test", api_webhooks_test, .flags = API_ROUTE_JSON, .tag = "webhooks",
         .success = 202, .errors = E(E_400, E_401, E_403, E_404), .reply = "WebhookTest",
         .summary = "send a signed webhook.test event to the endpoint now (see its delivery log)"},
        {"GET", "/v1/webhooks/{id}/deliveries", api_webhooks_deliveries, .query = page_query, .tag = "webhooks",
         .errors = E(E_400, E_401, E_404), .reply = "WebhookDeliveryList",
         .summary = "the endpoint's deliveries, newest first: state, attempts, last status and error, payload"},

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
