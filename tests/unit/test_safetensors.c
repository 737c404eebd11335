/* test_safetensors.c - the safetensors reader and writer: round trips, dtype
 * conversion against PyTorch (tests/fixtures/io/dtypes.safetensors, written by
 * tools/gen_io_fixtures.py), and every class of bad file with its message. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "compute/safetensors.h"
#include "tests/tap.h"

#ifndef FIXTURES
#error "FIXTURES must name tests/fixtures/io"
#endif

/* A file: 8-byte length, header text, data_len zero bytes, extra trailing bytes. */
static uint8_t *raw(const char *hdr, size_t data_len, size_t *size) {
        size_t hl = strlen(hdr);
        uint8_t *b = calloc(1, 8 + hl + data_len + 1);
        uint64_t n = hl;
        memcpy(b, &n, 8);
        memcpy(b + 8, hdr, hl);
        *size = 8 + hl + data_len;
        return b;
}

/* Parse and expect failure with every needle in the message. */
static void bad(const char *what, const char *hdr, size_t data_len, const char *n1, const char *n2) {
        size_t size;
        uint8_t *b = raw(hdr, data_len, &size);
        struct st_file *f = NULL;
        struct ft_error err = {0};
        int r = st_file_parse(b, size, "w.safetensors", &f, &err);
        bool good = r < 0 && !f && strstr(err.message, "'w.safetensors'") && (!n1 || strstr(err.message, n1)) &&
                    (!n2 || strstr(err.message, n2));
        if (!ok(good, "rejects %s", what))
                diag("r=%d message: %s", r, err.message);
        st_file_free(f);
        free(b);
}

static void test_bad(void) {
        struct st_file *f = NULL;
        struct ft_error err = {0};
        uint8_t small[5] = {1, 0, 0, 0, 0};
        ok(st_file_parse(small, sizeof(small), "w.safetensors", &f, &err) < 0 && strstr(err.message, "too small"),
           "rejects a file shorter than 8 bytes: %s", err.message);
        uint8_t huge[16] = {0};
        uint64_t hl = ST_HEADER_MAX + 1;
        memcpy(huge, &hl, 8);
        ok(st_file_parse(huge, sizeof(huge), "w.safetensors", &f, &err) == -EFBIG && strstr(err.message, "100000001"),
           "rejects a header over 100 MB: %s", err.message);
        hl = 100;
        memcpy(huge, &hl, 8);
        ok(st_file_parse(huge, sizeof(huge), "w.safetensors", &f, &err) < 0 && strstr(err.message, "past the end"),
           "rejects a header length past the end: %s", err.message);

        bad("a header not starting with '{'", " {}", 0, "does not start with '{'", "byte offset 8");
        bad("a header that is not JSON", "{\"a\": [1, 2", 0, "not valid JSON", "byte offset");
        bad("a JSON array header", "[1]", 0, "does not start with '{'", NULL);
        bad("invalid UTF-8", "{\"\xff\": 1}", 0, "not valid JSON", NULL);
        bad("duplicate keys",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            8, "not valid JSON", "duplicate");
        bad("an unknown dtype", "{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'",
            "unknown dtype 'F33'");
        bad("an unsupported dtype", "{\"w\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'",
            "unsupported dtype 'I32'");
        bad("offsets out of range", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "'w'",
            "out of range");
        bad("begin after end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "'w'",
            "out of range");
        bad("overlapping tensors",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
            12, "overlaps", "byte offset");
        bad("a gap between tensors",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
            12, "'b'", "gap");
        bad("trailing bytes", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 9, "5 trailing",
            "byte offset");
        bad("a length that disagrees with shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
            "'w'", "need 12");
        bad("a shape product that overflows",
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 4, "'w'",
            "overflows");
        bad("a byte length that overflows",
            "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4, "'w'",
            "overflows");
        bad("a negative dimension", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'w'",
            "shape[0]");
        bad("a missing data_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'w'", "data_offsets");
        bad("non-string metadata", "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__", "'k'");
        bad("a tensor entry that is not an object", "{\"w\":5}", 0, "'w'", "not an object");
        bad("too many dimensions", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
            4, "'w'", "dimensions");
}

