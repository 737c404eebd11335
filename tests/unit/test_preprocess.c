/* test_preprocess.c - split, standardization, bilinear resize (against PyTorch,
 * tests/fixtures/io/resize.safetensors), image transforms and the batch loader. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compute/data.h"
#include "compute/safetensors.h"
#include "tests/tap.h"

static struct dataset *table(size_t n, size_t f) {
        struct dataset *ds = calloc(1, sizeof(*ds));
        ds->kind = DATA_TABLE;
        ds->task = DATA_CLASSIFICATION;
        ds->source = strdup("t.csv");
        ds->n = n;
        ds->n_features = f;
        ds->x = malloc(n * f * sizeof(float));
        ds->labels = malloc(n * sizeof(int32_t));
        ds->n_classes = 3;
        ds->class_counts = calloc(3, sizeof(size_t));
        for (size_t i = 0; i < n; i++) {
                /* classes 0:60%, 1:30%, 2:10% */
                ds->labels[i] = i % 10 < 6 ? 0 : i % 10 < 9 ? 1 : 2;
                ds->class_counts[ds->labels[i]]++;
                for (size_t j = 0; j < f; j++)
                        ds->x[i * f + j] = (float)(i * (j + 1)) + (float)j * 100;
        }
        return ds;
}

static void test_rng_split(void) {
        struct data_rng a, a2;
        data_rng_seed(&a, 42);
        data_rng_seed(&a2, 42);
        bool same = true;
        for (int i = 0; i < 100; i++)
                same = same && data_rng_next(&a) == data_rng_next(&a2);
        ok(same, "same seed, same stream");
        size_t counts[5] = {0};
        for (int i = 0; i < 5000; i++)
                counts[data_rng_below(&a, 5)]++;
        ok(counts[0] > 900 && counts[4] > 900 && counts[2] < 1100, "below(5) is roughly uniform");

        struct dataset *ds = table(1000, 2);
        struct data_split s1, s2;
        struct ft_error err = {0};
        ok(data_split_make(ds, 0.2, true, 7, &s1, &err) == 0 && data_split_make(ds, 0.2, true, 7, &s2, &err) == 0,
           "split");
        is_int(s1.n_train, 800, "800 train");
        is_int(s1.n_val, 200, "200 validation");
        ok(memcmp(s1.train, s2.train, s1.n_train * sizeof(size_t)) == 0, "seeded split is reproducible");
        size_t per[3] = {0};
        unsigned char *seen = calloc(1000, 1);
        for (size_t i = 0; i < s1.n_val; i++) {
                per[ds->labels[s1.val[i]]]++;
                seen[s1.val[i]]++;
        }
        for (size_t i = 0; i < s1.n_train; i++)
                seen[s1.train[i]]++;
        bool cover = true;
        for (size_t i = 0; i < 1000; i++)
                cover = cover && seen[i] == 1;
        ok(cover, "train and validation partition the rows");
        ok(per[0] == 120 && per[1] == 60 && per[2] == 20, "stratified: 120/60/20 of 600/300/100");
        ok(s1.val[0] != 0 || s1.val[1] != 1, "validation is shuffled");
        data_split_deinit(&s2);
        ok(data_split_make(ds, 0.2, true, 8, &s2, &err) == 0 && memcmp(s1.val, s2.val, 200 * sizeof(size_t)) != 0,
           "another seed, another split");
        data_split_deinit(&s2);
        ok(data_split_make(ds, 1.0, true, 8, &s2, &err) < 0 && strcmp(err.param, "validation_split") == 0,
           "split 1.0 is refused naming validation_split");

        /* z-score from the training rows only */
        struct data_transform t = {.standardize = true};
        ok(data_transform_fit(&t, ds, s1.train, s1.n_train, &err) == 0, "fit");
        double m = 0, v = 0;
        for (size_t i = 0; i < s1.n_train; i++)
                m += ds->x[s1.train[i] * 2 + 1];
        m /= (double)s1.n_train;
        for (size_t i = 0; i < s1.n_train; i++)
                v += pow(ds->x[s1.train[i] * 2 + 1] - m, 2);
        v = sqrt(v / (double)s1.n_train);
        is_close(t.mean[1], m, 1e-6, "mean of the training split");
        is_close(t.std[1], v, 1e-6, "population std of the training split");
        char *js = NULL;
        struct data_transform t2 = {0};
        ok(data_transform_to_json(&t, &js, &err) == 0 && data_transform_from_json(js, &t2, &err) == 0 &&
                   t2.standardize && t2.n_features == 2 && t2.mean[1] == t.mean[1] && t2.std[0] == t.std[0],
           "transform survives JSON exactly: %.80s", js ? js : "");
        free(js);
        ok(data_transform_from_json("{\"standardize\": true, \"mean\": [1], \"std\": []}", &t2, &err) < 0,
           "malformed transform JSON is refused");

        /* loader over the training rows */
        struct data_loader *l = NULL;
        struct data_loader_options o = {.batch_size = 64, .shuffle = true, .seed = 1};
        ok(data_loader_new(ds, s1.train, s1.n_train, &t, &o, &l, &err) == 0, "loader: %s", err.message);
        is_int(data_loader_batches(l), 13, "800 rows in 13 batches of 64");
        struct data_batch b;
        float *first = NULL;
        size_t n = 0, nb = 0;
        double sum = 0;
        bool same_buf = true;
        while (data_loader_next(l, &b)) {
                if (!first)
                        first = b.x;
                same_buf = same_buf && b.x == first;
                for (size_t i = 0; i < b.n; i++)
                        sum += b.x[i * 2 + 1];
                n += b.n;
                nb++;
        }
        ok(n == 800 && nb == 13 && b.c == 2 && b.h == 1 && b.w == 1, "one epoch: every row once, 13 batches");
        ok(same_buf, "every batch reuses one buffer (no allocation per batch)");
        ok(fabs(sum / 800) < 1e-4, "standardized training features have mean 0 (%g)", sum / 800);
        data_loader_start(l, 0);
        data_loader_next(l, &b);
        int32_t l0[64];
        memcpy(l0, b.labels, sizeof(l0));
        data_loader_start(l, 1);
        data_loader_next(l, &b);
        ok(memcmp(l0, b.labels, sizeof(l0)) != 0, "each epoch has its own order");
        data_loader_start(l, 0);
        data_loader_next(l, &b);
        ok(memcmp(l0, b.labels, sizeof(l0)) == 0, "an epoch's order depends only on seed and epoch");
        data_loader_free(l);
        o.drop_last = true;
        ok(data_loader_new(ds, s1.train, s1.n_train, &t, &o, &l, &err) == 0 && data_loader_batches(l) == 12,
           "drop_last: 12 full batches");
        data_loader_free(l);
        t.n_features = 3;
        ok(data_loader_new(ds, s1.train, s1.n_train, &t, &o, &l, &err) < 0 && strstr(err.message, "3 features"),
           "statistics for another feature count are refused: %s", err.message);
        data_transform_deinit(&t);
        data_transform_deinit(&t2);
        data_split_deinit(&s1);
        free(seen);
        dataset_free(ds);
}

