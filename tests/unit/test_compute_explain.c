/* test_compute_explain.c - saliency (compute/explain.h) against PyTorch's autograd: replays
 * tests/fixtures/compute/saliency.bin (tools/gen_saliency_fixtures.py) for an MLP, two small CNNs (1 and 3
 * channels) and ResNet-18 at 3x32x32 in evaluation mode: the predicted class, the input gradient, gradient x input
 * and integrated gradients (16 steps, zero and constant baselines), each within 1e-4 relative error in the infinity
 * norm (measured: at most 6e-7 on AVX2 and AVX-512), on every ISA (meson runs it under the ISA caps too).
 * Also: input-gradient mode leaves the parameters' gradients alone, works on a model that was in inference mode,
 * refuses bad targets and steps, and a plain forward-only model refuses model_input_grad.
 * Not for: kernels (test_compute_kernels.c checks input-gradient plans for reference kernels), HTTP
 * (tests/integration/test_api_explain.sh). */
#include <string.h>

#include "compute/compute.h"
#include "tests/tap.h"
#include "tests/unit/compute_fixture.h"

#define TOL 1e-4

/* ResNet-18's weights as the generator's formula_init sets them (running statistics included) */
static void formula_init(struct model *m) {
        for (size_t k = 0; k < model_tensor_count(m); k++) {
                struct tensor *t = model_tensor_at(m, k);
                if (t->dtype != TENSOR_F32) {
                        tensor_i64(t)[0] = 0;
                        continue;
                }
                float *d = tensor_f32(t);
                bool rm = strstr(t->name, "running_mean") != NULL, rv = strstr(t->name, "running_var") != NULL;
                bool bn = t->ndim == 1 && (strstr(t->name, "bn") || strstr(t->name, "downsample.1"));
                bool weight = strstr(t->name, ".weight") != NULL;
                double fan_in = t->ndim > 1 ? (double)(t->numel / (size_t)t->shape[0]) : (double)t->numel;
                for (size_t i = 0; i < t->numel; i++) {
                        double u = fx_init_value(k, i), v;
                        if (rm)
                                v = 0.1 * u;
                        else if (rv)
                                v = 1.0 + 0.25 * u;
                        else if (bn)
                                v = weight ? 1.0 + 0.1 * u : 0.1 * u;
                        else
                                v = u / sqrt(fan_in) * (t->ndim > 1 ? sqrt(3.0) : 1.0);
                        d[i] = (float)v;
                }
        }
}

static int load_init(struct model *m, const struct fx_file *fx, const char *prefix) {
        for (size_t k = 0; k < model_tensor_count(m); k++) {
                struct tensor *t = model_tensor_at(m, k);
                if (t->dtype == TENSOR_I64) {
                        tensor_i64(t)[0] = 0;
                        continue;
                }
                char name[300];
                snprintf(name, sizeof(name), "%s/init/%s", prefix, t->name);
                const struct fx_record *r = fx_get(fx, name);
                if (!r || r->count != t->numel) {
                        diag("fixture has no %s of %zu values", name, t->numel);
                        return -1;
                }
                memcpy(t->data, r->data, t->numel * 4);
        }
        return 0;
}

static const struct fx_record *rec(const struct fx_file *fx, const char *prefix, const char *what, size_t count) {
        char name[128];
        snprintf(name, sizeof(name), "%s/%s", prefix, what);
        const struct fx_record *r = fx_get(fx, name);
        if (!r || (count && r->count != count)) {
                diag("fixture has no %s of %zu values", name, count);
                return NULL;
        }
        return r;
}

