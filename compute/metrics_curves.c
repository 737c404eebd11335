/* metrics_curves.c - log loss, ROC-AUC, average precision, ROC / precision-recall curves, ECE and temperature
 * scaling over predicted probabilities (definitions in metrics_curves.h). Everything in double. Not for: labels
 * only (metrics.c), running a model. */
#include "compute/metrics_curves.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_input(const int32_t *y, size_t n, size_t k, struct ft_error *err) {
        if (k < 2 || k > 100000)
                return ft_error_set(err, -EINVAL, NULL, "probability metrics need 2..100000 classes, not %zu", k);
        if (n == 0)
                return ft_error_set(err, -EINVAL, NULL, "no samples to compute metrics on");
        for (size_t i = 0; i < n; i++)
                if (y[i] < 0 || (size_t)y[i] >= k)
                        return ft_error_set(err, -EINVAL, NULL, "label at sample %zu is outside 0..%zu", i, k - 1);
        return 0;
}

static void curve_deinit(struct metrics_curve *c) {
        free(c->x);
        free(c->y);
        free(c->thresholds);
        memset(c, 0, sizeof(*c));
}

void metrics_scores_deinit(struct metrics_scores *m) {
        if (!m)
                return;
        for (size_t c = 0; m->roc && c < m->n_classes; c++)
                curve_deinit(&m->roc[c]);
        for (size_t c = 0; m->pr && c < m->n_classes; c++)
                curve_deinit(&m->pr[c]);
        free(m->roc);
        free(m->pr);
        free(m->roc_auc);
        free(m->average_precision);
        memset(m, 0, sizeof(*m));
}

/* qsort context: scores of the class being sorted (qsort has no user pointer). */
struct scored {
        double s;
        uint8_t pos;
};

static int cmp_desc(const void *a, const void *b) {
        double x = ((const struct scored *)a)->s, y = ((const struct scored *)b)->s;
        return x > y ? -1 : x < y ? 1 : 0;
}

/* sklearn's _binary_clf_curve: fps, tps and thresholds at each distinct score, scores descending. Returns the
 * number of distinct scores (the arrays have n entries of room). */
static size_t binary_clf_curve(struct scored *v, size_t n, double *fps, double *tps, double *thr) {
        qsort(v, n, sizeof(*v), cmp_desc);
        size_t m = 0;
        double tp = 0;
        for (size_t i = 0; i < n; i++) {
                tp += v[i].pos;
                if (i + 1 == n || v[i + 1].s != v[i].s) {
                        tps[m] = tp;
                        fps[m] = (double)(i + 1) - tp;
                        thr[m] = v[i].s;
                        m++;
                }
        }
        return m;
}