/* issue 21: `shuffle: false` keeps file order for classification, with or without a stratified split */
static void test_split_file_order(void) {
        struct dataset *ds = table(100, 1);
        struct ft_error err = {0};
        double fracs[] = {0, 0.2};
        for (size_t f = 0; f < 2; f++) {
                struct data_split s;
                ok(data_split_make(ds, fracs[f], false, 7, &s, &err) == 0, "split %g without shuffle", fracs[f]);
                bool ascending = true;
                for (size_t i = 1; i < s.n_train; i++)
                        ascending = ascending && s.train[i] > s.train[i - 1];
                for (size_t i = 1; i < s.n_val; i++)
                        ascending = ascending && s.val[i] > s.val[i - 1];
                ok(ascending, "split %g: training and validation rows are in file order", fracs[f]);
                if (fracs[f] == 0) {
                        bool identity = s.n_train == 100;
                        for (size_t i = 0; identity && i < s.n_train; i++)
                                identity = s.train[i] == i;
                        ok(identity, "split 0: the training rows are the file, row for row");
                }
                /* batches of 10 rows in file order hold all three classes, not one */
                struct data_transform t = {0};
                struct data_loader *l = NULL;
                struct data_loader_options o = {.batch_size = 10, .seed = 1};
                ok(data_loader_new(ds, s.train, s.n_train, &t, &o, &l, &err) == 0, "loader: %s", err.message);
                struct data_batch b;
                size_t single = 0, nb = 0;
                while (data_loader_next(l, &b)) {
                        bool one = true;
                        for (size_t i = 1; i < b.n; i++)
                                one = one && b.labels[i] == b.labels[0];
                        single += one;
                        nb++;
                }
                ok(nb > 0 && single == 0, "split %g: no single-class batch (%zu of %zu)", fracs[f], single, nb);
                data_loader_free(l);
                data_split_deinit(&s);
        }
        dataset_free(ds);
}

