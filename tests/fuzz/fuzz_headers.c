/* fuzz_headers.c - fuzz the request headers the API parses itself (api/jobs.c):
 * the first byte picks Last-Event-ID (api_last_event_id_parse) or
 * Idempotency-Key (api_idempotency_key_valid), the rest is the header value
 * (up to its first NUL, as libmicrohttpd hands it over). A sequence number that
 * parses is >= 0 and prints back to the same digits, leading zeros and sign
 * aside. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        char *v = malloc(size);
        if (!v)
                return 0;
        memcpy(v, data + 1, size - 1);
        v[size - 1] = 0;
        if (data[0] & 1) {
                bool ok = api_idempotency_key_valid(v);
                size_t n = strlen(v);
                if (ok != (n >= 1 && n <= 255))
                        abort();
        } else {
                int64_t seq;
                if (api_last_event_id_parse(v, &seq) == 0) {
                        if (seq < 0)
                                abort();
                        int64_t again;
                        char buf[32];
                        snprintf(buf, sizeof(buf), "%" PRId64, seq);
                        if (api_last_event_id_parse(buf, &again) < 0 || again != seq)
                                abort();
                }
        }
        free(v);
        return 0;
}
