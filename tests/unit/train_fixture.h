/* train_fixture.h - helpers shared by the trainer's tests: in-memory datasets,
 * a small MLP, event capture, weight snapshots, temporary directories. Not for:
 * assertions (each test file makes its own). */
#pragma once

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "compute/compute.h"

/* A classification table owned by the test (free with table_free, not dataset_free). */
static __attribute__((unused)) struct dataset *table_new(size_t n, size_t f, size_t k, const float *x,
                                                         const int32_t *y) {
        struct dataset *ds = calloc(1, sizeof(*ds));
        ds->kind = DATA_TABLE;
        ds->task = DATA_CLASSIFICATION;
        ds->source = strdup("fixture.csv");
        ds->n = n;
        ds->n_features = f;
        ds->x = malloc(n * f * sizeof(float));
        memcpy(ds->x, x, n * f * sizeof(float));
        ds->labels = malloc(n * sizeof(int32_t));
        memcpy(ds->labels, y, n * sizeof(int32_t));
        ds->n_classes = k;
        ds->class_names = calloc(k, sizeof(char *));
        ds->class_counts = calloc(k, sizeof(size_t));
        for (size_t c = 0; c < k; c++) {
                char buf[32];
                snprintf(buf, sizeof(buf), "c%zu", c);
                ds->class_names[c] = strdup(buf);
        }
        for (size_t i = 0; i < n; i++)
                ds->class_counts[y[i]]++;
        return ds;
}

static __attribute__((unused)) void table_free(struct dataset *ds) {
        if (!ds)
                return;
        for (size_t c = 0; c < ds->n_classes; c++)
                free(ds->class_names[c]);
        free(ds->class_names);
        free(ds->class_counts);
        free(ds->x);
        free(ds->labels);
        free(ds->source);
        free(ds);
}

/* Deterministic Gaussian blobs: k classes in f dimensions, centres `spread` apart. */
static __attribute__((unused)) struct dataset *blobs_new(size_t n, size_t f, size_t k, double spread, uint64_t seed) {
        float *x = malloc(n * f * sizeof(float));
        int32_t *y = malloc(n * sizeof(int32_t));
        struct data_rng rng;
        data_rng_seed(&rng, seed);
        double centres[16][64];
        for (size_t c = 0; c < k; c++)
                for (size_t j = 0; j < f; j++)
                        centres[c][j] = spread * ((double)data_rng_below(&rng, 2001) / 1000.0 - 1.0);
        for (size_t i = 0; i < n; i++) {
                y[i] = (int32_t)(i % k);
                for (size_t j = 0; j < f; j++) {
                        /* a sum of uniforms is close enough to normal for a test */
                        double u = 0;
                        for (int s = 0; s < 4; s++)
                                u += (double)data_rng_below(&rng, 1000001) / 1e6 - 0.5;
                        x[i * f + j] = (float)(centres[y[i]][j] + u * 1.7);
                }
        }
        struct dataset *ds = table_new(n, f, k, x, y);
        free(x);
        free(y);
        return ds;
}

static __attribute__((unused)) struct model *mlp_new(size_t in, size_t hidden, size_t out, double dropout) {
        json_t *spec;
        if (dropout > 0)
                spec = json_pack("{s:[I] s:[{s:s s:I} {s:s} {s:s s:f} {s:s s:I}]}", "input", (json_int_t)in, "layers",
                                 "type", "linear", "out_features", (json_int_t)hidden, "type", "relu", "type",
                                 "dropout", "p", dropout, "type", "linear", "out_features", (json_int_t)out);
        else
                spec = json_pack("{s:[I] s:[{s:s s:I} {s:s} {s:s s:I}]}", "input", (json_int_t)in, "layers", "type",
                                 "linear", "out_features", (json_int_t)hidden, "type", "relu", "type", "linear",
                                 "out_features", (json_int_t)out);
        struct model *m = NULL;
        struct ft_error err = {0};
        if (model_new(spec, &m, &err) < 0)
                fprintf(stderr, "model_new: %s\n", err.message);
        json_decref(spec);
        return m;
}

/* Every tensor's bytes, concatenated (malloc'd). */
static __attribute__((unused)) uint8_t *snapshot(struct model *m, size_t *ret_n) {
        size_t total = 0, off = 0;
        for (size_t i = 0; i < model_tensor_count(m); i++)
                total += tensor_nbytes(model_tensor_at(m, i));
        uint8_t *buf = malloc(total);
        for (size_t i = 0; i < model_tensor_count(m); i++) {
                struct tensor *t = model_tensor_at(m, i);
                memcpy(buf + off, t->data, tensor_nbytes(t));
                off += tensor_nbytes(t);
        }
        *ret_n = total;
        return buf;
}

