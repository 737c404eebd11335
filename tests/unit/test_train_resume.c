/* test_train_resume.c - checkpoints, resume, cancel, early stopping and
 * determinism of the training loop, on a small MLP with dropout, shuffling and
 * a validation split (so the dropout generator, the data order and the
 * optimizer state all matter):
 *   - the same seed and thread count give bit-identical weights;
 *   - resuming from every checkpoint gives bit-identical final weights and
 *     the same per-epoch losses as the uninterrupted run;
 *   - should_stop stops before the next batch (training or validation),
 *     writes a partial checkpoint,
 *     and resuming from it is bit-identical too;
 *   - early stopping stops `patience` epochs after the best one and restores
 *     exactly the best epoch's weights.
 * Not for: numerics against PyTorch (test_train.c). */
#include <dirent.h>

#include "tests/tap.h"
#include "tests/unit/train_fixture.h"

static const char *job =
        "{\"model\": \"mlp\", \"training_file\": \"x\", \"validation_split\": 0.25, \"seed\": 7,"
        " \"hyperparameters\": {\"epochs\": 4, \"batch_size\": 16, \"learning_rate\": 0.01, \"warmup_epochs\": 1},"
        " \"early_stopping\": {\"metric\": \"val_loss\", \"patience\": 10}, \"checkpoint\": {\"keep\": 0}}";

/* The model: the small MLP of train_fixture.h, or (deep) one whose 32x32 layer the engine keeps permuted into its
 * own weight format between steps, so every checkpoint and resume goes through model_sync. */
static bool deep;

static struct model *model_for(const struct dataset *ds) {
        if (!deep)
                return mlp_new(ds->n_features, 24, ds->n_classes, 0.3);
        json_t *spec = json_pack("{s:[I] s:[{s:s s:i} {s:s} {s:s s:f} {s:s s:i} {s:s} {s:s s:I}]}", "input",
                                 (json_int_t)ds->n_features, "layers", "type", "linear", "out_features", 32, "type",
                                 "relu", "type", "dropout", "p", 0.3, "type", "linear", "out_features", 32, "type",
                                 "relu", "type", "linear", "out_features", (json_int_t)ds->n_classes);
        struct model *m = NULL;
        struct ft_error err = {0};
        if (model_new(spec, &m, &err) < 0)
                diag("model_new: %s", err.message);
        json_decref(spec);
        return m;
}

struct outcome {
        int r;
        uint8_t *weights;
        size_t n;
        json_t *history;
        struct capture cap;
        struct ft_error err;
};

static struct outcome run(struct compute_ctx *ctx, const struct dataset *ds, const char *text, const char *ckpt_dir,
                          const char *resume, unsigned batches_allowed) {
        struct outcome o = {0};
        struct jobspec spec;
        parse_job(text, &spec);
        struct model *m = model_for(ds);
        model_init(m, 5);
        o.cap.events = json_array();
        o.cap.batches_allowed = batches_allowed;
        struct train_callbacks cb = capture_callbacks(&o.cap);
        struct train_options opt = {.checkpoint_dir = ckpt_dir, .resume_from = resume};
        struct train_result res = {0};
        o.r = train_run(&spec, m, ctx, ds, NULL, &opt, &cb, &res, &o.err);
        o.weights = snapshot(m, &o.n);
        if (o.r == 0)
                o.history = result_history(&res);
        train_result_deinit(&res);
        model_free(m);
        jobspec_deinit(&spec);
        return o;
}

static void outcome_free(struct outcome *o) {
        free(o->weights);
        json_decref(o->history);
        json_decref(o->cap.events);
}

static bool same_weights(const struct outcome *a, const struct outcome *b) {
        return a->n == b->n && memcmp(a->weights, b->weights, a->n) == 0;
}

static bool same_losses(const json_t *a, const json_t *b) {
        if (json_array_size(a) != json_array_size(b))
                return false;
        for (size_t i = 0; i < json_array_size(a); i++) {
                static const char *keys[] = {"train_loss", "val_loss", "val_accuracy", "lr"};
                for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
                        if (json_number_value(json_object_get(json_array_get(a, i), keys[k])) !=
                            json_number_value(json_object_get(json_array_get(b, i), keys[k])))
                                return false;
        }
        return true;
}

