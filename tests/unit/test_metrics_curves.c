/* test_metrics_curves.c - log loss, ROC-AUC, average precision, ROC and precision-recall curves equal
 * scikit-learn 1.2's, the ECE and reliability diagram equal the NumPy reference, and the fitted temperature
 * equals SciPy's bounded minimisation, on the committed fixture (tests/fixtures/eval/curves.json, made by
 * tools/gen_eval_fixtures.py). Not for: running a model (test_eval). */
#include <string.h>

#include "compute/metrics_curves.h"
#include "tests/tap.h"

#define FIXTURE FT_SOURCE_DIR "/tests/fixtures/eval/curves.json"

/* Every value of a JSON array against a C array (relative tolerance). */
static bool same_array(const json_t *want, const double *got, size_t n, double tol) {
        if (json_array_size(want) != n) {
                diag("  length %zu, want %zu", n, json_array_size(want));
                return false;
        }
        for (size_t i = 0; i < n; i++) {
                double w = json_number_value(json_array_get(want, i));
                if (fabs(got[i] - w) / fmax(fabs(w), 1e-6) > tol) {
                        diag("  [%zu] got %.17g, want %.17g", i, got[i], w);
                        return false;
                }
        }
        return true;
}

static void check_case(const json_t *c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        size_t k = (size_t)json_integer_value(json_object_get(c, "n_classes"));
        const json_t *yt = json_object_get(c, "y_true"), *pj = json_object_get(c, "probabilities"),
                     *lj = json_object_get(c, "logits");
        size_t n = json_array_size(yt);
        int32_t *y = calloc(n, sizeof(int32_t));
        double *p = calloc(n * k, sizeof(double)), *q = calloc(n * k, sizeof(double));
        float *z = calloc(n * k, sizeof(float));
        for (size_t i = 0; i < n; i++) {
                y[i] = (int32_t)json_integer_value(json_array_get(yt, i));
                for (size_t j = 0; j < k; j++) {
                        p[i * k + j] = json_number_value(json_array_get(json_array_get(pj, i), j));
                        z[i * k + j] = (float)json_number_value(json_array_get(json_array_get(lj, i), j));
                }
        }
        struct ft_error err = {0};
        struct metrics_scores m;
        is_int(metrics_scores_compute(y, p, n, k, true, &m, &err), 0, "%s: computes", name);
        is_close(m.log_loss, json_number_value(json_object_get(c, "log_loss")), 1e-12, "%s: log loss", name);
        bool per_ok = true, roc_ok = true, pr_ok = true;
        for (size_t j = 0; j < k; j++) {
                const json_t *wa = json_array_get(json_object_get(c, "roc_auc"), j);
                const json_t *wp = json_array_get(json_object_get(c, "average_precision"), j);
                const json_t *wr = json_array_get(json_object_get(c, "roc"), j);
                const json_t *wpr = json_array_get(json_object_get(c, "precision_recall"), j);
                if (json_is_null(wa)) {
                        per_ok &= isnan(m.roc_auc[j]) && isnan(m.average_precision[j]) && m.roc[j].n == 0;
                        continue;
                }
                per_ok &= fabs(m.roc_auc[j] - json_number_value(wa)) < 1e-12;
                per_ok &= fabs(m.average_precision[j] - json_number_value(wp)) < 1e-12;
                roc_ok &= same_array(json_object_get(wr, "fpr"), m.roc[j].x, m.roc[j].n, 1e-12);
                roc_ok &= same_array(json_object_get(wr, "tpr"), m.roc[j].y, m.roc[j].n, 1e-12);
                roc_ok &= same_array(json_object_get(wr, "thresholds"), m.roc[j].thresholds, m.roc[j].n_thresholds,
                                     1e-12);
                pr_ok &= same_array(json_object_get(wpr, "precision"), m.pr[j].y, m.pr[j].n, 1e-12);
                pr_ok &= same_array(json_object_get(wpr, "recall"), m.pr[j].x, m.pr[j].n, 1e-12);
                pr_ok &=
                        same_array(json_object_get(wpr, "thresholds"), m.pr[j].thresholds, m.pr[j].n_thresholds, 1e-12);
        }
        ok(per_ok, "%s: per-class ROC-AUC and average precision (null where a class has no positive)", name);
        ok(roc_ok, "%s: ROC curves (fpr, tpr, thresholds) equal roc_curve's", name);
        ok(pr_ok, "%s: precision-recall curves equal precision_recall_curve's", name);
        is_close(m.macro_roc_auc, json_number_value(json_object_get(c, "macro_roc_auc")), 1e-12, "%s: macro ROC-AUC",
                 name);
        is_close(m.macro_average_precision, json_number_value(json_object_get(c, "macro_average_precision")), 1e-12,
                 "%s: macro average precision", name);
        json_t *j = metrics_scores_to_json(&m, NULL, 5);
        const json_t *roc0 = json_array_get(json_object_get(json_object_get(j, "curves"), "roc"), k - 1);
        ok(j && json_array_size(json_object_get(json_object_get(j, "roc_auc"), "per_class")) == k &&
                   (json_is_null(roc0) ||
                    json_array_size(json_object_get(roc0, "fpr")) ==
                            FT_MIN((size_t)5, (size_t)json_integer_value(json_object_get(roc0, "points")))),
           "%s: json, curves thinned to 5 points", name);
        json_decref(j);
        metrics_scores_deinit(&m);

        struct metrics_calibration cal;
        is_int(metrics_calibration_compute(y, p, n, k, &cal, &err), 0, "%s: calibration computes", name);
        is_close(cal.ece, json_number_value(json_object_get(c, "ece")), 1e-12, "%s: ECE", name);
        is_close(cal.mce, json_number_value(json_object_get(c, "mce")), 1e-12, "%s: MCE", name);
        bool bins_ok = true;
        for (size_t b = 0; b < METRICS_CALIBRATION_BINS; b++) {
                const json_t *wb = json_array_get(json_object_get(c, "reliability"), b);
                bins_ok &= (json_int_t)cal.count[b] == json_integer_value(json_object_get(wb, "count"));
                if (cal.count[b]) {
                        bins_ok &= fabs(cal.accuracy[b] - json_number_value(json_object_get(wb, "accuracy"))) < 1e-12;
                        bins_ok &=
                                fabs(cal.confidence[b] - json_number_value(json_object_get(wb, "confidence"))) < 1e-12;
                } else {
                        bins_ok &= isnan(cal.accuracy[b]) && json_is_null(json_object_get(wb, "accuracy"));
                }
        }
        ok(bins_ok, "%s: the 15 reliability bins (count, accuracy, confidence)", name);

        /* probabilities from the float32 logits, as the engine computes them */
        metrics_softmax(z, n, k, 1.0, q);
        ok(same_array(json_array_get(pj, 0), q, k, 1e-12), "%s: softmax of the logits", name);
        double t = 0;
        is_int(metrics_temperature_fit(y, z, n, k, &t, &err), 0, "%s: temperature fit", name);
        is_close(t, json_number_value(json_object_get(c, "temperature")), 1e-6, "%s: temperature %.4f", name, t);
        is_close(metrics_nll(y, z, n, k, 1.0), json_number_value(json_object_get(c, "nll_before")), 1e-10,
                 "%s: NLL at T = 1", name);
        is_close(metrics_nll(y, z, n, k, t), json_number_value(json_object_get(c, "nll_after")), 1e-9,
                 "%s: NLL at the fitted T", name);
        metrics_softmax(z, n, k, t, q);
        is_int(metrics_calibration_compute(y, q, n, k, &cal, &err), 0, "%s: calibration after scaling", name);
        is_close(cal.ece, json_number_value(json_object_get(c, "ece_after")), 1e-6, "%s: ECE after scaling", name);
        free(y);
        free(p);
        free(q);
        free(z);
}