static void check_model(const struct fx_file *fx, const char *prefix, const char *preset, const char *opts_json,
                        bool formula, bool with_const, struct compute_ctx *ctx) {
        struct ft_error err = {0};
        json_t *opts = json_loads(opts_json, 0, NULL), *spec = NULL;
        struct model *m = NULL;
        struct explain_result res = {0};
        float *grads = NULL;
        int r = model_preset_spec(preset, opts, &spec, &err);
        if (r == 0)
                r = model_new(spec, &m, &err);
        if (!ok(r == 0, "%s: build (%s)", prefix, err.message))
                goto out;
        if (formula)
                formula_init(m);
        else if (!ok(load_init(m, fx, prefix) == 0, "%s: initial weights", prefix))
                goto out;
        size_t n = model_input_numel(m), k = model_output_count(m);
        const struct fx_record *x = rec(fx, prefix, "x", n), *logits = rec(fx, prefix, "logits", k),
                               *target = rec(fx, prefix, "target", 1), *gxi = rec(fx, prefix, "gxi", n),
                               *ig = rec(fx, prefix, "ig", n), *steps = rec(fx, prefix, "steps", 1),
                               *igc = with_const ? rec(fx, prefix, "ig_const", n) : NULL;
        if (!ok(x && logits && target && gxi && ig && steps && (!with_const || igc), "%s: fixture records", prefix))
                goto out;
        /* a sentinel in the gradient span: input-gradient mode must never write it */
        float *gspan;
        size_t gn;
        model_grads(m, &gspan, &gn);
        grads = malloc(gn * sizeof(float));
        if (!grads)
                goto out;
        for (size_t i = 0; i < gn; i++)
                gspan[i] = grads[i] = 0.5f;

        struct explain_options o = {.method = EXPLAIN_GRADIENT_X_INPUT, .target = -1};
        r = explain_run(m, ctx, x->data, &o, &res, &err);
        if (!ok(r == 0, "%s: gradient x input (%s)", prefix, err.message))
                goto out;
        double e = fx_relerr(res.output, logits->data, k);
        ok(e <= 1e-4, "%s: eval logits rel err %.2e <= 1e-4", prefix, e);
        ok(res.target == (size_t)target->data[0] && res.predicted == res.target, "%s: predicted class %zu (torch %g)",
           prefix, res.predicted, (double)target->data[0]);
        e = fx_relerr(res.attribution, gxi->data, n);
        ok(e <= TOL, "%s: gradient x input rel err %.2e <= %.0e", prefix, e, TOL);
        explain_result_deinit(&res);

        o = (struct explain_options){.method = EXPLAIN_INTEGRATED_GRADIENTS,
                                     .target = (long long)target->data[0],
                                     .steps = (int)steps->data[0]};
        r = explain_run(m, ctx, x->data, &o, &res, &err);
        if (!ok(r == 0, "%s: integrated gradients (%s)", prefix, err.message))
                goto out;
        e = fx_relerr(res.attribution, ig->data, n);
        ok(e <= TOL, "%s: integrated gradients (%d steps, zero baseline) rel err %.2e <= %.0e", prefix, res.steps, e,
           TOL);
        diag("%s: completeness: sum %.5f, s(x) - s(0) %.5f", prefix, res.sum, res.score - res.baseline_score);
        explain_result_deinit(&res);
        if (igc) {
                float *b = malloc(n * sizeof(float));
                for (size_t i = 0; b && i < n; i++)
                        b[i] = -1.0f;
                o.baseline = b;
                r = b ? explain_run(m, ctx, x->data, &o, &res, &err) : -ENOMEM;
                e = r == 0 ? fx_relerr(res.attribution, igc->data, n) : INFINITY;
                ok(r == 0 && e <= TOL, "%s: integrated gradients (constant -1 baseline) rel err %.2e <= %.0e (%s)",
                   prefix, e, TOL, err.message);
                explain_result_deinit(&res);
                free(b);
        }
        bool untouched = true;
        for (size_t i = 0; i < gn; i++)
                untouched = untouched && gspan[i] == grads[i];
        ok(untouched, "%s: the parameters' gradients are never written in input-gradient mode", prefix);
out:
        explain_result_deinit(&res);
        free(grads);
        model_free(m);
        json_decref(spec);
        json_decref(opts);
}