/* uninterrupted twice, resumed from every checkpoint, cancelled mid-epoch and in validation and resumed */
static void check_resume(struct compute_ctx *ctx, const struct dataset *ds, const char *tmp) {
        char dir_a[512], dir_r[512], dir_c[512];
        struct ft_error err = {0};
        const char *tag = deep ? "deep-" : "";
        snprintf(dir_a, sizeof(dir_a), "%s/%sa", tmp, tag);
        snprintf(dir_c, sizeof(dir_c), "%s/%sc", tmp, tag);

        /* uninterrupted, twice */
        struct outcome a = run(ctx, ds, job, dir_a, NULL, 0);
        is_int(a.r, 0, "uninterrupted run (%s)", a.err.message);
        struct outcome a2 = run(ctx, ds, job, NULL, NULL, 0);
        ok(a2.r == 0 && same_weights(&a, &a2), "same seed and threads: bit-identical weights");
        ok(same_losses(a.history, a2.history), "same seed and threads: identical losses");
        is_int(a.cap.checkpoints, 4, "a checkpoint every epoch");

        /* resume from every checkpoint */
        DIR *d = opendir(dir_a);
        struct dirent *e;
        int resumed = 0;
        while (d && (e = readdir(d))) {
                if (strncmp(e->d_name, "ckpt-", 5) != 0)
                        continue;
                char ck[1024];
                snprintf(ck, sizeof(ck), "%s/%s", dir_a, e->d_name);
                snprintf(dir_r, sizeof(dir_r), "%s/%sr-%s", tmp, tag, e->d_name);
                struct outcome b = run(ctx, ds, job, dir_r, ck, 0);
                ok(b.r == 0 && same_weights(&a, &b), "resume from %s: bit-identical final weights (%s)", e->d_name,
                   b.err.message);
                ok(b.r == 0 && same_losses(a.history, b.history), "resume from %s: identical epoch history", e->d_name);
                outcome_free(&b);
                resumed++;
        }
        if (d)
                closedir(d);
        is_int(resumed, 4, "resumed from each of the 4 checkpoints");

        char *latest = NULL;
        ok(train_checkpoint_find_latest(dir_a, &latest, &err) == 0 && strstr(latest, "ckpt-24"),
           "latest checkpoint is the last epoch's (%s)", latest ? latest : err.message);
        free(latest);

        /* cancel in the middle of epoch 2. should_stop is polled before every training batch (6 per epoch) and
         * every validation batch (2): allowing 10 polls runs epoch 1 and 2 batches of epoch 2 */
        struct outcome c = run(ctx, ds, job, dir_c, NULL, 10);
        is_int(c.r, -ECANCELED, "should_stop cancels the run");
        is_int(c.cap.polls, 11, "stopped at the first poll that said so, before batch 3 of epoch 2");
        char *partial = NULL;
        json_t *st = NULL;
        if (train_checkpoint_find_latest(dir_c, &partial, &err) == 0) {
                char p[1100];
                snprintf(p, sizeof(p), "%s/state.json", partial);
                st = json_load_file(p, 0, NULL);
        }
        ok(st && json_integer_value(json_object_get(st, "step")) == 8 &&
                   json_integer_value(json_object_get(st, "epoch")) == 1 &&
                   json_integer_value(json_object_get(st, "batch")) == 2 &&
                   json_is_true(json_object_get(st, "partial")),
           "partial checkpoint after 8 steps: epoch 1 done, 2 batches into epoch 2");
        json_decref(st);
        struct outcome c2 = run(ctx, ds, job, dir_c, partial, 0);
        ok(c2.r == 0 && same_weights(&a, &c2), "resume after cancel: bit-identical final weights (%s)", c2.err.message);
        ok(c2.r == 0 && same_losses(a.history, c2.history), "resume after cancel: identical epoch history");
        free(partial);
        outcome_free(&c);
        outcome_free(&c2);

        /* cancel during epoch 1's validation (poll 8 is its second validation batch) */
        char dir_v[512];
        snprintf(dir_v, sizeof(dir_v), "%s/%sv", tmp, tag);
        struct outcome v = run(ctx, ds, job, dir_v, NULL, 7);
        is_int(v.r, -ECANCELED, "should_stop cancels during validation");
        st = NULL;
        partial = NULL;
        if (train_checkpoint_find_latest(dir_v, &partial, &err) == 0) {
                char p[1100];
                snprintf(p, sizeof(p), "%s/state.json", partial);
                st = json_load_file(p, 0, NULL);
        }
        ok(st && json_integer_value(json_object_get(st, "step")) == 6 &&
                   json_is_true(json_object_get(st, "eval_pending")),
           "partial checkpoint with the epoch's validation pending");
        json_decref(st);
        struct outcome v2 = run(ctx, ds, job, dir_v, partial, 0);
        ok(v2.r == 0 && same_weights(&a, &v2) && same_losses(a.history, v2.history),
           "resume after a cancel in validation: bit-identical weights and history (%s)", v2.err.message);
        free(partial);
        outcome_free(&v);
        outcome_free(&v2);

        outcome_free(&a);
        outcome_free(&a2);
}

