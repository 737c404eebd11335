/* validate.c - declarative request validation: JSON bodies checked against a
 * table of fields (types, bounds, choices, nested objects), query strings
 * against the route's declared arguments, ids in paths, cursor pagination, and
 * the JSON Schema of a field table (request, response or form) and of a list
 * page for the OpenAPI document.
 * Not for: checks that need the store (ids that exist, columns of a dataset):
 * handlers do those after this has passed. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"

bool api_id_valid(const char *s, const char *prefix) {
        if (!s)
                return false;
        size_t pn = strlen(prefix);
        if (strncmp(s, prefix, pn) != 0 || s[pn] != '_')
                return false;
        const char *rest = s + pn + 1;
        size_t n = strlen(rest);
        if (n == 0 || n > 48)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = rest[i];
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
                        return false;
        }
        return true;
}

static const char *type_name(enum api_type t) {
        switch (t) {
        case API_T_STRING: return "a string";
        case API_T_INT: return "an integer";
        case API_T_NUMBER: return "a number";
        case API_T_BOOL: return "true or false";
        case API_T_OBJECT:
        case API_T_MAP_NUMBER: return "an object";
        case API_T_ARRAY_NUMBER: return "an array of numbers";
        case API_T_ARRAY_INT: return "an array of integers";
        case API_T_ARRAY_STRING: return "an array of strings";
        case API_T_ARRAY_ARRAY_NUMBER: return "an array of arrays of numbers";
        case API_T_ARRAY_OBJECT: return "an array of objects";
        case API_T_BINARY: return "a file";
        case API_T_ANY: return "a JSON value";
        }
        return "a value";
}

static bool bounded(const struct api_field *f) {
        return !(f->min == 0 && f->max == 0);
}

static int check_number(double v, bool is_int, const struct api_field *f, const char *path, struct ft_error *err) {
        if (!isfinite(v))
                return ft_error_set(err, -EINVAL, path, "'%s' must be a finite number", path);
        if (is_int && v != floor(v))
                return ft_error_set(err, -EINVAL, path, "'%s' must be an integer", path);
        if (!bounded(f))
                return 0;
        bool low = f->exclusive_min ? v <= f->min : v < f->min;
        if (low || v > f->max) {
                if (is_int)
                        return ft_error_set(err, -EINVAL, path, "'%s' must be from %.0f to %.0f, got %.17g", path,
                                            f->min, f->max, v);
                return ft_error_set(err, -EINVAL, path, "'%s' must be %s %g and at most %g, got %.17g", path,
                                    f->exclusive_min ? "greater than" : "at least", f->min, f->max, v);
        }
        return 0;
}

static int check_value(const json_t *v, const struct api_field *f, const char *path, struct ft_error *err);

static int check_array(const json_t *v, const struct api_field *f, const char *path, struct ft_error *err) {
        size_t max = f->max_len ? f->max_len : 4096, n = json_array_size(v);
        if (n < f->min_items || n > max) {
                if (f->min_items == max)
                        return ft_error_set(err, -EINVAL, path, "'%s' must have exactly %zu items, got %zu", path, max,
                                            n);
                return ft_error_set(err, -EINVAL, path, "'%s' must have from %zu to %zu items, got %zu", path,
                                    f->min_items, max, n);
        }
        struct api_field item = *f;
        item.max_len = 0;
        item.min_items = 0;
        switch (f->type) {
        case API_T_ARRAY_NUMBER: item.type = API_T_NUMBER; break;
        case API_T_ARRAY_INT: item.type = API_T_INT; break;
        case API_T_ARRAY_STRING: item.type = API_T_STRING; break;
        case API_T_ARRAY_OBJECT: item.type = API_T_OBJECT; break;
        default: /* API_T_ARRAY_ARRAY_NUMBER: each row an array of numbers, up to 65536 wide */
                item.type = API_T_ARRAY_NUMBER;
                item.max_len = 65536;
                item.min_items = 1;
                break;
        }
        for (size_t i = 0; i < n; i++) {
                char sub[FT_ERROR_PARAM_MAX];
                snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
                int r = check_value(json_array_get(v, i), &item, sub, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_value(const json_t *v, const struct api_field *f, const char *path, struct ft_error *err) {
        switch (f->type) {
        case API_T_STRING: {
                if (!json_is_string(v))
                        break;
                const char *s = json_string_value(v);
                size_t n = json_string_length(v), max = f->max_len ? f->max_len : 256;
                if (n > max)
                        return ft_error_set(err, -EINVAL, path, "'%s' is longer than %zu characters", path, max);
                if (strlen(s) != n)
                        return ft_error_set(err, -EINVAL, path, "'%s' must not contain NUL characters", path);
                if (f->id_prefix && !api_id_valid(s, f->id_prefix))
                        return ft_error_set(err, -EINVAL, path, "'%s' must be an id starting with '%s_', got '%.64s'",
                                            path, f->id_prefix, s);
                if (f->choices) {
                        char list[256] = "";
                        for (const char *const *c = f->choices; *c; c++) {
                                if (strcmp(*c, s) == 0)
                                        return 0;
                                size_t len = strlen(list);
                                snprintf(list + len, sizeof(list) - len, "%s'%s'", len ? ", " : "", *c);
                        }
                        return ft_error_set(err, -EINVAL, path, "'%s' must be one of %s, got '%.64s'", path, list, s);
                }
                return 0;
        }
        case API_T_INT:
                if (!json_is_integer(v) && !(json_is_real(v) && json_real_value(v) == floor(json_real_value(v))))
                        break;
                return check_number(json_number_value(v), true, f, path, err);
        case API_T_NUMBER:
                if (!json_is_number(v))
                        break;
                return check_number(json_number_value(v), false, f, path, err);
        case API_T_BOOL:
                if (!json_is_boolean(v))
                        break;
                return 0;
        case API_T_OBJECT:
                if (!json_is_object(v))
                        break;
                return f->fields ? api_validate(v, f->fields, path, err) : 0;
        case API_T_MAP_NUMBER: {
                if (!json_is_object(v))
                        break;
                if (json_object_size(v) > (f->max_len ? f->max_len : 256))
                        return ft_error_set(err, -EINVAL, path, "'%s' has too many entries", path);
                const char *k;
                json_t *val;
                struct api_field item = *f;
                item.type = API_T_NUMBER;
                json_object_foreach((json_t *)v, k, val) {
                        char sub[FT_ERROR_PARAM_MAX];
                        snprintf(sub, sizeof(sub), "%s.%s", path, k);
                        int r = check_value(val, &item, sub, err);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        case API_T_ARRAY_NUMBER:
        case API_T_ARRAY_INT:
        case API_T_ARRAY_STRING:
        case API_T_ARRAY_ARRAY_NUMBER:
        case API_T_ARRAY_OBJECT:
                if (!json_is_array(v))
                        break;
                return check_array(v, f, path, err);
        case API_T_ANY:
        case API_T_BINARY: return 0;
        }
        return ft_error_set(err, -EINVAL, path, "'%s' must be %s", path, type_name(f->type));
}

int api_validate(const json_t *obj, const struct api_field *fields, const char *prefix, struct ft_error *err) {
        const char *key;
        json_t *v;
        char path[FT_ERROR_PARAM_MAX];

        if (!json_is_object(obj))
                return ft_error_set(err, -EINVAL, prefix, "'%s' must be an object", *prefix ? prefix : "body");
        json_object_foreach((json_t *)obj, key, v) {
                const struct api_field *f = fields;
                while (f->name && strcmp(f->name, key) != 0)
                        f++;
                snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
                if (!f->name)
                        return ft_error_set(err, -EINVAL, path, "unknown field '%s'", path);
                if (json_is_null(v) && !f->required)
                        continue; /* null means "the default" */
                int r = check_value(v, f, path, err);
                if (r < 0)
                        return r;
        }
        for (const struct api_field *f = fields; f->name; f++) {
                if (!f->required)
                        continue;
                json_t *got = json_object_get(obj, f->name);
                if (!got || json_is_null(got)) {
                        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", f->name);
                        return ft_error_set(err, -EINVAL, path, "missing required field '%s'", path);
                }
        }
        return 0;
}

/* Nesting depth of a JSON text, counted outside strings; a quick scan before
 * jansson builds anything, so deep input costs no memory. */
static bool json_depth_ok(const char *s, size_t n, unsigned max) {
        unsigned depth = 0;
        bool in_str = false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (in_str) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_str = false;
                } else if (c == '"') {
                        in_str = true;
                } else if (c == '{' || c == '[') {
                        if (++depth > max)
                                return false;
                } else if ((c == '}' || c == ']') && depth > 0) {
                        depth--;
                }
        }
        return true;
}

int api_json_parse_body(const struct api_request *req, json_t **ret, struct ft_error *err) {
        if (!req->body || req->body_size == 0)
                return ft_error_set(err, -EINVAL, NULL, "the request body is empty: send a JSON object");
        if (!json_depth_ok(req->body, req->body_size, API_JSON_MAX_DEPTH))
                return ft_error_set(err, -EINVAL, NULL, "the request body is nested more than %d levels deep",
                                    API_JSON_MAX_DEPTH);
        json_error_t jerr;
        json_t *j = json_loadb(req->body, req->body_size, JSON_REJECT_DUPLICATES, &jerr);
        if (!j)
                return ft_error_set(err, -EINVAL, NULL, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                                    jerr.text);
        if (!json_is_object(j)) {
                json_decref(j);
                return ft_error_set(err, -EINVAL, NULL, "the request body must be a JSON object");
        }
        *ret = j;
        return 0;
}

json_t *api_request_json(struct api_request *req, const struct api_field *fields, enum MHD_Result *ret_mhd) {
        struct ft_error err = {0};
        json_t *j = NULL;
        int r = api_json_parse_body(req, &j, &err);
        if (r == 0 && fields)
                r = api_validate(j, fields, "", &err);
        if (r < 0) {
                json_decref(j);
                *ret_mhd = api_reply_error(req, API_ERR_INVALID_REQUEST, err.param, "%s", err.message);
                return NULL;
        }
        return j;
}

/* ---- JSON Schema of a table (the OpenAPI 3.1 dialect, draft 2020-12) ------- */

/* A bound as JSON: an integer when it is one (100, not 100.0). */
static json_t *schema_number(double x) {
        if (x == floor(x) && fabs(x) < 9007199254740992.0)
                return json_integer((json_int_t)x);
        return json_real(x);
}

static json_t *schema_ref(const char *name) {
        char ref[128];
        snprintf(ref, sizeof(ref), "#/components/schemas/%s", name);
        return json_pack("{s:s}", "$ref", ref);
}

static json_t *field_schema(const struct api_field *f, enum api_schema_mode mode) {
        bool nullable = mode == API_SCHEMA_RESPONSE ? f->nullable : mode != API_SCHEMA_FORM && !f->required;
        bool bounds = mode != API_SCHEMA_RESPONSE; /* answers are not capped; requests are */
        const char *type = NULL;
        json_t *s;
        if (f->ref) {
                s = schema_ref(f->ref);
                if (nullable)
                        s = json_pack("{s:[o,{s:s}]}", "anyOf", s, "type", "null");
                if (s && f->description)
                        json_object_set_new(s, "description", json_string(f->description));
                return s;
        }
        s = json_object();
        switch (f->type) {
        case API_T_STRING:
                type = "string";
                if (bounds)
                        json_object_set_new(s, "maxLength", json_integer((json_int_t)(f->max_len ? f->max_len : 256)));
                if (f->id_prefix) {
                        char pat[64];
                        snprintf(pat, sizeof(pat), "^%s_[0-9A-Za-z]{1,48}$", f->id_prefix);
                        json_object_set_new(s, "pattern", json_string(pat));
                }
                if (f->choices) {
                        json_t *e = json_array();
                        for (const char *const *c = f->choices; *c; c++)
                                json_array_append_new(e, json_string(*c));
                        if (nullable)
                                json_array_append_new(e, json_null());
                        json_object_set_new(s, "enum", e);
                }
                break;
        case API_T_INT:
        case API_T_NUMBER:
                type = f->type == API_T_INT ? "integer" : "number";
                if (bounded(f)) {
                        json_object_set_new(s, f->exclusive_min ? "exclusiveMinimum" : "minimum",
                                            schema_number(f->min));
                        json_object_set_new(s, "maximum", schema_number(f->max));
                }
                break;
        case API_T_BOOL: type = "boolean"; break;
        case API_T_OBJECT:
                type = "object";
                if (f->fields) {
                        json_decref(s);
                        s = api_schema_object(f->fields, mode == API_SCHEMA_RESPONSE ? mode : API_SCHEMA_REQUEST);
                }
                break;
        case API_T_MAP_NUMBER:
                type = "object";
                json_object_set_new(s, "additionalProperties", json_pack("{s:s}", "type", "number"));
                if (bounds)
                        json_object_set_new(s, "maxProperties",
                                            json_integer((json_int_t)(f->max_len ? f->max_len : 256)));
                break;
        case API_T_ARRAY_NUMBER:
        case API_T_ARRAY_INT:
        case API_T_ARRAY_STRING:
        case API_T_ARRAY_ARRAY_NUMBER:
        case API_T_ARRAY_OBJECT: {
                type = "array";
                json_t *item;
                if (f->type == API_T_ARRAY_ARRAY_NUMBER)
                        item = json_pack("{s:s,s:{s:s},s:i,s:i}", "type", "array", "items", "type", "number",
                                         "minItems", 1, "maxItems", 65536);
                else if (f->type == API_T_ARRAY_OBJECT)
                        item = f->fields ? api_schema_object(f->fields,
                                                             mode == API_SCHEMA_RESPONSE ? mode : API_SCHEMA_REQUEST)
                                         : json_pack("{s:s}", "type", "object");
                else {
                        item = json_pack("{s:s}", "type",
                                         f->type == API_T_ARRAY_INT      ? "integer"
                                         : f->type == API_T_ARRAY_STRING ? "string"
                                                                         : "number");
                        if (bounded(f) && f->type != API_T_ARRAY_STRING) {
                                json_object_set_new(item, "minimum", schema_number(f->min));
                                json_object_set_new(item, "maximum", schema_number(f->max));
                        }
                }
                json_object_set_new(s, "items", item);
                if (bounds) {
                        json_object_set_new(s, "minItems", json_integer((json_int_t)f->min_items));
                        json_object_set_new(s, "maxItems", json_integer((json_int_t)(f->max_len ? f->max_len : 4096)));
                }
                break;
        }
        case API_T_ANY: break;
        case API_T_BINARY:
                type = "string";
                json_object_set_new(s, "contentMediaType", json_string("application/octet-stream"));
                break;
        }
        if (!s)
                return NULL;
        if (type)
                json_object_set_new(s, "type", nullable ? json_pack("[ss]", type, "null") : json_string(type));
        if (f->description)
                json_object_set_new(s, "description", json_string(f->description));
        return s;
}

json_t *api_schema_object(const struct api_field *fields, enum api_schema_mode mode) {
        json_t *props = json_object(), *required = json_array();
        for (const struct api_field *f = fields; f->name; f++) {
                json_object_set_new(props, f->name, field_schema(f, mode));
                if (mode == API_SCHEMA_RESPONSE ? !f->optional : f->required && mode != API_SCHEMA_REFINE)
                        json_array_append_new(required, json_string(f->name));
        }
        json_t *s = json_pack("{s:s,s:o}", "type", "object", "properties", props);
        if (s && mode != API_SCHEMA_REFINE)
                json_object_set_new(s, "additionalProperties", json_false());
        if (s && json_array_size(required))
                json_object_set_new(s, "required", required);
        else
                json_decref(required);
        return s;
}

json_t *api_fields_schema(const struct api_field *fields) {
        return api_schema_object(fields, API_SCHEMA_REQUEST);
}

json_t *api_page_schema(const char *item_ref, const char *cursor_type) {
        return json_pack("{s:s,s:{s:{s:s,s:[s]},s:{s:s,s:o},s:{s:s},s:{s:[ss],s:s}},s:[ssss],s:b}", "type", "object",
                         "properties", "object", "type", "string", "enum", "list", "data", "type", "array", "items",
                         schema_ref(item_ref), "has_more", "type", "boolean", "next_after", "type", cursor_type, "null",
                         "description", "the cursor for the next page (after=), null on the last page", "required",
                         "object", "data", "has_more", "next_after", "additionalProperties", 0);
}

/* ---- query strings ---------------------------------------------------------- */

struct query_check {
        struct api_request *req;
        char param[FT_ERROR_PARAM_MAX];
        char message[FT_ERROR_MSG_MAX];
        bool bad;
};

int api_query_arg_check(const struct api_query_param *params, const char *key, const char *value,
                        struct ft_error *err) {
        const struct api_query_param *q = params;
        size_t kl = strlen(key);
        /* API_T_OBJECT: a deepObject, NAME[SUBKEY]=VALUE (metadata[team]=vision) */
        while (q && q->name &&
               (q->type == API_T_OBJECT ? !(strncmp(key, q->name, strlen(q->name)) == 0 &&
                                            key[strlen(q->name)] == '[' && key[kl - 1] == ']')
                                        : strcmp(q->name, key) != 0))
                q++;
        char param[64];
        snprintf(param, sizeof(param), "%.60s", key);
        if (!q || !q->name)
                return ft_error_set(err, -EINVAL, param, "unknown query parameter '%.60s'", key);
        const char *v = value ? value : "";
        if (q->type == API_T_OBJECT) {
                size_t sub = kl - strlen(q->name) - 2;
                if (sub < 1 || sub > (size_t)q->max || strlen(v) > (size_t)q->min)
                        return ft_error_set(err, -EINVAL, param,
                                            "query parameter '%s[KEY]' needs a KEY of 1 to %.0f characters and a "
                                            "value of at most %.0f",
                                            q->name, q->max, q->min);
                return 0;
        }
        if (q->type == API_T_INT) {
                char *end;
                errno = 0;
                long long n = strtoll(v, &end, 10);
                if (!*v || *end || errno || n < (long long)q->min || n > (long long)q->max)
                        return ft_error_set(err, -EINVAL, param,
                                            "query parameter '%s' must be an integer from %.0f to %.0f", q->name,
                                            q->min, q->max);
        } else if (q->type == API_T_BOOL) {
                if (strcmp(v, "true") && strcmp(v, "false") && strcmp(v, "1") && strcmp(v, "0"))
                        return ft_error_set(err, -EINVAL, param, "query parameter '%s' must be true or false", q->name);
        } else {
                if (strlen(v) > (q->max_len ? q->max_len : 128))
                        return ft_error_set(err, -EINVAL, param, "query parameter '%s' is too long", q->name);
                if (q->choices) {
                        const char *const *c = q->choices;
                        while (*c && strcmp(*c, v) != 0)
                                c++;
                        if (!*c)
                                return ft_error_set(err, -EINVAL, param,
                                                    "query parameter '%s' has an unknown value '%.60s'", q->name, v);
                }
        }
        return 0;
}

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        struct query_check *qc = cls;
        struct ft_error err = {0};
        if (api_query_arg_check(qc->req->route->query, key, value, &err) == 0)
                return MHD_YES;
        snprintf(qc->param, sizeof(qc->param), "%s", err.param);
        snprintf(qc->message, sizeof(qc->message), "%s", err.message);
        qc->bad = true;
        return MHD_NO;
}

bool api_query_check(struct api_request *req, enum MHD_Result *ret_mhd) {
        struct query_check qc = {.req = req};
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_iter, &qc);
        if (qc.bad) {
                *ret_mhd = api_reply_error(req, API_ERR_INVALID_REQUEST, qc.param, "%s", qc.message);
                return false;
        }
        return true;
}

