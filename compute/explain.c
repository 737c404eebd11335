/* explain.c - gradient x input and integrated gradients over the model's input-gradient mode (explain.h).
 *
 * One plan. Gradient x input, at batch 1: a forward of the baseline (s_c(b)), one of x (the prediction, s_c(x)),
 * the backward of x. Integrated gradients, at batch B (at most EXPLAIN_BATCH): a forward of x and the baseline side
 * by side (the prediction, s_c(x), s_c(b)), then the m interpolation points B at a time (a short last chunk is
 * padded with x and a zero output gradient, so no second plan is made), their input gradients summed in double.
 *
 * Not for: preprocessing, files, HTTP (api/explain.c), the backward itself (the backend). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compute/explain.h"

void explain_result_deinit(struct explain_result *r) {
        if (!r)
                return;
        free(r->attribution);
        free(r->output);
        memset(r, 0, sizeof(*r));
}

static bool finite_all(const float *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!isfinite(v[i]))
                        return false;
        return true;
}

int explain_run(struct model *m, struct compute_ctx *ctx, const float *x, const struct explain_options *opt,
                struct explain_result *ret, struct ft_error *err) {
        if (!m || !ctx || !x || !opt || !ret)
                return ft_error_set(err, -EINVAL, NULL, "explain: missing argument");
        size_t n = model_input_numel(m), k = model_output_count(m);
        bool ig = opt->method == EXPLAIN_INTEGRATED_GRADIENTS;
        if (n > EXPLAIN_INPUT_MAX)
                return ft_error_set(err, -EINVAL, "model",
                                    "the model takes %zu input values; explain takes at most %zu", n,
                                    EXPLAIN_INPUT_MAX);
        int steps = ig ? (opt->steps ? opt->steps : EXPLAIN_STEPS_DEFAULT) : 1;
        if (steps < 1 || steps > EXPLAIN_STEPS_MAX)
                return ft_error_set(err, -EINVAL, "steps", "'steps' must be from 1 to %d", EXPLAIN_STEPS_MAX);
        if (k < 1 || opt->target < -1 || opt->target >= (long long)k)
                return ft_error_set(err, -EINVAL, "target", "'target' must be a class index from 0 to %zu", k - 1);
        int batch = ig ? FT_MIN(EXPLAIN_BATCH, FT_MAX(2, steps)) : 1;
        float *xb = malloc((size_t)batch * n * sizeof(float)), *dout = calloc((size_t)batch * k, sizeof(float));
        float *zero = opt->baseline ? NULL : calloc(n, sizeof(float));
        double *acc = calloc(n, sizeof(double));
        float *yb = malloc(k * sizeof(float)); /* the baseline's outputs */
        struct explain_result res = {.n = n, .outputs = k, .steps = steps};
        res.attribution = malloc(n * sizeof(float));
        res.output = malloc(k * sizeof(float));
        const float *b = opt->baseline ? opt->baseline : zero, *y = NULL, *g = NULL;
        int r = 0;
        if (!xb || !dout || !acc || !yb || !b || !res.attribution || !res.output) {
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                goto done;
        }
        model_set_input_grad(m, true);
        if ((r = model_prepare(m, ctx, batch, err)) < 0)
                goto done;
        if (batch == 1) { /* gradient x input: the baseline alone, then x (whose forward the backward follows) */
                if ((r = model_forward(m, b, 1, false, &y, err)) < 0)
                        goto done;
                memcpy(yb, y, k * sizeof(float));
                if ((r = model_forward(m, x, 1, false, &y, err)) < 0)
                        goto done;
        } else { /* x, the baseline, and x again as padding */
                for (int j = 0; j < batch; j++)
                        memcpy(xb + (size_t)j * n, j == 1 ? b : x, n * sizeof(float));
                if ((r = model_forward(m, xb, batch, false, &y, err)) < 0)
                        goto done;
                memcpy(yb, y + k, k * sizeof(float));
        }
        if (!finite_all(y, k) || !finite_all(yb, k)) {
                r = ft_error_set(err, -ERANGE, "input", "the model's output is not a finite number");
                goto done;
        }
        memcpy(res.output, y, k * sizeof(float));
        for (size_t c = 1; c < k; c++)
                if (y[c] > y[res.predicted])
                        res.predicted = c;
        res.target = opt->target < 0 ? res.predicted : (size_t)opt->target;
        res.score = y[res.target];
        res.baseline_score = yb[res.target];
        if (!ig) { /* d s_c / d x at x: backpropagate row 0 only */
                dout[res.target] = 1.0f;
                if ((r = model_backward(m, dout, err)) < 0 || (r = model_input_grad(m, &g, err)) < 0)
                        goto done;
                for (size_t i = 0; i < n; i++)
                        res.attribution[i] = x[i] * g[i];
        } else {
                for (int k0 = 1; k0 <= steps; k0 += batch) {
                        for (int j = 0; j < batch; j++) {
                                int step = k0 + j;
                                float *row = xb + (size_t)j * n;
                                dout[(size_t)j * k + res.target] = step <= steps ? 1.0f : 0.0f;
                                if (step > steps) {
                                        memcpy(row, x, n * sizeof(float));
                                        continue;
                                }
                                float alpha = (float)step / (float)steps;
                                for (size_t i = 0; i < n; i++)
                                        row[i] = b[i] + alpha * (x[i] - b[i]);
                        }
                        if ((r = model_forward(m, xb, batch, false, &y, err)) < 0 ||
                            (r = model_backward(m, dout, err)) < 0 || (r = model_input_grad(m, &g, err)) < 0)
                                goto done;
                        for (int j = 0; j < batch && k0 + j <= steps; j++)
                                for (size_t i = 0; i < n; i++)
                                        acc[i] += g[(size_t)j * n + i];
                }
                for (size_t i = 0; i < n; i++)
                        res.attribution[i] = (float)((double)(x[i] - b[i]) * (acc[i] / steps));
        }
        if (!finite_all(res.attribution, n)) {
                r = ft_error_set(err, -ERANGE, "input", "the model's gradient is not a finite number");
                goto done;
        }
        for (size_t i = 0; i < n; i++)
                res.sum += res.attribution[i];
        res.delta = res.sum - (res.score - res.baseline_score);
        *ret = res;
        res.attribution = res.output = NULL;
done:
        free(res.attribution);
        free(res.output);
        free(xb);
        free(dout);
        free(zero);
        free(acc);
        free(yb);
        return r;
}
