/* fuzz_safetensors.c - fuzz the safetensors parser: any bytes either parse or
 * fail cleanly; a file that parses converts every tensor and survives a
 * write/parse round trip with the same tensors and metadata; its preprocessing
 * metadata, if any, parses or fails cleanly. */
#include <stdlib.h>
#include <string.h>

#include "compute/data.h"
#include "compute/safetensors.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct st_file *f = NULL, *g = NULL;
        struct ft_error err;
        if (st_file_parse(data, size, "fuzz", &f, &err) < 0)
                return 0;
        for (size_t i = 0; i < f->n_tensors; i++) {
                const struct st_tensor *t = &f->tensors[i];
                if (t->numel > (1u << 20))
                        continue;
                float *x = malloc((t->numel ? t->numel : 1) * sizeof(float));
                if (x)
                        (void)st_tensor_read_f32(f, t, x, t->numel, &err);
                free(x);
        }
        const char *pre = st_file_metadata(f, ST_META_PREPROCESS);
        struct data_transform t;
        if (pre && data_transform_from_json(pre, &t, &err) == 0)
                data_transform_deinit(&t);
        struct st_meta *meta = calloc(f->n_meta + 1, sizeof(*meta));
        for (size_t i = 0; i < f->n_meta; i++)
                meta[i] = (struct st_meta){f->meta_keys[i], f->meta_values[i]};
        uint8_t *out = NULL;
        size_t n = 0;
        if (st_write_buffer(f->tensors, f->n_tensors, meta, f->n_meta, &out, &n, &err) < 0)
                abort(); /* what parsed must be writable */
        if (st_file_parse(out, n, "fuzz-roundtrip", &g, &err) < 0 || g->n_tensors != f->n_tensors ||
            g->n_meta != f->n_meta)
                abort();
        for (size_t i = 0; i < f->n_tensors; i++) {
                const struct st_tensor *a = &f->tensors[i], *b = st_file_find(g, a->name);
                if (!b || b->nbytes != a->nbytes || b->dtype != a->dtype || memcmp(a->data, b->data, a->nbytes) != 0)
                        abort();
        }
        st_file_free(g);
        free(out);
        free(meta);
        st_file_free(f);
        return 0;
}
