/* internal.h - private to api/: the request object handlers see, the route
 * table, response helpers, the error-code table, declarative validation,
 * pagination and SSE helpers. Nothing outside api/ includes this. */
#pragma once

#include <microhttpd.h>
#include <jansson.h>
#include <pthread.h>

#include "api/api.h"
#include "common/netaddr.h"
#include "compute/compute.h"

#define API_MAX_PATH_PARAMS 4
#define API_JSON_BODY_MAX (256u << 10) /* default cap for JSON request bodies */
#define API_JSON_MAX_DEPTH 32 /* nesting depth of a JSON request body */
#define API_ID_MAX 64 /* longest id accepted in a path or body */
#define API_UPLOAD_PARTS_MAX 6 /* multipart parts per request */

struct api_sse_hub;

struct api_server {
        struct MHD_Daemon *mhd;
        struct api_options opts;
        struct compute_runtime_info runtime;
        pthread_rwlock_t token_lock; /* SIGHUP may replace the token while requests are checked */
        struct api_token {
                char value[API_TOKEN_MAX + 1];
                size_t len;
                bool read_only; /* a "read" token: GET and HEAD only */
        } tokens[API_TOKENS_MAX];
        size_t n_tokens; /* 0: no auth */
        struct api_sse_hub *sse;
        char *openapi; /* the generated OpenAPI document, built once at start */
        size_t openapi_len;
        struct conn_table *conns; /* server.c: every connection, for deadlines and caps */
        struct netaddr_list webhook_allow; /* internal addresses a webhook URL may name (--webhook-allow) */
};

/* One file streamed from the request body (the raw body or one multipart
 * file part) straight into the blob store, hashed as it streams; or a small
 * multipart form field kept in memory. By the time a handler runs, files are
 * committed blobs (sha256, path); an unreferenced blob is collected by
 * store_blob_gc, so a handler that rejects a file just returns. */
#define API_FORM_FIELD_MAX (64u << 10)
struct store_blob_writer;
struct api_upload {
        char name[32]; /* multipart field name ("" for a raw body) */
        char filename[128]; /* client-side file name from multipart, or "" */
        bool is_file; /* false: a form field, in text */
        struct store_blob_writer *writer;
        char sha256[65];
        char path[4096];
        uint64_t size;
        char *text; /* form fields: the value, NUL-terminated */
};

struct api_route;

struct api_request {
        struct api_server *server;
        struct MHD_Connection *conn;
        const struct api_route *route;
        const char *method;
        const char *url;
        const char *path_params[API_MAX_PATH_PARAMS]; /* {id} captures, NUL-terminated copies */
        unsigned n_path_params;
        const char *body; /* request body for JSON routes (NULL when none) */
        size_t body_size;
        struct api_upload *uploads; /* upload routes: the files received */
        unsigned n_uploads;
        char scratch[512]; /* backing store of path_params */
};

/* Every API error code, mapped to its HTTP status in one table (errors.c). */
enum api_error_code {
        API_ERR_INVALID_REQUEST, /* 400 */
        API_ERR_UNAUTHORIZED, /* 401 */
        API_ERR_FORBIDDEN, /* 403 */
        API_ERR_NOT_FOUND, /* 404 */
        API_ERR_METHOD_NOT_ALLOWED, /* 405 */
        API_ERR_CONFLICT, /* 409 */
        API_ERR_PAYLOAD_TOO_LARGE, /* 413 */
        API_ERR_UNSUPPORTED_MEDIA_TYPE, /* 415 */
        API_ERR_IDEMPOTENCY_MISMATCH, /* 422 */
        API_ERR_RATE_LIMITED, /* 429 */
        API_ERR_INTERNAL, /* 500 */
        API_ERR_NOT_IMPLEMENTED, /* 501: not with this store backend yet (PostgreSQL) */
        API_ERR_UNAVAILABLE, /* 503 */
        API_ERR_INSUFFICIENT_STORAGE, /* 507 */
        _API_ERR_MAX,
};

const char *api_error_code_name(enum api_error_code code);
unsigned api_error_http_status(enum api_error_code code);
/* What a status means, for the OpenAPI document (one line). */
const char *api_error_description(enum api_error_code code);
/* The error envelope's JSON Schema: every code of the table, message, param. */
json_t *api_error_schema(void);