static void test_resize(void) {
        struct st_file *f = NULL;
        struct ft_error err = {0};
        if (!ok(st_file_open(FIXTURES "/resize.safetensors", 0, &f, &err) == 0, "resize fixture: %s", err.message))
                return;
        const struct st_tensor *in = st_file_find(f, "input");
        float src[3 * 7 * 9], dst[3 * 28 * 28], want[3 * 28 * 28];
        st_tensor_read_f32(f, in, src, 3 * 7 * 9, &err);
        for (size_t i = 0; i < f->n_tensors; i++) {
                const struct st_tensor *t = &f->tensors[i];
                if (strncmp(t->name, "out_", 4) != 0)
                        continue;
                size_t h = (size_t)t->shape[1], w = (size_t)t->shape[2];
                st_tensor_read_f32(f, t, want, t->numel, &err);
                for (size_t c = 0; c < 3; c++)
                        data_resize_bilinear(src + c * 63, 7, 9, dst + c * h * w, h, w);
                double worst = 0;
                for (size_t k = 0; k < t->numel; k++)
                        worst = fmax(worst, fabs(dst[k] - want[k]));
                ok(worst <= 1e-6, "bilinear 7x9 -> %zux%zu matches F.interpolate (max abs err %.2g)", h, w, worst);
        }
        st_file_free(f);
}

