/* test_compute_gradcheck.c - finite-difference gradient checks for every layer and loss of the compute engine.
 *
 * Each case builds a small model around the layer under test (a parameter layer before it, so the layer's
 * backward is on the gradient path), takes L = sum(r * out) for a fixed random r (so d(out) = r), and compares
 * model_backward's gradients with central differences (L(p + h) - L(p - h)) / 2h at sampled entries of every
 * parameter. Some cases use 17 or 20 channels so oneDNN's blocked layouts (with padding) are on the path.
 * Not for: PyTorch equality (test_compute_torch.c). */
#include <string.h>

#include "compute/compute.h"
#include "tests/tap.h"

#define BATCH 3

static uint64_t rng_state = 42;
static float frand(void) { /* [-1, 1) */
        rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
        return (float)((double)(rng_state >> 40) / 16777216.0 * 2.0 - 1.0);
}

static double objective(struct model *m, struct compute_ctx *ctx, const float *x, const float *r, bool training) {
        struct model_rng_state rs = {.seed = 7, .counter = 0};
        model_rng_set(m, &rs); /* the same dropout mask every time */
        const float *out;
        struct ft_error err;
        if (model_forward(m, x, BATCH, training, &out, &err) < 0)
                return NAN;
        double s = 0.0;
        size_t n = (size_t)BATCH * model_output_count(m);
        for (size_t i = 0; i < n; i++)
                s += (double)out[i] * (double)r[i];
        return s;
}

/* frozen_bn: freeze "bn.*" and let frozen batchnorm use its running statistics in training */
static void check(const char *label, const char *spec_json, bool frozen_bn, double tol) {
        bool training = true;
        json_error_t jerr;
        json_t *spec = json_loads(spec_json, 0, &jerr);
        struct model *m = NULL;
        struct compute_ctx *ctx = NULL;
        struct ft_error err = {0};
        if (!spec) {
                ok(0, "%s: spec parses (%s)", label, jerr.text);
                return;
        }
        int r = model_new(spec, &m, &err);
        if (r == 0)
                r = compute_ctx_new(1, &ctx, &err);
        if (r == 0)
                r = model_prepare(m, ctx, BATCH, &err);
        if (!ok(r == 0, "%s: build (%s)", label, err.message))
                goto out;
        model_init(m, 1234);
        for (size_t i = 0; i < model_tensor_count(m); i++) { /* non-trivial batchnorm affine parameters */
                struct tensor *t = model_tensor_at(m, i);
                if (t->is_param && t->ndim == 1 && strstr(t->name, "bn"))
                        for (size_t j = 0; j < t->numel; j++)
                                tensor_f32(t)[j] += 0.3f * frand();
        }
        if (frozen_bn) {
                r = model_freeze(m, "bn.*", true, NULL, &err);
                model_set_frozen_bn_eval(m, true);
                struct tensor *rm = model_tensor_find(m, "bn.running_mean"),
                              *rv = model_tensor_find(m, "bn.running_var");
                for (size_t j = 0; rm && rv && j < rm->numel; j++) {
                        tensor_f32(rm)[j] = 0.5f * frand();
                        tensor_f32(rv)[j] = 1.0f + 0.5f * frand();
                }
                if (!ok(r == 0 && rm && rv, "%s: freeze bn (%s)", label, err.message))
                        goto out;
        }
        size_t nin = model_input_numel(m) * BATCH, nout = model_output_count(m) * BATCH;
        float *x = malloc(nin * sizeof(float)), *rr = malloc(nout * sizeof(float));
        for (size_t i = 0; i < nin; i++)
                x[i] = frand();
        for (size_t i = 0; i < nout; i++)
                rr[i] = frand();
        const float *out;
        model_zero_grad(m);
        r = model_forward(m, x, BATCH, training, &out, &err);
        struct model_rng_state rs = {.seed = 7, .counter = 0};
        model_rng_set(m, &rs);
        r = r ? r : model_forward(m, x, BATCH, training, &out, &err);
        r = r ? r : model_backward(m, rr, &err);
        if (!ok(r == 0, "%s: forward and backward (%s)", label, err.message))
                goto out2;
        float gall = 0.0f; /* the largest gradient in the model: the scale for tensors whose gradient is ~0 */
        for (size_t i = 0; i < model_tensor_count(m); i++) {
                struct tensor *t = model_tensor_at(m, i);
                for (size_t j = 0; t->is_param && j < t->numel; j++)
                        gall = fabsf(t->grad[j]) > gall ? fabsf(t->grad[j]) : gall;
        }
        double worst = 0.0;
        char worst_name[TENSOR_NAME_MAX] = "";
        int checked = 0;
        for (size_t i = 0; i < model_tensor_count(m); i++) {
                struct tensor *t = model_tensor_at(m, i);
                if (!t->is_param || t->frozen)
                        continue;
                float *p = tensor_f32(t);
                float gmax = 0.0f;
                for (size_t j = 0; j < t->numel; j++)
                        gmax = fabsf(t->grad[j]) > gmax ? fabsf(t->grad[j]) : gmax;
                float *an = malloc(t->numel * sizeof(float));
                memcpy(an, t->grad, t->numel * sizeof(float));
                size_t samples = t->numel < 8 ? t->numel : 8;
                double terr = 0.0;
                for (size_t s = 0; s < samples; s++) {
                        size_t j = (s * 7919u + i * 31u) % t->numel;
                        float keep = p[j];
                        double e = INFINITY;
                        /* relu and max pooling have kinks: when the difference at h straddles one (its error is
                         * large), h/4 and h/16 give more estimates; the best one counts */
                        for (float h = 1e-3f * (fabsf(keep) > 1.0f ? fabsf(keep) : 1.0f), k = 0; k < 3 && e > tol;
                             k++, h /= 4.0f) {
                                p[j] = keep + h;
                                double lp = objective(m, ctx, x, rr, training);
                                p[j] = keep - h;
                                double lm = objective(m, ctx, x, rr, training);
                                p[j] = keep;
                                double fd = (lp - lm) / (2.0 * (double)h);
                                double eh = fabs(fd - (double)an[j]) /
                                            ((double)(gmax > 0.05f * gall ? gmax : 0.05f * gall) + 1e-6);
                                e = eh < e ? eh : e;
                        }
                        terr = e > terr ? e : terr;
                        checked++;
                }
                free(an);
                if (terr > worst || isnan(terr)) {
                        worst = isnan(terr) ? INFINITY : terr;
                        snprintf(worst_name, sizeof(worst_name), "%s", t->name);
                }
        }
        ok(checked > 0 && worst <= tol, "%s: %d entries, worst |fd - grad| / max|grad| = %.1e <= %.0e (%s)", label,
           checked, worst, tol, worst_name);
out2:
        free(x);
        free(rr);
out:
        model_free(m);
        compute_ctx_free(ctx);
        json_decref(spec);
}