/* Queue a JSON response (steals the reference to body). */
enum MHD_Result api_reply_json(struct api_request *req, unsigned status, json_t *body);
/* The same with extra headers: a NULL-terminated list of name, value pairs. */
enum MHD_Result api_reply_json_headers(struct api_request *req, unsigned status, json_t *body,
                                       const char *const *headers);
/* Queue {"error":{"code","message","param"}}; param may be NULL (-> JSON null). */
enum MHD_Result api_reply_error(struct api_request *req, enum api_error_code code, const char *param, const char *fmt,
                                ...) _printf_(4, 5);
/* The same with extra headers (NULL-terminated name, value pairs): Allow, Retry-After, WWW-Authenticate. */
enum MHD_Result api_reply_error_headers(struct api_request *req, enum api_error_code code, const char *param,
                                        const char *const *headers, const char *fmt, ...) _printf_(5, 6);
/* Map a store/compute failure (negative errno + ft_error) to the envelope:
 * -ENOENT 404, -EBUSY 409, -EINVAL 400, -EEXIST 409, -EFBIG 413, anything else 500
 * (logged, with a generic message). */
enum MHD_Result api_reply_ft_error(struct api_request *req, int r, const struct ft_error *err);
/* 200 {"id": id, "object": object, "deleted": true}, the answer to every DELETE. */
enum MHD_Result api_reply_deleted(struct api_request *req, const char *object, const char *id);
/* Queue a file as the response body (application/octet-stream or ctype). */
enum MHD_Result api_reply_file(struct api_request *req, const char *path, const char *ctype, const char *download_name);

typedef enum MHD_Result (*api_handler_fn)(struct api_request *req);

/* ---- declarative validation (validate.c) ---------------------------------- */

enum api_type {
        API_T_STRING = 1,
        API_T_INT,
        API_T_NUMBER,
        API_T_BOOL,
        API_T_OBJECT, /* fields: the nested table; NULL = any object (free-form) */
        API_T_MAP_NUMBER, /* an object whose values are numbers (lr_multipliers) */
        API_T_ARRAY_NUMBER, /* an array of numbers, min_items..max_items long */
        API_T_ARRAY_INT,
        API_T_ARRAY_STRING,
        API_T_ARRAY_ARRAY_NUMBER, /* rows of numbers (predict) */
        API_T_ARRAY_OBJECT, /* an array of objects (fields: their table; NULL = free-form) */
        API_T_ANY, /* any JSON value (validated by the handler) */
        API_T_BINARY, /* a file part of a multipart body (OpenAPI only) */
};

struct api_field {
        const char *name;
        enum api_type type;
        bool required;
        double min, max; /* numbers/ints: inclusive bounds (unless min == max == 0) */
        bool exclusive_min; /* min is exclusive (learning_rate > 0) */
        size_t max_len; /* strings: longest (0: 256); arrays: most items (0: 4096) */
        size_t min_items; /* arrays */
        const char *const *choices; /* strings: NULL-terminated allowed values */
        const char *id_prefix; /* strings that are ids: "ds", "mdl", "job" */
        const struct api_field *fields; /* API_T_OBJECT, API_T_ARRAY_OBJECT: nested table, {NULL} terminated */
        const char *description; /* for the OpenAPI document */
        bool nullable; /* response tables: the value may be null */
        bool optional; /* response tables: the member is not always there */
        const char *ref; /* the value is this schema of the OpenAPI document's components ("JobSpec") */
};

/* Check obj against fields: unknown members, wrong types, out-of-range or
 * impossible values and missing required fields fail with err->param naming
 * the field by its dotted path ("hyperparameters.epochs", "preprocess.resize[1]").
 * prefix is the path of obj itself ("" at the top). */
int api_validate(const json_t *obj, const struct api_field *fields, const char *prefix, struct ft_error *err);

/* Parse req->body as a JSON object, refusing more than API_JSON_MAX_DEPTH
 * levels of nesting, trailing data, duplicate keys or a non-object. On error
 * fills err (param NULL, message with line:column). */
