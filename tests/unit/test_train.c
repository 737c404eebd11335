/* test_train.c - the training loop against PyTorch: per-epoch training and
 * validation losses, learning rates and final weights equal the committed
 * fixture (tests/fixtures/train/torch_mlp.json, tools/gen_train_fixtures.py)
 * for AdamW + layerwise + cosine warmup + clipping + label smoothing, Nesterov
 * + partial freezing + step decay, full-batch gd, and Adam + linear decay;
 * frozen tensors stay bit-identical; layer decay and multipliers give the
 * expected per-tensor rates on ResNet-18; a small run reaches a stated
 * accuracy. Not for: checkpoints and resume (test_train_resume.c). */
#include <unistd.h>

#include "compute/eval.h"
#include "compute/job.h"
#include "tests/tap.h"
#include "tests/unit/train_fixture.h"

#define FIXTURE FT_SOURCE_DIR "/tests/fixtures/train/torch_mlp.json"

static float *floats(const json_t *a, size_t *ret_n) {
        size_t n = json_array_size(a);
        float *v = malloc((n ? n : 1) * sizeof(float));
        for (size_t i = 0; i < n; i++)
                v[i] = (float)json_number_value(json_array_get(a, i));
        *ret_n = n;
        return v;
}

static int32_t *ints(const json_t *a) {
        size_t n = json_array_size(a);
        int32_t *v = malloc((n ? n : 1) * sizeof(int32_t));
        for (size_t i = 0; i < n; i++)
                v[i] = (int32_t)json_integer_value(json_array_get(a, i));
        return v;
}