/* full-batch gradient descent: the gradient accumulator moves with the weights' format; a run cancelled in the
 * middle of an epoch (the accumulator half full, in the checkpoint) resumes bit-identically */
static void check_gd(struct compute_ctx *ctx, const struct dataset *ds, const char *tmp) {
        static const char *gd_job =
                "{\"model\": \"mlp\", \"training_file\": \"x\", \"validation_split\": 0.25, \"seed\": 7,"
                " \"hyperparameters\": {\"epochs\": 3, \"batch_size\": 16, \"learning_rate\": 0.05,"
                " \"optimizer\": \"gd\"}}";
        char dir_g[512];
        struct ft_error err = {0};
        snprintf(dir_g, sizeof(dir_g), "%s/gd", tmp);
        struct outcome g = run(ctx, ds, gd_job, NULL, NULL, 0);
        struct outcome c = run(ctx, ds, gd_job, dir_g, NULL, 10);
        char *partial = NULL;
        int found = train_checkpoint_find_latest(dir_g, &partial, &err);
        struct outcome r = found == 0 ? run(ctx, ds, gd_job, dir_g, partial, 0) : (struct outcome){.r = -1};
        ok(g.r == 0 && c.r == -ECANCELED && found == 0, "gd: a run, and one cancelled mid-epoch (%s)", err.message);
        ok(r.r == 0 && same_weights(&g, &r) && same_losses(g.history, r.history),
           "gd: resumed with a half-full accumulator: bit-identical weights and history (%s)", r.err.message);
        free(partial);
        outcome_free(&g);
        outcome_free(&c);
        outcome_free(&r);
}

/* checkpoint.keep 2: after 4 epochs only the newest two checkpoint directories remain, and the run is the same */
static void check_keep(struct compute_ctx *ctx, const struct dataset *ds, const char *tmp) {
        static const char *keep_job =
                "{\"model\": \"mlp\", \"training_file\": \"x\", \"validation_split\": 0.25, \"seed\": 7,"
                " \"hyperparameters\": {\"epochs\": 4, \"batch_size\": 16, \"learning_rate\": 0.01, \"warmup_epochs\": "
                "1},"
                " \"early_stopping\": {\"metric\": \"val_loss\", \"patience\": 10}, \"checkpoint\": {\"keep\": 2}}";
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/keep", tmp);
        struct outcome k = run(ctx, ds, keep_job, dir, NULL, 0), a = run(ctx, ds, job, NULL, NULL, 0);
        char names[256] = "";
        int n = 0;
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d)))
                if (e->d_name[0] != '.') {
                        n++;
                        if (strlen(names) + strlen(e->d_name) + 2 < sizeof(names)) {
                                strcat(names, " ");
                                strcat(names, e->d_name);
                        }
                }
        if (d)
                closedir(d);
        ok(k.r == 0 && k.cap.checkpoints == 4 && n == 2 && strstr(names, "ckpt-24") && strstr(names, "ckpt-18"),
           "keep 2: 4 checkpoints written, the newest two remain:%s", names);
        ok(k.r == 0 && same_weights(&a, &k), "keep 2: the same weights as keeping them all");
        outcome_free(&k);
        outcome_free(&a);
}