int api_json_parse_body(const struct api_request *req, json_t **ret, struct ft_error *err);

/* Parse a body and validate it in one go; on failure queues a 400 and sets
 * *ret_mhd. Returns the object (new reference) or NULL. */
json_t *api_request_json(struct api_request *req, const struct api_field *fields, enum MHD_Result *ret_mhd);

/* JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1) for a field table.
 * API_SCHEMA_REQUEST: what api_validate() accepts (unknown members refused,
 * null for a field that is not required); API_SCHEMA_RESPONSE: an object a
 * handler builds, every member always present, null only where nullable;
 * API_SCHEMA_REFINE: only the properties, to narrow another schema in allOf;
 * API_SCHEMA_FORM: the parts of a multipart/form-data body. */
enum api_schema_mode {
        API_SCHEMA_REQUEST,
        API_SCHEMA_RESPONSE,
        API_SCHEMA_REFINE,
        API_SCHEMA_FORM,
};
json_t *api_schema_object(const struct api_field *fields, enum api_schema_mode mode);
/* api_schema_object(fields, API_SCHEMA_REQUEST). */
json_t *api_fields_schema(const struct api_field *fields);

/* The upload named name (multipart part or "" for a raw body), or NULL. */
struct api_upload *api_upload_get(struct api_request *req, const char *name);

/* Is s a well-formed id "<prefix>_<1..48 of [0-9a-z]>"? */
bool api_id_valid(const char *s, const char *prefix);

/* ---- query strings and pagination --------------------------------------- */

struct api_query_param {
        const char *name;
        enum api_type type; /* API_T_STRING, API_T_INT or API_T_BOOL */
        double min, max;
        const char *const *choices;
        const char *description;
        size_t max_len; /* API_T_STRING: longest value (0: 128) */
};

/* Refuse query arguments the route does not declare, and those with a bad
 * value (400 with param). Returns true when the request may continue; else a
 * response is queued in *ret_mhd. */
bool api_query_check(struct api_request *req, enum MHD_Result *ret_mhd);
/* One argument (key, value after URL unescaping) against a route's table: the
 * check api_query_check runs for each; no connection needed (tests/fuzz). */
int api_query_arg_check(const struct api_query_param *params, const char *key, const char *value, struct ft_error *err);
const char *api_query_get(struct api_request *req, const char *name);
/* The {name} captures of the route, in order. */
const char *api_path_param(struct api_request *req, unsigned i);

/* Path id check: malformed ids are 404 before anything touches the store. */
bool api_path_id(struct api_request *req, unsigned i, const char *prefix, const char *what, const char **ret_id,
                 enum MHD_Result *ret_mhd);
struct store;
/* api_path_id, then the request's store connection (api_store): false with
 * *ret_mhd set when either fails. */
bool api_path_store(struct api_request *req, const char *prefix, const char *what, const char **ret_id,
                    struct store **ret_st, enum MHD_Result *ret_mhd);

#define API_PAGE_LIMIT_DEFAULT 20
#define API_PAGE_LIMIT_MAX 100
struct api_page {
        unsigned limit;
        const char *after; /* id of the last item of the previous page, or NULL */
};
/* Read limit/after (already checked by api_query_check). */
void api_page_from_query(struct api_request *req, struct api_page *page);
/* {"object":"list","data":items,"has_more":b,"next_after":last id or null}; steals items. */
json_t *api_page_envelope(json_t *items, bool has_more, const char *id_key);
/* Its JSON Schema: data items are the component item_ref ("Job"), next_after a
 * cursor_type ("string", or "integer" for events) or null. */
json_t *api_page_schema(const char *item_ref, const char *cursor_type);

/* ---- the route table -------------------------------------------------- */

enum {
        API_ROUTE_PUBLIC = 1u << 0, /* no bearer token needed (/healthz, the dashboard) */
        API_ROUTE_UPLOAD = 1u << 1, /* the body is streamed to files (raw or multipart), not buffered */
        API_ROUTE_JSON = 1u << 2, /* the body is JSON (Content-Type: application/json) */
        API_ROUTE_STREAM = 1u << 3, /* may answer text/event-stream */
        API_ROUTE_BINARY = 1u << 4, /* answers a file (application/octet-stream), not JSON */
        API_ROUTE_IDEMPOTENT = 1u << 5, /* takes Idempotency-Key; a replay answers 200 with the original */
};

