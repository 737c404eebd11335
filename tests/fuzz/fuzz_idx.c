/* fuzz_idx.c - fuzz the IDX parser (plain and gzip): any bytes either parse or
 * fail cleanly, and a parse returns exactly the bytes its dimensions promise. */
#include <stdlib.h>

#include "compute/data.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t ndim, *out = NULL;
        uint32_t dims[4];
        size_t len;
        struct ft_error err;
        if (idx_parse(data, size, "fuzz.idx", (size_t)16 << 20, &ndim, dims, &out, &len, &err) < 0)
                return 0;
        size_t want = 1;
        for (uint8_t i = 0; i < ndim; i++)
                want *= dims[i];
        if (want != len)
                abort();
        free(out);
        return 0;
}