/* One class: AUC and AP always, the curves when asked. fps/tps/thr are scratch of n entries. */
static int one_class(const int32_t *y, const double *probs, size_t n, size_t k, size_t c, struct scored *v, double *fps,
                     double *tps, double *thr, struct metrics_curve *roc, struct metrics_curve *pr, double *ret_auc,
                     double *ret_ap) {
        size_t pos = 0;
        for (size_t i = 0; i < n; i++) {
                v[i].s = probs[i * k + c];
                v[i].pos = y[i] == (int32_t)c;
                pos += v[i].pos;
        }
        *ret_auc = *ret_ap = NAN;
        if (pos == 0 || pos == n)
                return 0;
        size_t m = binary_clf_curve(v, n, fps, tps, thr);
        double P = tps[m - 1], N = fps[m - 1];

        /* ROC: drop_intermediate (collinear points), then (0, 0) with threshold max + 1 */
        size_t *keep = malloc((m + 1) * sizeof(size_t)), nk = 0;
        if (!keep)
                return -ENOMEM;
        for (size_t i = 0; i < m; i++) {
                if (m > 2 && i > 0 && i + 1 < m) {
                        double d2f = fps[i + 1] - 2 * fps[i] + fps[i - 1];
                        double d2t = tps[i + 1] - 2 * tps[i] + tps[i - 1];
                        if (d2f == 0 && d2t == 0)
                                continue;
                }
                keep[nk++] = i;
        }
        double *fpr = malloc((nk + 1) * sizeof(double)), *tpr = malloc((nk + 1) * sizeof(double)),
               *rt = malloc((nk + 1) * sizeof(double));
        if (!fpr || !tpr || !rt) {
                free(keep);
                free(fpr);
                free(tpr);
                free(rt);
                return -ENOMEM;
        }
        fpr[0] = tpr[0] = 0;
        rt[0] = thr[keep[0]] + 1;
        for (size_t i = 0; i < nk; i++) {
                fpr[i + 1] = fps[keep[i]] / N;
                tpr[i + 1] = tps[keep[i]] / P;
                rt[i + 1] = thr[keep[i]];
        }
        free(keep);
        double auc = 0;
        for (size_t i = 1; i <= nk; i++)
                auc += (fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2;
        *ret_auc = auc;

        /* PR: reversed so recall decreases, then precision 1 / recall 0 */
        double ap = 0;
        double *prec = NULL, *rec = NULL, *pt = NULL;
        if (pr) {
                prec = malloc((m + 1) * sizeof(double));
                rec = malloc((m + 1) * sizeof(double));
                pt = malloc(m * sizeof(double));
                if (!prec || !rec || !pt) {
                        free(prec);
                        free(rec);
                        free(pt);
                        free(fpr);
                        free(tpr);
                        free(rt);
                        return -ENOMEM;
                }
        }
        double prev_recall = 0; /* walking from the end of the reversed arrays: recall rises */
        for (size_t j = 0; j < m; j++) {
                size_t i = m - 1 - j; /* position in the reversed arrays */
                double ps = tps[j] + fps[j];
                double p = ps != 0 ? tps[j] / ps : 0, r = tps[j] / P;
                if (pr) {
                        prec[i] = p;
                        rec[i] = r;
                        pt[i] = thr[j];
                }
                /* -sum(diff(recall) * precision[:-1]) over the reversed arrays = sum over rising recall */
                ap += (r - prev_recall) * p;
                prev_recall = r;
        }
        *ret_ap = ap;
        if (pr) {
                prec[m] = 1;
                rec[m] = 0;
                *pr = (struct metrics_curve){.n = m + 1, .x = rec, .y = prec, .thresholds = pt, .n_thresholds = m};
        }
        if (roc)
                *roc = (struct metrics_curve){
                        .n = nk + 1, .x = fpr, .y = tpr, .thresholds = rt, .n_thresholds = nk + 1};
        else {
                free(fpr);
                free(tpr);
                free(rt);
        }
        return 0;
}

int metrics_scores_compute(const int32_t *y_true, const double *probs, size_t n, size_t k, bool curves,
                           struct metrics_scores *ret, struct ft_error *err) {
        int r = check_input(y_true, n, k, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n * k; i++)
                if (!isfinite(probs[i]))
                        return ft_error_set(err, -EINVAL, NULL, "probability at sample %zu is not finite", i / k);
        struct metrics_scores m = {.n_classes = k, .n_samples = n};
        struct scored *v = malloc(n * sizeof(*v));
        double *fps = malloc(n * sizeof(double)), *tps = malloc(n * sizeof(double)), *thr = malloc(n * sizeof(double));
        m.roc_auc = calloc(k, sizeof(double));
        m.average_precision = calloc(k, sizeof(double));
        if (curves) {
                m.roc = calloc(k, sizeof(*m.roc));
                m.pr = calloc(k, sizeof(*m.pr));
        }
        r = v && fps && tps && thr && m.roc_auc && m.average_precision && (!curves || (m.roc && m.pr)) ? 0 : -ENOMEM;

        /* log loss: clip, renormalise, -ln p[true] */
        double ll = 0;
        for (size_t i = 0; r == 0 && i < n; i++) {
                double sum = 0, pt = 0;
                for (size_t c = 0; c < k; c++) {
                        double p = fmin(fmax(probs[i * k + c], DBL_EPSILON), 1 - DBL_EPSILON);
                        sum += p;
                        if ((int32_t)c == y_true[i])
                                pt = p;
                }
                ll -= log(pt / sum);
        }
        m.log_loss = ll / (double)n;

        double auc_sum = 0, ap_sum = 0;
        size_t defined = 0;
        for (size_t c = 0; r == 0 && c < k; c++) {
                r = one_class(y_true, probs, n, k, c, v, fps, tps, thr, curves ? &m.roc[c] : NULL,
                              curves ? &m.pr[c] : NULL, &m.roc_auc[c], &m.average_precision[c]);
                if (r == 0 && !isnan(m.roc_auc[c])) {
                        auc_sum += m.roc_auc[c];
                        ap_sum += m.average_precision[c];
                        defined++;
                }
        }
        m.macro_roc_auc = defined ? auc_sum / (double)defined : NAN;
        m.macro_average_precision = defined ? ap_sum / (double)defined : NAN;
        free(v);
        free(fps);
        free(tps);
        free(thr);
        if (r < 0) {
                metrics_scores_deinit(&m);
                return ft_error_set(err, r, NULL, "out of memory");
        }
        *ret = m;
        return 0;
}

static json_t *num_or_null(double v) {
        return isfinite(v) ? json_real(v) : json_null();
}

/* An array of a curve's values at the kept indices (every one when n <= max). */
static json_t *thinned(const double *a, size_t n, size_t max) {
        json_t *out = json_array();
        if (n <= max) {
                for (size_t i = 0; i < n; i++)
                        json_array_append_new(out, json_real(a[i]));
                return out;
        }
        for (size_t j = 0; j < max; j++) {
                size_t i = max > 1 ? (size_t)((double)j * (double)(n - 1) / (double)(max - 1) + 0.5) : 0;
                json_array_append_new(out, json_real(a[i]));
        }
        return out;
}

static json_t *curve_json(const struct metrics_curve *c, const char *name, const char *xname, const char *yname,
                          size_t max) {
        if (!c->n)
                return json_null();
        json_t *j = json_pack("{s:s s:o s:o s:I}", "class", name, xname, thinned(c->x, c->n, max), yname,
                              thinned(c->y, c->n, max), "points", (json_int_t)c->n);
        /* PR has one threshold fewer than points: thin it on its own grid */
        if (j)
                json_object_set_new(
                        j, "thresholds",
                        thinned(c->thresholds, c->n_thresholds, c->n_thresholds == c->n ? max : FT_MAX(max, 2) - 1));
        return j;
}

json_t *metrics_scores_to_json(const struct metrics_scores *m, const char *const *class_names, size_t max_points) {
        size_t max = max_points ? max_points : METRICS_CURVE_POINTS_DEFAULT;
        json_t *per = json_array(), *roc = m->roc ? json_array() : NULL, *pr = m->pr ? json_array() : NULL;
        char buf[32];
        for (size_t c = 0; c < m->n_classes; c++) {
                const char *name = class_names ? class_names[c] : NULL;
                if (!name) {
                        snprintf(buf, sizeof(buf), "%zu", c);
                        name = buf;
                }
                json_array_append_new(per,
                                      json_pack("{s:s s:o s:o}", "class", name, "roc_auc", num_or_null(m->roc_auc[c]),
                                                "average_precision", num_or_null(m->average_precision[c])));
                if (roc)
                        json_array_append_new(roc, curve_json(&m->roc[c], name, "fpr", "tpr", max));
                if (pr)
                        json_array_append_new(pr, curve_json(&m->pr[c], name, "recall", "precision", max));
        }
        json_t *j = json_pack("{s:f s:{s:o s:o} s:o}", "log_loss", m->log_loss, "roc_auc", "macro",
                              num_or_null(m->macro_roc_auc), "per_class", per, "average_precision",
                              num_or_null(m->macro_average_precision));
        if (j && roc)
                json_object_set_new(j, "curves", json_pack("{s:o s:o}", "roc", roc, "precision_recall", pr));
        return j;
}

int metrics_calibration_compute(const int32_t *y_true, const double *probs, size_t n, size_t k,
                                struct metrics_calibration *ret, struct ft_error *err) {
        int r = check_input(y_true, n, k, err);
        if (r < 0)
                return r;
        struct metrics_calibration cal = {.n_samples = n};
        double conf_sum[METRICS_CALIBRATION_BINS] = {0}, correct[METRICS_CALIBRATION_BINS] = {0};
        const double step = 1.0 / METRICS_CALIBRATION_BINS; /* NumPy's linspace(0, 1, B + 1) edges: i * step */
        for (size_t i = 0; i < n; i++) {
                const double *p = probs + i * k;
                size_t best = 0;
                for (size_t c = 1; c < k; c++)
                        if (p[c] > p[best])
                                best = c;
                double conf = p[best];
                if (!isfinite(conf))
                        return ft_error_set(err, -EINVAL, NULL, "probability at sample %zu is not finite", i);
                /* (lo, hi]: the bin whose upper edge is the first >= conf; the last edge is exactly 1 */
                size_t b = 0;
                while (b + 1 < METRICS_CALIBRATION_BINS && conf > (double)(b + 1) * step)
                        b++;
                if (conf <= 0)
                        continue; /* in no bin, as in the reference (a probability of 0 cannot be the top one) */
                cal.count[b]++;
                conf_sum[b] += conf;
                correct[b] += (int32_t)best == y_true[i];
        }
        for (size_t b = 0; b < METRICS_CALIBRATION_BINS; b++) {
                if (!cal.count[b]) {
                        cal.confidence[b] = cal.accuracy[b] = NAN;
                        continue;
                }
                cal.confidence[b] = conf_sum[b] / (double)cal.count[b];
                cal.accuracy[b] = correct[b] / (double)cal.count[b];
                double gap = fabs(cal.accuracy[b] - cal.confidence[b]);
                cal.ece += (double)cal.count[b] / (double)n * gap;
                cal.mce = fmax(cal.mce, gap);
        }
        *ret = cal;
        return 0;
}

json_t *metrics_calibration_to_json(const struct metrics_calibration *c) {
        json_t *bins = json_array();
        const double step = 1.0 / METRICS_CALIBRATION_BINS;
        for (size_t b = 0; b < METRICS_CALIBRATION_BINS; b++)
                json_array_append_new(bins, json_pack("{s:f s:f s:I s:o s:o}", "lower", (double)b * step, "upper",
                                                      b + 1 == METRICS_CALIBRATION_BINS ? 1.0 : (double)(b + 1) * step,
                                                      "count", (json_int_t)c->count[b], "confidence",
                                                      num_or_null(c->confidence[b]), "accuracy",
                                                      num_or_null(c->accuracy[b])));
        return json_pack("{s:f s:f s:i s:I s:o}", "ece", c->ece, "mce", c->mce, "bins", METRICS_CALIBRATION_BINS,
                         "samples", (json_int_t)c->n_samples, "reliability", bins);
}

void metrics_softmax(const float *logits, size_t n, size_t k, double temperature, double *probs) {
        for (size_t i = 0; i < n; i++) {
                const float *z = logits + i * k;
                double *p = probs + i * k, mx = (double)z[0] / temperature, sum = 0;
                for (size_t c = 1; c < k; c++)
                        mx = fmax(mx, (double)z[c] / temperature);
                for (size_t c = 0; c < k; c++)
                        sum += p[c] = exp((double)z[c] / temperature - mx);
                for (size_t c = 0; c < k; c++)
                        p[c] /= sum;
        }
}

double metrics_nll(const int32_t *y_true, const float *logits, size_t n, size_t k, double temperature) {
        double total = 0;
        for (size_t i = 0; i < n; i++) {
                const float *z = logits + i * k;
                double mx = (double)z[0] / temperature, sum = 0;
                for (size_t c = 1; c < k; c++)
                        mx = fmax(mx, (double)z[c] / temperature);
                for (size_t c = 0; c < k; c++)
                        sum += exp((double)z[c] / temperature - mx);
                total += log(sum) + mx - (double)z[y_true[i]] / temperature;
        }
        return n ? total / (double)n : 0;
}

int metrics_temperature_fit(const int32_t *y_true, const float *logits, size_t n, size_t k, double *ret_temperature,
                            struct ft_error *err) {
        int r = check_input(y_true, n, k, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n * k; i++)
                if (!isfinite(logits[i]))
                        return ft_error_set(err, -EINVAL, NULL, "logit at sample %zu is not finite", i / k);
        const double g = (sqrt(5.0) - 1) / 2;
        double a = log(0.01), b = log(100.0);
        double x1 = b - g * (b - a), x2 = a + g * (b - a);
        double f1 = metrics_nll(y_true, logits, n, k, exp(x1)), f2 = metrics_nll(y_true, logits, n, k, exp(x2));
        while (b - a > 1e-9) {
                if (f1 <= f2) {
                        b = x2;
                        x2 = x1;
                        f2 = f1;
                        x1 = b - g * (b - a);
                        f1 = metrics_nll(y_true, logits, n, k, exp(x1));
                } else {
                        a = x1;
                        x1 = x2;
                        f1 = f2;
                        x2 = a + g * (b - a);
                        f2 = metrics_nll(y_true, logits, n, k, exp(x2));
                }
        }
        *ret_temperature = exp((a + b) / 2);
        return 0;
}
