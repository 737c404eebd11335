/* openapi.c - GET /v1/openapi.json: an OpenAPI 3.1 document generated once at
 * start from the tables the daemon validates and answers with, so it cannot
 * drift from what the daemon really does:
 *   - the route table (routes.c): paths, methods, path, query and header
 *     parameters, media types, success and error statuses;
 *   - request bodies: the declarative validation tables (validate.c), the job
 *     spec's schema from its field table (compute/jobspec.h), multipart parts;
 *   - answers: the response shape tables beside the code that builds each
 *     answer (api_job_shape in jobs.c, ...), the list envelope, and the error
 *     envelope with the statuses of the error table (errors.c).
 * Schemas are JSON Schema draft 2020-12 (jsonSchemaDialect), so any JSON
 * Schema validator checks requests and answers with them as they are.
 * Not for: docs/api.md (prose and curl examples, written by hand). */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "compute/jobspec.h"
#include "config.h"

static json_t *ref(const char *kind, const char *name) {
        char r[128];
        snprintf(r, sizeof(r), "#/components/%s/%s", kind, name);
        return json_pack("{s:s}", "$ref", r);
}

/* A job's "spec": a fine-tuning job spec, or a predictions job's (POST /v1/models/{id}/predictions). */
static json_t *any_job_spec(void) {
        return json_pack("{s:[o,o]}", "anyOf", ref("schemas", "JobSpec"), ref("schemas", "PredictionsSpec"));
}

/* The body of POST /v1/jobs: the JobSpec and the API's own labels (jobs.c, api_job_create_fields). */
static json_t *job_create_schema(void) {
        json_t *s = jobspec_schema();
        json_t *props = json_object_get(s, "properties");
        if (!props) {
                json_decref(s);
                return NULL;
        }
        for (const struct api_field *f = api_job_create_fields; f->name; f++) {
                json_t *p = api_schema_object((const struct api_field[]){*f, {NULL}}, API_SCHEMA_REFINE);
                json_t *one = json_object_get(json_object_get(p, "properties"), f->name);
                if (one)
                        json_object_set(props, f->name, one);
                json_decref(p);
        }
        json_t *md = json_object_get(props, "metadata");
        if (md) {
                json_object_set_new(md, "maxProperties", json_integer(16));
                json_object_set_new(md, "propertyNames", json_pack("{s:i,s:i}", "minLength", 1, "maxLength", 64));
                json_object_set_new(md, "additionalProperties",
                                    json_pack("{s:s,s:i}", "type", "string", "maxLength", 512));
        }
        json_t *sfx = json_object_get(props, "suffix");
        if (sfx)
                json_object_set_new(sfx, "pattern", json_string("^[A-Za-z0-9._-]{1,64}$"));
        json_object_set_new(s, "title", json_string("JobCreate"));
        json_object_set_new(s, "description",
                            json_string("POST /v1/jobs: a JobSpec, plus metadata (labels) and suffix (the name of "
                                        "the model it produces), which belong to the API and not to finetuned train"));
        return s;
}

/* components/schemas: each built from its table. */
static const struct component {
        const char *name;
        const struct api_field *shape; /* a response shape table */
        const char *list_of; /* or a list page of this component, */
        const char *cursor; /* whose next_after is of this type */
        json_t *(*build)(void); /* or its own builder */
} components[] = {
        {"JobSpec", .build = jobspec_schema},
        {"JobCreate", .build = job_create_schema},
        {"Error", .build = api_error_schema},
        {"Job", api_job_shape},
        {"JobList", .list_of = "Job", .cursor = "string"},
        {"Event", api_event_shape},
        {"EventList", .list_of = "Event", .cursor = "integer"},
        {"Checkpoint", api_checkpoint_shape},
        {"CheckpointList", .list_of = "Checkpoint", .cursor = "string"},
        {"Dataset", api_dataset_shape},
        {"DatasetList", .list_of = "Dataset", .cursor = "string"},
        {"Model", api_model_shape},
        {"ModelList", .list_of = "Model", .cursor = "string"},
        {"Prediction", api_prediction_shape},
        {"Explanation", api_explanation_shape},
        {"Evaluation", api_evaluation_shape},
        {"PredictionsSpec", api_predictions_spec_shape},
        {"AnyJobSpec", .build = any_job_spec},
        {"Diagnostics", api_diagnostics_shape},
        {"Example", api_example_shape},
        {"ExampleList", .list_of = "Example", .cursor = "integer"},
        {"Images", api_images_shape},
        {"Deleted", api_deleted_shape},
        {"Version", api_version_shape},
        {"Health", api_health_shape},
        {"Webhook", api_webhook_shape},
        {"WebhookCreated", api_webhook_created_shape},
        {"WebhookList", .list_of = "Webhook", .cursor = "string"},
        {"WebhookDelivery", api_webhook_delivery_shape},
        {"WebhookDeliveryList", .list_of = "WebhookDelivery", .cursor = "string"},
        {"WebhookTest", api_webhook_test_shape},
};