static void torch_parity(struct compute_ctx *ctx) {
        json_error_t jerr;
        json_t *fx = json_load_file(FIXTURE, 0, &jerr);
        if (!ok(fx != NULL, "fixture loads (%s)", fx ? "ok" : jerr.text))
                return;
        diag("PyTorch %s", json_string_value(json_object_get(fx, "torch")));
        size_t f = (size_t)json_integer_value(json_object_get(fx, "features"));
        size_t k = (size_t)json_integer_value(json_object_get(fx, "classes"));
        size_t nx, nxv;
        float *x = floats(json_object_get(fx, "x"), &nx), *xv = floats(json_object_get(fx, "x_val"), &nxv);
        int32_t *y = ints(json_object_get(fx, "y")), *yv = ints(json_object_get(fx, "y_val"));
        struct dataset *train = table_new(nx / f, f, k, x, y), *val = table_new(nxv / f, f, k, xv, yv);
        const json_t *init = json_object_get(fx, "init");

        size_t ri;
        json_t *run;
        json_array_foreach(json_object_get(fx, "runs"), ri, run) {
                const char *name = json_string_value(json_object_get(run, "name"));
                struct jobspec spec;
                char *job = json_dumps(json_object_get(run, "job"), 0);
                if (!ok(parse_job(job, &spec) == 0, "%s: job spec parses", name)) {
                        free(job);
                        continue;
                }
                free(job);
                struct model *m = mlp_new(f, 16, k, 0);
                const char *tname;
                json_t *tv;
                json_object_foreach((json_t *)init, tname, tv) {
                        size_t n;
                        float *d = floats(json_object_get(tv, "data"), &n);
                        struct tensor *t = model_tensor_find(m, tname);
                        if (t && t->numel == n)
                                memcpy(t->data, d, n * sizeof(float));
                        else
                                ok(0, "%s: tensor %s matches the fixture", name, tname);
                        free(d);
                }
                struct capture cap = {.events = json_array()};
                struct train_callbacks cb = capture_callbacks(&cap);
                struct train_result res;
                struct ft_error err = {0};
                int r = train_run(&spec, m, ctx, train, val, NULL, &cb, &res, &err);
                if (!ok(r == 0, "%s: trains (%s)", name, err.message)) {
                        model_free(m);
                        jobspec_deinit(&spec);
                        json_decref(cap.events);
                        continue;
                }
                json_t *epochs = events_of(cap.events, "epoch");
                const json_t *tl = json_object_get(run, "train_loss"), *vl = json_object_get(run, "val_loss"),
                             *lr = json_object_get(run, "lr");
                is_int(json_array_size(epochs), json_array_size(tl), "%s: one event per epoch", name);
                for (size_t e = 0; e < json_array_size(epochs) && e < json_array_size(tl); e++) {
                        const json_t *ev = json_array_get(epochs, e);
                        is_close(json_number_value(json_object_get(ev, "train_loss")),
                                 json_number_value(json_array_get(tl, e)), 1e-4, "%s: epoch %zu train loss", name,
                                 e + 1);
                        is_close(json_number_value(json_object_get(ev, "val_loss")),
                                 json_number_value(json_array_get(vl, e)), 1e-4, "%s: epoch %zu val loss", name, e + 1);
                        is_close(json_number_value(json_object_get(ev, "lr")), json_number_value(json_array_get(lr, e)),
                                 1e-6, "%s: epoch %zu lr", name, e + 1);
                }
                /* final weights */
                double worst = 0;
                json_object_foreach(json_object_get(run, "final"), tname, tv) {
                        struct tensor *t = model_tensor_find(m, tname);
                        for (size_t i = 0; t && i < t->numel; i++) {
                                double w = json_number_value(json_array_get(tv, i));
                                double d = fabs((double)tensor_f32(t)[i] - w) / fmax(fabs(w), 1e-2);
                                worst = fmax(worst, d);
                        }
                }
                ok(worst <= 1e-3, "%s: final weights equal PyTorch's (worst relative error %.2g)", name, worst);
                if (spec.strategy.type == JOBSPEC_STRATEGY_PARTIAL) {
                        bool same = true;
                        json_object_foreach((json_t *)init, tname, tv) {
                                if (strncmp(tname, "0.", 2) != 0)
                                        continue;
                                size_t n;
                                float *d = floats(json_object_get(tv, "data"), &n);
                                same &= memcmp(d, model_tensor_find(m, tname)->data, n * sizeof(float)) == 0;
                                free(d);
                        }
                        ok(same, "%s: frozen tensors are bit-identical after training", name);
                }
                json_t *fin = events_of(cap.events, "metrics");
                ok(json_array_size(fin) == 1 &&
                           json_is_number(
                                   json_object_get(json_object_get(json_array_get(fin, 0), "metrics"), "accuracy")),
                   "%s: final metrics event", name);
                json_decref(fin);
                json_decref(epochs);
                json_decref(cap.events);
                train_result_deinit(&res);
                model_free(m);
                jobspec_deinit(&spec);
        }
        table_free(train);
        table_free(val);
        free(x);
        free(xv);
        free(y);
        free(yv);
        json_decref(fx);
}

