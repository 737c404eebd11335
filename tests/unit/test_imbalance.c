/* test_imbalance.c - imbalanced data (compute/imbalance.h): "balanced" class weights equal scikit-learn's
 * compute_class_weight and, in the loss, PyTorch's CrossEntropyLoss(weight=) loss and gradient on the committed
 * fixture (tests/fixtures/train/class_weights.json, tools/gen_class_weights_fixture.py); explicit weights by class
 * name and in class order; the job spec's and the data's refusals; the imbalance rule; and a run on imbalanced
 * blobs whose minority class is found more often with balanced weights.
 * Not for: the submit-time warning (tests/integration/test_api_diagnostics.sh). */
#include <math.h>

#include "compute/imbalance.h"
#include "tests/tap.h"
#include "tests/unit/train_fixture.h"

#define FIXTURE FT_SOURCE_DIR "/tests/fixtures/train/class_weights.json"

static void with_torch(void) {
        json_error_t jerr;
        json_t *fx = json_load_file(FIXTURE, 0, &jerr);
        if (!ok(fx != NULL, "fixture loads (%s)", fx ? "ok" : jerr.text))
                return;
        diag("PyTorch %s, scikit-learn %s", json_string_value(json_object_get(fx, "torch")),
             json_string_value(json_object_get(fx, "sklearn")));
        size_t k = (size_t)json_integer_value(json_object_get(fx, "classes"));
        const json_t *yt = json_object_get(fx, "targets"), *zt = json_object_get(fx, "logits");
        size_t n = json_array_size(yt);
        int32_t *y = malloc(n * sizeof(int32_t));
        float *z = malloc(n * k * sizeof(float)), *d = malloc(n * k * sizeof(float)), w[16];
        size_t counts[16] = {0};
        for (size_t i = 0; i < n; i++)
                counts[y[i] = (int32_t)json_integer_value(json_array_get(yt, i))]++;
        for (size_t i = 0; i < n * k; i++)
                z[i] = (float)json_number_value(json_array_get(zt, i));
        char *names[] = {"c0", "c1", "c2", "c3"};
        struct jobspec spec;
        struct ft_error err = {0};
        size_t ci;
        json_t *c;
        json_array_foreach(json_object_get(fx, "cases"), ci, c) {
                const char *name = json_string_value(json_object_get(c, "name"));
                const json_t *want = json_object_get(c, "weights");
                if (strcmp(name, "balanced") == 0)
                        parse_job("{\"model\": \"m\", \"training_file\": \"x\","
                                  " \"hyperparameters\": {\"class_weights\": \"balanced\"}}",
                                  &spec);
                else
                        parse_job("{\"model\": \"m\", \"training_file\": \"x\","
                                  " \"hyperparameters\": {\"class_weights\": {\"c1\": 2.5, \"c2\": 0, \"c3\": 7}}}",
                                  &spec);
                int r = imbalance_class_weights(&spec, names, counts, k, w, &err);
                bool same = r == 0;
                for (size_t j = 0; same && j < k; j++)
                        same = fabs(w[j] - json_number_value(json_array_get(want, j))) <=
                               1e-6 * fabs(json_number_value(json_array_get(want, j)));
                ok(same, "%s: weights %g %g %g %g are %s's (%s)", name, (double)w[0], (double)w[1], (double)w[2],
                   (double)w[3], strcmp(name, "balanced") == 0 ? "compute_class_weight" : "the spec", err.message);
                struct loss_ce_options o = {.class_weights = w};
                float loss;
                r = loss_cross_entropy(z, y, (int)n, (int)k, &o, &loss, d, &err);
                double want_loss = json_number_value(json_object_get(c, "loss")), gmax = 0;
                const json_t *g = json_object_get(c, "grad");
                for (size_t i = 0; i < n * k; i++)
                        gmax = fmax(gmax, fabs(d[i] - json_number_value(json_array_get(g, i))));
                ok(r == 0 && fabs(loss - want_loss) <= 1e-5 * fabs(want_loss) && gmax <= 1e-6,
                   "%s: CrossEntropyLoss(weight=): loss %.7f (torch %.7f), gradient within %.1e", name, (double)loss,
                   want_loss, gmax);
                jobspec_deinit(&spec);
        }
        /* the same weights as an array in class order */
        parse_job("{\"model\": \"m\", \"training_file\": \"x\","
                  " \"hyperparameters\": {\"class_weights\": [1, 2.5, 0, 7]}}",
                  &spec);
        ok(imbalance_class_weights(&spec, names, counts, k, w, &err) == 0 && w[1] == 2.5f && w[2] == 0 && w[3] == 7,
           "an array gives the weights in class order");
        jobspec_deinit(&spec);
        free(y);
        free(z);
        free(d);
        json_decref(fx);
}

