/* data_loader.c - batches: rows of a dataset, in a seeded order, transformed
 * (standardize; or scale to [0,1], resize, replicate channels, crop/flip,
 * normalize) into one contiguous NCHW float buffer allocated once.
 * Not for: computing statistics or splitting (data_preprocess.c). */
#include "compute/data.h"

#include <string.h>

struct data_loader {
        const struct dataset *ds;
        const size_t *idx;
        size_t n;
        const struct data_transform *t;
        struct data_loader_options opt;
        size_t *order; /* this epoch's order */
        size_t pos;
        struct data_rng aug;
        size_t c, h, w; /* output sample shape */
        float *x; /* batch_size * c * h * w */
        int32_t *labels;
        float *targets;
        float *plane, *resized; /* one source plane in [0,1], and resized */
};

void data_loader_free(struct data_loader *l) {
        if (!l)
                return;
        free(l->order);
        free(l->x);
        free(l->labels);
        free(l->targets);
        free(l->plane);
        free(l->resized);
        free(l);
}

int data_loader_new(const struct dataset *ds, const size_t *idx, size_t n, const struct data_transform *t,
                    const struct data_loader_options *opt, struct data_loader **ret, struct ft_error *err) {
        if (opt->batch_size == 0 || opt->batch_size > (1u << 20))
                return ft_error_set(err, -EINVAL, "hyperparameters.batch_size", "batch size %zu is not in 1..%u",
                                    opt->batch_size, 1u << 20);
        if (n == 0)
                return ft_error_set(err, -EINVAL, NULL, "'%s': no rows to load", ds->source);
        int r = data_transform_check(t, ds, err);
        if (r < 0)
                return r;
        struct data_loader *l = calloc(1, sizeof(*l));
        if (!l)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        l->ds = ds;
        l->idx = idx;
        l->n = n;
        l->t = t;
        l->opt = *opt;
        if (ds->kind == DATA_TABLE) {
                l->c = ds->n_features;
                l->h = l->w = 1;
        } else {
                l->c = t->channels ? t->channels : ds->channels;
                l->h = t->height ? t->height : ds->height;
                l->w = t->width ? t->width : ds->width;
        }
        size_t b = FT_MIN(opt->batch_size, n), per = l->c * l->h * l->w, nx;
        if (!ft_mul_size(b, per, &nx) || !ft_mul_size(nx, sizeof(float), &nx))
                goto oom;
        l->order = malloc(n * sizeof(size_t));
        l->x = malloc(nx);
        if (!l->order || !l->x)
                goto oom;
        if (ds->task == DATA_CLASSIFICATION ? !(l->labels = malloc(b * sizeof(int32_t)))
                                            : !(l->targets = malloc(b * sizeof(float))))
                goto oom;
        if (ds->kind == DATA_IMAGES) {
                l->plane = malloc(ds->height * ds->width * sizeof(float));
                l->resized = malloc(l->h * l->w * sizeof(float));
                if (!l->plane || !l->resized)
                        goto oom;
        }
        data_loader_start(l, 0);
        *ret = l;
        return 0;
oom:
        data_loader_free(l);
        return ft_error_set(err, -ENOMEM, NULL, "out of memory for batches of %zu", opt->batch_size);
}

void data_loader_start(struct data_loader *l, uint64_t epoch) {
        struct data_rng rng;
        memcpy(l->order, l->idx, l->n * sizeof(size_t));
        data_rng_seed(&rng, l->opt.seed ^ (0x5851f42d4c957f2dull * (epoch + 1)));
        if (l->opt.shuffle)
                data_shuffle(l->order, l->n, &rng);
        data_rng_seed(&l->aug, data_rng_next(&rng));
        l->pos = 0;
}

size_t data_loader_batches(const struct data_loader *l) {
        size_t b = l->opt.batch_size;
        return l->opt.drop_last ? l->n / b : (l->n + b - 1) / b;
}

static void image_sample(struct data_loader *l, size_t row, float *out) {
        const struct dataset *ds = l->ds;
        const struct data_transform *t = l->t;
        size_t hw = ds->height * ds->width, oh = l->h, ow = l->w, pad = l->opt.augment ? t->crop_padding : 0;
        size_t oy = 0, ox = 0;
        bool flip = false;
        if (pad) {
                oy = (size_t)data_rng_below(&l->aug, 2 * pad + 1);
                ox = (size_t)data_rng_below(&l->aug, 2 * pad + 1);
        }
        if (l->opt.augment && t->hflip)
                flip = data_rng_next(&l->aug) >> 63;
        bool resize = oh != ds->height || ow != ds->width;
        for (size_t c = 0; c < l->c; c++) {
                size_t sc = ds->channels == 1 ? 0 : c;
                if (c == 0 || ds->channels != 1) {
                        const uint8_t *p = ds->pixels + (row * ds->channels + sc) * hw;
                        for (size_t i = 0; i < hw; i++)
                                l->plane[i] = (float)p[i] / 255.0f; /* as ToTensor: div(255) */
                        if (resize)
                                data_resize_bilinear(l->plane, ds->height, ds->width, l->resized, oh, ow);
                }
                const float *src = resize ? l->resized : l->plane;
                float mean = 0, inv = 1;
                if (t->n_norm) {
                        size_t k = t->n_norm == 1 ? 0 : c;
                        mean = t->norm_mean[k];
                        inv = 1.0f / t->norm_std[k];
                }
                float *o = out + c * oh * ow;
                for (size_t y = 0; y < oh; y++) {
                        size_t sy = y + oy; /* in padded coordinates */
                        for (size_t x = 0; x < ow; x++) {
                                size_t xx = flip ? ow - 1 - x : x, sx = xx + ox;
                                float v = 0; /* the zero padding, as torchvision pads before ToTensor */
                                if (sy >= pad && sy - pad < oh && sx >= pad && sx - pad < ow)
                                        v = src[(sy - pad) * ow + (sx - pad)];
                                o[y * ow + x] = (v - mean) * inv;
                        }
                }
        }
}

int data_loader_next(struct data_loader *l, struct data_batch *ret) {
        size_t b = l->opt.batch_size, left = l->n - l->pos;
        if (left == 0 || (l->opt.drop_last && left < b))
                return 0;
        size_t k = FT_MIN(b, left), per = l->c * l->h * l->w;
        const struct dataset *ds = l->ds;
        for (size_t i = 0; i < k; i++) {
                size_t row = l->order[l->pos + i];
                float *out = l->x + i * per;
                if (ds->kind == DATA_TABLE) {
                        const float *src = ds->x + row * ds->n_features;
                        if (l->t->standardize)
                                for (size_t j = 0; j < per; j++)
                                        out[j] = (src[j] - l->t->mean[j]) / l->t->std[j];
                        else
                                memcpy(out, src, per * sizeof(float));
                } else {
                        image_sample(l, row, out);
                }
                if (l->labels)
                        l->labels[i] = ds->labels[row];
                else
                        l->targets[i] = ds->targets[row];
        }
        l->pos += k;
        *ret = (struct data_batch){
                .n = k, .c = l->c, .h = l->h, .w = l->w, .x = l->x, .labels = l->labels, .targets = l->targets};
        return 1;
}