static void layer_rates(void) {
        json_t *opts = json_pack("{s:i s:i s:[ii]}", "num_classes", 10, "in_channels", 3, "input_size", 32, 32);
        json_t *spec_json = NULL;
        struct model *m = NULL;
        struct ft_error err = {0};
        if (!ok(model_preset_spec("resnet18", opts, &spec_json, &err) == 0 && model_new(spec_json, &m, &err) == 0,
                "resnet18 builds (%s)", err.message)) {
                json_decref(opts);
                json_decref(spec_json);
                return;
        }
        int *depth = calloc(model_tensor_count(m), sizeof(int));
        is_int(train_layer_depths(m, depth), 10, "resnet18 has 10 layer groups (stem, 8 blocks, fc)");
        free(depth);

        struct jobspec spec;
        parse_job("{\"model\": \"resnet18\", \"training_file\": \"x\", \"strategy\": {\"type\": \"layerwise\","
                  " \"layer_decay\": 0.5, \"lr_multipliers\": {\"fc.*\": 10, \"layer4.*\": 3}}}",
                  &spec);
        is_int(train_apply_strategy(&spec, m, &err), 0, "layerwise strategy applies (%s)", err.message);
        static const struct {
                const char *name;
                double rate;
        } want[] = {
                {"conv1.weight", 0.001953125}, /* 0.5^9 */
                {"bn1.weight", 0.001953125}, /* joins conv1 */
                {"layer1.0.conv1.weight", 0.00390625},
                {"layer2.0.downsample.0.weight", 0.015625}, /* 0.5^6 */
                {"layer2.0.bn2.bias", 0.015625},
                {"layer4.0.conv1.weight", 0.25 * 3}, /* 0.5^2 * 3 */
                {"layer4.1.conv2.weight", 0.5 * 3},
                {"fc.weight", 10},
                {"fc.bias", 10},
        };
        for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
                struct tensor *t = model_tensor_find(m, want[i].name);
                ok(t && fabs(t->lr_mult - want[i].rate) <= 1e-6 * want[i].rate, "%s lr multiplier %g (got %g)",
                   want[i].name, want[i].rate, t ? (double)t->lr_mult : -1.0);
        }
        jobspec_deinit(&spec);

        /* partial with no lists trains the head only; a freeze glob that matches nothing names the field */
        parse_job("{\"model\": \"resnet18\", \"training_file\": \"x\", \"strategy\": {\"type\": \"partial\"}}", &spec);
        is_int(train_apply_strategy(&spec, m, &err), 0, "partial strategy applies");
        size_t trainable = 0;
        bool only_fc = true;
        for (size_t i = 0; i < model_tensor_count(m); i++) {
                struct tensor *t = model_tensor_at(m, i);
                if (t->is_param && !t->frozen) {
                        trainable++;
                        only_fc &= strncmp(t->name, "fc.", 3) == 0;
                }
        }
        ok(trainable == 2 && only_fc, "partial with no lists trains fc.weight and fc.bias only");
        jobspec_deinit(&spec);
        parse_job("{\"model\": \"resnet18\", \"training_file\": \"x\", \"strategy\": {\"type\": \"partial\","
                  " \"freeze\": [\"conv1.*\", \"encoder.*\"]}}",
                  &spec);
        ok(train_apply_strategy(&spec, m, &err) == -EINVAL && strcmp(err.param, "strategy.freeze[1]") == 0,
           "a freeze glob matching nothing names strategy.freeze[1]: %s", err.message);
        jobspec_deinit(&spec);
        model_free(m);
        json_decref(spec_json);
        json_decref(opts);
}

static void reaches_accuracy(struct compute_ctx *ctx) {
        struct dataset *ds = blobs_new(300, 10, 4, 2.5, 11);
        struct model *m = mlp_new(10, 32, 4, 0);
        model_init(m, 5);
        struct jobspec spec;
        parse_job("{\"model\": \"mlp\", \"training_file\": \"x\", \"validation_split\": 0.3,"
                  " \"hyperparameters\": {\"epochs\": 15, \"batch_size\": 16, \"learning_rate\": 0.01}}",
                  &spec);
        struct capture cap = {.events = json_array()};
        struct train_callbacks cb = capture_callbacks(&cap);
        struct train_result res;
        struct ft_error err = {0};
        is_int(train_run(&spec, m, ctx, ds, NULL, NULL, &cb, &res, &err), 0, "blobs: trains (%s)", err.message);
        json_t *fin = result_metrics(&res);
        double acc = json_number_value(json_object_get(json_object_get(fin, "metrics"), "accuracy"));
        ok(acc >= 0.9, "blobs: validation accuracy %.3f >= 0.90 after 15 epochs", acc);
        ok(strcmp(json_string_value(json_object_get(fin, "split")), "validation") == 0,
           "final metrics are on the validation split");
        const json_t *cm = json_object_get(json_object_get(fin, "metrics"), "confusion_matrix");
        is_str(json_string_value(json_array_get(json_object_get(cm, "labels"), 2)), "c2", "class names in metrics");
        json_t *finals = events_of(cap.events, "metrics");
        ok(json_array_size(finals) == 1 && json_equal(json_array_get(finals, 0), fin), "one final event, the result's");
        json_decref(finals);
        json_decref(fin);
        json_t *epochs = events_of(cap.events, "epoch");
        const json_t *e1 = json_array_get(epochs, 0), *last = json_array_get(epochs, json_array_size(epochs) - 1);
        ok(json_number_value(json_object_get(last, "train_loss")) <
                   json_number_value(json_object_get(e1, "train_loss")),
           "training loss falls");
        static const char *keys[] = {"epoch",  "train_loss", "val_loss", "val_accuracy",
                                     "val_f1", "lr",         "seconds",  "samples_per_sec"};
        bool all = true;
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
                all &= json_object_get(e1, keys[i]) != NULL;
        ok(all, "epoch events carry epoch, train_loss, val_loss, val_accuracy, val_f1, lr, seconds, samples_per_sec");
        json_decref(epochs);
        json_decref(cap.events);
        train_result_deinit(&res);
        jobspec_deinit(&spec);

        /* a spec that does not fit the model or data names the field */
        parse_job("{\"model\": \"mlp\", \"training_file\": \"x\", \"task\": {\"type\": \"regression\"}}", &spec);
        ok(train_run(&spec, m, ctx, ds, NULL, NULL, NULL, &res, &err) == -EINVAL && strcmp(err.param, "task.type") == 0,
           "regression spec on classification data names task.type: %s", err.message);
        jobspec_deinit(&spec);
        model_free(m);
        table_free(ds);
}