static void test_images(void) {
        /* four 1x4x4 images: image i has pixel value 10*i + y*4 + x */
        struct dataset ds = {.kind = DATA_IMAGES,
                             .task = DATA_CLASSIFICATION,
                             .source = "img",
                             .n = 4,
                             .channels = 1,
                             .height = 4,
                             .width = 4,
                             .n_classes = 2};
        uint8_t pixels[64];
        int32_t labels[4] = {0, 1, 0, 1};
        for (size_t i = 0; i < 64; i++)
                pixels[i] = (uint8_t)(10 * (i / 16) + i % 16);
        ds.pixels = pixels;
        ds.labels = labels;
        size_t idx[4] = {0, 1, 2, 3};
        struct ft_error err = {0};
        struct data_transform t = {.channels = 3, .n_norm = 3, .norm_mean = {0.5f, 0.25f, 0}, .norm_std = {0.5f, 2, 1}};
        struct data_loader_options o = {.batch_size = 4};
        struct data_loader *l = NULL;
        struct data_batch b;
        ok(data_loader_new(&ds, idx, 4, &t, &o, &l, &err) == 0 && data_loader_next(l, &b) == 1, "image loader: %s",
           err.message);
        ok(b.n == 4 && b.c == 3 && b.h == 4 && b.w == 4, "NCHW 4x3x4x4 (gray replicated to 3 channels)");
        float v = (10 + 15) / 255.0f; /* image 1, y=3, x=3 */
        size_t at = 1 * 48 + 15;
        is_close(b.x[at], (v - 0.5f) / 0.5f, 1e-6, "channel 0: [0,1] then (x - 0.5) / 0.5");
        is_close(b.x[at + 16], (v - 0.25f) / 2, 1e-6, "channel 1 normalized with its own mean/std");
        is_close(b.x[at + 32], v, 1e-6, "channel 2");
        data_loader_free(l);

        /* resize 4x4 -> 8x8 keeps the mean of a linear ramp */
        t = (struct data_transform){.height = 8, .width = 8};
        ok(data_loader_new(&ds, idx, 4, &t, &o, &l, &err) == 0 && data_loader_next(l, &b) == 1 && b.h == 8 &&
                   b.w == 8 && b.c == 1,
           "resize to 8x8");
        is_close(b.x[0], 0, 1e-6, "top-left corner stays");
        data_loader_free(l);

        /* augmentation: with padding 2 some batches show the zero padding; flips mirror rows */
        t = (struct data_transform){.crop_padding = 2, .hflip = true};
        o = (struct data_loader_options){.batch_size = 4, .augment = true, .seed = 3};
        ok(data_loader_new(&ds, idx, 4, &t, &o, &l, &err) == 0, "augmenting loader");
        size_t zeros = 0, flipped = 0, plain = 0;
        for (uint64_t e = 0; e < 50; e++) {
                data_loader_start(l, e);
                data_loader_next(l, &b);
                for (size_t i = 0; i < 4; i++) {
                        const float *x = b.x + i * 16;
                        for (size_t k = 0; k < 16; k++)
                                zeros += x[k] == 0 && !(i == 0 && k == 0);
                        /* an uncropped image is the ramp, or its mirror */
                        bool is_plain = true, is_flip = true;
                        for (size_t y = 0; y < 4; y++)
                                for (size_t xx = 0; xx < 4; xx++) {
                                        float want = (float)(10 * i + y * 4 + xx) / 255.0f;
                                        float wantf = (float)(10 * i + y * 4 + 3 - xx) / 255.0f;
                                        is_plain = is_plain && x[y * 4 + xx] == want;
                                        is_flip = is_flip && x[y * 4 + xx] == wantf;
                                }
                        plain += is_plain;
                        flipped += is_flip;
                }
        }
        ok(zeros > 0, "random crops show the zero padding");
        ok(plain > 0 && flipped > 0, "some samples uncropped as-is (%zu), some mirrored (%zu)", plain, flipped);
        data_loader_free(l);
        o.augment = false;
        ok(data_loader_new(&ds, idx, 4, &t, &o, &l, &err) == 0 && data_loader_next(l, &b) == 1 &&
                   b.x[16 + 5] == (10 + 5) / 255.0f,
           "without augment (validation) images pass unchanged");
        data_loader_free(l);

        t = (struct data_transform){.channels = 2};
        ok(data_loader_new(&ds, idx, 4, &t, &o, &l, &err) < 0 && strcmp(err.param, "preprocess.channels") == 0,
           "1 -> 2 channels is refused: %s", err.message);
        t = (struct data_transform){.n_norm = 2, .norm_std = {1, 1}};
        ok(data_loader_new(&ds, idx, 4, &t, &o, &l, &err) < 0 && strcmp(err.param, "preprocess.normalize") == 0,
           "normalize with 2 values for 1 channel is refused");
        t = (struct data_transform){.n_norm = 1, .norm_std = {0}};
        ok(data_loader_new(&ds, idx, 4, &t, &o, &l, &err) < 0, "normalize std 0 is refused");
        o.batch_size = 0;
        ok(data_loader_new(&ds, idx, 4, &t, &o, &l, &err) < 0 && strstr(err.param, "batch_size"),
           "batch size 0 is refused");
}

int main(void) {
        test_rng_split();
        test_split_file_order();
        test_resize();
        test_images();
        return tap_done();
}
