/* fuzz_body.c - fuzz the JSON request bodies the API validates itself: the
 * first byte picks the predict body (api_predict_fields, 0x00), the model
 * registration form (api_model_create_fields, odd) or the explain body
 * (api_explain_fields, 0x02); the rest goes through
 * api_json_parse_body (depth limit, duplicates, non-objects) and api_validate.
 * A refusal always has a message; an accepted body validates again after a
 * round trip through its own JSON text. */
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > API_JSON_BODY_MAX)
                return 0;
        const struct api_field *fields = (data[0] & 1)   ? api_model_create_fields
                                         : (data[0] & 2) ? api_explain_fields
                                                         : api_predict_fields;
        struct api_request req = {.body = (const char *)data + 1, .body_size = size - 1};
        struct ft_error err = {0};
        json_t *j = NULL;
        int r = api_json_parse_body(&req, &j, &err);
        if (r == 0)
                r = api_validate(j, fields, "", &err);
        if (r < 0) {
                if (!err.message[0])
                        abort();
                json_decref(j);
                return 0;
        }
        char *text = json_dumps(j, JSON_COMPACT);
        json_t *again = text ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
        if (!again || api_validate(again, fields, "", &err) < 0)
                abort();
        free(text);
        json_decref(again);
        json_decref(j);
        return 0;
}
