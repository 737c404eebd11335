/* metrics.h - evaluation metrics with scikit-learn's exact definitions:
 * classification (accuracy, per-class precision / recall / F1 / support,
 * macro and weighted averages, confusion matrix) and regression (MSE, RMSE,
 * MAE, R²). Checked against scikit-learn 1.2 on a committed fixture
 * (tests/fixtures/train/metrics.json).
 *
 * Definitions (sklearn defaults, zero_division="warn" which yields 0):
 *   precision_c = tp / (tp + fp), 0 when no sample was predicted c;
 *   recall_c    = tp / (tp + fn), 0 when class c has no true sample;
 *   f1_c        = 2 p r / (p + r), 0 when p + r == 0;
 *   macro       = unweighted mean over all n_classes (labels=range(n_classes));
 *   weighted    = mean weighted by support (0 when there are no samples);
 *   R²          = 1 - SS_res / SS_tot; when SS_tot == 0: 1 if SS_res == 0
 *                 else 0 (force_finite=True).
 *
 * Not for: running a model (compute/train does that and hands the labels and
 * predictions here).
 */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define METRICS_CLASSES_MAX 100000

struct metrics_classification {
        size_t n_classes;
        size_t n_samples;
        double accuracy;
        double *precision; /* [n_classes] */
        double *recall; /* [n_classes] */
        double *f1; /* [n_classes] */
        uint64_t *support; /* [n_classes] true samples per class */
        double macro_precision, macro_recall, macro_f1;
        double weighted_precision, weighted_recall, weighted_f1;
        uint64_t *confusion; /* [n_classes * n_classes], row = true class, column = predicted */
};

struct metrics_regression {
        size_t n_samples;
        double mse, rmse, mae, r2;
};

/* Compute from labels in [0, n_classes). Allocates the arrays in *ret (free
 * with metrics_classification_deinit). -EINVAL (with err) for a label out of
 * range or n_classes 0 or above METRICS_CLASSES_MAX; n may be 0 (all zeros). */
int metrics_classification_compute(const int32_t *y_true, const int32_t *y_pred, size_t n, size_t n_classes,
                                   struct metrics_classification *ret, struct ft_error *err);
void metrics_classification_deinit(struct metrics_classification *m);

int metrics_regression_compute(const float *y_true, const float *y_pred, size_t n, struct metrics_regression *ret,
                               struct ft_error *err);

/* JSON for metrics.json and the API's final event. class_names may be NULL
 * (names become "0", "1", ...):
 *   {"accuracy", "macro_avg": {precision, recall, f1}, "weighted_avg": {...},
 *    "per_class": [{"class", "precision", "recall", "f1", "support"}...],
 *    "confusion_matrix": {"labels": [...], "matrix": [[...]...]}, "samples"} */
json_t *metrics_classification_to_json(const struct metrics_classification *m, const char *const *class_names);
/* {"mse", "rmse", "mae", "r2", "samples"} */
json_t *metrics_regression_to_json(const struct metrics_regression *m);