struct capture {
        json_t *events;
        unsigned batches_allowed; /* should_stop answers false this many times, then true (0: never stop) */
        unsigned polls;
        unsigned checkpoints;
        char last_checkpoint[4096];
        char by_epoch[64][512]; /* full (not partial) checkpoint path per completed epoch */
};

/* Every typed event is kept as its wire JSON (train_event_json), so tests read what clients read. */
static __attribute__((unused)) int capture_event(struct capture *c, const struct train_event *ev) {
        json_t *j = train_event_json(ev);
        if (!j)
                return -ENOMEM;
        json_array_append_new(c->events, j);
        return 0;
}

static __attribute__((unused)) int capture_epoch(void *ud, const struct train_epoch *e) {
        return capture_event(ud, &(struct train_event){TRAIN_EVENT_EPOCH, .epoch = e});
}

static __attribute__((unused)) int capture_early_stop(void *ud, const struct train_early_stop *es) {
        return capture_event(ud, &(struct train_event){TRAIN_EVENT_EARLY_STOP, .early_stop = es});
}

static __attribute__((unused)) int capture_final(void *ud, const struct train_final *f) {
        return capture_event(ud, &(struct train_event){TRAIN_EVENT_FINAL, .final = f});
}

static __attribute__((unused)) int capture_warning(void *ud, const struct train_warning *w) {
        return capture_event(ud, &(struct train_event){TRAIN_EVENT_WARNING, .warning = w});
}

static __attribute__((unused)) int capture_runtime(void *ud, const struct train_runtime *rt) {
        return capture_event(ud, &(struct train_event){TRAIN_EVENT_RUNTIME, .runtime = rt});
}

/* The final "metrics" event of a result, and its history as an array of epoch events (new references). */
static __attribute__((unused)) json_t *result_metrics(const struct train_result *res) {
        return train_event_json(&(struct train_event){TRAIN_EVENT_FINAL, .final = &res->final});
}

static __attribute__((unused)) json_t *result_history(const struct train_result *res) {
        json_t *a = json_array();
        for (size_t i = 0; i < res->n_history; i++)
                json_array_append_new(
                        a, train_event_json(&(struct train_event){TRAIN_EVENT_EPOCH, .epoch = &res->history[i]}));
        return a;
}

static __attribute__((unused)) bool capture_should_stop(void *ud) {
        struct capture *c = ud;
        c->polls++;
        return c->batches_allowed && c->polls > c->batches_allowed;
}

static __attribute__((unused)) int capture_checkpoint(void *ud, const struct train_checkpoint_info *info) {
        struct capture *c = ud;
        c->checkpoints++;
        capture_event(c, &(struct train_event){TRAIN_EVENT_CHECKPOINT, .checkpoint = info});
        snprintf(c->last_checkpoint, sizeof(c->last_checkpoint), "%s", info->path);
        if (!info->partial && info->epoch < 64)
                snprintf(c->by_epoch[info->epoch], sizeof(c->by_epoch[0]), "%s", info->path);
        return 0;
}

static __attribute__((unused)) struct train_callbacks capture_callbacks(struct capture *c) {
        return (struct train_callbacks){
                .userdata = c,
                .on_epoch = capture_epoch,
                .on_checkpoint = capture_checkpoint,
                .on_early_stop = capture_early_stop,
                .on_final = capture_final,
                .on_runtime = capture_runtime,
                .on_warning = capture_warning,
                .should_stop = capture_should_stop,
        };
}

/* Events of one type, in order (new array). */
static __attribute__((unused)) json_t *events_of(const json_t *events, const char *type) {
        json_t *out = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(events, i, e) {
                if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0)
                        json_array_append(out, e);
        }
        return out;
}

static __attribute__((unused)) int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
        (void)sb;
        (void)flag;
        (void)ftw;
        return remove(path);
}

static __attribute__((unused)) void rm_rf(const char *path) {
        nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static __attribute__((unused)) int parse_job(const char *text, struct jobspec *spec) {
        struct ft_error err = {0};
        int r = jobspec_parse_string(text, strlen(text), spec, &err);
        if (r < 0)
                fprintf(stderr, "job spec: %s: %s\n", err.param, err.message);
        return r;
}