struct api_route {
        const char *method; /* "GET", "POST", ... */
        const char *pattern; /* "/v1/jobs/{id}" - a {name} segment captures one path segment */
        api_handler_fn handler;
        unsigned flags;
        uint64_t body_max; /* largest body accepted (0: none allowed / JSON default) */
        const struct api_field *body; /* JSON body fields, for validation and OpenAPI */
        const struct api_query_param *query; /* accepted query arguments, {NULL} terminated */
        const char *summary; /* OpenAPI: one line */
        const char *description; /* OpenAPI: longer text (may be NULL) */
        const char *tag; /* OpenAPI: group */
        unsigned success; /* the success status (200 unless set) */
        const enum api_error_code *errors; /* OpenAPI: the errors it can answer, ended by _API_ERR_MAX */
        const char *const *produces; /* OpenAPI: API_ROUTE_BINARY's media types (NULL: application/octet-stream) */
        const char *body_schema; /* OpenAPI: the JSON body is this component (body, if set, narrows it) */
        const struct api_field *parts; /* OpenAPI: the parts of a multipart/form-data upload */
        const char *reply; /* OpenAPI: the component the success answer is ("Job", "JobList") */
};

/* The route table (routes.c) and dispatch: 404 for an unknown path, 405 with
 * Allow for a known path with another method. */
extern const struct api_route api_routes[];
extern const size_t api_routes_count;

/* Find the route for method+url. Returns the route, or NULL with *ret_status
 * 404 or 405 (and the allowed methods in allow). Captures go to req. */
const struct api_route *api_route_find(struct api_request *req, char *allow, size_t allow_size, unsigned *ret_status);
enum MHD_Result api_dispatch(struct api_request *req);

/* The OpenAPI document built from the route table (openapi.c). */
int api_openapi_build(struct api_server *server);

/* ---- per-thread store connections (db.c) ---------------------------------- */
struct store;
/* The calling thread's store connection, opened on first use and closed by
 * api_server_stop. NULL (and a 503 queued) if it cannot be opened. */
struct store *api_store(struct api_request *req, enum MHD_Result *ret_mhd);
struct store *api_store_thread(struct api_server *server, struct ft_error *err);
void api_store_close_all(void);

/* ---- server-sent events (sse.c) -------------------------------------------- */
int api_sse_hub_new(struct api_server *server, struct api_sse_hub **ret);
void api_sse_shutdown(struct api_sse_hub *hub); /* end every stream (before MHD_stop_daemon) */
void api_sse_hub_free(struct api_sse_hub *hub);
/* Wake every stream waiting on job_id (NULL: all streams). Thread-safe, never blocks on I/O. */
void api_sse_wake(struct api_sse_hub *hub, const char *job_id);
/* Answer req with an event stream for job_id starting after sequence `after`. */
enum MHD_Result api_sse_start(struct api_request *req, const char *job_id, int64_t after);

/* Replace every occurrence of path in msg with label (blob paths never reach clients). */
void api_message_replace(char *msg, size_t size, const char *path, const char *label);
/* Stored JSON text as a value (JSON null when absent or unparsable). */
json_t *api_json_text(const char *text);
struct store_dataset;
struct store_model;
struct store_job;
json_t *api_dataset_json(const struct store_dataset *d);
json_t *api_model_json(const struct store_model *m);
/* A job as the API answers it (GET /v1/jobs/{id}, the list, create, cancel), "best" included. */
json_t *api_job_json(struct api_server *server, struct store *st, const struct store_job *j);
/* The job's "best": {"metric", "mode", "value", "epoch"} or JSON null (best.c). spec and result are the job's
 * parsed spec_json and result_json; borrowed. Returns a new reference. */
json_t *api_job_best_json(struct store *st, const struct store_job *j, const json_t *spec, const json_t *result);

/* ---- response shapes: each table beside the code that builds the answer,
 * for the OpenAPI document (API_SCHEMA_RESPONSE); the contract tests check
 * real answers against them. */