static void check_losses(void) {
        enum { N = 4, C = 5 };
        float z[N * C], g[N * C], t[N * C], w[C] = {0.5f, 1.0f, 2.0f, 0.25f, 1.5f};
        int32_t y[N] = {0, 4, 2, 2};
        for (int i = 0; i < N * C; i++) {
                z[i] = 2.0f * frand();
                t[i] = frand();
        }
        struct loss_ce_options opts[] = {{0, NULL}, {0.15f, NULL}, {0, w}, {0.2f, w}};
        const char *names[] = {"plain", "label smoothing", "class weights", "both"};
        for (int k = 0; k < 5; k++) {
                float loss, lp, lm;
                double worst = 0.0, gmax = 0.0;
                if (k < 4)
                        loss_cross_entropy(z, y, N, C, &opts[k], &loss, g, NULL);
                else
                        loss_mse(z, t, N, C, &loss, g, NULL);
                for (int i = 0; i < N * C; i++)
                        gmax = fabs(g[i]) > gmax ? fabs(g[i]) : gmax;
                for (int i = 0; i < N * C; i++) {
                        float keep = z[i], h = 1e-2f;
                        z[i] = keep + h;
                        if (k < 4)
                                loss_cross_entropy(z, y, N, C, &opts[k], &lp, NULL, NULL);
                        else
                                loss_mse(z, t, N, C, &lp, NULL, NULL);
                        z[i] = keep - h;
                        if (k < 4)
                                loss_cross_entropy(z, y, N, C, &opts[k], &lm, NULL, NULL);
                        else
                                loss_mse(z, t, N, C, &lm, NULL, NULL);
                        z[i] = keep;
                        double fd = ((double)lp - (double)lm) / (2.0 * h);
                        double e = fabs(fd - g[i]) / gmax;
                        worst = e > worst ? e : worst;
                }
                ok(worst <= 1e-3, "%s: worst |fd - grad| / max|grad| = %.1e", k < 4 ? names[k] : "mse", worst);
        }
}