int main(void) {
        struct compute_ctx *ctx = NULL;
        struct ft_error err = {0};
        if (!ok(compute_ctx_new(1, &ctx, &err) == 0, "context (%s)", err.message))
                return tap_done();
        char tmpl[] = "/tmp/ft-train-XXXXXX";
        const char *tmp = mkdtemp(tmpl);
        char dir_e[512];
        snprintf(dir_e, sizeof(dir_e), "%s/e", tmp);

        struct dataset *ds = blobs_new(120, 6, 3, 1.0, 3);

        check_resume(ctx, ds, tmp);
        deep = true;
        diag("again with a model whose weights the engine keeps in its own format between steps");
        check_resume(ctx, ds, tmp);
        check_gd(ctx, ds, tmp);
        deep = false;
        check_keep(ctx, ds, tmp);

        /* early stopping: a small noisy training set and a high rate overfit quickly */
        struct dataset *noisy = blobs_new(48, 6, 3, 0.6, 9);
        const char *es_job = "{\"model\": \"mlp\", \"training_file\": \"x\", \"validation_split\": 0.5, \"seed\": 3,"
                             " \"hyperparameters\": {\"epochs\": 30, \"batch_size\": 8, \"learning_rate\": 0.02,"
                             " \"schedule\": \"constant\"},"
                             " \"early_stopping\": {\"metric\": \"val_loss\", \"patience\": 3},"
                             " \"checkpoint\": {\"keep\": 0}}";
        struct outcome es = run(ctx, noisy, es_job, dir_e, NULL, 0);
        is_int(es.r, 0, "early-stopping run (%s)", es.err.message);
        json_t *stop = events_of(es.cap.events, "early_stopping"), *fin = events_of(es.cap.events, "metrics");
        size_t n_epochs = json_array_size(es.history);
        size_t argmin = 0;
        for (size_t i = 1; i < n_epochs; i++)
                if (json_number_value(json_object_get(json_array_get(es.history, i), "val_loss")) <
                    json_number_value(json_object_get(json_array_get(es.history, argmin), "val_loss")))
                        argmin = i;
        json_int_t best = json_integer_value(json_object_get(json_array_get(fin, 0), "best_epoch"));
        diag("early stopping: %zu epochs run, best epoch %lld", n_epochs, (long long)best);
        ok(json_array_size(stop) == 1 && n_epochs < 30 && best > 1, "stopped early, after a best epoch past the first");
        is_int(best, argmin + 1, "best epoch is the one with the lowest val_loss");
        is_int(n_epochs, best + 3, "stopped 'patience' epochs after the best");
        /* the final weights are the best epoch's checkpoint */
        bool same = false;
        if (best > 0 && best < 64 && es.cap.by_epoch[best][0]) {
                char p[700];
                snprintf(p, sizeof(p), "%s/model.safetensors", es.cap.by_epoch[best]);
                struct st_file *f = NULL;
                if (st_file_open(p, 0, &f, &err) == 0) {
                        struct model *m = mlp_new(6, 24, 3, 0.3);
                        size_t off = 0;
                        same = true;
                        for (size_t i = 0; i < model_tensor_count(m); i++) {
                                struct tensor *t = model_tensor_at(m, i);
                                const struct st_tensor *s = st_file_find(f, t->name);
                                same &= s && s->nbytes == tensor_nbytes(t) &&
                                        memcmp(s->data, es.weights + off, s->nbytes) == 0;
                                off += tensor_nbytes(t);
                        }
                        model_free(m);
                        st_file_free(f);
                }
        }
        ok(same, "final weights are bit-identical to the best epoch's checkpoint");
        json_decref(stop);
        json_decref(fin);
        outcome_free(&es);
        table_free(noisy);

        table_free(ds);
        compute_ctx_free(ctx);
        rm_rf(tmp);
        return tap_done();
}
