/* test_guards.c - training-health guards (compute/guards.h): each rule on a history built to trigger it, at the
 * epoch it first holds and only once; then real runs built to trigger each (a learning rate too small to learn, a
 * model memorising noise, a learning rate too large, a frozen tensor changed behind the trainer's back, a loss and
 * a gradient that go NaN), each silent once switched off, and a healthy run that none of them warns about.
 * Not for: the events' delivery (the daemon's and the CLI's tests). */
#include <math.h>

#include "compute/guards.h"
#include "tests/tap.h"
#include "tests/unit/train_fixture.h"

struct seen {
        char codes[16][32];
        unsigned epochs[16], best[16];
        size_t n;
};

static int see(void *ud, const struct train_warning *w) {
        struct seen *s = ud;
        if (s->n < 16) {
                snprintf(s->codes[s->n], sizeof(s->codes[0]), "%s", w->code);
                s->epochs[s->n] = w->epoch;
                s->best[s->n] = w->best_epoch;
                s->n++;
        }
        return 0;
}

/* Feed h one epoch at a time, as the trainer does. */
static struct seen replay(const struct jobspec *spec, struct train_epoch *h, size_t n) {
        struct seen s = {0};
        struct guards g;
        guards_init(&g, spec, NULL, NULL);
        for (size_t e = 1; e <= n; e++)
                guards_epoch(&g, NULL, h, e, see, &s, NULL);
        guards_deinit(&g);
        return s;
}

static void rules(void) {
        struct jobspec spec;
        jobspec_init(&spec);
        spec.guards.frozen = false; /* no model here */
        struct train_epoch h[12];
        /* plateau: loss 1.0, then 0.9995... (less than 0.1% better) for 5 epochs: fires at epoch 6, once */
        for (int i = 0; i < 12; i++)
                h[i] = (struct train_epoch){.epoch = (unsigned)i + 1, .train_loss = i == 0 ? 1.0 : 0.9995 - 1e-5 * i};
        struct seen s = replay(&spec, h, 12);
        ok(s.n == 1 && strcmp(s.codes[0], "loss_not_decreasing") == 0 && s.epochs[0] == 6,
           "plateau: fires once, at epoch 6 (%zu: %s at %u)", s.n, s.codes[0], s.epochs[0]);
        spec.guards.plateau_epochs = 0;
        s = replay(&spec, h, 12);
        is_int((int)s.n, 0, "plateau: plateau_epochs 0 switches it off");
        spec.guards.plateau_epochs = 5;
        /* a loss that falls 1% an epoch never plateaus */
        for (int i = 0; i < 12; i++)
                h[i].train_loss = pow(0.99, i);
        s = replay(&spec, h, 12);
        is_int((int)s.n, 0, "plateau: a loss falling 1%% an epoch is healthy");

        /* overfitting: val loss lowest at epoch 4, then rises for 3 epochs while train loss falls */
        const double val[] = {1.0, 0.8, 0.7, 0.6, 0.65, 0.7, 0.8, 0.9};
        for (int i = 0; i < 8; i++)
                h[i] = (struct train_epoch){
                        .epoch = (unsigned)i + 1, .train_loss = 1.0 - 0.1 * i, .validated = true, .val_loss = val[i]};
        s = replay(&spec, h, 8);
        ok(s.n == 1 && strcmp(s.codes[0], "overfitting") == 0 && s.epochs[0] == 7 && s.best[0] == 4,
           "overfitting: fires at epoch 7 naming epoch 4 (%zu: %s at %u, best %u)", s.n, s.codes[0], s.epochs[0],
           s.best[0]);
        spec.guards.overfit_epochs = 0;
        s = replay(&spec, h, 8);
        is_int((int)s.n, 0, "overfitting: overfit_epochs 0 switches it off");
        spec.guards.overfit_epochs = 3;

        /* diverging: 1.0, 0.5, 0.4, then 1.5 (> 3 x 0.4 and > 1.0) */
        const double tl[] = {1.0, 0.5, 0.4, 1.5, 3.0};
        for (int i = 0; i < 5; i++)
                h[i] = (struct train_epoch){.epoch = (unsigned)i + 1, .train_loss = tl[i]};
        s = replay(&spec, h, 5);
        ok(s.n == 1 && strcmp(s.codes[0], "diverging") == 0 && s.epochs[0] == 4, "diverging: fires once, at epoch 4");
        spec.guards.divergence_factor = 0;
        s = replay(&spec, h, 5);
        is_int((int)s.n, 0, "diverging: divergence_factor 0 switches it off");
        jobspec_deinit(&spec);
}

struct run {
        struct capture cap;
        struct train_result res;
        struct ft_error err;
        int r;
        const char *poke; /* on_epoch of epoch 1 changes this tensor's first value */
        struct model *m;
};

static int poke_epoch(void *ud, const struct train_epoch *e) {
        struct run *run = ud;
        if (run->poke && e->epoch == 1)
                for (size_t i = 0; i < model_tensor_count(run->m); i++) {
                        struct tensor *t = model_tensor_at(run->m, i);
                        if (strcmp(t->name, run->poke) == 0)
                                ((float *)t->data)[0] += 1.0f;
                }
        return capture_epoch(&run->cap, e);
}

