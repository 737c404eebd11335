/* openapi.c - GET /v1/openapi.json: an OpenAPI 3.0 document generated once at
 * start from the route table (paths, methods, path and query parameters,
 * request bodies from the validation tables, success and error statuses), so
 * it cannot drift from the routes the daemon really serves.
 * Not for: docs/api.md (prose and curl examples, written by hand). */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "config.h"

static json_t *error_schema(void) {
        return json_pack("{s:s,s:{s:{s:s,s:{s:{s:s},s:{s:s},s:{s:s,s:b}},s:[sss]}},s:[s]}", "type", "object",
                         "properties", "error", "type", "object", "properties", "code", "type", "string", "message",
                         "type", "string", "param", "type", "string", "nullable", 1, "required", "code", "message",
                         "param", "required", "error");
}

static const char *status_text(const char *code) {
        static const struct {
                const char *code, *text;
        } t[] = {
                {"400", "invalid request: a bad field (param names it), query argument or JSON"},
                {"401", "missing or wrong bearer token"},
                {"404", "no such resource (or a malformed id)"},
                {"409", "conflict with the resource's state (in use, already finished)"},
                {"413", "request body over this endpoint's cap"},
                {"415", "unsupported Content-Type"},
                {"422", "Idempotency-Key reused with a different body"},
                {"429", "too many queued jobs; retry after Retry-After seconds"},
        };
        for (size_t i = 0; i < ARRAY_SIZE(t); i++)
                if (strcmp(t[i].code, code) == 0)
                        return t[i].text;
        return "error";
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

        json_t *params = json_array();
        for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{')) {
                const char *e = strchr(p, '}');
                json_array_append_new(params, json_pack("{s:s%,s:s,s:b,s:{s:s}}", "name", p + 1, (size_t)(e - p - 1),
                                                        "in", "path", "required", 1, "schema", "type", "string"));
        }
        for (const struct api_query_param *q = r->query; q && q->name; q++) {
                json_t *schema = json_pack("{s:s}", "type",
                                           q->type == API_T_INT    ? "integer"
                                           : q->type == API_T_BOOL ? "boolean"
                                                                   : "string");
                if (q->type == API_T_INT) {
                        json_object_set_new(schema, "minimum", json_real(q->min));
                        json_object_set_new(schema, "maximum", json_real(q->max));
                }
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
        if (strcmp(r->pattern, "/v1/jobs") == 0 && strcmp(r->method, "POST") == 0)
                json_array_append_new(params, json_pack("{s:s,s:s,s:s,s:{s:s,s:i}}", "name", "Idempotency-Key", "in",
                                                        "header", "description",
                                                        "retries with the same key and body return the original job",
                                                        "schema", "type", "string", "maxLength", 256));
        if (r->flags & API_ROUTE_STREAM)
                json_array_append_new(params,
                                      json_pack("{s:s,s:s,s:s,s:{s:s}}", "name", "Last-Event-ID", "in", "header",
                                                "description", "event streams resume after this sequence number",
                                                "schema", "type", "integer"));
        if (json_array_size(params))
                json_object_set_new(op, "parameters", params);
        else
                json_decref(params);

        json_t *content = json_object();
        if ((r->flags & API_ROUTE_JSON))
                json_object_set_new(content, "application/json",
                                    json_pack("{s:o}", "schema",
                                              r->body ? api_fields_schema(r->body)
                                                      : json_pack("{s:s,s:s}", "type", "object", "description",
                                                                  strcmp(r->pattern, "/v1/jobs") == 0
                                                                          ? "the job spec: see docs/job-spec.md"
                                                                          : "empty or {}")));
        if (r->flags & API_ROUTE_UPLOAD) {
                if (!(r->flags & API_ROUTE_JSON))
                        json_object_set_new(content, "application/octet-stream",
                                            json_pack("{s:{s:s,s:s}}", "schema", "type", "string", "format", "binary"));
                json_object_set_new(content, "multipart/form-data", json_pack("{s:{s:s}}", "schema", "type", "object"));
        }
        if (json_object_size(content))
                json_object_set_new(op, "requestBody",
                                    json_pack("{s:b,s:o}", "required",
                                              !!(r->flags & API_ROUTE_UPLOAD) ||
                                                      (strcmp(r->method, "POST") == 0 && r->body != NULL),
                                              "content", content));
        else
                json_decref(content);

        json_t *responses = json_object();
        char ok[16];
        snprintf(ok, sizeof(ok), "%u", r->success ? r->success : 200);
        json_t *ok_content;
        if (r->flags & API_ROUTE_BINARY) {
                static const char *const octets[] = {"application/octet-stream", NULL};
                ok_content = json_object();
                for (const char *const *t = r->produces ? r->produces : octets; *t; t++)
                        json_object_set_new(
                                ok_content, *t,
                                strncmp(*t, "text/", 5) == 0 || strcmp(*t, "application/json") == 0
                                        ? json_pack("{s:{s:s}}", "schema", "type", "string")
                                        : json_pack("{s:{s:s,s:s}}", "schema", "type", "string", "format", "binary"));
        } else
                ok_content = json_pack("{s:{s:{s:s}}}", "application/json", "schema", "type", "object");
        if (r->flags & API_ROUTE_STREAM)
                json_object_set_new(ok_content, "text/event-stream",
                                    json_pack("{s:{s:s}}", "schema", "type", "string"));
        json_object_set_new(responses, ok, json_pack("{s:s,s:o}", "description", "success", "content", ok_content));
        for (const char *const *e = r->errors; e && *e; e++)
                json_object_set_new(responses, *e,
                                    json_pack("{s:s,s:{s:{s:{s:s}}}}", "description", status_text(*e), "content",
                                              "application/json", "schema", "$ref", "#/components/schemas/Error"));
        json_object_set_new(op, "responses", responses);
        if (r->flags & API_ROUTE_PUBLIC)
                json_object_set_new(op, "security", json_array());
        return op;
}

int api_openapi_build(struct api_server *server) {
        json_t *paths = json_object();
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
        }
        json_t *doc =
                json_pack("{s:s,s:{s:s,s:s,s:s},s:[{s:s}],s:o,s:{s:{s:o},s:{s:{s:s,s:s}}},s:[{s:[]}]}", "openapi",
                          "3.0.3", "info", "title", "finetuned", "version", FINETUNED_VERSION, "description",
                          "Fine-tuning service: upload datasets and models, run fine-tuning jobs, stream their events. "
                          "Errors are {\"error\":{\"code\",\"message\",\"param\"}}. docs/api.md has curl examples.",
                          "servers", "url", "/", "paths", paths, "components", "schemas", "Error", error_schema(),
                          "securitySchemes", "bearer", "type", "http", "scheme", "bearer", "security", "bearer");
        if (!doc)
                return -ENOMEM;
        server->openapi = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
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
