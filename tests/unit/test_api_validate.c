/* test_api_validate.c - the API's declarative request validation: field
 * tables (types, bounds, choices, ids, nested objects, arrays), the param path
 * named on failure, JSON body parsing limits, ids, the OpenAPI schema of a
 * table (request and response), and the enums of the response shapes against
 * the store's and the error table's names. */
#include <string.h>

#include "api/internal.h"
#include "store/store.h"
#include "tests/tap.h"

static const char *const colours[] = {"red", "green", NULL};
static const struct api_field inner[] = {
        {"epochs", API_T_INT, .min = 1, .max = 100},
        {"rate", API_T_NUMBER, .min = 0, .max = 1, .exclusive_min = true},
        {NULL},
};
static const struct api_field fields[] = {
        {"name", API_T_STRING, .required = true, .max_len = 8},
        {"colour", API_T_STRING, .choices = colours},
        {"model", API_T_STRING, .id_prefix = "mdl"},
        {"flag", API_T_BOOL},
        {"hp", API_T_OBJECT, .fields = inner},
        {"resize", API_T_ARRAY_INT, .min = 1, .max = 4096, .min_items = 2, .max_len = 2},
        {"mult", API_T_MAP_NUMBER},
        {"rows", API_T_ARRAY_ARRAY_NUMBER, .min_items = 1, .max_len = 3},
        {"free", API_T_OBJECT},
        {NULL},
};

/* Validate text; return the param of the error ("" when valid). */
static const char *check(const char *text) {
        static struct ft_error err;
        memset(&err, 0, sizeof(err));
        json_t *j = json_loads(text, 0, NULL);
        if (!j)
                return "(bad test JSON)";
        int r = api_validate(j, fields, "", &err);
        json_decref(j);
        return r == 0 ? "" : err.param;
}

static int parse(const char *body) {
        struct api_request req = {.body = body, .body_size = body ? strlen(body) : 0};
        json_t *j = NULL;
        struct ft_error err = {0};
        int r = api_json_parse_body(&req, &j, &err);
        json_decref(j);
        return r;
}