static void regression(struct compute_ctx *ctx) {
        /* y = sum of the features with weights 1..6 plus a little noise */
        size_t n = 200, f = 6;
        struct dataset *ds = blobs_new(n, f, 2, 1.0, 21);
        ds->task = DATA_REGRESSION;
        ds->targets = malloc(n * sizeof(float));
        struct data_rng rng;
        data_rng_seed(&rng, 4);
        for (size_t i = 0; i < n; i++) {
                double y = 0;
                for (size_t j = 0; j < f; j++)
                        y += (double)(j + 1) * ds->x[i * f + j];
                ds->targets[i] = (float)(y + ((double)data_rng_below(&rng, 1001) / 1000.0 - 0.5) * 0.5);
        }
        struct model *m = mlp_new(f, 16, 1, 0);
        model_init(m, 2);
        struct jobspec spec;
        parse_job("{\"model\": \"mlp\", \"training_file\": \"x\", \"task\": {\"type\": \"regression\"},"
                  " \"hyperparameters\": {\"epochs\": 30, \"batch_size\": 16, \"learning_rate\": 0.01},"
                  " \"early_stopping\": {\"metric\": \"val_r2\", \"patience\": 30}}",
                  &spec);
        struct capture cap = {.events = json_array()};
        struct train_callbacks cb = capture_callbacks(&cap);
        struct train_result res;
        struct ft_error err = {0};
        is_int(train_run(&spec, m, ctx, ds, NULL, NULL, &cb, &res, &err), 0, "regression trains (%s)", err.message);
        json_t *fin = result_metrics(&res);
        const json_t *mj = json_object_get(fin, "metrics");
        double r2 = json_number_value(json_object_get(mj, "r2"));
        double mse = json_number_value(json_object_get(mj, "mse")),
               rmse = json_number_value(json_object_get(mj, "rmse"));
        ok(r2 > 0.9, "regression: validation R2 %.3f > 0.9", r2);
        is_close(rmse, sqrt(mse), 1e-12, "regression: rmse = sqrt(mse)");
        json_decref(fin);
        json_t *epochs = events_of(cap.events, "epoch");
        ok(json_is_number(json_object_get(json_array_get(epochs, 0), "val_r2")) &&
                   json_is_number(json_object_get(json_array_get(epochs, 0), "val_mae")),
           "regression epoch events carry val_mse/val_rmse/val_mae/val_r2");
        json_decref(epochs);
        json_decref(cap.events);
        train_result_deinit(&res);
        jobspec_deinit(&spec);
        model_free(m);
        free(ds->targets);
        ds->targets = NULL;
        table_free(ds);
}