int main(void) {
        json_error_t je;
        json_t *root = json_load_file(FIXTURE, 0, &je);
        if (!ok(root != NULL, "fixture loads")) {
                diag("%s: %s", FIXTURE, je.text);
                return tap_done();
        }
        is_int(json_integer_value(json_object_get(root, "bins")), METRICS_CALIBRATION_BINS, "fixture has 15 bins");
        const json_t *cases = json_object_get(root, "cases");
        for (size_t i = 0; i < json_array_size(cases); i++)
                check_case(json_array_get(cases, i));
        json_decref(root);

        /* bad input */
        struct ft_error err = {0};
        struct metrics_scores m;
        int32_t y[2] = {0, 2};
        double p[4] = {0.5, 0.5, 0.5, 0.5};
        is_int(metrics_scores_compute(y, p, 2, 2, false, &m, &err), -EINVAL, "a label out of range is refused");
        y[1] = 1;
        p[3] = NAN;
        is_int(metrics_scores_compute(y, p, 2, 2, false, &m, &err), -EINVAL, "a NaN probability is refused");
        is_int(metrics_scores_compute(y, p, 0, 2, false, &m, &err), -EINVAL, "no samples are refused");
        double t;
        float z[4] = {1, 2, INFINITY, 0};
        is_int(metrics_temperature_fit(y, z, 2, 2, &t, &err), -EINVAL, "an infinite logit is refused");
        return tap_done();
}
