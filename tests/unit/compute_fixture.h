/* compute_fixture.h - reads the PyTorch reference fixtures that tools/gen_compute_fixtures.py writes (records of
 * name + float32 array) and compares tensors. For the compute tests only. */
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fixture directory: $FT_FIXTURE_DIR, else next to this source file (../fixtures/compute from tests/unit, as
 * the compiler saw the path: works from the build directory meson runs tests in), else from the source root. */
__attribute__((unused)) static const char *fx_dir(void) {
        static char buf[4096];
        const char *env = getenv("FT_FIXTURE_DIR");
        if (env && *env)
                return env;
        const char *file = __FILE__, *slash = strrchr(file, '/');
        if (slash && (size_t)(slash - file) < sizeof(buf) - 64) {
                snprintf(buf, sizeof(buf), "%.*s/../fixtures/compute", (int)(slash - file), file);
                FILE *f = fopen(buf, "r");
                if (f) {
                        fclose(f);
                        return buf;
                }
        }
        return "tests/fixtures/compute";
}

struct fx_record {
        char *name;
        float *data;
        uint32_t count;
};

struct fx_file {
        struct fx_record *recs;
        size_t n;
};

__attribute__((unused)) static int fx_load(const char *path, struct fx_file *ret) {
        FILE *f = fopen(path, "rb");
        if (!f)
                return -1;
        struct fx_file fx = {0};
        size_t cap = 0;
        for (;;) {
                uint32_t len, count;
                if (fread(&len, 4, 1, f) != 1)
                        break;
                if (len > 4096)
                        goto bad;
                if (fx.n == cap) {
                        cap = cap ? cap * 2 : 64;
                        struct fx_record *r = realloc(fx.recs, cap * sizeof(*r));
                        if (!r)
                                goto bad;
                        fx.recs = r;
                }
                struct fx_record *r = &fx.recs[fx.n];
                r->name = calloc(1, len + 1);
                if (!r->name || fread(r->name, 1, len, f) != len || fread(&count, 4, 1, f) != 1 || count > (1u << 28)) {
                        free(r->name);
                        goto bad;
                }
                r->count = count;
                r->data = malloc((size_t)count * 4 + 4);
                if (!r->data || fread(r->data, 4, count, f) != count) {
                        free(r->name);
                        free(r->data);
                        goto bad;
                }
                fx.n++;
        }
        fclose(f);
        *ret = fx;
        return 0;
bad:
        fclose(f);
        for (size_t i = 0; i < fx.n; i++) {
                free(fx.recs[i].name);
                free(fx.recs[i].data);
        }
        free(fx.recs);
        return -1;
}

__attribute__((unused)) static void fx_free(struct fx_file *fx) {
        for (size_t i = 0; i < fx->n; i++) {
                free(fx->recs[i].name);
                free(fx->recs[i].data);
        }
        free(fx->recs);
        memset(fx, 0, sizeof(*fx));
}

__attribute__((unused)) static const struct fx_record *fx_get(const struct fx_file *fx, const char *name) {
        for (size_t i = 0; i < fx->n; i++)
                if (strcmp(fx->recs[i].name, name) == 0)
                        return &fx->recs[i];
        return NULL;
}

/* max |a - b| / max |b|: the relative error of a tensor in the infinity norm */
__attribute__((unused)) static double fx_relerr(const float *a, const float *b, size_t n) {
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < n; i++) {
                double d = fabs((double)a[i] - (double)b[i]);
                if (!(d <= num))
                        num = isnan(d) ? INFINITY : d;
                if (fabs((double)b[i]) > den)
                        den = fabs((double)b[i]);
        }
        if (den == 0.0)
                return num;
        return num / den;
}

/* the integer hash both sides use for formula weights and sample positions */
static inline uint64_t fx_hash_u32(uint64_t x) {
        x &= 0xFFFFFFFFull;
        x ^= x >> 16;
        x = (x * 0x7FEB352Dull) & 0xFFFFFFFFull;
        x ^= x >> 15;
        x = (x * 0x846CA68Bull) & 0xFFFFFFFFull;
        x ^= x >> 16;
        return x;
}

static inline double fx_init_value(uint64_t k, uint64_t i) {
        uint64_t x = fx_hash_u32(i * 2654435761ull + k * 40503ull + 12345ull);
        return ((double)x / 4294967296.0) * 2.0 - 1.0;
}

static inline size_t fx_sample_index(uint64_t k, uint64_t j, size_t numel) {
        return (size_t)(fx_hash_u32(j * 2246822519ull + k * 3266489917ull + 7ull) % numel);
}
