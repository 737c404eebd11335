/* data_preprocess.c - seeded randomness, train/validation split, the
 * preprocessing transform (standardization statistics, image normalization,
 * size and channels, augmentation settings) with its JSON form, and bilinear
 * resize. Not for: producing batches (data_loader.c). */
#include "compute/data.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

/* ---- rng: splitmix64 seeding xoshiro256** ------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

void data_rng_seed(struct data_rng *rng, uint64_t seed) {
        for (int i = 0; i < 4; i++)
                rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

uint64_t data_rng_next(struct data_rng *rng) {
        uint64_t *s = rng->s, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return r;
}

uint64_t data_rng_below(struct data_rng *rng, uint64_t n) {
        if (n <= 1)
                return 0;
        uint64_t lim = UINT64_MAX - UINT64_MAX % n, v; /* reject the biased tail */
        do
                v = data_rng_next(rng);
        while (v >= lim);
        return v % n;
}

void data_shuffle(size_t *idx, size_t n, struct data_rng *rng) {
        for (size_t i = n; i > 1; i--) {
                size_t j = (size_t)data_rng_below(rng, i), t = idx[i - 1];
                idx[i - 1] = idx[j];
                idx[j] = t;
        }
}

/* ---- split ------------------------------------------------------------------ */

void data_split_deinit(struct data_split *s) {
        if (!s)
                return;
        free(s->train);
        free(s->val);
        memset(s, 0, sizeof(*s));
}

