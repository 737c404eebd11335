/* data_idx.c - the IDX reader (the MNIST format), plain or gzip-compressed:
 * an image file (N x H x W bytes, or N x C x H x W with C = 1 or 3) and a label
 * file (N bytes) make a dataset.
 * Not for: other image formats. */
#include "compute/data.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "common/fileio.h"

static uint32_t be32(const uint8_t *p) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A source of uncompressed bytes: the file itself or a gzip stream over it. */
struct src {
        const uint8_t *bytes;
        size_t size, pos; /* plain */
        bool gz, done;
        z_stream z;
        const char *label;
};

/* Read exactly n bytes; *got says how many came when the data ran out. */
static int src_read(struct src *s, uint8_t *dst, size_t n, size_t *got, struct ft_error *err) {
        if (!s->gz) {
                size_t k = FT_MIN(n, s->size - s->pos);
                memcpy(dst, s->bytes + s->pos, k);
                s->pos += k;
                *got = k;
                return 0;
        }
        size_t total = 0;
        while (total < n && !s->done) {
                size_t chunk = FT_MIN(n - total, (size_t)1 << 30);
                s->z.next_out = dst + total;
                s->z.avail_out = (uInt)chunk;
                int zr = inflate(&s->z, Z_NO_FLUSH);
                total += chunk - s->z.avail_out;
                if (zr == Z_STREAM_END) {
                        s->done = true;
                } else if (zr == Z_BUF_ERROR && s->z.avail_in == 0) {
                        return ft_error_set(err, -EINVAL, NULL,
                                            "'%s': gzip data is truncated at compressed byte offset %zu", s->label,
                                            (size_t)s->z.total_in);
                } else if (zr != Z_OK) {
                        return ft_error_set(err, -EINVAL, NULL,
                                            "'%s': corrupt gzip data at compressed byte offset %zu%s%s", s->label,
                                            (size_t)s->z.total_in, s->z.msg ? ": " : "", s->z.msg ? s->z.msg : "");
                }
        }
        *got = total;
        return 0;
}

