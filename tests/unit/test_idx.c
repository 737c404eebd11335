/* test_idx.c - the IDX reader: plain and gzip pairs, Fashion-MNIST as shipped by
 * Debian (checked against facts tools/gen_io_fixtures.py computed with numpy),
 * data_inspect's format detection, and every class of bad IDX file. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#include "compute/data.h"
#include "compute/safetensors.h"
#include "tests/tap.h"

static char dir[] = "/tmp/test_idx_XXXXXX";

static const char *tmp(const char *name) {
        static char p[2][256];
        static int k;
        k ^= 1;
        snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
        return p[k];
}

/* Write an IDX file: header for ndim dims, then `len` payload bytes (which may
 * disagree with the dims), optionally gzip'd. */
static void write_idx(const char *path, bool gz, uint8_t type, uint8_t ndim, const uint32_t *dims, const uint8_t *data,
                      size_t len) {
        uint8_t h[20] = {0, 0, type, ndim};
        for (uint8_t i = 0; i < ndim; i++) {
                h[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
                h[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
                h[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
                h[7 + 4 * i] = (uint8_t)dims[i];
        }
        if (gz) {
                gzFile f = gzopen(path, "wb");
                gzwrite(f, h, 4 + 4u * ndim);
                if (len)
                        gzwrite(f, data, (unsigned)len);
                gzclose(f);
        } else {
                FILE *f = fopen(path, "wb");
                fwrite(h, 1, 4 + 4u * ndim, f);
                fwrite(data, 1, len, f);
                fclose(f);
        }
}

static uint8_t pix[5 * 3 * 4], lab[5] = {2, 0, 1, 2, 2};

static void pair(bool gz) {
        uint32_t di[3] = {5, 3, 4}, dl[1] = {5};
        write_idx(tmp("img"), gz, 8, 3, di, pix, sizeof(pix));
        write_idx(tmp("lab"), gz, 8, 1, dl, lab, sizeof(lab));
}

static void bad_pair(const char *what, const char *n1, const char *n2) {
        struct dataset *ds = NULL;
        struct ft_error err = {0};
        int r = idx_read(tmp("img"), tmp("lab"), 0, &ds, &err);
        bool good = r < 0 && !ds && strstr(err.message, dir) && (!n1 || strstr(err.message, n1)) &&
                    (!n2 || strstr(err.message, n2));
        if (!ok(good, "rejects %s", what))
                diag("message: %s", err.message);
        else
                diag("%s", err.message);
        dataset_free(ds);
}

static void test_small(void) {
        for (size_t i = 0; i < sizeof(pix); i++)
                pix[i] = (uint8_t)(i * 7);
        for (int gz = 0; gz < 2; gz++) {
                pair(gz);
                struct dataset *ds = NULL;
                struct ft_error err = {0};
                ok(idx_read(tmp("img"), tmp("lab"), 0, &ds, &err) == 0, "%s pair loads: %s", gz ? "gzip" : "plain",
                   err.message);
                if (!ds)
                        continue;
                ok(ds->kind == DATA_IMAGES && ds->n == 5 && ds->channels == 1 && ds->height == 3 && ds->width == 4,
                   "5 images of 1x3x4");
                ok(memcmp(ds->pixels, pix, sizeof(pix)) == 0, "pixels intact");
                ok(ds->n_classes == 3 && ds->class_counts[2] == 3 && ds->labels[1] == 0 &&
                           strcmp(ds->class_names[2], "2") == 0,
                   "classes 0..2 with counts");
                dataset_free(ds);
        }
        /* a subset whose labels are 5..9 only: the classes are the values present, renumbered in order */
        uint32_t di[3] = {5, 3, 4}, dl[1] = {5};
        uint8_t high[5] = {9, 5, 7, 9, 5};
        write_idx(tmp("img"), false, 8, 3, di, pix, sizeof(pix));
        write_idx(tmp("lab"), false, 8, 1, dl, high, sizeof(high));
        struct dataset *hd = NULL;
        struct ft_error herr = {0};
        ok(idx_read(tmp("img"), tmp("lab"), 0, &hd, &herr) == 0 && hd->n_classes == 3 &&
                   strcmp(hd->class_names[0], "5") == 0 && strcmp(hd->class_names[1], "7") == 0 &&
                   strcmp(hd->class_names[2], "9") == 0 && hd->labels[0] == 2 && hd->labels[1] == 0 &&
                   hd->labels[2] == 1 && hd->class_counts[0] == 2 && hd->class_counts[2] == 2,
           "labels 5, 7, 9 only: 3 classes \"5\" \"7\" \"9\", labels renumbered 0..2 (%s)", herr.message);
        dataset_free(hd);
        pair(false);

        /* inspect: the pair in either order */
        void *j = NULL;
        struct ft_error err = {0};
        ok(data_inspect(tmp("lab"), tmp("img"), NULL, &j, &err) == 0, "inspect takes the pair reversed: %s",
           err.message);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        ok(s && strstr(s, "\"image_shape\":[1,3,4]") && strstr(s, "\"rows\":5"), "inspect summary: %s", s);
        free(s);
        json_decref(j);
        ok(data_inspect(tmp("img"), NULL, NULL, &j, &err) < 0 && strstr(err.message, "pair"),
           "inspect of one IDX file asks for its pair: %s", err.message);
        struct dataset *ds = NULL;
        ok(data_open(tmp("lab"), tmp("img"), NULL, &ds, &err) == 0 && ds->n == 5, "data_open: the pair reversed");
        dataset_free(ds);
        ds = NULL;
        ok(data_open(FIXTURES "/mlp.safetensors", NULL, NULL, &ds, &err) < 0 && strstr(err.message, "not a dataset"),
           "data_open refuses weights: %s", err.message);
}

/* issue 21: colour images, 4-D IDX (N x C x H x W, C = 3 or 1) */
static void test_color(void) {
        uint8_t rgb[5 * 3 * 3 * 4];
        for (size_t i = 0; i < sizeof(rgb); i++)
                rgb[i] = (uint8_t)(i * 5 + 1);
        uint32_t d4[4] = {5, 3, 3, 4}, dl[1] = {5};
        write_idx(tmp("img"), true, 8, 4, d4, rgb, sizeof(rgb));
        write_idx(tmp("lab"), false, 8, 1, dl, lab, sizeof(lab));
        struct dataset *ds = NULL;
        struct ft_error err = {0};
        ok(idx_read(tmp("img"), tmp("lab"), 0, &ds, &err) == 0, "4-D gzip IDX loads: %s", err.message);
        ok(ds && ds->channels == 3 && ds->height == 3 && ds->width == 4 && ds->n == 5, "5 images of 3x3x4");
        ok(ds && memcmp(ds->pixels, rgb, sizeof(rgb)) == 0, "pixels in N, C, H, W order");
        dataset_free(ds);
        ds = NULL;
        ok(data_open(tmp("lab"), tmp("img"), NULL, &ds, &err) == 0 && ds->channels == 3,
           "data_open: a 4-D pair reversed");
        dataset_free(ds);
        void *j = NULL;
        ok(data_inspect(tmp("img"), tmp("lab"), NULL, &j, &err) == 0, "inspect a 4-D pair");
        char *js = j ? json_dumps(j, JSON_COMPACT) : NULL;
        ok(js && strstr(js, "\"image_shape\":[3,3,4]"), "inspect summary: image_shape [3, 3, 4]: %s", js);
        free(js);
        json_decref(j);
        /* the loader sees three planes: a batch is 3 x 3 x 4 per image, channel c from plane c */
        size_t idx[5] = {0, 1, 2, 3, 4};
        ds = NULL;
        idx_read(tmp("img"), tmp("lab"), 0, &ds, &err);
        struct data_transform t = {0};
        struct data_loader *l = NULL;
        struct data_loader_options o = {.batch_size = 5};
        struct data_batch b = {0};
        ok(ds && data_loader_new(ds, idx, 5, &t, &o, &l, &err) == 0 && data_loader_next(l, &b) == 1 && b.c == 3 &&
                   b.h == 3 && b.w == 4,
           "batches of 3 x 3 x 4 (%s)", err.message);
        ok(b.x && fabsf(b.x[1 * 36 + 2 * 12 + 5] - (float)rgb[1 * 36 + 2 * 12 + 5] / 255.0f) < 1e-6f,
           "image 1, channel 2, pixel 5 is the file's byte / 255");
        data_loader_free(l);
        dataset_free(ds);
        /* 4-D with one channel is gray */
        uint32_t g4[4] = {5, 1, 3, 4};
        write_idx(tmp("img"), false, 8, 4, g4, pix, sizeof(pix));
        ds = NULL;
        ok(idx_read(tmp("img"), tmp("lab"), 0, &ds, &err) == 0 && ds->channels == 1 && ds->height == 3 &&
                   memcmp(ds->pixels, pix, sizeof(pix)) == 0,
           "4-D with C = 1 is the 3-D file: %s", err.message);
        dataset_free(ds);
        uint32_t c2[4] = {5, 2, 3, 2};
        write_idx(tmp("img"), false, 8, 4, c2, pix, sizeof(pix));
        bad_pair("4-D with 2 channels", "2 channels", "1 (gray) or 3 (RGB)");
}

static void test_bad(void) {
        uint32_t di[3] = {5, 3, 4}, dl[1] = {5}, d4[1] = {4};
        pair(false);
        FILE *f = fopen(tmp("img"), "r+b");
        fputc(0x01, f);
        fclose(f);
        bad_pair("a wrong magic", "wrong magic 0x01000803", "byte offset 0");

        write_idx(tmp("img"), false, 0x0D, 3, di, pix, sizeof(pix));
        bad_pair("an unsupported element type", "element type 0x0d", "byte offset 2");

        write_idx(tmp("img"), false, 8, 3, di, pix, sizeof(pix) - 1);
        bad_pair("truncated data", "truncated", "60 bytes of data after byte offset 16");

        write_idx(tmp("img"), true, 8, 3, di, pix, sizeof(pix) - 7);
        bad_pair("truncated data inside gzip", "truncated", "the file has 53");

        write_idx(tmp("img"), false, 8, 3, di, pix, sizeof(pix));
        f = fopen(tmp("img"), "ab");
        fputc(0, f);
        fclose(f);
        bad_pair("trailing bytes", "trailing bytes", "byte offset 76");

        write_idx(tmp("img"), false, 8, 3, di, pix, sizeof(pix));
        write_idx(tmp("lab"), false, 8, 1, d4, lab, 4);
        bad_pair("counts that disagree", "5 images", "4 labels");

        write_idx(tmp("lab"), false, 8, 3, di, pix, sizeof(pix));
        bad_pair("a label file with 3 dimensions", "label file has 1 dimension", NULL);

        write_idx(tmp("img"), false, 8, 1, dl, lab, sizeof(lab));
        bad_pair("an image file with 1 dimension", "image file has 3 dimensions", NULL);

        uint8_t same[5] = {0};
        write_idx(tmp("img"), false, 8, 3, di, pix, sizeof(pix));
        write_idx(tmp("lab"), false, 8, 1, dl, same, 5);
        bad_pair("a single class", "two or more classes", NULL);
        uint8_t sevens[5] = {7, 7, 7, 7, 7};
        write_idx(tmp("lab"), false, 8, 1, dl, sevens, 5);
        bad_pair("a single class that is not 0", "every label is 7", NULL);

        /* corrupt gzip: a valid stream with bytes in the middle of the deflate data flipped */
        static uint8_t big[4096];
        for (size_t i = 0; i < sizeof(big); i++)
                big[i] = (uint8_t)(i * 2654435761u >> 13);
        uint32_t db[3] = {1, 64, 64};
        write_idx(tmp("img"), true, 8, 3, db, big, sizeof(big));
        f = fopen(tmp("img"), "r+b");
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, sz / 2, SEEK_SET);
        for (int i = 0; i < 16; i++)
                fputc(0xA5 ^ i, f);
        fclose(f);
        write_idx(tmp("lab"), false, 8, 1, (uint32_t[]){1}, lab, 1);
        bad_pair("corrupt gzip data", "gzip", "compressed byte offset");

        /* a gzip file cut short */
        write_idx(tmp("img"), true, 8, 3, db, big, sizeof(big));
        ok(truncate(tmp("img"), sz / 2) == 0, "cut the gzip file");
        bad_pair("a truncated gzip file", "truncated", NULL);

        f = fopen(tmp("img"), "wb");
        fclose(f);
        bad_pair("an empty file", "is empty", NULL);

        uint32_t dh[3] = {0xffffffffu, 0xffffffffu, 0xffffffffu};
        write_idx(tmp("img"), false, 8, 3, dh, pix, 4);
        pair(false);
        write_idx(tmp("img"), false, 8, 3, dh, pix, 4);
        struct dataset *ds = NULL;
        struct ft_error err = {0};
        ok(idx_read(tmp("img"), tmp("lab"), 1 << 20, &ds, &err) == -EFBIG && strstr(err.message, "limit"),
           "dimensions beyond the byte limit are refused before allocating: %s", err.message);
        pair(false);
        ok(idx_read(tmp("img"), tmp("lab"), 10, &ds, &err) == -EFBIG, "the byte limit applies to the file");
}

static void test_fmnist(void) {
        struct st_file *facts = NULL;
        struct ft_error err = {0};
        int64_t v[8] = {0};
        ok(st_file_open(FIXTURES "/fmnist_facts.safetensors", 0, &facts, &err) == 0 &&
                   st_tensor_read_i64(facts, st_file_find(facts, "facts"), v, 8, &err) == 0,
           "facts fixture: %s", err.message);
        st_file_free(facts);
        struct dataset *tr = NULL, *te = NULL;
        double t0 = ft_now_monotonic();
        ok(idx_read(FMNIST_DIR "/train-images-idx3-ubyte.gz", FMNIST_DIR "/train-labels-idx1-ubyte.gz", 0, &tr, &err) ==
                   0,
           "Fashion-MNIST train loads: %s", err.message);
        ok(idx_read(FMNIST_DIR "/t10k-images-idx3-ubyte.gz", FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", 0, &te, &err) ==
                   0,
           "Fashion-MNIST test loads: %s", err.message);
        diag("both loaded in %.2f s", ft_now_monotonic() - t0);
        if (!tr || !te) {
                dataset_free(tr);
                dataset_free(te);
                return;
        }
        ok(tr->n == 60000 && te->n == 10000, "60,000 + 10,000 images");
        ok(tr->channels == 1 && tr->height == 28 && tr->width == 28, "1x28x28");
        ok(tr->n_classes == 10 && te->n_classes == 10, "10 classes");
        bool counts = true;
        for (int c = 0; c < 10; c++)
                counts = counts && tr->class_counts[c] == 6000 && te->class_counts[c] == 1000;
        ok(counts, "6000 / 1000 images per class");
        int64_t s0 = 0, st = 0, se = 0, s_last = 0;
        for (size_t i = 0; i < 784; i++) {
                s0 += tr->pixels[i];
                s_last += tr->pixels[59999 * 784 + i];
        }
        for (size_t i = 0; i < tr->n * 784; i++)
                st += tr->pixels[i];
        for (size_t i = 0; i < te->n * 784; i++)
                se += te->pixels[i];
        ok(tr->labels[0] == v[0] && s0 == v[1] && te->labels[0] == v[2], "first image and labels match numpy");
        ok(st == v[4] && se == v[5] && s_last == v[6] && tr->labels[59999] == v[7], "pixel sums match numpy");
        dataset_free(tr);
        dataset_free(te);
}

int main(void) {
        if (!mkdtemp(dir))
                return 1;
        test_small();
        test_bad();
        test_color();
        test_fmnist();
        static const char *names[] = {"img", "lab"};
        for (size_t i = 0; i < 2; i++)
                unlink(tmp(names[i]));
        rmdir(dir);
        return tap_done();
}