const char *api_query_get(struct api_request *req, const char *name) {
        return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *api_path_param(struct api_request *req, unsigned i) {
        return i < req->n_path_params ? req->path_params[i] : NULL;
}

bool api_path_id(struct api_request *req, unsigned i, const char *prefix, const char *what, const char **ret_id,
                 enum MHD_Result *ret_mhd) {
        const char *id = api_path_param(req, i);
        if (!api_id_valid(id, prefix)) {
                *ret_mhd = api_reply_error(req, API_ERR_NOT_FOUND, "id", "no %s '%.64s' (%s ids look like '%s_...')",
                                           what, id ? id : "", what, prefix);
                return false;
        }
        *ret_id = id;
        return true;
}

bool api_path_store(struct api_request *req, const char *prefix, const char *what, const char **ret_id,
                    struct store **ret_st, enum MHD_Result *ret_mhd) {
        const char *id;
        if (!api_path_id(req, 0, prefix, what, &id, ret_mhd))
                return false;
        struct store *st = api_store(req, ret_mhd);
        if (!st)
                return false;
        *ret_id = id;
        *ret_st = st;
        return true;
}

void api_page_from_query(struct api_request *req, struct api_page *page) {
        const char *l = api_query_get(req, "limit");
        page->limit = l ? (unsigned)strtoul(l, NULL, 10) : API_PAGE_LIMIT_DEFAULT;
        const char *a = api_query_get(req, "after");
        page->after = a && *a ? a : NULL;
}

json_t *api_page_envelope(json_t *items, bool has_more, const char *id_key) {
        json_t *last = json_array_size(items)
                               ? json_object_get(json_array_get(items, json_array_size(items) - 1), id_key)
                               : NULL;
        return json_pack("{s:s,s:o,s:b,s:O}", "object", "list", "data", items, "has_more", has_more, "next_after",
                         has_more && last ? last : json_null());
}
