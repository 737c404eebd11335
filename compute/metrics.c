/* metrics.c - classification and regression metrics as scikit-learn defines
 * them (see metrics.h). Sums are in double; counts in uint64_t. Not for:
 * anything that needs the model. */
#include "compute/metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void metrics_classification_deinit(struct metrics_classification *m) {
        if (!m)
                return;
        free(m->precision);
        free(m->recall);
        free(m->f1);
        free(m->support);
        free(m->confusion);
        memset(m, 0, sizeof(*m));
}

static double safe_div(double a, double b) {
        return b > 0 ? a / b : 0.0;
}

int metrics_classification_compute(const int32_t *y_true, const int32_t *y_pred, size_t n, size_t n_classes,
                                   struct metrics_classification *ret, struct ft_error *err) {
        struct metrics_classification m = {0};
        size_t cells;

        if (n_classes == 0 || n_classes > METRICS_CLASSES_MAX)
                return ft_error_set(err, -EINVAL, NULL, "number of classes %zu is not in 1..%d", n_classes,
                                    METRICS_CLASSES_MAX);
        if (!ft_mul_size(n_classes, n_classes, &cells))
                return ft_error_set(err, -EINVAL, NULL, "too many classes");
        for (size_t i = 0; i < n; i++)
                if (y_true[i] < 0 || (size_t)y_true[i] >= n_classes || y_pred[i] < 0 || (size_t)y_pred[i] >= n_classes)
                        return ft_error_set(err, -EINVAL, NULL, "label at sample %zu is outside 0..%zu", i,
                                            n_classes - 1);
        m.n_classes = n_classes;
        m.n_samples = n;
        m.precision = calloc(n_classes, sizeof(double));
        m.recall = calloc(n_classes, sizeof(double));
        m.f1 = calloc(n_classes, sizeof(double));
        m.support = calloc(n_classes, sizeof(uint64_t));
        m.confusion = calloc(cells, sizeof(uint64_t));
        if (!m.precision || !m.recall || !m.f1 || !m.support || !m.confusion) {
                metrics_classification_deinit(&m);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }

        uint64_t correct = 0;
        for (size_t i = 0; i < n; i++) {
                m.confusion[(size_t)y_true[i] * n_classes + (size_t)y_pred[i]]++;
                correct += y_true[i] == y_pred[i];
        }
        m.accuracy = safe_div((double)correct, (double)n);

        double total = 0;
        for (size_t c = 0; c < n_classes; c++) {
                uint64_t tp = m.confusion[c * n_classes + c], predicted = 0, actual = 0;
                for (size_t k = 0; k < n_classes; k++) {
                        predicted += m.confusion[k * n_classes + c];
                        actual += m.confusion[c * n_classes + k];
                }
                m.support[c] = actual;
                m.precision[c] = safe_div((double)tp, (double)predicted);
                m.recall[c] = safe_div((double)tp, (double)actual);
                double pr = m.precision[c] + m.recall[c];
                m.f1[c] = pr > 0 ? 2.0 * m.precision[c] * m.recall[c] / pr : 0.0;
                m.macro_precision += m.precision[c];
                m.macro_recall += m.recall[c];
                m.macro_f1 += m.f1[c];
                m.weighted_precision += m.precision[c] * (double)actual;
                m.weighted_recall += m.recall[c] * (double)actual;
                m.weighted_f1 += m.f1[c] * (double)actual;
                total += (double)actual;
        }
        m.macro_precision /= (double)n_classes;
        m.macro_recall /= (double)n_classes;
        m.macro_f1 /= (double)n_classes;
        m.weighted_precision = safe_div(m.weighted_precision, total);
        m.weighted_recall = safe_div(m.weighted_recall, total);
        m.weighted_f1 = safe_div(m.weighted_f1, total);
        *ret = m;
        return 0;
}

int metrics_regression_compute(const float *y_true, const float *y_pred, size_t n, struct metrics_regression *ret,
                               struct ft_error *err) {
        double mean = 0, ss_res = 0, ss_tot = 0, abs_sum = 0;
        for (size_t i = 0; i < n; i++) {
                if (!isfinite(y_true[i]) || !isfinite(y_pred[i]))
                        return ft_error_set(err, -EINVAL, NULL, "value at sample %zu is not finite", i);
                mean += y_true[i];
        }
        mean = safe_div(mean, (double)n);
        for (size_t i = 0; i < n; i++) {
                double d = (double)y_true[i] - (double)y_pred[i];
                double t = (double)y_true[i] - mean;
                ss_res += d * d;
                ss_tot += t * t;
                abs_sum += fabs(d);
        }
        struct metrics_regression m = {.n_samples = n};
        m.mse = safe_div(ss_res, (double)n);
        m.rmse = sqrt(m.mse);
        m.mae = safe_div(abs_sum, (double)n);
        if (ss_tot > 0)
                m.r2 = 1.0 - ss_res / ss_tot;
        else
                m.r2 = ss_res == 0 ? 1.0 : 0.0;
        *ret = m;
        return 0;
}

json_t *metrics_classification_to_json(const struct metrics_classification *m, const char *const *class_names) {
        json_t *per = json_array(), *labels = json_array(), *matrix = json_array();
        char buf[32];
        for (size_t c = 0; c < m->n_classes; c++) {
                const char *name = class_names ? class_names[c] : NULL;
                if (!name) {
                        snprintf(buf, sizeof(buf), "%zu", c);
                        name = buf;
                }
                json_array_append_new(per, json_pack("{s:s s:f s:f s:f s:I}", "class", name, "precision",
                                                     m->precision[c], "recall", m->recall[c], "f1", m->f1[c], "support",
                                                     (json_int_t)m->support[c]));
                json_array_append_new(labels, json_string(name));
                json_t *row = json_array();
                for (size_t k = 0; k < m->n_classes; k++)
                        json_array_append_new(row, json_integer((json_int_t)m->confusion[c * m->n_classes + k]));
                json_array_append_new(matrix, row);
        }
        return json_pack("{s:f s:{s:f s:f s:f} s:{s:f s:f s:f} s:o s:{s:o s:o} s:I}", "accuracy", m->accuracy,
                         "macro_avg", "precision", m->macro_precision, "recall", m->macro_recall, "f1", m->macro_f1,
                         "weighted_avg", "precision", m->weighted_precision, "recall", m->weighted_recall, "f1",
                         m->weighted_f1, "per_class", per, "confusion_matrix", "labels", labels, "matrix", matrix,
                         "samples", (json_int_t)m->n_samples);
}

json_t *metrics_regression_to_json(const struct metrics_regression *m) {
        return json_pack("{s:f s:f s:f s:f s:I}", "mse", m->mse, "rmse", m->rmse, "mae", m->mae, "r2", m->r2, "samples",
                         (json_int_t)m->n_samples);
}