static int run_warning(void *ud, const struct train_warning *w) {
        return capture_warning(&((struct run *)ud)->cap, w);
}

/* Train an MLP on ds with the job's extra members; the warnings' codes joined by ','. */
static json_t *train(struct compute_ctx *ctx, struct dataset *ds, size_t hidden, const char *extra, struct run *run,
                     char *codes, size_t size) {
        char text[2048];
        snprintf(text, sizeof(text), "{\"model\": \"mlp\", \"training_file\": \"x\", \"validation_split\": 0.3, %s}",
                 extra);
        struct jobspec spec;
        if (parse_job(text, &spec) < 0)
                return NULL;
        run->m = mlp_new(ds->n_features, hidden, ds->n_classes, 0);
        model_init(run->m, 7);
        run->cap.events = json_array();
        struct train_callbacks cb = capture_callbacks(&run->cap);
        cb.userdata = run;
        cb.on_epoch = poke_epoch;
        cb.on_warning = run_warning;
        cb.on_checkpoint = NULL;
        cb.on_early_stop = NULL;
        cb.on_final = NULL;
        cb.on_runtime = NULL;
        cb.should_stop = NULL;
        run->r = train_run(&spec, run->m, ctx, ds, NULL, NULL, &cb, &run->res, &run->err);
        json_t *w = events_of(run->cap.events, "warning");
        codes[0] = '\0';
        size_t i;
        json_t *e;
        json_array_foreach(w, i, e) {
                size_t l = strlen(codes);
                snprintf(codes + l, size - l, "%s%s", l ? "," : "", json_string_value(json_object_get(e, "code")));
        }
        if (run->r == 0)
                train_result_deinit(&run->res);
        jobspec_deinit(&spec);
        model_free(run->m);
        json_decref(run->cap.events);
        return w;
}