/* Calibration in the final metrics (issue 19): ECE and 15 bins always; with calibration.temperature_scaling a
 * temperature fitted on the validation split that does not raise its NLL, saved as finetuned.temperature. */
static void calibration(struct compute_ctx *ctx) {
        struct dataset *ds = blobs_new(240, 6, 3, 1.0, 21);
        struct model *m = mlp_new(6, 16, 3, 0);
        model_init(m, 2);
        struct jobspec spec;
        parse_job("{\"model\": \"mlp\", \"training_file\": \"x\", \"validation_split\": 0.3,"
                  " \"hyperparameters\": {\"epochs\": 4, \"batch_size\": 16, \"learning_rate\": 0.05},"
                  " \"calibration\": {\"temperature_scaling\": true}}",
                  &spec);
        struct train_result res;
        struct ft_error err = {0};
        is_int(train_run(&spec, m, ctx, ds, NULL, NULL, NULL, &res, &err), 0, "calibration: trains (%s)", err.message);
        const struct train_calibration *c = &res.final.calibration;
        uint64_t total = 0, total_after = 0;
        for (size_t b = 0; b < METRICS_CALIBRATION_BINS; b++) {
                total += c->before.count[b];
                total_after += c->after.count[b];
        }
        ok(c->computed && total == res.final.cls.n_samples && total_after == total && c->before.ece >= 0 &&
                   c->before.ece <= 1,
           "calibration: ECE %.4f over 15 bins holding every validation sample", c->before.ece);
        ok(c->scaled && c->temperature > 0.01 && c->temperature < 100 && c->nll_after <= c->nll_before + 1e-12,
           "calibration: T = %.4f fitted, NLL %.4f -> %.4f", c->temperature, c->nll_before, c->nll_after);
        json_t *fin = result_metrics(&res);
        const json_t *cj = json_object_get(json_object_get(fin, "metrics"), "calibration");
        ok(json_array_size(json_object_get(cj, "reliability")) == 15 &&
                   json_is_object(json_object_get(cj, "temperature_scaling")),
           "calibration: metrics.calibration has the diagram and temperature_scaling");
        json_decref(fin);
        char path[] = "/tmp/test_train_cal_XXXXXX";
        int fd = mkstemp(path);
        close(fd);
        is_int(job_result_save(path, m, &spec, ds, &res, NULL, &err), 0, "calibration: the model saves");
        struct eval_model em;
        is_int(eval_model_open(path, NULL, 0, &em, &err), 0, "calibration: and opens for evaluation (%s)", err.message);
        ok(em.has_temperature && fabs(em.temperature - c->temperature) < 1e-12,
           "calibration: finetuned.temperature is T");
        eval_model_deinit(&em);
        unlink(path);
        train_result_deinit(&res);
        jobspec_deinit(&spec);

        /* without the option: ECE, no temperature */
        parse_job("{\"model\": \"mlp\", \"training_file\": \"x\", \"validation_split\": 0.3,"
                  " \"hyperparameters\": {\"epochs\": 1, \"batch_size\": 16}}",
                  &spec);
        is_int(train_run(&spec, m, ctx, ds, NULL, NULL, NULL, &res, &err), 0, "calibration: trains without scaling");
        ok(res.final.calibration.computed && !res.final.calibration.scaled && res.final.calibration.temperature == 1,
           "calibration: reported, not scaled, T = 1");
        train_result_deinit(&res);
        jobspec_deinit(&spec);
        model_free(m);
        table_free(ds);
}

int main(void) {
        struct compute_ctx *ctx = NULL;
        struct ft_error err = {0};
        if (!ok(compute_ctx_new(1, &ctx, &err) == 0, "context (%s)", err.message))
                return tap_done();
        torch_parity(ctx);
        layer_rates();
        reaches_accuracy(ctx);
        regression(ctx);
        calibration(ctx);
        compute_ctx_free(ctx);
        return tap_done();
}