static void refusals(void) {
        char *names[] = {"cat", "dog"};
        size_t counts[] = {10, 3};
        float w[2];
        struct jobspec spec;
        struct ft_error err = {0};
        parse_job(
                "{\"model\": \"m\", \"training_file\": \"x\", \"hyperparameters\": {\"class_weights\": {\"cow\": 2}}}",
                &spec);
        ok(imbalance_class_weights(&spec, names, counts, 2, w, &err) == -EINVAL &&
                   strcmp(err.param, "hyperparameters.class_weights") == 0 && strstr(err.message, "'cow'"),
           "a class the data does not have: -EINVAL (%s)", err.message);
        jobspec_deinit(&spec);
        parse_job("{\"model\": \"m\", \"training_file\": \"x\", \"hyperparameters\": {\"class_weights\": [1, 2, 3]}}",
                  &spec);
        ok(imbalance_class_weights(&spec, names, counts, 2, w, &err) == -EINVAL && strstr(err.message, "3 weights"),
           "an array of the wrong length: -EINVAL (%s)", err.message);
        jobspec_deinit(&spec);
        parse_job("{\"model\": \"m\", \"training_file\": \"x\", \"hyperparameters\": {\"class_weights\": [0, 0]}}",
                  &spec);
        ok(imbalance_class_weights(&spec, names, counts, 2, w, &err) == -EINVAL && strstr(err.message, "weighs 0"),
           "every class weighing 0: -EINVAL (%s)", err.message);
        jobspec_deinit(&spec);
        static const struct {
                const char *cw, *param;
        } bad[] = {
                {"\"even\"", "hyperparameters.class_weights"},
                {"{\"cat\": -1}", "hyperparameters.class_weights.cat"},
                {"[1, \"x\"]", "hyperparameters.class_weights[1]"},
                {"{}", "hyperparameters.class_weights"},
                {"{\"\": 1}", "hyperparameters.class_weights"},
                {"3", "hyperparameters.class_weights"},
                {"[1e7]", "hyperparameters.class_weights[0]"},
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                char text[256];
                snprintf(text, sizeof(text),
                         "{\"model\": \"m\", \"training_file\": \"x\", \"hyperparameters\": {\"class_weights\": %s}}",
                         bad[i].cw);
                int r = jobspec_parse_string(text, strlen(text), &spec, &err);
                ok(r == -EINVAL && strcmp(err.param, bad[i].param) == 0, "class_weights %s: 400 naming '%s' (%s)",
                   bad[i].cw, err.param, err.message);
                if (r == 0)
                        jobspec_deinit(&spec);
        }
        const char *reg = "{\"model\": \"m\", \"training_file\": \"x\", \"task\": {\"type\": \"regression\"},"
                          " \"hyperparameters\": {\"class_weights\": \"balanced\"}}";
        ok(jobspec_parse_string(reg, strlen(reg), &spec, &err) == -EINVAL &&
                   strcmp(err.param, "hyperparameters.class_weights") == 0,
           "class_weights for regression: refused");
        parse_job(
                "{\"model\": \"m\", \"training_file\": \"x\", \"hyperparameters\": {\"class_weights\": \"balanced\"}}",
                &spec);
        json_t *j = jobspec_to_json(&spec);
        ok(strcmp(json_string_value(json_object_get(json_object_get(j, "hyperparameters"), "class_weights")),
                  "balanced") == 0,
           "the spec echoes class_weights");
        json_decref(j);
        jobspec_deinit(&spec);

        size_t lo, hi;
        ok(imbalance_detect((size_t[]){100, 9, 50}, 3, &lo, &hi) && lo == 1 && hi == 0,
           "9 rows against 100: imbalanced (smallest class 1, largest 0)");
        ok(!imbalance_detect((size_t[]){100, 10, 50}, 3, NULL, NULL), "10 against 100 is not (the rule is < 1/10)");
}

/* 540 rows of two overlapping blobs, 30 of them the minority class: the balanced loss finds more of it */
static void minority(struct compute_ctx *ctx) {
        struct dataset *ds = blobs_new(1000, 4, 2, 0.7, 13);
        /* keep every class-0 row and one in 16 of class 1 */
        size_t n = 0;
        for (size_t i = 0; i < ds->n; i++) {
                if (ds->labels[i] == 1 && i % 32 != 1)
                        continue;
                memmove(ds->x + n * 4, ds->x + i * 4, 4 * sizeof(float));
                ds->labels[n++] = ds->labels[i];
        }
        ds->n = n;
        ds->class_counts[0] = ds->class_counts[1] = 0;
        for (size_t i = 0; i < n; i++)
                ds->class_counts[ds->labels[i]]++;
        double recall[2];
        for (int b = 0; b < 2; b++) {
                struct jobspec spec;
                char text[512];
                snprintf(text, sizeof(text),
                         "{\"model\": \"mlp\", \"training_file\": \"x\", \"validation_split\": 0.4, \"seed\": 2,"
                         " \"hyperparameters\": {\"epochs\": 10, \"batch_size\": 16, \"learning_rate\": 0.01,"
                         " \"class_weights\": %s}}",
                         b ? "\"balanced\"" : "null");
                parse_job(text, &spec);
                struct model *m = mlp_new(4, 16, 2, 0);
                model_init(m, 3);
                struct train_result res;
                struct ft_error err = {0};
                int r = train_run(&spec, m, ctx, ds, NULL, NULL, NULL, &res, &err);
                recall[b] = r == 0 ? res.final.cls.recall[1] : -1;
                if (r == 0)
                        train_result_deinit(&res);
                else
                        diag("train: %s", err.message);
                model_free(m);
                jobspec_deinit(&spec);
        }
        diag("%zu rows, %zu of the minority class: its recall %.3f unweighted, %.3f balanced", n, ds->class_counts[1],
             recall[0], recall[1]);
        ok(recall[1] > recall[0], "balanced class weights find more of the minority class (%.3f > %.3f)", recall[1],
           recall[0]);
        table_free(ds);
}

int main(void) {
        with_torch();
        refusals();
        struct compute_ctx *ctx = NULL;
        struct ft_error err = {0};
        if (!ok(compute_ctx_new(1, &ctx, &err) == 0, "context (%s)", err.message))
                return tap_done();
        minority(ctx);
        compute_ctx_free(ctx);
        return tap_done();
}