static void runs(struct compute_ctx *ctx) {
        struct dataset *blobs = blobs_new(400, 6, 3, 3.0, 5);
        char codes[256];
        struct run run = {0};
        json_t *w;

        w = train(ctx, blobs, 16, "\"hyperparameters\": {\"epochs\": 8, \"learning_rate\": 0.01}", &run, codes,
                  sizeof(codes));
        ok(run.r == 0 && json_array_size(w) == 0, "a healthy run: no warning (%s)", codes);
        json_decref(w);
        w = train(ctx, blobs, 16,
                  "\"hyperparameters\": {\"epochs\": 6, \"learning_rate\": 0.01},"
                  " \"strategy\": {\"type\": \"partial\", \"freeze\": [\"0.*\"]}",
                  &run, codes, sizeof(codes));
        ok(run.r == 0 && json_array_size(w) == 0, "a healthy run with frozen layers: no warning (%s)", codes);
        json_decref(w);

        /* a learning rate too small to learn anything */
        w = train(ctx, blobs, 16, "\"hyperparameters\": {\"epochs\": 7, \"learning_rate\": 1e-7}", &run, codes,
                  sizeof(codes));
        ok(run.r == 0 && strcmp(codes, "loss_not_decreasing") == 0 &&
                   json_integer_value(json_object_get(json_array_get(w, 0), "epoch")) == 6,
           "lr 1e-7: 'loss_not_decreasing' at epoch 6 (%s)", codes);
        diag("%s", json_string_value(json_object_get(json_array_get(w, 0), "message")));
        json_decref(w);
        w = train(ctx, blobs, 16,
                  "\"hyperparameters\": {\"epochs\": 7, \"learning_rate\": 1e-7}, \"guards\": {\"plateau_epochs\": 0}",
                  &run, codes, sizeof(codes));
        ok(run.r == 0 && json_array_size(w) == 0, "... silent with guards.plateau_epochs 0 (%s)", codes);
        json_decref(w);

        /* a wide model memorising 60 rows of noise */
        struct dataset *noise = blobs_new(60, 6, 3, 0.0, 9);
        w = train(ctx, noise, 256,
                  "\"hyperparameters\": {\"epochs\": 60, \"learning_rate\": 0.01, \"schedule\": \"constant\"}", &run,
                  codes, sizeof(codes));
        const json_t *ow = json_array_get(w, 0);
        ok(run.r == 0 && strstr(codes, "overfitting") && json_integer_value(json_object_get(ow, "best_epoch")) > 0,
           "noise, 256 hidden units, 60 epochs: 'overfitting' (%s), naming epoch %lld", codes,
           (long long)json_integer_value(json_object_get(ow, "best_epoch")));
        diag("%s", json_string_value(json_object_get(ow, "message")));
        json_decref(w);
        w = train(ctx, noise, 256,
                  "\"hyperparameters\": {\"epochs\": 60, \"learning_rate\": 0.01, \"schedule\": \"constant\"},"
                  " \"guards\": {\"overfit_epochs\": 0}",
                  &run, codes, sizeof(codes));
        ok(run.r == 0 && !strstr(codes, "overfitting"), "... silent with guards.overfit_epochs 0 (%s)", codes);
        json_decref(w);

        /* a learning rate far too high for plain SGD on labels it cannot fit */
        w = train(ctx, noise, 64,
                  "\"hyperparameters\": {\"epochs\": 8, \"learning_rate\": 5, \"optimizer\": \"sgd\","
                  " \"schedule\": \"constant\"}, \"guards\": {\"nonfinite\": true}",
                  &run, codes, sizeof(codes));
        diag("lr 5: %s (%s)", codes, run.r ? run.err.message : "trained");
        ok(run.r == 0 && strstr(codes, "diverging"), "noise, SGD at lr 5: 'diverging' (%s)", codes);
        diag("%s", json_string_value(json_object_get(json_array_get(w, 0), "message")));
        json_decref(w);
        w = train(ctx, noise, 64,
                  "\"hyperparameters\": {\"epochs\": 8, \"learning_rate\": 5, \"optimizer\": \"sgd\","
                  " \"schedule\": \"constant\"}, \"guards\": {\"divergence_factor\": 0}",
                  &run, codes, sizeof(codes));
        ok(run.r == 0 && !strstr(codes, "diverging"), "... silent with guards.divergence_factor 0 (%s)", codes);
        json_decref(w);

        /* a frozen tensor changed behind the trainer's back */
        run.poke = "0.weight";
        w = train(ctx, blobs, 16,
                  "\"hyperparameters\": {\"epochs\": 3, \"learning_rate\": 0.01},"
                  " \"strategy\": {\"type\": \"partial\", \"freeze\": [\"0.*\"]}",
                  &run, codes, sizeof(codes));
        const json_t *fw = json_array_get(w, 0);
        ok(run.r == 0 && strcmp(codes, "frozen_tensor_changed") == 0 &&
                   strcmp(json_string_value(json_object_get(fw, "tensor")), "0.weight") == 0 &&
                   json_integer_value(json_object_get(fw, "epoch")) == 1,
           "a frozen tensor changed: 'frozen_tensor_changed' naming '0.weight' at epoch 1, once (%s)", codes);
        json_decref(w);
        w = train(ctx, blobs, 16,
                  "\"hyperparameters\": {\"epochs\": 3, \"learning_rate\": 0.01},"
                  " \"strategy\": {\"type\": \"partial\", \"freeze\": [\"0.*\"]}, \"guards\": {\"frozen\": false}",
                  &run, codes, sizeof(codes));
        ok(run.r == 0 && json_array_size(w) == 0, "... silent with guards.frozen false (%s)", codes);
        json_decref(w);
        run.poke = NULL;

        /* a loss that cannot be finite: a feature that is Inf in every row (no reader lets one in) */
        struct dataset *huge = blobs_new(60, 6, 3, 3.0, 5);
        for (size_t i = 0; i < huge->n; i++)
                huge->x[i * huge->n_features] = INFINITY;
        w = train(ctx, huge, 16,
                  "\"preprocess\": {\"standardize\": false}, \"hyperparameters\": {\"epochs\": 2, \"learning_rate\": "
                  "0.01}",
                  &run, codes, sizeof(codes));
        const json_t *nw = json_array_get(w, 0);
        ok(run.r == -EDOM && strcmp(codes, "nonfinite") == 0 && strstr(run.err.message, "epoch 1 batch 1") &&
                   json_integer_value(json_object_get(nw, "batch")) == 1,
           "a NaN/Inf loss fails the run at epoch 1 batch 1 with a 'nonfinite' warning (%s)", run.err.message);
        json_decref(w);
        table_free(huge);

        /* a NaN gradient, by hand: the tensor nearest the output with one is named */
        struct model *m = mlp_new(6, 8, 3, 0);
        model_init(m, 1);
        struct tensor *t = NULL;
        for (size_t i = 0; i < model_tensor_count(m); i++)
                if (strcmp(model_tensor_at(m, i)->name, "0.bias") == 0)
                        t = model_tensor_at(m, i);
        struct train_warning bw = {0};
        struct ft_error err = {0};
        is_int(guards_gradients(m, 2, 3, 9, &bw, &err), 0, "finite gradients pass");
        if (t)
                t->grad[1] = NAN;
        int r = guards_gradients(m, 2, 3, 9, &bw, &err);
        ok(r == -EDOM && bw.tensor && strcmp(bw.tensor, "0.bias") == 0 && strstr(err.message, "epoch 2 batch 3"),
           "a NaN gradient: -EDOM naming '0.bias', epoch 2 batch 3 (%s)", err.message);
        model_free(m);

        table_free(noise);
        table_free(blobs);
}

int main(void) {
        rules();
        struct compute_ctx *ctx = NULL;
        struct ft_error err = {0};
        if (!ok(compute_ctx_new(1, &ctx, &err) == 0, "context (%s)", err.message))
                return tap_done();
        runs(ctx);
        compute_ctx_free(ctx);
        return tap_done();
}
