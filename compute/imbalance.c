/* imbalance.c - class weights for the loss and the imbalance rule (see imbalance.h).
 *
 * Not for: the loss, events.
 */
#include "compute/imbalance.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

int imbalance_class_weights(const struct jobspec *spec, char *const *names, const size_t *counts, size_t n,
                            float *ret_w, struct ft_error *err) {
        const json_t *cw = spec->class_weights;
        const char *param = "hyperparameters.class_weights";
        if (json_is_string(cw)) { /* "balanced" (jobspec checked) */
                size_t total = 0;
                for (size_t c = 0; c < n; c++)
                        total += counts[c];
                for (size_t c = 0; c < n; c++)
                        ret_w[c] = counts[c] ? (float)((double)total / ((double)n * (double)counts[c])) : 0.0f;
                return 0;
        }
        if (json_is_array(cw)) {
                if (json_array_size(cw) != n)
                        return ft_error_set(err, -EINVAL, param,
                                            "'%s' has %zu weights but the training data has %zu classes", param,
                                            json_array_size(cw), n);
                for (size_t c = 0; c < n; c++)
                        ret_w[c] = (float)json_number_value(json_array_get(cw, c));
        } else {
                for (size_t c = 0; c < n; c++)
                        ret_w[c] = 1.0f;
        }
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)(json_is_object(cw) ? cw : NULL), key, v) {
                size_t c = 0;
                while (c < n && strcmp(names[c], key) != 0)
                        c++;
                if (c == n)
                        return ft_error_set(err, -EINVAL, param,
                                            "'%s' names the class '%.64s', which the training "
                                            "data does not have",
                                            param, key);
                ret_w[c] = (float)json_number_value(v);
        }
        float sum = 0;
        for (size_t c = 0; c < n; c++)
                sum += ret_w[c];
        if (!(sum > 0))
                return ft_error_set(err, -EINVAL, param, "'%s': every class weighs 0", param);
        return 0;
}

bool imbalance_detect(const size_t *counts, size_t n, size_t *ret_min, size_t *ret_max) {
        if (n < 2)
                return false;
        size_t lo = 0, hi = 0;
        for (size_t c = 1; c < n; c++) {
                if (counts[c] < counts[lo])
                        lo = c;
                if (counts[c] > counts[hi])
                        hi = c;
        }
        if (counts[lo] * IMBALANCE_RATIO >= counts[hi])
                return false;
        if (ret_min)
                *ret_min = lo;
        if (ret_max)
                *ret_max = hi;
        return true;
}

bool imbalance_message(char *const *names, const size_t *counts, size_t n, bool has_weights, char *buf, size_t size) {
        size_t lo, hi;
        if (!imbalance_detect(counts, n, &lo, &hi))
                return false;
        snprintf(buf, size,
                 "the training data is imbalanced: its smallest class '%.64s' has %zu rows, fewer than a tenth of its "
                 "largest '%.64s' (%zu rows)%s",
                 names[lo], counts[lo], names[hi], counts[hi],
                 has_weights ? "" : ": consider hyperparameters.class_weights \"balanced\"");
        return true;
}