static json_t *schemas_build(void) {
        json_t *schemas = json_object();
        for (size_t i = 0; i < ARRAY_SIZE(components); i++) {
                const struct component *c = &components[i];
                json_t *s = c->build   ? c->build()
                            : c->shape ? api_schema_object(c->shape, API_SCHEMA_RESPONSE)
                                       : api_page_schema(c->list_of, c->cursor);
                if (!s || json_object_set_new(schemas, c->name, s) < 0) {
                        json_decref(schemas);
                        return NULL;
                }
        }
        return schemas;
}

static json_t *header(const char *type, const char *description) {
        return json_pack("{s:s,s:{s:s}}", "description", description, "schema", "type", type);
}

/* components/responses: one per error code, named by it ("not_found"), with
 * the envelope and the code it carries. */
static json_t *responses_build(void) {
        json_t *out = json_object();
        for (int i = 0; i < _API_ERR_MAX; i++) {
                const char *name = api_error_code_name(i);
                char text[256];
                snprintf(text, sizeof(text), "%u %s: %s", api_error_http_status(i), name, api_error_description(i));
                json_t *schema = json_pack("{s:[o,{s:s,s:{s:{s:s,s:{s:{s:s}}}}}]}", "allOf", ref("schemas", "Error"),
                                           "type", "object", "properties", "error", "type", "object", "properties",
                                           "code", "const", name);
                json_t *r = json_pack("{s:s,s:{s:{s:o}}}", "description", text, "content", "application/json", "schema",
                                      schema);
                if (i == API_ERR_RATE_LIMITED)
                        json_object_set_new(r, "headers",
                                            json_pack("{s:o}", "Retry-After",
                                                      header("integer", "seconds to wait before retrying")));
                else if (i == API_ERR_METHOD_NOT_ALLOWED)
                        json_object_set_new(r, "headers",
                                            json_pack("{s:o}", "Allow", header("string", "the methods of the path")));
                else if (i == API_ERR_UNAUTHORIZED)
                        json_object_set_new(r, "headers",
                                            json_pack("{s:o}", "WWW-Authenticate", header("string", "Bearer")));
                json_object_set_new(out, name, r);
        }
        json_object_set_new(out, "other",
                            json_pack("{s:s,s:{s:{s:o}}}", "description",
                                      "any other error, in the same envelope: 405 method_not_allowed, 500 "
                                      "internal_error, 503 unavailable",
                                      "content", "application/json", "schema", ref("schemas", "Error")));
        return out;
}

static json_t *parameters(const struct api_route *r) {
        json_t *params = json_array();
        for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{')) {
                const char *e = strchr(p, '}');
                json_array_append_new(params, json_pack("{s:s%,s:s,s:b,s:{s:s}}", "name", p + 1, (size_t)(e - p - 1),
                                                        "in", "path", "required", 1, "schema", "type", "string"));
        }
        for (const struct api_query_param *q = r->query; q && q->name; q++) {
                if (q->type == API_T_OBJECT) { /* NAME[KEY]=VALUE */
                        json_array_append_new(params, json_pack("{s:s,s:s,s:s,s:s,s:b,s:{s:s,s:{s:s,s:i},s:{s:i,s:i}}}",
                                                                "name", q->name, "in", "query", "description",
                                                                q->description ? q->description : "", "style",
                                                                "deepObject", "explode", 1, "schema", "type", "object",
                                                                "additionalProperties", "type", "string", "maxLength",
                                                                (int)q->min, "propertyNames", "minLength", 1,
                                                                "maxLength", (int)q->max));
                        continue;
                }
                json_t *schema = json_pack("{s:s}", "type",
                                           q->type == API_T_INT    ? "integer"
                                           : q->type == API_T_BOOL ? "boolean"
                                                                   : "string");
                if (q->type == API_T_INT) {
                        json_object_set_new(schema, "minimum", json_integer((json_int_t)q->min));
                        json_object_set_new(schema, "maximum", json_integer((json_int_t)q->max));
                }
                if (q->type == API_T_STRING)
                        json_object_set_new(schema, "maxLength",
                                            json_integer((json_int_t)(q->max_len ? q->max_len : 128)));
                if (q->choices) {
                        json_t *e = json_array();
                        for (const char *const *c = q->choices; *c; c++)
                                json_array_append_new(e, json_string(*c));
                        json_object_set_new(schema, "enum", e);
                }
                json_array_append_new(params,
                                      json_pack("{s:s,s:s,s:s,s:o}", "name", q->name, "in", "query", "description",
                                                q->description ? q->description : "", "schema", schema));
        }
        if (r->flags & API_ROUTE_IDEMPOTENT)
                json_array_append_new(params, json_pack("{s:s,s:s,s:s,s:{s:s,s:i,s:i}}", "name", "Idempotency-Key",
                                                        "in", "header", "description",
                                                        "retries with the same key and body return the original "
                                                        "(200, Idempotent-Replayed: true); another body is a 422",
                                                        "schema", "type", "string", "minLength", 1, "maxLength", 255));
        if (r->flags & API_ROUTE_STREAM)
                json_array_append_new(params,
                                      json_pack("{s:s,s:s,s:s,s:{s:s,s:i}}", "name", "Last-Event-ID", "in", "header",
                                                "description", "event streams resume after this sequence number",
                                                "schema", "type", "integer", "minimum", 0));
        return params;
}

