/* loss.c - softmax cross-entropy and MSE with their gradients, equal to torch.nn.CrossEntropyLoss / MSELoss
 * (reduction "mean"). Sums run in double so the result does not depend on the batch order.
 * Not for: metrics. */
#include "compute/loss.h"

#include <math.h>
#include <stdlib.h>

int loss_cross_entropy(const float *logits, const int32_t *targets, int batch, int classes,
                       const struct loss_ce_options *opts, float *ret_loss, float *d_logits, struct ft_error *err) {
        if (batch < 1 || classes < 1)
                return ft_error_set(err, -EINVAL, batch < 1 ? "batch_size" : "classes",
                                    "cross-entropy needs a batch and classes of at least 1");
        float ls = opts ? opts->label_smoothing : 0.0f;
        const float *cw = opts ? opts->class_weights : NULL;
        if (!(ls >= 0.0f && ls < 1.0f))
                return ft_error_set(err, -EINVAL, "label_smoothing",
                                    "'label_smoothing' must be from 0 to 1 (exclusive)");
        if (cw)
                for (int c = 0; c < classes; c++)
                        if (!(cw[c] >= 0.0f) || !isfinite(cw[c]))
                                return ft_error_set(err, -EINVAL, "class_weights",
                                                    "'class_weights'[%d] must be a finite number >= 0", c);
        for (int i = 0; i < batch; i++)
                if (targets[i] < 0 || targets[i] >= classes)
                        return ft_error_set(err, -EINVAL, "targets",
                                            "target %d of sample %d is not a class from 0 to %d", targets[i], i,
                                            classes - 1);
        /* PyTorch: loss_i = (1-ls) * w[y] * -logp[y] + ls/C * sum_c w[c] * -logp[c];
         * mean divides by sum_i w[y_i] (1 per sample without weights) */
        double wsum = 0.0, total = 0.0;
        for (int i = 0; i < batch; i++)
                wsum += cw ? cw[targets[i]] : 1.0;
        if (!(wsum > 0.0))
                return ft_error_set(err, -EINVAL, "class_weights", "the targets' class weights sum to zero");
        double *p = malloc((size_t)classes * sizeof(double));
        if (!p)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        for (int i = 0; i < batch; i++) {
                const float *z = logits + (size_t)i * (size_t)classes;
                double mx = z[0];
                for (int c = 1; c < classes; c++)
                        mx = z[c] > mx ? z[c] : mx;
                double se = 0.0;
                for (int c = 0; c < classes; c++) {
                        p[c] = exp((double)z[c] - mx);
                        se += p[c];
                }
                double lse = log(se) + mx;
                int y = targets[i];
                double wy = cw ? cw[y] : 1.0;
                double li = (1.0 - ls) * wy * (lse - z[y]);
                double wtot = 0.0; /* sum_c w[c] */
                if (ls > 0.0f)
                        for (int c = 0; c < classes; c++) {
                                double wc = cw ? cw[c] : 1.0;
                                li += ls / classes * wc * (lse - z[c]);
                                wtot += wc;
                        }
                total += li;
                if (d_logits) {
                        float *d = d_logits + (size_t)i * (size_t)classes;
                        for (int c = 0; c < classes; c++) {
                                double sm = p[c] / se;
                                double wc = cw ? cw[c] : 1.0;
                                /* d/dz_c of (1-ls)*wy*(lse - z_y) + ls/C * sum_k w_k (lse - z_k) */
                                double g = (1.0 - ls) * wy * (sm - (c == y ? 1.0 : 0.0));
                                if (ls > 0.0f)
                                        g += ls / classes * (wtot * sm - wc);
                                d[c] = (float)(g / wsum);
                        }
                }
        }
        free(p);
        *ret_loss = (float)(total / wsum);
        return 0;
}

int loss_mse(const float *pred, const float *target, int batch, int outputs, float *ret_loss, float *d_pred,
             struct ft_error *err) {
        if (batch < 1 || outputs < 1)
                return ft_error_set(err, -EINVAL, batch < 1 ? "batch_size" : "outputs",
                                    "mse needs a batch and outputs of at least 1");
        size_t n = (size_t)batch * (size_t)outputs;
        double s = 0.0;
        for (size_t i = 0; i < n; i++) {
                double d = (double)pred[i] - (double)target[i];
                s += d * d;
                if (d_pred)
                        d_pred[i] = (float)(2.0 * d / (double)n);
        }
        *ret_loss = (float)(s / (double)n);
        return 0;
}