int data_split_make(const struct dataset *ds, double val_fraction, bool shuffle, uint64_t seed, struct data_split *ret,
                    struct ft_error *err) {
        if (!(val_fraction >= 0 && val_fraction < 1))
                return ft_error_set(err, -EINVAL, "validation_split", "validation split %g is not in [0, 1)",
                                    val_fraction);
        struct data_rng rng;
        data_rng_seed(&rng, seed);
        size_t n = ds->n, *all = malloc(n * sizeof(size_t)), *tr = malloc(n * sizeof(size_t)),
               *va = malloc(n * sizeof(size_t)), nt = 0, nv = 0;
        if (!all || !tr || !va) {
                free(all);
                free(tr);
                free(va);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        bool strat = ds->task == DATA_CLASSIFICATION && ds->n_classes > 0;
        size_t groups = strat ? ds->n_classes : 1, k = 0;
        /* group rows by class, keeping file order inside a class */
        for (size_t g = 0; g < groups; g++) {
                size_t start = k;
                for (size_t i = 0; i < n; i++)
                        if (!strat || (size_t)ds->labels[i] == g)
                                all[k++] = i;
                size_t cnt = k - start, v = (size_t)llround((double)cnt * val_fraction);
                if (val_fraction > 0 && cnt >= 2)
                        v = FT_MIN(FT_MAX(v, (size_t)1), cnt - 1);
                if (shuffle)
                        data_shuffle(all + start, cnt, &rng);
                memcpy(tr + nt, all + start, (cnt - v) * sizeof(size_t));
                nt += cnt - v;
                memcpy(va + nv, all + start + cnt - v, v * sizeof(size_t));
                nv += v;
        }
        free(all);
        if (nt == 0 || (val_fraction > 0 && nv == 0)) {
                free(tr);
                free(va);
                return ft_error_set(err, -EINVAL, "validation_split",
                                    "'%s': %zu rows cannot be split %g into non-empty training and validation sets",
                                    ds->source, n, val_fraction);
        }
        if (shuffle) { /* interleave the classes */
                data_shuffle(tr, nt, &rng);
                data_shuffle(va, nv, &rng);
        } else if (strat) {
                /* the stratified split chose the validation rows by class; both sets go back to file order
                 * so that training does not see single-class batches */
                unsigned char *in_val = calloc(n ? n : 1, 1);
                if (!in_val) {
                        free(tr);
                        free(va);
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                }
                for (size_t i = 0; i < nv; i++)
                        in_val[va[i]] = 1;
                nt = nv = 0;
                for (size_t i = 0; i < n; i++) {
                        if (in_val[i])
                                va[nv++] = i;
                        else
                                tr[nt++] = i;
                }
                free(in_val);
        }
        ret->train = tr;
        ret->n_train = nt;
        ret->val = va;
        ret->n_val = nv;
        return 0;
}

/* ---- transform -------------------------------------------------------------- */

void data_transform_deinit(struct data_transform *t) {
        if (!t)
                return;
        free(t->mean);
        free(t->std);
        t->mean = t->std = NULL;
}

int data_transform_fit(struct data_transform *t, const struct dataset *ds, const size_t *idx, size_t n,
                       struct ft_error *err) {
        if (ds->kind != DATA_TABLE || !t->standardize)
                return 0;
        if (n == 0)
                return ft_error_set(err, -EINVAL, NULL, "no training rows to compute standardization statistics from");
        size_t f = ds->n_features;
        float *mean = calloc(f, sizeof(float)), *sd = calloc(f, sizeof(float));
        double *s = calloc(f, sizeof(double)), *s2 = calloc(f, sizeof(double));
        if (!mean || !sd || !s || !s2) {
                free(mean);
                free(sd);
                free(s);
                free(s2);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
                const float *row = ds->x + idx[i] * f;
                for (size_t j = 0; j < f; j++)
                        s[j] += row[j];
        }
        for (size_t j = 0; j < f; j++)
                s[j] /= (double)n;
        for (size_t i = 0; i < n; i++) { /* two passes: no cancellation */
                const float *row = ds->x + idx[i] * f;
                for (size_t j = 0; j < f; j++)
                        s2[j] += ((double)row[j] - s[j]) * ((double)row[j] - s[j]);
        }
        for (size_t j = 0; j < f; j++) {
                mean[j] = (float)s[j];
                double v = sqrt(s2[j] / (double)n);
                sd[j] = v > 0 ? (float)v : 1.0f; /* a constant column stays constant (sklearn does the same) */
        }
        free(s);
        free(s2);
        free(t->mean);
        free(t->std);
        t->mean = mean;
        t->std = sd;
        t->n_features = f;
        return 0;
}

int data_transform_check(const struct data_transform *t, const struct dataset *ds, struct ft_error *err) {
        if (ds->kind == DATA_TABLE) {
                if (t->standardize && (!t->mean || !t->std || t->n_features != ds->n_features))
                        return ft_error_set(err, -EINVAL, "preprocess.standardize",
                                            "standardization statistics are for %zu features, '%s' has %zu",
                                            t->n_features, ds->source, ds->n_features);
                for (size_t j = 0; t->standardize && j < t->n_features; j++)
                        if (!(t->std[j] > 0) || !isfinite(t->mean[j]))
                                return ft_error_set(err, -EINVAL, "preprocess.standardize",
                                                    "standardization statistics for feature %zu are not usable", j);
                return 0;
        }
        size_t c = t->channels ? t->channels : ds->channels;
        if (c != ds->channels && !(ds->channels == 1 && c == 3))
                return ft_error_set(err, -EINVAL, "preprocess.channels",
                                    "'%s' has %zu-channel images; they can be used as %zu channels, not %zu",
                                    ds->source, ds->channels, ds->channels, c);
        if (t->height > DATA_IMAGE_SIDE_MAX || t->width > DATA_IMAGE_SIDE_MAX || (!t->height != !t->width))
                return ft_error_set(err, -EINVAL, "preprocess.resize", "resize must be two sizes from 1 to %d",
                                    DATA_IMAGE_SIDE_MAX);
        size_t h = t->height ? t->height : ds->height;
        if (t->crop_padding > h)
                return ft_error_set(err, -EINVAL, "preprocess.augment.random_crop_padding",
                                    "crop padding %zu is larger than the image (%zu)", t->crop_padding, h);
        if (t->n_norm > DATA_NORM_MAX || (t->n_norm > 1 && t->n_norm != c))
                return ft_error_set(err, -EINVAL, "preprocess.normalize",
                                    "normalize has %zu values; one, or one per channel (%zu), are needed", t->n_norm,
                                    c);
        for (size_t i = 0; i < t->n_norm; i++)
                if (!(t->norm_std[i] > 0) || !isfinite(t->norm_mean[i]))
                        return ft_error_set(err, -EINVAL, "preprocess.normalize",
                                            "normalize std must be positive and mean finite");
        return 0;
}

int data_transform_to_json(const struct data_transform *t, char **ret, struct ft_error *err) {
        json_t *o = json_object();
        json_object_set_new(o, "standardize", json_boolean(t->standardize));
        if (t->standardize && t->mean) {
                json_t *m = json_array(), *s = json_array();
                for (size_t j = 0; j < t->n_features; j++) {
                        json_array_append_new(m, json_real(t->mean[j]));
                        json_array_append_new(s, json_real(t->std[j]));
                }
                json_object_set_new(o, "mean", m);
                json_object_set_new(o, "std", s);
        }
        if (t->channels || t->height) {
                json_object_set_new(
                        o, "input",
                        json_pack("[I, I, I]", (json_int_t)t->channels, (json_int_t)t->height, (json_int_t)t->width));
        }
        if (t->n_norm) {
                json_t *m = json_array(), *s = json_array();
                for (size_t j = 0; j < t->n_norm; j++) {
                        json_array_append_new(m, json_real(t->norm_mean[j]));
                        json_array_append_new(s, json_real(t->norm_std[j]));
                }
                json_object_set_new(o, "normalize", json_pack("{s:o, s:o}", "mean", m, "std", s));
        }
        json_object_set_new(
                o, "augment",
                json_pack("{s:I, s:b}", "random_crop_padding", (json_int_t)t->crop_padding, "hflip", t->hflip));
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        json_decref(o);
        if (!s)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        *ret = s;
        return 0;
}

static int floats(json_t *a, float *dst, size_t max, size_t *n) {
        if (!json_is_array(a) || json_array_size(a) > max)
                return -EINVAL;
        for (size_t i = 0; i < json_array_size(a); i++) {
                json_t *v = json_array_get(a, i);
                if (!json_is_number(v))
                        return -EINVAL;
                dst[i] = (float)json_number_value(v);
        }
        *n = json_array_size(a);
        return 0;
}

int data_transform_from_json(const char *js, struct data_transform *ret, struct ft_error *err) {
        struct data_transform t = {0};
        json_error_t je;
        json_t *o = json_loads(js, JSON_REJECT_DUPLICATES, &je), *v;
        if (!o || !json_is_object(o)) {
                json_decref(o);
                return ft_error_set(err, -EINVAL, NULL, "preprocessing metadata is not a JSON object");
        }
        t.standardize = json_is_true(json_object_get(o, "standardize"));
        json_t *m = json_object_get(o, "mean"), *s = json_object_get(o, "std");
        if (t.standardize) {
                size_t n = json_array_size(m), k1 = 0, k2 = 0;
                if (n == 0 || n != json_array_size(s) || n > DATA_COLUMNS_MAX)
                        goto bad;
                t.mean = malloc(n * sizeof(float));
                t.std = malloc(n * sizeof(float));
                if (!t.mean || !t.std || floats(m, t.mean, n, &k1) < 0 || floats(s, t.std, n, &k2) < 0)
                        goto bad;
                t.n_features = n;
        }
        if ((v = json_object_get(o, "input"))) {
                json_int_t c, h, w;
                if (json_unpack(v, "[I, I, I]", &c, &h, &w) < 0 || c < 0 || h < 0 || w < 0 || c > DATA_NORM_MAX ||
                    h > DATA_IMAGE_SIDE_MAX || w > DATA_IMAGE_SIDE_MAX)
                        goto bad;
                t.channels = (size_t)c;
                t.height = (size_t)h;
                t.width = (size_t)w;
        }
        if ((v = json_object_get(o, "normalize"))) {
                size_t a, b;
                if (floats(json_object_get(v, "mean"), t.norm_mean, DATA_NORM_MAX, &a) < 0 ||
                    floats(json_object_get(v, "std"), t.norm_std, DATA_NORM_MAX, &b) < 0 || a != b)
                        goto bad;
                t.n_norm = a;
        }
        if ((v = json_object_get(o, "augment"))) {
                json_int_t p = json_integer_value(json_object_get(v, "random_crop_padding"));
                if (p < 0 || p > DATA_IMAGE_SIDE_MAX)
                        goto bad;
                t.crop_padding = (size_t)p;
                t.hflip = json_is_true(json_object_get(v, "hflip"));
        }
        json_decref(o);
        *ret = t;
        return 0;
bad:
        json_decref(o);
        data_transform_deinit(&t);
        return ft_error_set(err, -EINVAL, NULL, "preprocessing metadata is malformed");
}

/* ---- resize ----------------------------------------------------------------- */

void data_resize_bilinear(const float *src, size_t sh, size_t sw, float *dst, size_t dh, size_t dw) {
        float sy = (float)sh / (float)dh, sx = (float)sw / (float)dw;
        for (size_t y = 0; y < dh; y++) {
                float fy = fmaxf(sy * ((float)y + 0.5f) - 0.5f, 0.0f);
                size_t y0 = (size_t)fy, y1 = y0 + (y0 < sh - 1);
                float ly = fy - (float)y0;
                for (size_t x = 0; x < dw; x++) {
                        float fx = fmaxf(sx * ((float)x + 0.5f) - 0.5f, 0.0f);
                        size_t x0 = (size_t)fx, x1 = x0 + (x0 < sw - 1);
                        float lx = fx - (float)x0;
                        dst[y * dw + x] = (1 - ly) * ((1 - lx) * src[y0 * sw + x0] + lx * src[y0 * sw + x1]) +
                                          ly * ((1 - lx) * src[y1 * sw + x0] + lx * src[y1 * sw + x1]);
                }
        }
}
