/* fuzz_jobspec.c - fuzz the job spec parser (compute/jobspec.c), which takes
 * request bodies straight from the API: any bytes either parse or fail with a
 * message; a spec that parses writes back (jobspec_to_json) to JSON that parses
 * again to the same JSON. */
#include <stdlib.h>
#include <string.h>

#include "compute/jobspec.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct jobspec spec, again;
        struct ft_error err = {0};
        if (jobspec_parse_string((const char *)data, size, &spec, &err) < 0) {
                if (!err.message[0])
                        abort();
                return 0;
        }
        json_t *j = jobspec_to_json(&spec);
        if (!j || jobspec_parse(j, &again, &err) < 0)
                abort();
        json_t *j2 = jobspec_to_json(&again);
        if (!j2 || !json_equal(j, j2))
                abort();
        json_decref(j);
        json_decref(j2);
        jobspec_deinit(&again);
        jobspec_deinit(&spec);
        return 0;
}