int idx_parse(const void *bytes, size_t size, const char *label, size_t max_bytes, uint8_t *ret_ndim,
              uint32_t ret_dims[4], uint8_t **ret_data, size_t *ret_len, struct ft_error *err) {
        struct src s = {.bytes = bytes, .size = size, .label = label};
        uint8_t hdr[4 + 4 * 4], *data = NULL, extra;
        size_t got, len = 1;
        int r;
        if (size == 0)
                return ft_error_set(err, -ENODATA, NULL, "'%s' is empty", label);
        if (size >= 2 && s.bytes[0] == 0x1f && s.bytes[1] == 0x8b) {
                s.gz = true;
                s.z.next_in = (Bytef *)(uintptr_t)bytes;
                s.z.avail_in = (uInt)FT_MIN(size, (size_t)UINT32_MAX);
                if (size > UINT32_MAX)
                        return ft_error_set(err, -EFBIG, NULL, "'%s': compressed file over 4 GiB", label);
                if (inflateInit2(&s.z, 15 + 16) != Z_OK)
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        if ((r = src_read(&s, hdr, 4, &got, err)) < 0)
                goto fail;
        if (got < 4) {
                r = ft_error_set(err, -EINVAL, NULL, "'%s': %zu bytes, too short for an IDX header", label, got);
                goto fail;
        }
        if (hdr[0] != 0 || hdr[1] != 0) {
                r = ft_error_set(err, -EINVAL, NULL,
                                 "'%s': wrong magic 0x%02x%02x%02x%02x at byte offset 0 (an IDX file starts 0x0000)",
                                 label, hdr[0], hdr[1], hdr[2], hdr[3]);
                goto fail;
        }
        if (hdr[2] != 0x08) {
                r = ft_error_set(err, -ENOTSUP, NULL,
                                 "'%s': IDX element type 0x%02x at byte offset 2 is not supported (0x08, unsigned "
                                 "bytes, is)",
                                 label, hdr[2]);
                goto fail;
        }
        uint8_t ndim = hdr[3];
        if (ndim < 1 || ndim > 4) {
                r = ft_error_set(err, -EINVAL, NULL, "'%s': %u dimensions at byte offset 3 (1 to 4 are allowed)", label,
                                 ndim);
                goto fail;
        }
        if ((r = src_read(&s, hdr + 4, 4u * ndim, &got, err)) < 0)
                goto fail;
        if (got < 4u * ndim) {
                r = ft_error_set(err, -EINVAL, NULL, "'%s': truncated in the header (%u dimensions need %u bytes)",
                                 label, ndim, 4 + 4u * ndim);
                goto fail;
        }
        for (uint8_t i = 0; i < ndim; i++) {
                ret_dims[i] = be32(hdr + 4 + 4 * i);
                if (!ft_mul_size(len, ret_dims[i], &len) || (max_bytes && len > max_bytes)) {
                        r = ft_error_set(err, -EFBIG, NULL,
                                         "'%s': dimensions at byte offset 4 describe more data than the limit of %zu "
                                         "bytes",
                                         label, max_bytes ? max_bytes : SIZE_MAX);
                        goto fail;
                }
        }
        size_t hlen = 4 + 4u * ndim;
        if (!s.gz && len > size - hlen) {
                r = ft_error_set(err, -EINVAL, NULL,
                                 "'%s': truncated: the header promises %zu bytes of data after byte offset %zu, the "
                                 "file has %zu",
                                 label, len, hlen, size - hlen);
                goto fail;
        }
        data = malloc(len ? len : 1);
        if (!data) {
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory reading '%s'", label);
                goto fail;
        }
        if ((r = src_read(&s, data, len, &got, err)) < 0)
                goto fail;
        if (got < len) {
                r = ft_error_set(err, -EINVAL, NULL,
                                 "'%s': truncated: the header promises %zu bytes of data after byte offset %zu, the "
                                 "file has %zu",
                                 label, len, hlen, got);
                goto fail;
        }
        if ((r = src_read(&s, &extra, 1, &got, err)) < 0)
                goto fail;
        if (got > 0 || (s.gz && s.z.avail_in > 0)) {
                r = ft_error_set(err, -EINVAL, NULL,
                                 "'%s': trailing bytes after the %zu bytes of data at byte offset %zu", label, len,
                                 hlen + len);
                goto fail;
        }
        if (s.gz)
                inflateEnd(&s.z);
        *ret_ndim = ndim;
        *ret_data = data;
        *ret_len = len;
        return 0;
fail:
        if (s.gz)
                inflateEnd(&s.z);
        free(data);
        return r;
}

static int load(const char *path, size_t max_bytes, uint8_t *ndim, uint32_t dims[4], uint8_t **data, size_t *len,
                struct ft_error *err) {
        void *map = NULL;
        size_t size = 0;
        int r = fileio_map(path, max_bytes, &map, &size, err);
        if (r < 0)
                return r;
        r = idx_parse(map ? map : "", size, path, max_bytes, ndim, dims, data, len, err);
        fileio_unmap(map, size);
        return r;
}

int idx_read(const char *images_path, const char *labels_path, size_t max_bytes, struct dataset **ret,
             struct ft_error *err) {
        uint8_t ni, nl;
        uint32_t di[4], dl[4];
        uint8_t *pix = NULL, *lab = NULL;
        size_t li, ll;
        struct dataset *ds = NULL;
        int r = load(images_path, max_bytes, &ni, di, &pix, &li, err);
        if (r < 0)
                return r;
        if ((r = load(labels_path, max_bytes, &nl, dl, &lab, &ll, err)) < 0)
                goto fail;
        if (ni != 3 && ni != 4) {
                r = ft_error_set(err, -EINVAL, NULL,
                                 "'%s': an image file has 3 dimensions (N x rows x columns) or 4 (N x channels x "
                                 "rows x columns), this has %u",
                                 images_path, ni);
                goto fail;
        }
        uint32_t channels = 1;
        if (ni == 4) { /* N x C x H x W, channel planes in order (as a PyTorch uint8 tensor) */
                channels = di[1];
                if (channels != 1 && channels != 3) {
                        r = ft_error_set(err, -EINVAL, NULL,
                                         "'%s': %" PRIu32
                                         " channels (dimension 2 of 4); 1 (gray) or 3 (RGB) are allowed",
                                         images_path, channels);
                        goto fail;
                }
                di[1] = di[2];
                di[2] = di[3];
        }
        if (nl != 1) {
                r = ft_error_set(err, -EINVAL, NULL, "'%s': a label file has 1 dimension, this has %u", labels_path,
                                 nl);
                goto fail;
        }
        if (di[0] != dl[0]) {
                r = ft_error_set(err, -EINVAL, NULL, "'%s' has %" PRIu32 " images but '%s' has %" PRIu32 " labels",
                                 images_path, di[0], labels_path, dl[0]);
                goto fail;
        }
        if (di[0] == 0) {
                r = ft_error_set(err, -ENODATA, NULL, "'%s' has no images", images_path);
                goto fail;
        }
        if (di[1] == 0 || di[2] == 0 || di[1] > DATA_IMAGE_SIDE_MAX || di[2] > DATA_IMAGE_SIDE_MAX) {
                r = ft_error_set(err, -EINVAL, NULL, "'%s': image size %" PRIu32 "x%" PRIu32 " (1 to %d per side)",
                                 images_path, di[1], di[2], DATA_IMAGE_SIDE_MAX);
                goto fail;
        }
        r = -ENOMEM;
        if (!(ds = calloc(1, sizeof(*ds))))
                goto oom;
        size_t sl = strlen(images_path) + strlen(labels_path) + 4;
        if (!(ds->source = malloc(sl)))
                goto oom;
        snprintf(ds->source, sl, "%s + %s", images_path, labels_path);
        ds->kind = DATA_IMAGES;
        ds->task = DATA_CLASSIFICATION;
        ds->n = ds->rows_read = di[0];
        ds->channels = channels;
        ds->height = di[1];
        ds->width = di[2];
        ds->pixels = pix;
        pix = NULL;
        if (!(ds->labels = malloc(ds->n * sizeof(int32_t))))
                goto oom;
        uint8_t maxl = 0;
        for (size_t i = 0; i < ds->n; i++) {
                ds->labels[i] = lab[i];
                maxl = FT_MAX(maxl, lab[i]);
        }
        ds->n_classes = (size_t)maxl + 1;
        ds->class_names = calloc(ds->n_classes, sizeof(char *));
        ds->class_counts = calloc(ds->n_classes, sizeof(size_t));
        if (!ds->class_names || !ds->class_counts)
                goto oom;
        for (size_t c = 0; c < ds->n_classes; c++) {
                char b[24];
                snprintf(b, sizeof(b), "%zu", c);
                if (!(ds->class_names[c] = strdup(b)))
                        goto oom;
        }
        for (size_t i = 0; i < ds->n; i++)
                ds->class_counts[ds->labels[i]]++;
        if (dataset_classes_compact(ds) < 0) /* only the label values that occur are classes */
                goto oom;
        if (ds->n_classes < 2) {
                r = ft_error_set(err, -EINVAL, NULL,
                                 "'%s': every label is %s: classification needs two or more classes", labels_path,
                                 ds->class_names[0]);
                goto fail;
        }
        free(lab);
        *ret = ds;
        return 0;
oom:
        r = ft_error_set(err, -ENOMEM, NULL, "out of memory reading '%s'", images_path);
fail:
        free(pix);
        free(lab);
        dataset_free(ds);
        return r;
}

int idx_labels_path(const char *images_path, char *out, size_t size) {
        const char *p = strstr(images_path, "images-idx3");
        if (!p)
                return -ENOENT;
        int n = snprintf(out, size, "%.*slabels-idx1%s", (int)(p - images_path), images_path,
                         p + strlen("images-idx3"));
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}