int main(void) {
        is_str(check("{\"name\": \"a\"}"), "", "a minimal valid object");
        is_str(check("{\"name\": \"a\", \"colour\": \"red\", \"model\": \"mdl_abc123\", \"flag\": true, "
                     "\"hp\": {\"epochs\": 3, \"rate\": 0.5}, \"resize\": [64, 64], \"mult\": {\"fc.*\": 10}, "
                     "\"rows\": [[1, 2], [3]], \"free\": {\"anything\": [1]}}"),
               "", "every field valid");
        is_str(check("{\"name\": \"a\", \"colour\": null}"), "", "null means the default");
        is_str(check("{}"), "name", "missing required field");
        is_str(check("{\"name\": null}"), "name", "null for a required field");
        is_str(check("{\"name\": \"a\", \"bogus\": 1}"), "bogus", "unknown field");
        is_str(check("{\"name\": 5}"), "name", "wrong type: number for string");
        is_str(check("{\"name\": \"too long a name\"}"), "name", "string over max_len");
        is_str(check("{\"name\": \"a\", \"colour\": \"blue\"}"), "colour", "value outside the choices");
        is_str(check("{\"name\": \"a\", \"model\": \"ds_abc\"}"), "model", "id with the wrong prefix");
        is_str(check("{\"name\": \"a\", \"model\": \"mdl_../../x\"}"), "model", "id with path characters");
        is_str(check("{\"name\": \"a\", \"flag\": 1}"), "flag", "number for a bool");
        is_str(check("{\"name\": \"a\", \"hp\": {\"epochs\": 0}}"), "hp.epochs", "nested: int below min");
        is_str(check("{\"name\": \"a\", \"hp\": {\"epochs\": 2.5}}"), "hp.epochs", "nested: fractional int");
        is_str(check("{\"name\": \"a\", \"hp\": {\"epochs\": 3.0}}"), "", "3.0 is an integer");
        is_str(check("{\"name\": \"a\", \"hp\": {\"rate\": 0}}"), "hp.rate", "exclusive minimum");
        is_str(check("{\"name\": \"a\", \"hp\": {\"rate\": 1.5}}"), "hp.rate", "above max");
        is_str(check("{\"name\": \"a\", \"hp\": {\"extra\": 1}}"), "hp.extra", "unknown nested field");
        is_str(check("{\"name\": \"a\", \"hp\": [1]}"), "hp", "array for an object");
        is_str(check("{\"name\": \"a\", \"resize\": [64]}"), "resize", "array too short");
        is_str(check("{\"name\": \"a\", \"resize\": [64, 0]}"), "resize[1]", "array item out of range");
        is_str(check("{\"name\": \"a\", \"resize\": [64, \"x\"]}"), "resize[1]", "array item of the wrong type");
        is_str(check("{\"name\": \"a\", \"mult\": {\"fc.*\": \"ten\"}}"), "mult.fc.*", "map value of the wrong type");
        is_str(check("{\"name\": \"a\", \"rows\": []}"), "rows", "empty rows");
        is_str(check("{\"name\": \"a\", \"rows\": [[1], [2], [3], [4]]}"), "rows", "too many rows");
        is_str(check("{\"name\": \"a\", \"rows\": [[1], [\"x\"]]}"), "rows[1][0]", "a cell of the wrong type");
        is_str(check("{\"name\": \"a\", \"rows\": [[1], []]}"), "rows[1]", "an empty row");

        ok(parse("{\"a\": 1}") == 0, "a JSON object parses");
        ok(parse(NULL) < 0, "an empty body is refused");
        ok(parse("[1]") < 0, "an array body is refused");
        ok(parse("{\"a\": 1} x") < 0, "trailing data is refused");
        ok(parse("{\"a\": 1, \"a\": 2}") < 0, "duplicate keys are refused");
        char deep[200];
        memset(deep, '[', 40);
        strcpy(deep + 40, "1");
        memset(deep + 41, ']', 40);
        deep[81] = '\0';
        char body[256];
        snprintf(body, sizeof(body), "{\"a\": %s}", deep);
        ok(parse(body) < 0, "41 levels of nesting are refused");
        snprintf(body, sizeof(body), "{\"a\": \"%s\"}", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[");
        ok(parse(body) == 0, "brackets inside a string do not count as nesting");

        ok(api_id_valid("job_0123456789abcdef01234567", "job"), "a store id is valid");
        ok(!api_id_valid("job_", "job"), "an empty id body is not");
        ok(!api_id_valid("job_a/b", "job"), "a slash is not");
        ok(!api_id_valid("jobx_ab", "job"), "another prefix is not");
        ok(!api_id_valid(NULL, "job"), "NULL is not");

        json_t *schema = api_fields_schema(fields), *want = json_pack("[s]", "name");
        ok(json_is_false(json_object_get(schema, "additionalProperties")) &&
                   json_equal(json_object_get(schema, "required"), want),
           "schema: closed object, 'name' required");
        json_decref(want);
        json_t *hp = json_object_get(json_object_get(schema, "properties"), "hp");
        ok(json_integer_value(
                   json_object_get(json_object_get(json_object_get(hp, "properties"), "epochs"), "maximum")) == 100 ||
                   json_real_value(json_object_get(json_object_get(json_object_get(hp, "properties"), "epochs"),
                                                   "maximum")) == 100,
           "schema: nested bounds");
        json_t *rate = json_object_get(json_object_get(hp, "properties"), "rate");
        ok(json_integer_value(json_object_get(rate, "exclusiveMinimum")) == 0 &&
                   json_object_get(rate, "exclusiveMinimum") && !json_object_get(rate, "minimum"),
           "schema: an exclusive bound is a number (draft 2020-12)");
        json_t *colour = json_object_get(json_object_get(schema, "properties"), "colour");
        json_t *nullable = json_pack("[ss]", "string", "null");
        ok(json_equal(json_object_get(colour, "type"), nullable) &&
                   json_is_null(json_array_get(json_object_get(colour, "enum"), 2)),
           "schema: a field that is not required takes null, as api_validate does");
        json_decref(nullable);
        ok(check("{\"name\": \"a\", \"colour\": null}")[0] == 0, "  and api_validate takes it");
        json_decref(schema);

        /* response shapes: every member always there, null only where said */
        json_t *job = api_schema_object(api_job_shape, API_SCHEMA_RESPONSE);
        json_t *props = json_object_get(job, "properties");
        ok(json_array_size(json_object_get(job, "required")) == json_object_size(props) &&
                   json_is_false(json_object_get(job, "additionalProperties")),
           "Job: every member required, no other");
        ok(json_is_string(json_object_get(json_object_get(props, "id"), "type")) &&
                   json_is_array(json_object_get(json_object_get(props, "validation_file"), "type")),
           "Job: id is a string, validation_file a string or null");
        /* a fine-tuning job's spec or a predictions job's (issue 18): AnyJobSpec is anyOf the two */
        json_t *spec_ref = json_pack("{s:s,s:s}", "$ref", "#/components/schemas/AnyJobSpec", "description",
                                     "the job spec with every default written out (a predictions job: its model, "
                                     "dataset and target)");
        ok(json_equal(json_object_get(props, "spec"), spec_ref), "Job: spec is the AnyJobSpec component");
        json_decref(spec_ref);
        json_decref(job);
        size_t n = 0;
        for (; api_job_states[n]; n++)
                if (strcmp(api_job_states[n], store_job_state_name((enum store_job_state)n)) != 0)
                        break;
        ok(n == STORE_JOB_STATE_COUNT && !api_job_states[n], "the job states of the schema are the store's");
        const struct api_field *src = api_model_shape;
        while (src->name && strcmp(src->name, "source") != 0)
                src++;
        bool same = src->choices != NULL;
        for (int i = 0; same && i <= STORE_MODEL_JOB; i++)
                same = src->choices[i] && strcmp(src->choices[i], store_model_source_name(i)) == 0;
        ok(same && !src->choices[STORE_MODEL_JOB + 1], "the model sources of the schema are the store's");
        json_t *err = api_error_schema();
        json_t *codes = json_object_get(
                json_object_get(
                        json_object_get(json_object_get(json_object_get(err, "properties"), "error"), "properties"),
                        "code"),
                "enum");
        same = json_array_size(codes) == _API_ERR_MAX;
        for (int i = 0; same && i < _API_ERR_MAX; i++)
                same = strcmp(json_string_value(json_array_get(codes, (size_t)i)), api_error_code_name(i)) == 0;
        ok(same, "the Error schema's codes are the error table's");
        json_decref(err);
        return tap_done();
}
