/* train_calibration.c - the calibration part of a classification job's final metrics: the ECE and reliability
 * diagram of the final evaluation and, with calibration.temperature_scaling, the temperature fitted on the
 * validation split (see train.h). Not for: the metric definitions (metrics_curves.c), the training loop. */
#include "compute/train.h"

#include <math.h>
#include <stdlib.h>

int train_calibration(const struct jobspec *spec, const float *logits, const int32_t *labels, size_t n, size_t k,
                      bool on_validation, struct train_calibration *ret, struct ft_error *err) {
        struct train_calibration c = {.temperature = 1.0};
        if (k < 2 || n == 0) {
                *ret = c;
                return 0;
        }
        double *p = malloc(n * k * sizeof(double));
        if (!p)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        metrics_softmax(logits, n, k, 1.0, p);
        int r = metrics_calibration_compute(labels, p, n, k, &c.before, err);
        if (r == 0 && spec->calibration.temperature_scaling && on_validation) {
                c.nll_before = metrics_nll(labels, logits, n, k, 1.0);
                r = metrics_temperature_fit(labels, logits, n, k, &c.temperature, err);
                if (r == 0) {
                        c.scaled = true;
                        c.nll_after = metrics_nll(labels, logits, n, k, c.temperature);
                        metrics_softmax(logits, n, k, c.temperature, p);
                        r = metrics_calibration_compute(labels, p, n, k, &c.after, err);
                }
        }
        free(p);
        if (r < 0)
                return r;
        c.computed = true;
        *ret = c;
        return 0;
}

json_t *train_calibration_json(const struct train_calibration *c) {
        json_t *j = metrics_calibration_to_json(&c->before);
        if (!j)
                return NULL;
        json_t *ts = json_null();
        if (c->scaled) {
                ts = metrics_calibration_to_json(&c->after);
                if (ts) {
                        json_object_del(ts, "bins");
                        json_object_del(ts, "samples");
                        json_object_set_new(ts, "temperature", json_real(c->temperature));
                        json_object_set_new(ts, "nll_before", json_real(c->nll_before));
                        json_object_set_new(ts, "nll_after", json_real(c->nll_after));
                }
        }
        json_object_set_new(j, "temperature_scaling", ts);
        return j;
}