static void test_roundtrip(void) {
        float w[6] = {1, -2, 3.5f, 0, 1e-30f, -7};
        int64_t nbt = 42;
        struct st_tensor ts[] = {
                {.name = "layer.weight", .dtype = ST_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = w},
                {.name = "layer.num_batches_tracked", .dtype = ST_DTYPE_I64, .ndim = 0, .data = &nbt},
                {.name = "empty", .dtype = ST_DTYPE_F32, .ndim = 2, .shape = {0, 5}, .data = NULL},
                {.name = "bias", .dtype = ST_DTYPE_F32, .ndim = 1, .shape = {2}, .data = w + 4},
        };
        struct st_meta meta[] = {{"format", "pt"}, {"finetuned.classes", "[\"cat\",\"dog\"]"}};
        char path[] = "/tmp/test_st_XXXXXX";
        int fd = mkstemp(path);
        close(fd);
        struct ft_error err = {0};
        ok(st_write(path, ts, ARRAY_SIZE(ts), meta, ARRAY_SIZE(meta), &err) == 0, "write: %s", err.message);
        struct st_file *f = NULL;
        ok(st_file_open(path, 0, &f, &err) == 0, "read back: %s", err.message);
        if (!f) {
                unlink(path);
                return;
        }
        is_int(f->n_tensors, 4, "four tensors");
        ok((8 + f->header_len) % 8 == 0, "data starts 8-byte aligned (header padded)");
        is_str(f->tensors[0].name, "layer.weight", "file order kept");
        const struct st_tensor *t = st_file_find(f, "layer.weight");
        float back[6];
        ok(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && st_tensor_read_f32(f, t, back, 6, &err) == 0 &&
                   memcmp(back, w, sizeof(w)) == 0,
           "F32 data and shape survive");
        int64_t n64 = 0;
        t = st_file_find(f, "layer.num_batches_tracked");
        ok(t && t->ndim == 0 && t->numel == 1 && st_tensor_read_i64(f, t, &n64, 1, &err) == 0 && n64 == 42,
           "I64 scalar survives");
        t = st_file_find(f, "empty");
        ok(t && t->numel == 0 && t->nbytes == 0, "zero-size tensor survives");
        is_str(st_file_metadata(f, "finetuned.classes"), "[\"cat\",\"dog\"]", "metadata survives");
        ok(st_file_find(f, "nope") == NULL && st_file_metadata(f, "nope") == NULL, "absent names are NULL");
        ok(st_tensor_read_f32(f, st_file_find(f, "bias"), back, 3, &err) < 0 && strstr(err.message, "'bias'"),
           "element count mismatch is an error naming the tensor");
        st_file_free(f);
        ok(st_file_open(path, 16, &f, &err) == -EFBIG && strstr(err.message, path), "byte limit: %s", err.message);
        unlink(path);
        ok(st_file_open(path, 0, &f, &err) < 0 && strstr(err.message, path), "missing file: %s", err.message);
        struct st_tensor dup[] = {ts[0], ts[0]};
        uint8_t *b;
        size_t n;
        ok(st_write_buffer(dup, 2, NULL, 0, &b, &n, &err) < 0 && strstr(err.message, "layer.weight"),
           "writer refuses repeated names");
}

static void test_pytorch_dtypes(void) {
        struct st_file *f = NULL;
        struct ft_error err = {0};
        if (!ok(st_file_open(FIXTURES "/dtypes.safetensors", 0, &f, &err) == 0, "open PyTorch-written file: %s",
                err.message))
                return;
        is_str(st_file_metadata(f, "format"), "pt", "metadata from Python");
        static const char *pairs[][2] = {
                {"f16", "f16_as_f32"}, {"bf16", "bf16_as_f32"}, {"f64", "f64_as_f32"}, {"f32", "f64_as_f32"}};
        for (size_t p = 0; p < ARRAY_SIZE(pairs); p++) {
                const struct st_tensor *a = st_file_find(f, pairs[p][0]), *b = st_file_find(f, pairs[p][1]);
                float x[64], y[64];
                bool same = a && b && a->numel == b->numel && a->numel <= 64 &&
                            st_tensor_read_f32(f, a, x, a->numel, &err) == 0 &&
                            st_tensor_read_f32(f, b, y, b->numel, &err) == 0;
                for (size_t i = 0; same && i < a->numel; i++)
                        same = memcmp(&x[i], &y[i], 4) == 0;
                ok(same, "%s converts to exactly what torch's .float() gives", pairs[p][0]);
        }
        const struct st_tensor *t = st_file_find(f, "num_batches_tracked");
        int64_t v = 0;
        ok(t && t->dtype == ST_DTYPE_I64 && st_tensor_read_i64(f, t, &v, 1, &err) == 0 && v == 7,
           "I64 num_batches_tracked");
        t = st_file_find(f, "i64");
        float fi[4];
        ok(t && st_tensor_read_f32(f, t, fi, 4, &err) == 0 && fi[2] == 16777216.0f, "I64 within 2^24 reads as F32");
        ok(st_f16_to_f32(0x7c00) == INFINITY && isnan(st_f16_to_f32(0x7e00)) && st_f16_to_f32(0x0001) == 0x1p-24f &&
                   signbit(st_f16_to_f32(0x8000)),
           "f16 specials: inf, nan, smallest subnormal, -0");
        st_file_free(f);
}

int main(void) {
        test_bad();
        test_roundtrip();
        test_pytorch_dtypes();
        return tap_done();
}
