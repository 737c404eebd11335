/* test_metrics.c - classification and regression metrics equal scikit-learn's
 * on the committed fixture (tests/fixtures/train/metrics.json, made by
 * tools/gen_train_fixtures.py), plus the learning-rate schedules. Not for: the
 * training loop. */
#include <string.h>

#include "compute/metrics.h"
#include "compute/schedule.h"
#include "tests/tap.h"

#define FIXTURE FT_SOURCE_DIR "/tests/fixtures/train/metrics.json"

static void check_classification(const json_t *c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        size_t k = (size_t)json_integer_value(json_object_get(c, "n_classes"));
        const json_t *yt = json_object_get(c, "y_true"), *yp = json_object_get(c, "y_pred");
        size_t n = json_array_size(yt);
        int32_t *t = calloc(n, sizeof(int32_t)), *p = calloc(n, sizeof(int32_t));
        for (size_t i = 0; i < n; i++) {
                t[i] = (int32_t)json_integer_value(json_array_get(yt, i));
                p[i] = (int32_t)json_integer_value(json_array_get(yp, i));
        }
        struct metrics_classification m;
        struct ft_error err;
        is_int(metrics_classification_compute(t, p, n, k, &m, &err), 0, "%s: computes", name);
        is_close(m.accuracy, json_real_value(json_object_get(c, "accuracy")), 1e-12, "%s: accuracy", name);
        bool per_ok = true;
        for (size_t i = 0; i < k; i++) {
                per_ok &= fabs(m.precision[i] - json_number_value(json_array_get(json_object_get(c, "precision"), i))) <
                          1e-12;
                per_ok &=
                        fabs(m.recall[i] - json_number_value(json_array_get(json_object_get(c, "recall"), i))) < 1e-12;
                per_ok &= fabs(m.f1[i] - json_number_value(json_array_get(json_object_get(c, "f1"), i))) < 1e-12;
                per_ok &= (json_int_t)m.support[i] ==
                          json_integer_value(json_array_get(json_object_get(c, "support"), i));
                for (size_t j = 0; j < k; j++)
                        per_ok &= (json_int_t)m.confusion[i * k + j] ==
                                  json_integer_value(
                                          json_array_get(json_array_get(json_object_get(c, "confusion"), i), j));
        }
        ok(per_ok, "%s: per-class precision, recall, f1, support and confusion matrix", name);
        const json_t *macro = json_object_get(c, "macro"), *weighted = json_object_get(c, "weighted");
        is_close(m.macro_precision, json_number_value(json_array_get(macro, 0)), 1e-12, "%s: macro precision", name);
        is_close(m.macro_recall, json_number_value(json_array_get(macro, 1)), 1e-12, "%s: macro recall", name);
        is_close(m.macro_f1, json_number_value(json_array_get(macro, 2)), 1e-12, "%s: macro f1", name);
        is_close(m.weighted_precision, json_number_value(json_array_get(weighted, 0)), 1e-12, "%s: weighted precision",
                 name);
        is_close(m.weighted_recall, json_number_value(json_array_get(weighted, 1)), 1e-12, "%s: weighted recall", name);
        is_close(m.weighted_f1, json_number_value(json_array_get(weighted, 2)), 1e-12, "%s: weighted f1", name);
        json_t *j = metrics_classification_to_json(&m, NULL);
        ok(j && json_array_size(json_object_get(j, "per_class")) == k, "%s: json", name);
        json_decref(j);
        metrics_classification_deinit(&m);
        free(t);
        free(p);
}

static void check_regression(const json_t *c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const json_t *yt = json_object_get(c, "y_true"), *yp = json_object_get(c, "y_pred");
        size_t n = json_array_size(yt);
        float *t = calloc(n, sizeof(float)), *p = calloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++) {
                t[i] = (float)json_number_value(json_array_get(yt, i));
                p[i] = (float)json_number_value(json_array_get(yp, i));
        }
        struct metrics_regression m;
        is_int(metrics_regression_compute(t, p, n, &m, NULL), 0, "%s: computes", name);
        is_close(m.mse, json_number_value(json_object_get(c, "mse")), 1e-9, "%s: mse", name);
        is_close(m.rmse, json_number_value(json_object_get(c, "rmse")), 1e-9, "%s: rmse", name);
        is_close(m.mae, json_number_value(json_object_get(c, "mae")), 1e-9, "%s: mae", name);
        is_close(m.r2, json_number_value(json_object_get(c, "r2")), 1e-9, "%s: r2", name);
        free(t);
        free(p);
}

static void check_schedules(void) {
        struct jobspec s;
        struct schedule sc;
        jobspec_init(&s);
        s.hyperparameters.epochs = 4;
        s.hyperparameters.learning_rate = 0.1;
        s.hyperparameters.warmup_epochs = 1;
        s.hyperparameters.schedule = JOBSPEC_SCHED_COSINE;
        is_int(schedule_init(&sc, &s, 10), 0, "cosine schedule");
        is_close(schedule_lr(&sc, 0), 0.01, 1e-12, "warmup starts at lr/W");
        is_close(schedule_lr(&sc, 9), 0.1, 1e-12, "warmup ends at lr");
        is_close(schedule_lr(&sc, 10), 0.1, 1e-12, "cosine starts at lr");
        is_close(schedule_lr(&sc, 25), 0.05, 1e-12, "cosine half way is lr/2");
        ok(schedule_lr(&sc, 39) < 0.001, "cosine ends near 0");
        s.hyperparameters.schedule = JOBSPEC_SCHED_LINEAR;
        s.hyperparameters.min_lr = 0.02;
        schedule_init(&sc, &s, 10);
        is_close(schedule_lr(&sc, 25), 0.06, 1e-12, "linear half way");
        s.hyperparameters.schedule = JOBSPEC_SCHED_STEP;
        s.hyperparameters.warmup_epochs = 0;
        s.hyperparameters.step_size = 2;
        s.hyperparameters.gamma = 0.5;
        schedule_init(&sc, &s, 10);
        is_close(schedule_lr(&sc, 19), 0.1, 1e-12, "step: epoch 1");
        is_close(schedule_lr(&sc, 20), 0.05, 1e-12, "step: epoch 2 decays");
        s.hyperparameters.schedule = JOBSPEC_SCHED_CONSTANT;
        schedule_init(&sc, &s, 10);
        is_close(schedule_lr(&sc, 33), 0.1, 0, "constant");
        ok(schedule_init(&sc, &s, 0) == -EINVAL, "zero steps per epoch rejected");
}

int main(void) {
        json_error_t jerr;
        json_t *root = json_load_file(FIXTURE, 0, &jerr);
        if (!ok(root != NULL, "fixture loads (%s)", root ? FIXTURE : jerr.text))
                return tap_done();
        diag("scikit-learn %s", json_string_value(json_object_get(root, "sklearn")));
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(root, "cases"), i, c) {
                if (strcmp(json_string_value(json_object_get(c, "type")), "classification") == 0)
                        check_classification(c);
                else
                        check_regression(c);
        }
        json_decref(root);

        int32_t bad[1] = {7};
        struct metrics_classification m;
        ok(metrics_classification_compute(bad, bad, 1, 3, &m, NULL) == -EINVAL, "out-of-range label rejected");
        check_schedules();
        return tap_done();
}