extern const struct api_field api_dataset_shape[]; /* api_dataset_json (datasets.c) */
extern const struct api_field api_model_shape[]; /* api_model_json (models.c) */
extern const struct api_field api_job_shape[]; /* api_job_json (jobs.c) */
extern const struct api_field api_event_shape[]; /* api_jobs_events (jobs.c) */
extern const struct api_field api_checkpoint_shape[]; /* api_jobs_checkpoints (jobs.c) */
extern const struct api_field api_prediction_shape[]; /* api_models_predict (predict.c) */
extern const struct api_field api_evaluation_shape[]; /* api_models_evaluate (evaluate.c) */
extern const struct api_field api_predictions_spec_shape[]; /* a predictions job's "spec" (evaluate.c) */
extern const struct api_field api_deleted_shape[]; /* api_reply_deleted (errors.c) */
extern const struct api_field api_version_shape[]; /* GET /v1/version (routes.c) */
extern const struct api_field api_health_shape[]; /* GET /healthz (routes.c) */
extern const char *const api_job_states[]; /* store_job_state_name() of every state, NULL-terminated */

/* ---- handlers (one file per resource) -------------------------------------- */
enum MHD_Result api_openapi_get(struct api_request *req);

enum MHD_Result api_datasets_create(struct api_request *req);
enum MHD_Result api_datasets_list(struct api_request *req);
enum MHD_Result api_datasets_get(struct api_request *req);
enum MHD_Result api_datasets_delete(struct api_request *req);

extern const struct api_field api_model_create_fields[];
extern const struct api_field api_model_create_parts[]; /* the multipart form of POST /v1/models */
extern const struct api_field api_predict_fields[];
enum MHD_Result api_models_create(struct api_request *req);
enum MHD_Result api_models_list(struct api_request *req);
enum MHD_Result api_models_get(struct api_request *req);
enum MHD_Result api_models_delete(struct api_request *req);
enum MHD_Result api_models_weights(struct api_request *req);
enum MHD_Result api_models_predict(struct api_request *req);
/* What predict and explain share (predict.c): every tensor of m from the weights file f (-EIO naming a missing
 * one), and a request's "rows" or "images" (with "image_shape") as a dataset the loader reads (ds's buffers are
 * the caller's to free, also on failure; -EINVAL naming the row or pixel). */
struct st_file;
struct dataset;
int api_model_weights_load(struct model *m, const struct st_file *f, struct ft_error *err);
int api_predict_input(const json_t *body, const struct model *m, struct dataset *ds, struct ft_error *err);
/* POST /v1/models/{id}/explain (explain.c) */
extern const struct api_field api_explain_fields[];
extern const struct api_field api_explanation_shape[];
enum MHD_Result api_models_explain(struct api_request *req);
extern const struct api_field api_evaluate_fields[];
extern const struct api_field api_predictions_fields[];
enum MHD_Result api_models_evaluate(struct api_request *req);
enum MHD_Result api_models_predictions(struct api_request *req);

/* Header checks of POST /v1/jobs and the event stream, without a connection
 * (tests/fuzz): an Idempotency-Key is 1 to 255 bytes; a Last-Event-ID is a
 * decimal sequence number >= 0 (returns -EINVAL otherwise). */
bool api_idempotency_key_valid(const char *key);
int api_last_event_id_parse(const char *s, int64_t *ret);
enum MHD_Result api_jobs_create(struct api_request *req);
enum MHD_Result api_jobs_list(struct api_request *req);
enum MHD_Result api_jobs_get(struct api_request *req);
enum MHD_Result api_jobs_cancel(struct api_request *req);
/* The rest of POST /v1/jobs once the body is parsed: from_checkpoint, validation, the queue cap, the enqueue
 * (with the Idempotency-Key `key`, may be NULL), the answer. Takes root. Clone uses it too. */
enum MHD_Result api_jobs_submit(struct api_request *req, struct store *st, json_t *root, const char *key);
/* jobctl.c: a spec's from_checkpoint into its "model" (the checkpoint registered as a model, once); a no-op
 * without from_checkpoint. -EINVAL naming the field for what the client got wrong. */
