/* test_compute_kernels.c - no training step runs a oneDNN reference kernel.
 *
 * For every preset (mlp, cnn, resnet18, resnet34 at their default input sizes), with every parameter trainable and
 * with the early layers frozen, at batch 1 it runs one training step (training forward, backward) and one
 * evaluation forward, and at the job spec's default batch size it builds the step without running it
 * (model_plan: oneDNN picks its implementations when a primitive is created; running ResNet-34 at 224x224, batch
 * 32, would only add a minute per ISA). Then it reads the implementation of every primitive the backend created
 * (model_kernels) and fails when a convolution, inner product, batch normalization, pooling,
 * eltwise or binary primitive is one of oneDNN's reference implementations, naming the layer, the pass and the
 * formats. Reorders are not checked: they are memory copies, and the per-layer ones are counted in the plan.
 *
 * oneDNN picks implementations by CPU: meson runs this test natively and under ONEDNN_MAX_CPU_ISA caps (the ISA
 * matrix in tests/meson.build). FT_KERNELS_ONLY=preset[,preset] limits the presets (for a quick look by hand);
 * FT_KERNELS_VERBOSE=1 lists every kernel. FT_KERNELS_EXPECT=reference turns the check around, to show that it can
 * fail: under ONEDNN_MAX_CPU_ISA=SSE41 oneDNN 2.6 has only its reference batch normalization with a fused ReLU
 * (bnorm_ref:any over aBcd8b) for ResNet-18, and the check must find it (tests/meson.build registers that run). (It
 * used the CNN's second convolution's backward data until that learnt to pick its own formats.)
 * Input-gradient mode (model_set_input_grad, what explain runs: an evaluation forward, then backward down to the
 * input) gets the same check for mlp, cnn and resnet18 at batch 1 (run) and EXPLAIN_BATCH (planned), and must
 * have run the first layer's backward data (the input's gradient, which training never computes).
 * Not for: numbers (test_compute_torch.c, test_compute_explain.c) or speed (bench/). */
#include <stdlib.h>
#include <string.h>

#include "compute/compute.h"
#include "tests/tap.h"

static const char *const checked[] = {"convolution", "inner_product", "batch_normalization", "pooling", "pooling_v2",
                                      "eltwise",     "binary"};

static bool is_checked(const char *primitive) {
        for (size_t i = 0; i < ARRAY_SIZE(checked); i++)
                if (strcmp(primitive, checked[i]) == 0)
                        return true;
        return false;
}