int main(void) {
        check_losses();
        check("linear", "{\"input\": [5], \"layers\": [{\"type\": \"linear\", \"out_features\": 4}]}", false, 1e-2);
        check("linear without bias + linear",
              "{\"input\": [6], \"layers\": [{\"type\": \"linear\", \"out_features\": 20, \"bias\": false},"
              "{\"type\": \"linear\", \"out_features\": 3}]}",
              false, 1e-2);
        /* 8 channels in plain format into a 3x3 conv: backward data in its own formats (conv_bwd_data_formats) */
        check("conv2d 1->8, maxpool, conv2d 8->16 (backward data reformatted)",
              "{\"input\": [1, 12, 12], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 8, \"kernel_size\": 3}, "
              "{\"type\": \"relu\"}, {\"type\": \"maxpool2d\", \"kernel_size\": 2}, "
              "{\"type\": \"conv2d\", \"out_channels\": 16, \"kernel_size\": 3}, {\"type\": \"flatten\"}, "
              "{\"type\": \"linear\", \"out_features\": 3}]}",
              false, 1e-2);
        check("conv2d stride 2 padding 1",
              "{\"input\": [2, 7, 7], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 17, \"kernel_size\": 3,"
              "\"stride\": 2, \"padding\": 1}, {\"type\": \"flatten\"}]}",
              false, 1e-2);
        check("conv2d dilation 2, 2x3 kernel, no bias, after a conv",
              "{\"input\": [3, 9, 8], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 16, \"kernel_size\": 3,"
              "\"padding\": 1}, {\"type\": \"conv2d\", \"out_channels\": 5, \"kernel_size\": [2, 3], \"dilation\": 2,"
              "\"padding\": [1, 0], \"bias\": false}, {\"type\": \"flatten\"}]}",
              false, 1e-2);
        /* outputs of at most 4 positions with >= 16 input channels run as per-tap GEMMs (backend/onednn/conv.c) */
        check("conv2d per-tap GEMMs: 2x2 stride 1, then 1x1 output without bias",
              "{\"input\": [3, 4, 4], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 16, \"kernel_size\": 3,"
              "\"stride\": 2, \"padding\": 1}, {\"type\": \"conv2d\", \"out_channels\": 20, \"kernel_size\": 3, "
              "\"padding\": 1}, {\"type\": \"conv2d\", \"out_channels\": 17, \"kernel_size\": 3, \"stride\": 2, "
              "\"padding\": 1, \"bias\": false}, {\"type\": \"flatten\"}]}",
              false, 1e-2);
        check("conv2d per-tap GEMMs: stride 2 from 5x5, dilation 2, then batchnorm",
              "{\"input\": [3, 5, 5], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 16, \"kernel_size\": 1},"
              "{\"type\": \"conv2d\", \"out_channels\": 18, \"kernel_size\": 3, \"stride\": 2, \"dilation\": 2,"
              "\"padding\": 1}, {\"type\": \"batchnorm2d\", \"name\": \"bn\"}, {\"type\": \"relu\"}, "
              "{\"type\": \"flatten\"}, {\"type\": \"linear\", \"out_features\": 3}]}",
              false, 2e-2);
        check("batchnorm2d (training)",
              "{\"input\": [3, 5, 5], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 17, \"kernel_size\": 3},"
              "{\"type\": \"batchnorm2d\", \"name\": \"bn\"}, {\"type\": \"flatten\"}]}",
              false, 2e-2);
        check("batchnorm2d as the first layer",
              "{\"input\": [3, 4, 4], \"layers\": [{\"type\": \"batchnorm2d\", \"name\": \"first\"}, "
              "{\"type\": \"flatten\"}, {\"type\": \"linear\", \"out_features\": 3}]}",
              false, 2e-2);
        check("batchnorm2d (frozen, running statistics)",
              "{\"input\": [3, 5, 5], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 4, \"kernel_size\": 3},"
              "{\"type\": \"batchnorm2d\", \"name\": \"bn\"}, {\"type\": \"flatten\"}, {\"type\": \"linear\", "
              "\"out_features\": 3}]}",
              true, 2e-2);
        check("batchnorm2d + relu fused (frozen, running statistics)",
              "{\"input\": [3, 5, 5], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 17, \"kernel_size\": 3},"
              "{\"type\": \"batchnorm2d\", \"name\": \"bn\"}, {\"type\": \"relu\"}, {\"type\": \"flatten\"}]}",
              true, 2e-2);
        check("batchnorm2d + relu fused (training)",
              "{\"input\": [3, 5, 5], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 17, \"kernel_size\": 3},"
              "{\"type\": \"batchnorm2d\", \"name\": \"bn\"}, {\"type\": \"relu\"}, {\"type\": \"flatten\"}]}",
              false, 2e-2);
        const char *acts[] = {"relu", "leaky_relu", "gelu", "tanh", "sigmoid"};
        for (size_t i = 0; i < ARRAY_SIZE(acts); i++) {
                char spec[512], label[64];
                snprintf(spec, sizeof(spec),
                         "{\"input\": [2, 6, 6], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 16, "
                         "\"kernel_size\": 3}, {\"type\": \"%s\"}, {\"type\": \"flatten\"}, {\"type\": \"linear\", "
                         "\"out_features\": 7}, {\"type\": \"%s\"}]}",
                         acts[i], acts[i]);
                snprintf(label, sizeof(label), "%s (blocked and flat)", acts[i]);
                check(label, spec, false, 2e-2);
        }
        check("maxpool2d 3x3 stride 2 padding 1",
              "{\"input\": [2, 9, 9], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 17, \"kernel_size\": 3},"
              "{\"type\": \"maxpool2d\", \"kernel_size\": 3, \"stride\": 2, \"padding\": 1}, {\"type\": \"flatten\"}]}",
              false, 2e-2);
        check("avgpool2d 2x2 padding 1",
              "{\"input\": [2, 7, 7], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 16, \"kernel_size\": 2},"
              "{\"type\": \"avgpool2d\", \"kernel_size\": 2, \"padding\": 1}, {\"type\": \"flatten\"}]}",
              false, 1e-2);
        check("global_avg_pool",
              "{\"input\": [2, 6, 6], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 20, \"kernel_size\": 3},"
              "{\"type\": \"global_avg_pool\"}, {\"type\": \"flatten\"}, {\"type\": \"linear\", \"out_features\": 3}]}",
              false, 1e-2);
        check("dropout (fixed mask)",
              "{\"input\": [6], \"layers\": [{\"type\": \"linear\", \"out_features\": 20}, {\"type\": \"dropout\","
              "\"p\": 0.3}, {\"type\": \"linear\", \"out_features\": 4}]}",
              false, 1e-2);
        check("basic_block with downsample",
              "{\"input\": [3, 8, 8], \"init\": \"torchvision\", \"layers\": [{\"type\": \"conv2d\", \"name\": "
              "\"conv1\","
              "\"out_channels\": 8, \"kernel_size\": 3, \"padding\": 1, \"bias\": false},"
              "{\"type\": \"batchnorm2d\", \"name\": \"bn1\"}, {\"type\": \"relu\"},"
              "{\"type\": \"basic_block\", \"name\": \"layer1.0\", \"out_channels\": 16, \"stride\": 2},"
              "{\"type\": \"global_avg_pool\"}, {\"type\": \"flatten\"}, {\"type\": \"linear\", \"name\": \"fc\","
              "\"out_features\": 3}]}",
              false, 3e-2);
        check("basic_block identity shortcut",
              "{\"input\": [3, 6, 6], \"layers\": [{\"type\": \"conv2d\", \"name\": \"conv1\", \"out_channels\": 16,"
              "\"kernel_size\": 3, \"padding\": 1}, {\"type\": \"basic_block\", \"name\": \"layer1.0\", "
              "\"out_channels\": 16}, {\"type\": \"flatten\"}]}",
              false, 3e-2);
        return tap_done();
}