int api_from_checkpoint_resolve(struct api_request *req, struct store *st, json_t *root, struct ft_error *err);
enum MHD_Result api_jobs_checkpoint_model(struct api_request *req);
extern const struct api_field api_checkpoint_model_fields[];
enum MHD_Result api_jobs_clone(struct api_request *req);
enum MHD_Result api_jobs_replay(struct api_request *req);
/* POST /v1/jobs?dry_run=true once the spec passed every check of a submit: the estimate (jobctl.c). */
struct jobspec;
enum MHD_Result api_jobs_dry_run(struct api_request *req, struct store *st, const struct jobspec *spec);
/* A job's "replay" member: null, or {"of", "identical" (null until it succeeded), "differences"} (jobctl.c). */
json_t *api_job_replay_json(struct store *st, const struct store_job *j);
enum MHD_Result api_jobs_pause(struct api_request *req);
enum MHD_Result api_jobs_resume(struct api_request *req);
enum MHD_Result api_jobs_delete(struct api_request *req);
enum MHD_Result api_jobs_events(struct api_request *req);
enum MHD_Result api_jobs_checkpoints(struct api_request *req);
enum MHD_Result api_jobs_artifact(struct api_request *req);
/* Labels on jobs (jobs.c): the "metadata" object of POST /v1/jobs checked against OpenAI's limits (at most 16
 * pairs, keys 1..64 bytes, string values up to 512) and the "suffix" of the model the job produces (1..64 of
 * [A-Za-z0-9._-]); -EINVAL with param naming the member. No connection needed (tests/fuzz). */
int api_job_labels_check(const json_t *metadata, const json_t *suffix, struct ft_error *err);
extern const struct api_field api_job_create_fields[]; /* what POST /v1/jobs takes beside the JobSpec */

/* Webhooks (webhooks.c). */
extern const char *const api_webhook_event_types[]; /* NULL-terminated */
extern const struct api_field api_webhook_create_fields[];
extern const struct api_field api_webhook_shape[];
extern const struct api_field api_webhook_created_shape[]; /* the create's answer: with the secret */
extern const struct api_field api_webhook_delivery_shape[];
extern const struct api_field api_webhook_test_shape[];
/* The URL policy of an endpoint: http(s), no credentials, a host and port, and no internal address literal
 * (localhost included) unless allow names it. -EINVAL with param "url". */
int api_webhook_url_check(const char *url, const struct netaddr_list *allow, struct ft_error *err);
enum MHD_Result api_webhooks_create(struct api_request *req);
enum MHD_Result api_webhooks_list(struct api_request *req);
enum MHD_Result api_webhooks_get(struct api_request *req);
enum MHD_Result api_webhooks_delete(struct api_request *req);
enum MHD_Result api_webhooks_test(struct api_request *req);
enum MHD_Result api_webhooks_deliveries(struct api_request *req);
/* per-example diagnostics (diagnostics.c) */
enum MHD_Result api_jobs_diagnostics(struct api_request *req);
enum MHD_Result api_jobs_examples(struct api_request *req);
enum MHD_Result api_jobs_examples_csv(struct api_request *req);
extern const char *const api_examples_orders[];
/* At submit: the class_weights against the training data's classes (400 for a class it lacks), and the
 * "class_imbalance" warning's message into warning[size] ("" when balanced enough). */
int api_jobs_class_check(const struct jobspec *spec, const json_t *schema, const char *stored_target, char *warning,
                         size_t size, struct ft_error *err);
/* Record a "warning" event of the job (logged when the store refuses it). */
void api_jobs_warn(struct store *st, const char *job_id, const char *code, const char *message);
extern const struct api_field api_example_shape[]; /* api_jobs_examples (diagnostics.c) */
extern const struct api_field api_diagnostics_shape[]; /* api_jobs_diagnostics (diagnostics.c) */
enum MHD_Result api_datasets_images(struct api_request *req); /* images.c */
extern const struct api_field api_images_shape[];
/* The embedded dashboard (static.c): GET / and GET /static/{name}. */
enum MHD_Result api_static_index(struct api_request *req);
enum MHD_Result api_static_file(struct api_request *req);
/* GET /metrics (metrics.c). */
enum MHD_Result api_handle_metrics(struct api_request *req);
