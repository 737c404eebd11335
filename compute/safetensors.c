/* safetensors.c - the safetensors reader (mmap + header validation, dtype
 * conversion) and writer (atomic). Not for: models (safetensors_model.c binds
 * a file to a model's parameters). */
#include "compute/safetensors.h"

#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/fileio.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

static const struct {
        const char *name;
        size_t size;
} dtypes[] = {
        [ST_DTYPE_F32] = {"F32", 4}, [ST_DTYPE_F16] = {"F16", 2}, [ST_DTYPE_BF16] = {"BF16", 2},
        [ST_DTYPE_F64] = {"F64", 8}, [ST_DTYPE_I64] = {"I64", 8},
};

/* dtypes the format defines but we do not load: named so the error says "unsupported", not "unknown". */
static const char *const other_dtypes[] = {"BOOL",    "U8",      "I8",      "I16", "U16",     "I32",     "U32", "U64",
                                           "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};

const char *st_dtype_name(enum st_dtype dtype) {
        return (size_t)dtype < ARRAY_SIZE(dtypes) ? dtypes[dtype].name : "?";
}

size_t st_dtype_size(enum st_dtype dtype) {
        return (size_t)dtype < ARRAY_SIZE(dtypes) ? dtypes[dtype].size : 0;
}

float st_f16_to_f32(uint16_t h) {
        uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
        if (exp == 0) {
                if (man == 0) {
                        bits = sign;
                } else { /* subnormal: normalise */
                        int e = -1;
                        do {
                                man <<= 1;
                                e++;
                        } while (!(man & 0x400));
                        bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
                }
        } else if (exp == 0x1f) {
                bits = sign | 0x7f800000u | (man << 13);
        } else {
                bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
        }
        float f;
        memcpy(&f, &bits, sizeof(f));
        return f;
}

float st_bf16_to_f32(uint16_t h) {
        uint32_t bits = (uint32_t)h << 16;
        float f;
        memcpy(&f, &bits, sizeof(f));
        return f;
}

void st_file_free(struct st_file *f) {
        if (!f)
                return;
        free(f->tensors);
        for (size_t i = 0; i < f->n_meta; i++) {
                free(f->meta_keys[i]);
                free(f->meta_values[i]);
        }
        free(f->meta_keys);
        free(f->meta_values);
        if (f->json)
                json_decref(f->json);
        fileio_unmap(f->mapped, f->size);
        free(f->path);
        free(f);
}

static int cmp_offset(const void *a, const void *b) {
        const struct st_tensor *x = a, *y = b;
        if (x->offset != y->offset)
                return x->offset < y->offset ? -1 : 1;
        /* zero-length tensors share an offset with their neighbour: order by length */
        return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static int parse_u64(json_t *v, uint64_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EINVAL;
        *ret = (uint64_t)json_integer_value(v);
        return 0;
}

static int parse_tensor(struct st_file *f, const char *name, json_t *info, struct st_tensor *t, struct ft_error *err) {
        const char *p = f->path;
        if (!json_is_object(info))
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s': header entry is not an object", p, name);
        if (strlen(name) > ST_NAME_MAX)
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor name longer than %d bytes", p, ST_NAME_MAX);
        json_t *jd = json_object_get(info, "dtype"), *js = json_object_get(info, "shape"),
               *jo = json_object_get(info, "data_offsets");
        if (!json_is_string(jd))
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s': missing or non-string 'dtype'", p, name);
        if (!json_is_array(js))
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s': missing or non-array 'shape'", p, name);
        if (!json_is_array(jo) || json_array_size(jo) != 2)
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s': 'data_offsets' must be [begin, end]", p,
                                    name);
        memset(t, 0, sizeof(*t));
        t->name = name;
        const char *ds = json_string_value(jd);
        size_t k;
        for (k = 0; k < ARRAY_SIZE(dtypes); k++)
                if (strcmp(ds, dtypes[k].name) == 0)
                        break;
        if (k == ARRAY_SIZE(dtypes)) {
                for (size_t j = 0; j < ARRAY_SIZE(other_dtypes); j++)
                        if (strcmp(ds, other_dtypes[j]) == 0)
                                return ft_error_set(err, -ENOTSUP, NULL,
                                                    "'%s': tensor '%s': unsupported dtype '%s' (F32, F16, BF16, F64 "
                                                    "and I64 are)",
                                                    p, name, ds);
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s': unknown dtype '%.32s'", p, name, ds);
        }
        t->dtype = (enum st_dtype)k;
        t->ndim = json_array_size(js);
        if (t->ndim > ST_MAX_DIMS)
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s': %zu dimensions (at most %d)", p, name,
                                    t->ndim, ST_MAX_DIMS);
        size_t numel = 1;
        for (size_t i = 0; i < t->ndim; i++) {
                uint64_t d;
                if (parse_u64(json_array_get(js, i), &d) < 0)
                        return ft_error_set(err, -EINVAL, NULL,
                                            "'%s': tensor '%s': shape[%zu] is not a non-negative integer", p, name, i);
                t->shape[i] = (int64_t)d;
                if (d > SIZE_MAX || !ft_mul_size(numel, (size_t)d, &numel))
                        return ft_error_set(err, -EOVERFLOW, NULL, "'%s': tensor '%s': shape product overflows", p,
                                            name);
        }
        t->numel = numel;
        if (!ft_mul_size(numel, dtypes[k].size, &t->nbytes))
                return ft_error_set(err, -EOVERFLOW, NULL, "'%s': tensor '%s': byte length overflows", p, name);
        uint64_t b, e;
        if (parse_u64(json_array_get(jo, 0), &b) < 0 || parse_u64(json_array_get(jo, 1), &e) < 0)
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s': data_offsets are not non-negative integers",
                                    p, name);
        size_t data_size = f->size - 8 - f->header_len;
        if (b > e || e > data_size)
                return ft_error_set(err, -ERANGE, NULL,
                                    "'%s': tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                                    "] out of range (the data section is %zu bytes at byte offset %zu)",
                                    p, name, b, e, data_size, 8 + f->header_len);
        if (e - b != t->nbytes)
                return ft_error_set(err, -EINVAL, NULL,
                                    "'%s': tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                                    " bytes but shape and dtype %s need %zu",
                                    p, name, b, e, e - b, dtypes[k].name, t->nbytes);
        t->offset = 8 + f->header_len + b;
        t->data = f->bytes + t->offset;
        return 0;
}