static json_t *request_body(const struct api_route *r) {
        json_t *content = json_object();
        bool required = r->flags & API_ROUTE_UPLOAD;
        if (r->flags & API_ROUTE_JSON) {
                json_t *schema;
                if (r->body_schema && r->body)
                        schema = json_pack("{s:[o,o]}", "allOf", ref("schemas", r->body_schema),
                                           api_schema_object(r->body, API_SCHEMA_REFINE));
                else if (r->body_schema)
                        schema = ref("schemas", r->body_schema);
                else if (r->body)
                        schema = api_fields_schema(r->body);
                else
                        schema = json_pack("{s:s,s:i,s:s}", "type", "object", "maxProperties", 0, "description",
                                           "no body, or an empty object");
                required |= r->body_schema != NULL || r->body != NULL;
                json_object_set_new(content, "application/json", json_pack("{s:o}", "schema", schema));
        }
        if (r->flags & API_ROUTE_UPLOAD) {
                if (!(r->flags & API_ROUTE_JSON)) {
                        json_t *raw = json_pack("{s:s,s:s}", "type", "string", "contentMediaType",
                                                "application/octet-stream");
                        json_object_set_new(content, "application/octet-stream", json_pack("{s:O}", "schema", raw));
                        json_object_set_new(
                                content, "text/csv",
                                json_pack("{s:{s:s,s:s}}", "schema", "type", "string", "contentMediaType", "text/csv"));
                        json_decref(raw);
                }
                json_object_set_new(content, "multipart/form-data",
                                    json_pack("{s:o}", "schema",
                                              r->parts ? api_schema_object(r->parts, API_SCHEMA_FORM)
                                                       : json_pack("{s:s}", "type", "object")));
        }
        if (!json_object_size(content)) {
                json_decref(content);
                return NULL;
        }
        return json_pack("{s:b,s:o}", "required", required, "content", content);
}

static json_t *success_content(const struct api_route *r) {
        json_t *content = json_object();
        if (r->flags & API_ROUTE_BINARY) {
                static const char *const octets[] = {"application/octet-stream", NULL};
                for (const char *const *t = r->produces ? r->produces : octets; *t; t++)
                        json_object_set_new(content, *t,
                                            strcmp(*t, "application/json") == 0
                                                    ? json_pack("{s:{s:s}}", "schema", "type", "object")
                                                    : json_pack("{s:{s:s,s:s}}", "schema", "type", "string",
                                                                "contentMediaType", *t));
        } else {
                json_object_set_new(
                        content, "application/json",
                        json_pack("{s:o}", "schema",
                                  r->reply ? ref("schemas", r->reply) : json_pack("{s:s}", "type", "object")));
        }
        if (r->flags & API_ROUTE_STREAM)
                json_object_set_new(content, "text/event-stream",
                                    json_pack("{s:{s:s,s:s,s:s}}", "schema", "type", "string", "contentMediaType",
                                              "text/event-stream", "description",
                                              "Server-Sent Events: 'id:' the event's seq, 'event:' its type, 'data:' "
                                              "its data as JSON; ends after the terminal status event"));
        return content;
}