/* modes and refusals, on the small CNN */
static void check_modes(const struct fx_file *fx, struct compute_ctx *ctx) {
        struct ft_error err = {0};
        json_t *opts = json_loads("{\"in_channels\": 1, \"input_size\": [16, 16], \"channels\": [4, 8], \"hidden\": "
                                  "16, \"outputs\": 5}",
                                  0, NULL),
               *spec = NULL;
        struct model *m = NULL;
        struct explain_result res = {0};
        int r = model_preset_spec("cnn", opts, &spec, &err);
        if (r == 0)
                r = model_new(spec, &m, &err);
        if (!ok(r == 0 && load_init(m, fx, "cnn") == 0, "modes: build (%s)", err.message))
                goto out;
        const struct fx_record *x = rec(fx, "cnn", "x", model_input_numel(m)), *gxi = rec(fx, "cnn", "gxi", 0);
        if (!x || !gxi)
                goto out;
        const float *y, *g;
        /* a predicting model: inference mode, no backward, no input gradient */
        model_set_inference(m, true);
        r = model_prepare(m, ctx, 1, &err);
        if (r == 0)
                r = model_forward(m, x->data, 1, false, &y, &err);
        ok(r == 0, "modes: inference forward (%s)", err.message);
        ok(model_backward(m, y, &err) == -EINVAL, "modes: inference mode has no backward (%s)", err.message);
        ok(model_input_grad(m, &g, &err) == -EINVAL, "modes: nor an input gradient (%s)", err.message);
        /* ... and explain turns it into an input-gradient model */
        struct explain_options o = {.method = EXPLAIN_GRADIENT_X_INPUT, .target = -1};
        r = explain_run(m, ctx, x->data, &o, &res, &err);
        ok(r == 0 && !model_is_inference(m) && model_is_input_grad(m) &&
                   fx_relerr(res.attribution, gxi->data, res.n) <= TOL,
           "modes: explain works on a model that was in inference mode (%s)", err.message);
        explain_result_deinit(&res);
        /* a forward after the backward: its gradient is gone */
        r = model_forward(m, x->data, 1, false, &y, &err);
        ok(r == 0 && model_input_grad(m, &g, &err) == -EINVAL, "modes: a new forward drops the input gradient");
        o.target = 5;
        ok(explain_run(m, ctx, x->data, &o, &res, &err) == -EINVAL && strcmp(err.param, "target") == 0,
           "modes: target 5 of 5 classes refused: %s", err.message);
        o.target = -2;
        ok(explain_run(m, ctx, x->data, &o, &res, &err) == -EINVAL && strcmp(err.param, "target") == 0,
           "modes: target -2 refused");
        o = (struct explain_options){
                .method = EXPLAIN_INTEGRATED_GRADIENTS, .target = -1, .steps = EXPLAIN_STEPS_MAX + 1};
        ok(explain_run(m, ctx, x->data, &o, &res, &err) == -EINVAL && strcmp(err.param, "steps") == 0,
           "modes: %d steps refused: %s", EXPLAIN_STEPS_MAX + 1, err.message);
        /* one step, a batch of 2 padded: integrated gradients with m = 1 is the gradient at x times (x - 0) */
        o.steps = 1;
        r = explain_run(m, ctx, x->data, &o, &res, &err);
        ok(r == 0 && fx_relerr(res.attribution, gxi->data, res.n) <= TOL,
           "modes: integrated gradients with 1 step equal gradient x input (%s)", err.message);
        explain_result_deinit(&res);
        /* off again: a training step as before (the mode's plans are released) */
        model_set_input_grad(m, false);
        float dout[2 * 5] = {0};
        float x2[2 * 256];
        memcpy(x2, x->data, 256 * sizeof(float));
        memcpy(x2 + 256, x->data, 256 * sizeof(float));
        r = model_prepare(m, ctx, 2, &err);
        if (r == 0)
                r = model_forward(m, x2, 2, false, &y, &err);
        ok(r == 0 && model_backward(m, dout, &err) == -EINVAL, "modes: off: backward needs a training forward again");
out:
        explain_result_deinit(&res);
        model_free(m);
        json_decref(spec);
        json_decref(opts);
}

int main(void) {
        struct fx_file fx;
        char path[4200];
        snprintf(path, sizeof(path), "%s/saliency.bin", fx_dir());
        if (!ok(fx_load(path, &fx) == 0, "load %s", path))
                return tap_done();
        struct compute_ctx *ctx = NULL;
        struct ft_error err = {0};
        if (!ok(compute_ctx_new(1, &ctx, &err) == 0, "context (%s)", err.message))
                return tap_done();
        check_model(&fx, "mlp", "mlp", "{\"inputs\": 64, \"hidden\": [32, 16], \"outputs\": 5}", false, false, ctx);
        check_model(&fx, "cnn", "cnn",
                    "{\"in_channels\": 1, \"input_size\": [16, 16], \"channels\": [4, 8], \"hidden\": 16, "
                    "\"outputs\": 5}",
                    false, true, ctx);
        check_model(&fx, "cnn3", "cnn",
                    "{\"in_channels\": 3, \"input_size\": [16, 16], \"channels\": [8, 16], \"hidden\": 16, "
                    "\"outputs\": 5}",
                    false, true, ctx);
        check_model(&fx, "resnet18", "resnet18", "{\"num_classes\": 10, \"input_size\": [32, 32]}", true, false, ctx);
        check_modes(&fx, ctx);
        compute_ctx_free(ctx);
        fx_free(&fx);
        return tap_done();
}