static int parse_metadata(struct st_file *f, json_t *meta, struct ft_error *err) {
        if (json_is_null(meta))
                return 0;
        if (!json_is_object(meta))
                return ft_error_set(err, -EINVAL, NULL, "'%s': '__metadata__' is not an object of strings", f->path);
        size_t n = json_object_size(meta);
        f->meta_keys = calloc(n ? n : 1, sizeof(char *));
        f->meta_values = calloc(n ? n : 1, sizeof(char *));
        if (!f->meta_keys || !f->meta_values)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        const char *key;
        json_t *v;
        json_object_foreach(meta, key, v) {
                if (!json_is_string(v))
                        return ft_error_set(err, -EINVAL, NULL, "'%s': '__metadata__' value '%s' is not a string",
                                            f->path, key);
                f->meta_keys[f->n_meta] = strdup(key);
                f->meta_values[f->n_meta] = strdup(json_string_value(v));
                f->n_meta++;
                if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1])
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        return 0;
}

static int parse(struct st_file *f, struct ft_error *err) {
        const char *p = f->path;
        if (f->size < 8)
                return ft_error_set(err, -EINVAL, NULL,
                                    "'%s': file too small to be safetensors (%zu bytes, the header length alone is 8)",
                                    p, f->size);
        uint64_t n;
        memcpy(&n, f->bytes, 8);
        if (n > ST_HEADER_MAX)
                return ft_error_set(err, -EFBIG, NULL, "'%s': header length %" PRIu64 " exceeds the limit of %zu bytes",
                                    p, n, ST_HEADER_MAX);
        if (n > f->size - 8)
                return ft_error_set(err, -EINVAL, NULL,
                                    "'%s': header length %" PRIu64 " runs past the end of the file (%zu bytes)", p, n,
                                    f->size);
        f->header_len = (size_t)n;
        if (n < 2 || f->bytes[8] != '{')
                return ft_error_set(err, -EINVAL, NULL, "'%s': header at byte offset 8 does not start with '{'", p);
        json_error_t je;
        json_t *h = json_loadb((const char *)f->bytes + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
        if (!h)
                return ft_error_set(err, -EINVAL, NULL, "'%s': header is not valid JSON at byte offset %zu: %s", p,
                                    8 + (size_t)(je.position > 0 ? je.position : 0), je.text);
        f->json = h;
        if (!json_is_object(h))
                return ft_error_set(err, -EINVAL, NULL, "'%s': header is not a JSON object", p);
        size_t cap = json_object_size(h);
        f->tensors = calloc(cap ? cap : 1, sizeof(*f->tensors));
        if (!f->tensors)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        const char *key;
        json_t *v;
        int r;
        json_object_foreach(h, key, v) {
                if (strcmp(key, "__metadata__") == 0) {
                        r = parse_metadata(f, v, err);
                } else {
                        r = parse_tensor(f, key, v, &f->tensors[f->n_tensors], err);
                        f->n_tensors++;
                }
                if (r < 0)
                        return r;
        }
        qsort(f->tensors, f->n_tensors, sizeof(*f->tensors), cmp_offset);
        uint64_t expect = 8 + f->header_len;
        for (size_t i = 0; i < f->n_tensors; i++) {
                const struct st_tensor *t = &f->tensors[i];
                if (t->offset != expect) {
                        if (t->offset < expect)
                                return ft_error_set(err, -EINVAL, NULL,
                                                    "'%s': tensor '%s' at byte offset %" PRIu64
                                                    " overlaps the tensor before it (which ends at %" PRIu64 ")",
                                                    p, t->name, t->offset, expect);
                        return ft_error_set(err, -EINVAL, NULL,
                                            "'%s': tensor '%s' at byte offset %" PRIu64
                                            " leaves a gap after byte offset %" PRIu64 " (tensors must be contiguous)",
                                            p, t->name, t->offset, expect);
                }
                expect += t->nbytes;
        }
        if (expect != f->size)
                return ft_error_set(err, -EINVAL, NULL,
                                    "'%s': %zu trailing bytes after the last tensor at byte offset %" PRIu64, p,
                                    (size_t)(f->size - expect), expect);
        return 0;
}

int st_file_parse(const void *bytes, size_t size, const char *label, struct st_file **ret, struct ft_error *err) {
        struct st_file *f = calloc(1, sizeof(*f));
        if (!f || !(f->path = strdup(label ? label : "(buffer)"))) {
                free(f);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        f->bytes = bytes;
        f->size = size;
        int r = parse(f, err);
        if (r < 0) {
                st_file_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

int st_file_open(const char *path, size_t max_bytes, struct st_file **ret, struct ft_error *err) {
        void *map = NULL;
        size_t size = 0;
        int r = fileio_map(path, max_bytes, &map, &size, err);
        if (r < 0)
                return r;
        struct st_file *f = calloc(1, sizeof(*f));
        if (!f || !(f->path = strdup(path))) {
                free(f);
                fileio_unmap(map, size);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        f->bytes = map ? map : (const uint8_t *)"";
        f->size = size;
        f->mapped = map;
        r = parse(f, err);
        if (r < 0) {
                st_file_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

const struct st_tensor *st_file_find(const struct st_file *f, const char *name) {
        for (size_t i = 0; i < f->n_tensors; i++)
                if (strcmp(f->tensors[i].name, name) == 0)
                        return &f->tensors[i];
        return NULL;
}

const char *st_file_metadata(const struct st_file *f, const char *key) {
        for (size_t i = 0; i < f->n_meta; i++)
                if (strcmp(f->meta_keys[i], key) == 0)
                        return f->meta_values[i];
        return NULL;
}

int st_tensor_read_f32(const struct st_file *f, const struct st_tensor *t, float *dst, size_t n, struct ft_error *err) {
        const char *p = f ? f->path : "(tensors)";
        if (n != t->numel)
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s' has %zu elements, expected %zu", p, t->name,
                                    t->numel, n);
        const uint8_t *s = t->data;
        switch (t->dtype) {
        case ST_DTYPE_F32: memcpy(dst, s, n * 4); return 0;
        case ST_DTYPE_F16:
        case ST_DTYPE_BF16:
                for (size_t i = 0; i < n; i++) {
                        uint16_t h;
                        memcpy(&h, s + 2 * i, 2);
                        dst[i] = t->dtype == ST_DTYPE_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
                }
                return 0;
        case ST_DTYPE_F64:
                for (size_t i = 0; i < n; i++) {
                        double d;
                        memcpy(&d, s + 8 * i, 8);
                        if (isfinite(d) && fabs(d) > FLT_MAX)
                                return ft_error_set(err, -ERANGE, NULL,
                                                    "'%s': tensor '%s': F64 value %g at index %zu does not fit F32", p,
                                                    t->name, d, i);
                        dst[i] = (float)d;
                }
                return 0;
        case ST_DTYPE_I64:
                for (size_t i = 0; i < n; i++) {
                        int64_t v;
                        memcpy(&v, s + 8 * i, 8);
                        if (v > (1 << 24) || v < -(1 << 24))
                                return ft_error_set(err, -ERANGE, NULL,
                                                    "'%s': tensor '%s': I64 value %" PRId64
                                                    " at index %zu is not exact in F32",
                                                    p, t->name, v, i);
                        dst[i] = (float)v;
                }
                return 0;
        }
        return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s': bad dtype", p, t->name);
}

int st_tensor_read_i64(const struct st_file *f, const struct st_tensor *t, int64_t *dst, size_t n,
                       struct ft_error *err) {
        const char *p = f ? f->path : "(tensors)";
        if (n != t->numel)
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s' has %zu elements, expected %zu", p, t->name,
                                    t->numel, n);
        if (t->dtype != ST_DTYPE_I64)
                return ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s' is %s, expected I64", p, t->name,
                                    st_dtype_name(t->dtype));
        memcpy(dst, t->data, n * 8);
        return 0;
}

/* ---- writing ------------------------------------------------------------ */

int st_write_buffer(const struct st_tensor *tensors, size_t n_tensors, const struct st_meta *meta, size_t n_meta,
                    uint8_t **ret_bytes, size_t *ret_size, struct ft_error *err) {
        json_t *h = json_object();
        char *hs = NULL;
        uint8_t *out = NULL;
        int r = -ENOMEM;
        size_t off = 0;
        if (!h)
                goto fail;
        if (n_meta > 0) {
                json_t *m = json_object();
                if (!m || json_object_set_new(h, "__metadata__", m) < 0)
                        goto fail;
                for (size_t i = 0; i < n_meta; i++)
                        if (json_object_set_new(m, meta[i].key, json_string(meta[i].value)) < 0) {
                                r = ft_error_set(err, -EINVAL, NULL, "metadata '%s' is not valid UTF-8", meta[i].key);
                                goto fail;
                        }
        }
        for (size_t i = 0; i < n_tensors; i++) {
                const struct st_tensor *t = &tensors[i];
                if (strcmp(t->name, "__metadata__") == 0 || json_object_get(h, t->name)) {
                        r = ft_error_set(err, -EINVAL, NULL, "tensor name '%s' is reserved or repeated", t->name);
                        goto fail;
                }
                if ((size_t)t->dtype >= ARRAY_SIZE(dtypes) || t->ndim > ST_MAX_DIMS) {
                        r = ft_error_set(err, -EINVAL, NULL, "tensor '%s': bad dtype or rank", t->name);
                        goto fail;
                }
                size_t numel = 1, nb;
                json_t *shape = json_array();
                for (size_t d = 0; d < t->ndim; d++) {
                        if (t->shape[d] < 0 || !ft_mul_size(numel, (size_t)t->shape[d], &numel)) {
                                json_decref(shape);
                                r = ft_error_set(err, -EOVERFLOW, NULL, "tensor '%s': bad shape", t->name);
                                goto fail;
                        }
                        json_array_append_new(shape, json_integer(t->shape[d]));
                }
                if (!ft_mul_size(numel, dtypes[t->dtype].size, &nb) || !ft_add_size(off, nb, &off)) {
                        json_decref(shape);
                        r = ft_error_set(err, -EOVERFLOW, NULL, "tensor '%s': too large", t->name);
                        goto fail;
                }
                json_t *info = json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtypes[t->dtype].name, "shape", shape,
                                         "data_offsets", (json_int_t)(off - nb), (json_int_t)off);
                if (!info || json_object_set_new(h, t->name, info) < 0) {
                        r = ft_error_set(err, -EINVAL, NULL, "tensor name '%s' is not valid UTF-8", t->name);
                        goto fail;
                }
        }
        hs = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!hs)
                goto fail;
        size_t hl = strlen(hs), padded = (hl + 7) & ~(size_t)7, total;
        if (!ft_add_size(8 + padded, off, &total))
                goto fail;
        out = malloc(total);
        if (!out)
                goto fail;
        uint64_t n64 = padded;
        memcpy(out, &n64, 8);
        memcpy(out + 8, hs, hl);
        memset(out + 8 + hl, ' ', padded - hl);
        uint8_t *d = out + 8 + padded;
        for (size_t i = 0; i < n_tensors; i++) {
                size_t numel = 1;
                for (size_t k = 0; k < tensors[i].ndim; k++)
                        numel *= (size_t)tensors[i].shape[k];
                size_t nb = numel * dtypes[tensors[i].dtype].size;
                if (nb)
                        memcpy(d, tensors[i].data, nb);
                d += nb;
        }
        *ret_bytes = out;
        *ret_size = total;
        out = NULL;
        r = 0;
fail:
        if (r == -ENOMEM && err && err->code != -ENOMEM)
                ft_error_set(err, -ENOMEM, NULL, "out of memory writing safetensors");
        free(out);
        free(hs);
        json_decref(h);
        return r;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

int st_write(const char *path, const struct st_tensor *tensors, size_t n_tensors, const struct st_meta *meta,
             size_t n_meta, struct ft_error *err) {
        uint8_t *bytes;
        size_t size;
        int r = st_write_buffer(tensors, n_tensors, meta, n_meta, &bytes, &size, err);
        if (r < 0)
                return r;
        char tmp[PATH_MAX], dir[PATH_MAX];
        if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp)) {
                free(bytes);
                return ft_error_set(err, -ENAMETOOLONG, NULL, "path '%s' is too long", path);
        }
        int fd = mkstemp(tmp);
        if (fd < 0) {
                r = -errno;
                free(bytes);
                return ft_error_set(err, r, NULL, "cannot create '%s': %s", tmp, strerror(-r));
        }
        r = write_all(fd, bytes, size);
        free(bytes);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return ft_error_set(err, r, NULL, "cannot write '%s': %s", path, strerror(-r));
        }
        snprintf(dir, sizeof(dir), "%s", path);
        int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
        }
        return 0;
}
