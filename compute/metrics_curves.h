/* metrics_curves.h - the metrics of predicted probabilities, as scikit-learn 1.2 and the calibration literature
 * define them: log loss, one-vs-rest ROC-AUC and average precision (per class and macro), the ROC and
 * precision-recall curves, the expected calibration error with its reliability diagram, and temperature
 * scaling. Checked against scikit-learn / NumPy / SciPy on a committed fixture (tests/fixtures/eval/curves.json,
 * tools/gen_eval_fixtures.py).
 *
 * Definitions:
 *   log loss     sklearn.metrics.log_loss(labels=range(k)): probabilities clipped to [eps, 1 - eps] (eps =
 * DBL_EPSILON), each row renormalised, mean of -ln p[true class]; ROC-AUC      per class c: roc_auc_score(y == c, p[:,
 * c]) (trapezoids under roc_curve); undefined (NAN, JSON null) when class c has no positive or no negative sample;
 * macro: the mean over the classes where it is defined (scikit-learn refuses the whole computation when a class is
 * absent; for k == 2 it is roc_auc_score(y, p[:, 1]), which equals both per-class values); curves
 * roc_curve(drop_intermediate=True) with 1.2's first threshold max + 1, precision_recall_curve (precision 1 / recall 0
 * appended, thresholds ascending); AP           average_precision_score: -sum(diff(recall) * precision[:-1]); ECE Guo
 * et al. 2017: confidence = the top class probability, METRICS_CALIBRATION_BINS equal-width bins (lo, hi] with edges i
 * / B, ECE = sum over bins |B_i| / n * |accuracy(B_i) - confidence(B_i)|, MCE the largest of those gaps over non-empty
 * bins; temperature  T minimising the mean NLL of softmax(logits / T), a golden-section search on ln T over [ln 0.01,
 * ln 100] (the NLL is convex in 1/T, so unimodal in ln T) to |Δ ln T| < 1e-9.
 *
 * Not for: running a model (compute/eval.h), label-only metrics (compute/metrics.h).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define METRICS_CALIBRATION_BINS 15
#define METRICS_CURVE_POINTS_DEFAULT 1001 /* the JSON's curves are thinned beyond this many points */
#define METRICS_CURVE_POINTS_MAX 100000
#define METRICS_CURVES_CLASSES_MAX 100 /* beyond this many classes no curves (memory and answer size) */

struct metrics_curve {
        size_t n; /* points */
        double *x, *y; /* ROC: fpr, tpr; PR: recall, precision */
        double *thresholds; /* ROC: n; PR: n - 1 */
        size_t n_thresholds;
};

struct metrics_scores {
        size_t n_classes, n_samples;
        double log_loss;
        double *roc_auc; /* [n_classes], NAN when undefined */
        double *average_precision; /* [n_classes], NAN when undefined */
        double macro_roc_auc, macro_average_precision; /* NAN when no class has both */
        struct metrics_curve *roc, *pr; /* [n_classes] (n == 0 when undefined), NULL without curves */
};

/* probs: n x k row-major probabilities (rows summing to ~1); labels in [0, k). curves: also the curves. -EINVAL
 * for a label out of range, k < 2, n == 0 or a non-finite probability. Free with metrics_scores_deinit. */
int metrics_scores_compute(const int32_t *y_true, const double *probs, size_t n, size_t k, bool curves,
                           struct metrics_scores *ret, struct ft_error *err);
void metrics_scores_deinit(struct metrics_scores *m);

/* {"log_loss", "roc_auc": {"macro", "per_class": [{"class", "roc_auc", "average_precision"}]},
 *  "average_precision": macro} and with curves "curves": {"roc": [{"class", "fpr", "tpr", "thresholds"}],
 *  "precision_recall": [{"class", "precision", "recall", "thresholds"}]} (null per class where undefined), each
 * curve thinned to at most max_points (0: METRICS_CURVE_POINTS_DEFAULT) evenly spaced points, first and last
 * kept ("points" says how many the full curve has). Undefined values are null. */
json_t *metrics_scores_to_json(const struct metrics_scores *m, const char *const *class_names, size_t max_points);

struct metrics_calibration {
        size_t n_samples;
        double ece, mce;
        uint64_t count[METRICS_CALIBRATION_BINS];
        double confidence[METRICS_CALIBRATION_BINS]; /* mean top-class probability; NAN for an empty bin */
        double accuracy[METRICS_CALIBRATION_BINS]; /* NAN for an empty bin */
};

int metrics_calibration_compute(const int32_t *y_true, const double *probs, size_t n, size_t k,
                                struct metrics_calibration *ret, struct ft_error *err);
/* {"ece", "mce", "bins": 15, "samples", "reliability": [{"lower", "upper", "count", "confidence", "accuracy"}]} */
json_t *metrics_calibration_to_json(const struct metrics_calibration *c);

/* probs[i*k + c] = softmax(logits[i] / temperature)[c], in double. */
void metrics_softmax(const float *logits, size_t n, size_t k, double temperature, double *probs);
/* The mean negative log-likelihood of the labels under softmax(logits / temperature). */
double metrics_nll(const int32_t *y_true, const float *logits, size_t n, size_t k, double temperature);
/* The temperature scaling fit (see the top). -EINVAL for n == 0, k < 2, a label out of range or a non-finite
 * logit. */
int metrics_temperature_fit(const int32_t *y_true, const float *logits, size_t n, size_t k, double *ret_temperature,
                            struct ft_error *err);