static bool wanted(const char *preset) {
        const char *only = getenv("FT_KERNELS_ONLY");
        if (!only || !*only)
                return true;
        size_t n = strlen(preset);
        for (const char *p = only; (p = strstr(p, preset)) != NULL; p += n)
                if ((p == only || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
                        return true;
        return false;
}

static bool expect_reference; /* FT_KERNELS_EXPECT=reference */

static uint64_t rng = 12345;
static float frand(void) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        return (float)((double)(rng >> 40) / 16777216.0 * 2.0 - 1.0);
}

/* One training step and one evaluation forward of preset at batch `batch` (run), or the step built without running
 * it (model_plan), then the kernel check. */
static void check(const char *preset, const char *opts_json, const char *freeze, bool input_grad, int batch, bool run,
                  struct compute_ctx *ctx) {
        struct ft_error err = {0};
        json_t *spec = NULL;
        struct model *m = NULL;
        float *x = NULL, *dout = NULL;
        const char *label = input_grad ? "input gradient" : freeze ? "early layers frozen" : "all trainable";
        json_t *opts = opts_json ? json_loads(opts_json, 0, NULL) : NULL;
        int r = model_preset_spec(preset, opts, &spec, &err);
        json_decref(opts);
        if (r == 0)
                r = model_new(spec, &m, &err);
        if (!ok(r == 0, "%s: build (%s)", preset, err.message))
                goto out;
        model_init(m, 1);
        if (freeze) {
                char pat[64];
                for (const char *p = freeze; *p;) {
                        size_t n = strcspn(p, " ");
                        snprintf(pat, sizeof(pat), "%.*s", (int)n, p);
                        if ((r = model_freeze(m, pat, true, NULL, &err)) < 0)
                                break;
                        p += n + (p[n] == ' ');
                }
                if (!ok(r == 0, "%s: freeze %s (%s)", preset, freeze, err.message))
                        goto out;
        }
        size_t in = model_input_numel(m), outn = model_output_count(m);
        x = malloc((size_t)batch * in * sizeof(float));
        dout = malloc((size_t)batch * outn * sizeof(float));
        if (!ok(x && dout, "%s: buffers", preset))
                goto out;
        for (size_t i = 0; i < (size_t)batch * in; i++)
                x[i] = frand();
        for (size_t i = 0; i < (size_t)batch * outn; i++)
                dout[i] = frand() / (float)batch;
        const float *y;
        model_set_input_grad(m, input_grad);
        if ((r = model_prepare(m, ctx, batch, &err)) == 0 && run && input_grad) {
                if ((r = model_forward(m, x, batch, false, &y, &err)) == 0)
                        r = model_backward(m, dout, &err);
        } else if (r == 0 && run) {
                if ((r = model_forward(m, x, batch, true, &y, &err)) == 0 && (r = model_backward(m, dout, &err)) == 0)
                        r = model_forward(m, x, batch, false, &y, &err);
        } else if (r == 0) {
                r = model_plan(m, batch, true, &err);
        }
        if (!ok(r == 0, "%s %s batch %d: %s (%s)", preset, label, batch,
                run ? (input_grad ? "an evaluation forward and backward to the input"
                                  : "a training step and an evaluation forward")
                    : "the training step built",
                err.message))
                goto out;
        const struct model_kernel *k;
        size_t n = 0, bad = 0, seen = 0;
        if (!ok(model_kernels(m, batch, &k, &n, &err) == 0 && n > 0, "%s: kernels recorded (%s)", preset, err.message))
                goto out;
        if (input_grad) { /* the first layer (the first tensor's prefix: "0", "conv1") ran its backward data */
                char first[TENSOR_NAME_MAX];
                snprintf(first, sizeof(first), "%s", model_tensor_at(m, 0)->name);
                char *dot = strrchr(first, '.');
                if (dot)
                        *dot = '\0';
                bool bd = false;
                for (size_t i = 0; i < n; i++)
                        bd = bd || (strcmp(k[i].layer, first) == 0 && strcmp(k[i].pass, "backward_data") == 0);
                ok(bd, "%s input gradient batch %d: the first layer \"%s\" has a backward data primitive", preset,
                   batch, first);
        }
        for (size_t i = 0; i < n; i++) {
                if (getenv("FT_KERNELS_VERBOSE"))
                        diag("%-28s %-20s %-17s %-24s %s", k[i].layer, k[i].primitive, k[i].pass, k[i].impl,
                             k[i].formats);
                if (!is_checked(k[i].primitive))
                        continue;
                seen++;
                if (model_kernel_is_reference(&k[i])) {
                        bad++;
                        diag("reference kernel: layer \"%s\" %s %s: %s (%s)", k[i].layer, k[i].primitive, k[i].pass,
                             k[i].impl, k[i].formats);
                }
        }
        if (expect_reference) /* the check's own check: a cap that forces one must be seen */
                ok(bad > 0, "%s %s batch %d: the reference kernel forced by the ISA cap is found (%zu of %zu)", preset,
                   label, batch, bad, seen);
        else
                ok(bad == 0 && seen > 0, "%s %s batch %d: no reference kernel among %zu primitives (%zu found)", preset,
                   label, batch, seen, bad);
out:
        free(x);
        free(dout);
        model_free(m);
        json_decref(spec);
}

int main(void) {
        struct compute_runtime_info info;
        compute_runtime_info(&info);
        const char *expect = getenv("FT_KERNELS_EXPECT");
        expect_reference = expect && strcmp(expect, "reference") == 0;
        diag("oneDNN %s, ISA %s", info.onednn_version, info.onednn_isa);
        struct jobspec js;
        jobspec_init(&js);
        int def_batch = (int)js.hyperparameters.batch_size;
        struct {
                const char *preset, *opts, *freeze;
                bool input_grad;
        } cases[] = {
                {"mlp", NULL, NULL},
                {"mlp", NULL, NULL, true},
                {"cnn", NULL, NULL, true},
                {"cnn", "{\"channels\": [8, 16]}", NULL, true},
                {"cnn", "{\"in_channels\": 3, \"input_size\": [32, 32]}", NULL, true},
                {"resnet18", NULL, NULL, true},
                {"mlp", NULL, "0.*"},
                {"cnn", NULL, NULL},
                {"cnn", NULL, "0.*"},
                /* the integration test's (test_api_fmnist) small CNN: its second conv's backward data fell to ref:any
                 * on AVX-512 */
                {"cnn", "{\"channels\": [8, 16]}", NULL},
                {"resnet18", NULL, NULL},
                {"resnet18", NULL, "conv1.* bn1.* layer1.*"},
                {"resnet34", NULL, NULL},
                {"resnet34", NULL, "conv1.* bn1.* layer1.* layer2.*"},
        };
        struct compute_ctx *ctx = NULL;
        struct ft_error err = {0};
        if (!ok(compute_ctx_new(0, &ctx, &err) == 0, "context (%s)", err.message))
                return tap_done();
        for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
                if (!wanted(cases[c].preset))
                        continue;
                int batches[2] = {1, cases[c].input_grad ? EXPLAIN_BATCH : def_batch};
                for (int b = 0; b < 2; b++)
                        check(cases[c].preset, cases[c].opts, cases[c].freeze, cases[c].input_grad, batches[b], b == 0,
                              ctx);
        }
        compute_ctx_free(ctx);
        return tap_done();
}