static json_t *operation(const struct api_route *r) {
        json_t *op = json_object();
        json_object_set_new(op, "summary", json_string(r->summary ? r->summary : r->pattern));
        if (r->description)
                json_object_set_new(op, "description", json_string(r->description));
        json_object_set_new(op, "tags", json_pack("[s]", r->tag ? r->tag : "other"));
        /* operationId: method + path with the braces dropped */
        char opid[128];
        size_t n = (size_t)snprintf(opid, sizeof(opid), "%s", r->method);
        for (const char *p = r->pattern; *p && n + 1 < sizeof(opid); p++)
                opid[n++] = (*p == '/' || *p == '{' || *p == '}' || *p == '.') ? '_' : *p;
        opid[n] = '\0';
        json_object_set_new(op, "operationId", json_string(opid));

        json_t *params = parameters(r);
        if (json_array_size(params))
                json_object_set_new(op, "parameters", params);
        else
                json_decref(params);
        json_t *body = request_body(r);
        if (body)
                json_object_set_new(op, "requestBody", body);

        json_t *responses = json_object();
        unsigned status = r->success ? r->success : 200;
        char ok[16];
        snprintf(ok, sizeof(ok), "%u", status);
        json_t *success = json_pack("{s:s,s:o}", "description", status == 201 ? "created" : "success", "content",
                                    success_content(r));
        if (status == 201)
                json_object_set_new(success, "headers",
                                    json_pack("{s:o}", "Location", header("string", "the new resource's path")));
        if (r->flags & API_ROUTE_IDEMPOTENT) {
                json_t *headers = json_object_get(success, "headers");
                if (!headers) {
                        headers = json_object();
                        json_object_set_new(success, "headers", headers);
                }
                json_object_set_new(headers, "Idempotent-Replayed",
                                    header("boolean", "true when this answers a retry with the same key"));
                json_object_set_new(responses, "200",
                                    json_pack("{s:s,s:o,s:O}", "description",
                                              "a retry with the same Idempotency-Key and body: the original", "content",
                                              success_content(r), "headers", headers));
        }
        json_object_set_new(responses, ok, success);
        for (const enum api_error_code *e = r->errors; e && *e != _API_ERR_MAX; e++) {
                snprintf(ok, sizeof(ok), "%u", api_error_http_status(*e));
                json_object_set_new(responses, ok, ref("responses", api_error_code_name(*e)));
        }
        json_object_set_new(responses, "default", ref("responses", "other"));
        json_object_set_new(op, "responses", responses);
        if (r->flags & API_ROUTE_PUBLIC)
                json_object_set_new(op, "security", json_array());
        return op;
}

int api_openapi_build(struct api_server *server) {
        json_t *paths = json_object(), *tags = json_array();
        for (size_t i = 0; i < api_routes_count; i++) {
                const struct api_route *r = &api_routes[i];
                json_t *item = json_object_get(paths, r->pattern);
                if (!item) {
                        item = json_object();
                        json_object_set_new(paths, r->pattern, item);
                }
                char method[16];
                size_t k;
                for (k = 0; r->method[k] && k + 1 < sizeof(method); k++)
                        method[k] = (char)(r->method[k] | 0x20);
                method[k] = '\0';
                json_object_set_new(item, method, operation(r));
                const char *tag = r->tag ? r->tag : "other";
                bool seen = false;
                for (size_t t = 0; t < json_array_size(tags); t++)
                        seen |= strcmp(json_string_value(json_object_get(json_array_get(tags, t), "name")), tag) == 0;
                if (!seen)
                        json_array_append_new(tags, json_pack("{s:s}", "name", tag));
        }
        json_t *doc = json_pack(
                "{s:s,s:s,s:{s:s,s:s,s:s,s:{s:s,s:s}},s:[{s:s}],s:o,s:o,s:{s:o,s:o,s:{s:{s:s,s:s}}},s:[{s:[]}]}",
                "openapi", "3.1.0", "jsonSchemaDialect", "https://json-schema.org/draft/2020-12/schema", "info",
                "title", "finetuned", "version", FINETUNED_VERSION, "description",
                "Fine-tuning service: upload datasets and models, run fine-tuning jobs, stream their events. "
                "Errors are {\"error\":{\"code\",\"message\",\"param\"}}. docs/api.md has curl examples, "
                "docs/job-spec.md the job spec.",
                "license", "name", "MIT", "identifier", "MIT", "servers", "url", "/", "tags", tags, "paths", paths,
                "components", "schemas", schemas_build(), "responses", responses_build(), "securitySchemes", "bearer",
                "type", "http", "scheme", "bearer", "security", "bearer");
        if (!doc)
                return -ENOMEM;
        server->openapi = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
        json_decref(doc);
        if (!server->openapi)
                return -ENOMEM;
        server->openapi_len = strlen(server->openapi);
        return 0;
}

enum MHD_Result api_openapi_get(struct api_request *req) {
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(req->server->openapi_len, req->server->openapi, MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        enum MHD_Result ret = MHD_queue_response(req->conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}
