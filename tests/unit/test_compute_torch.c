/* test_compute_torch.c - replays PyTorch fixtures (tools/gen_compute_fixtures.py) through the compute engine:
 * an MLP, a small CNN and ResNet-18 at 3x64x64, batch 4: logits, loss, gradients, BatchNorm running stats, eval
 * logits, and 10 steps of SGD, momentum, Nesterov, Adam and AdamW.
 * Tolerances (relative error in the infinity norm): 1e-4 logits and loss, 1e-3 gradients and final weights, on
 * every ISA oneDNN dispatches to (meson runs it natively and under ONEDNN_MAX_CPU_ISA caps). The fixtures are
 * well conditioned by construction: the generator measures how far a 1e-6 perturbation of the input moves
 * PyTorch's own float64 trajectory and refuses a fixture where it moves more than 1e-5, so a difference beyond
 * the tolerance here is ours, not rounding amplified by the fixture.
 * Not for: finite-difference checks (test_compute_gradcheck.c) or spec errors (test_compute_model.c). */
#include <string.h>

#include "compute/compute.h"
#include "tests/tap.h"
#include "tests/unit/compute_fixture.h"

static const char *optims[] = {"sgd", "momentum", "nesterov", "adam", "adamw"};

static void formula_init(struct model *m) {
        for (size_t k = 0; k < model_tensor_count(m); k++) {
                struct tensor *t = model_tensor_at(m, k);
                if (t->dtype != TENSOR_F32)
                        continue;
                float *d = tensor_f32(t);
                if (strstr(t->name, "running_mean") || strstr(t->name, "running_var")) {
                        for (size_t i = 0; i < t->numel; i++)
                                d[i] = strstr(t->name, "running_var") ? 1.0f : 0.0f;
                        continue;
                }
                bool bn = t->ndim == 1 && (strstr(t->name, "bn") || strstr(t->name, "downsample.1"));
                bool weight = strstr(t->name, ".weight") != NULL;
                double fan_in = t->ndim > 1 ? (double)(t->numel / (size_t)t->shape[0]) : (double)t->numel;
                for (size_t i = 0; i < t->numel; i++) {
                        double u = fx_init_value(k, i), v;
                        if (bn)
                                v = weight ? 1.0 + 0.1 * u : 0.1 * u;
                        else
                                v = u / sqrt(fan_in) * (t->ndim > 1 ? sqrt(3.0) : 1.0);
                        d[i] = (float)v;
                }
        }
}

static float *formula_cache; /* the formula's weights, computed once (the hash is slow under ASan) */

static int load_init(struct model *m, const struct fx_file *fx, bool formula) {
        if (model_sync(m, NULL) < 0)
                return -1;
        if (formula) {
                size_t total = 0;
                for (size_t k = 0; k < model_tensor_count(m); k++)
                        if (model_tensor_at(m, k)->dtype == TENSOR_F32)
                                total += model_tensor_at(m, k)->numel;
                bool fresh = !formula_cache;
                if (fresh) {
                        formula_init(m);
                        formula_cache = malloc(total * sizeof(float));
                }
                if (!formula_cache)
                        return -1;
                size_t off = 0;
                for (size_t k = 0; k < model_tensor_count(m); k++) {
                        struct tensor *t = model_tensor_at(m, k);
                        if (t->dtype == TENSOR_I64) {
                                tensor_i64(t)[0] = 0;
                                continue;
                        }
                        if (fresh)
                                memcpy(formula_cache + off, t->data, t->numel * sizeof(float));
                        else
                                memcpy(t->data, formula_cache + off, t->numel * sizeof(float));
                        off += t->numel;
                }
                return 0;
        }
        for (size_t k = 0; k < model_tensor_count(m); k++) {
                struct tensor *t = model_tensor_at(m, k);
                if (t->dtype == TENSOR_I64) {
                        tensor_i64(t)[0] = 0;
                        continue;
                }
                if (formula)
                        continue;
                char name[300];
                snprintf(name, sizeof(name), "init/%s", t->name);
                const struct fx_record *r = fx_get(fx, name);
                if (!r || r->count != t->numel) {
                        diag("fixture has no %s of %zu values", name, t->numel);
                        return -1;
                }
                memcpy(t->data, r->data, t->numel * 4);
        }
        if (formula)
                formula_init(m);
        return 0;
}

/* compare each parameter's values (grad or data) with the fixture: full tensors or norm + samples */
static double compare_params(struct model *m, const struct fx_file *fx, const char *prefix, bool grads, bool full,
                             char *worst, size_t worst_len) {
        double maxerr = 0.0;
        if (model_sync(m, NULL) < 0) /* PyTorch layout (the engine keeps weights in its own between steps) */
                return INFINITY;
        for (size_t k = 0; k < model_tensor_count(m); k++) {
                struct tensor *t = model_tensor_at(m, k);
                if (!t->is_param)
                        continue;
                const float *v = grads ? t->grad : tensor_f32(t);
                char name[300];
                double e;
                if (full) {
                        snprintf(name, sizeof(name), "%s/%s", prefix, t->name);
                        const struct fx_record *r = fx_get(fx, name);
                        if (!r || r->count != t->numel) {
                                diag("fixture has no %s", name);
                                return INFINITY;
                        }
                        e = fx_relerr(v, r->data, t->numel);
                } else {
                        snprintf(name, sizeof(name), "%s/%s#norm", prefix, t->name);
                        const struct fx_record *rn = fx_get(fx, name);
                        snprintf(name, sizeof(name), "%s/%s#sample", prefix, t->name);
                        const struct fx_record *rs = fx_get(fx, name);
                        if (!rn || !rs) {
                                diag("fixture has no %s", name);
                                return INFINITY;
                        }
                        double norm = 0.0;
                        for (size_t i = 0; i < t->numel; i++)
                                norm += (double)v[i] * (double)v[i];
                        float nf = (float)sqrt(norm);
                        e = fx_relerr(&nf, rn->data, 1);
                        float s[64];
                        for (uint32_t j = 0; j < rs->count && j < 64; j++)
                                s[j] = v[fx_sample_index(k, j, t->numel)];
                        double es = fx_relerr(s, rs->data, rs->count);
                        e = e > es ? e : es;
                }
                if (getenv("FX_VERBOSE") && e > 1e-4)
                        diag("%s %s: rel err %.2e", prefix, t->name, e);
                if (e > maxerr || isnan(e)) {
                        maxerr = isnan(e) ? INFINITY : e;
                        snprintf(worst, worst_len, "%s", t->name);
                }
        }
        return maxerr;
}

static void run_model(const char *file, const char *preset, const char *opts_json, bool full, bool formula,
                      int threads) {
        struct fx_file fx;
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", fx_dir(), file);
        if (!ok(fx_load(path, &fx) == 0, "%s: load %s", preset, path))
                return;
        struct ft_error err = {0};
        json_t *opts = json_loads(opts_json, 0, NULL), *spec = NULL;
        struct model *m = NULL;
        struct compute_ctx *ctx = NULL;
        int r = model_preset_spec(preset, opts, &spec, &err);
        if (r == 0)
                r = model_new(spec, &m, &err);
        if (r == 0)
                r = compute_ctx_new(threads, &ctx, &err);
        const struct fx_record *x = fx_get(&fx, "x"), *yf = fx_get(&fx, "y");
        if (!ok(r == 0 && x && yf, "%s: build model and context (%s)", preset, err.message))
                goto out;
        int batch = (int)yf->count, classes = (int)model_output_count(m);
        int32_t *y = calloc((size_t)batch, sizeof(int32_t));
        float *dlogits = calloc((size_t)batch * (size_t)classes, sizeof(float));
        for (int i = 0; i < batch; i++)
                y[i] = (int32_t)yf->data[i];
        ok(load_init(m, &fx, formula) == 0, "%s: initial weights", preset);
        r = model_prepare(m, ctx, batch, &err);
        const float *out = NULL;
        if (r == 0)
                r = model_forward(m, x->data, batch, true, &out, &err);
        if (!ok(r == 0, "%s: training forward (%s)", preset, err.message))
                goto out2;
        double e = fx_relerr(out, fx_get(&fx, "logits")->data, (size_t)batch * (size_t)classes);
        ok(e <= 1e-4, "%s: logits rel err %.2e <= 1e-4", preset, e);
        float loss;
        r = loss_cross_entropy(out, y, batch, classes, NULL, &loss, dlogits, &err);
        e = fx_relerr(&loss, fx_get(&fx, "loss")->data, 1);
        ok(r == 0 && e <= 1e-4, "%s: loss %.6f rel err %.2e <= 1e-4", preset, loss, e);
        r = model_backward(m, dlogits, &err);
        ok(r == 0, "%s: backward (%s)", preset, err.message);
        char worst[256] = "";
        e = compare_params(m, &fx, "grad", true, full, worst, sizeof(worst));
        ok(e <= 1e-3, "%s: every parameter gradient rel err <= 1e-3 (worst %.2e, %s)", preset, e, worst);
        double be = 0.0;
        int nbuf = 0;
        for (size_t k = 0; k < model_tensor_count(m); k++) {
                struct tensor *t = model_tensor_at(m, k);
                if (t->is_param)
                        continue;
                if (t->dtype == TENSOR_I64) {
                        if (tensor_i64(t)[0] != 1)
                                be = INFINITY;
                        continue;
                }
                char name[300];
                snprintf(name, sizeof(name), "buffer/%s", t->name);
                const struct fx_record *rb = fx_get(&fx, name);
                double eb = rb && rb->count == t->numel ? fx_relerr(tensor_f32(t), rb->data, t->numel) : INFINITY;
                be = eb > be ? eb : be;
                nbuf++;
        }
        if (nbuf)
                ok(be <= 1e-4, "%s: batchnorm running stats (%d buffers) rel err %.2e <= 1e-4, num_batches_tracked 1",
                   preset, nbuf, be);
        r = model_forward(m, x->data, batch, false, &out, &err);
        e = r == 0 ? fx_relerr(out, fx_get(&fx, "eval_logits")->data, (size_t)batch * (size_t)classes) : INFINITY;
        ok(e <= 1e-4, "%s: eval logits rel err %.2e <= 1e-4", preset, e);

        for (size_t oi = 0; oi < ARRAY_SIZE(optims); oi++) {
                struct optim_config cfg;
                enum optim_kind kind;
                optim_kind_from_string(optims[oi], &kind);
                optim_config_default(kind, &cfg);
                char lname[64];
                snprintf(lname, sizeof(lname), "%s/lr", optims[oi]);
                const struct fx_record *rlr = fx_get(&fx, lname);
                float lr = rlr ? rlr->data[0] : 0.0f;
                if (kind == OPTIM_ADAMW)
                        cfg.weight_decay = 0.1f;
                struct optim *o = NULL;
                load_init(m, &fx, formula);
                r = optim_new(m, &cfg, &o, &err);
                double le = 0.0;
                snprintf(lname, sizeof(lname), "%s/losses", optims[oi]);
                const struct fx_record *rl = fx_get(&fx, lname);
                for (int s = 0; r == 0 && s < 10; s++) {
                        model_zero_grad(m);
                        r = model_forward(m, x->data, batch, true, &out, &err);
                        if (r == 0)
                                r = loss_cross_entropy(out, y, batch, classes, NULL, &loss, dlogits, &err);
                        if (r == 0)
                                r = model_backward(m, dlogits, &err);
                        if (r == 0)
                                r = optim_step(o, ctx, lr, &err);
                        double el = rl ? fx_relerr(&loss, &rl->data[s], 1) : INFINITY;
                        if (getenv("FX_VERBOSE"))
                                diag("step %d loss %.7g want %.7g", s, loss, rl ? rl->data[s] : 0.0f);
                        le = el > le ? el : le;
                }
                /* PyTorch's own float32 vs float64 discrepancy over these steps (see the generator) */
                snprintf(lname, sizeof(lname), "%s/selfcheck_loss", optims[oi]);
                const struct fx_record *sl = fx_get(&fx, lname);
                snprintf(lname, sizeof(lname), "%s/selfcheck_weights", optims[oi]);
                const struct fx_record *sw = fx_get(&fx, lname);
                double tol_l = sl && 10.0 * sl->data[0] > 1e-4 ? 10.0 * sl->data[0] : 1e-4;
                double tol_w = sw && 10.0 * sw->data[0] > 1e-3 ? 10.0 * sw->data[0] : 1e-3;
                ok(r == 0 && le <= tol_l, "%s %s: 10 losses rel err %.2e <= %.1e (%s)", preset, optims[oi], le, tol_l,
                   err.message);
                char prefix[64];
                snprintf(prefix, sizeof(prefix), "%s/final", optims[oi]);
                e = compare_params(m, &fx, prefix, false, full, worst, sizeof(worst));
                ok(e <= tol_w, "%s %s: final weights rel err %.2e <= %.1e (worst %s)", preset, optims[oi], e, tol_w,
                   worst);
                struct tensor *step = optim_state_find(o, "step");
                ok(step && tensor_i64(step)[0] == 10, "%s %s: step counter is 10", preset, optims[oi]);
                optim_free(o);
        }
out2:
        free(y);
        free(dlogits);
out:
        model_free(m);
        compute_ctx_free(ctx);
        json_decref(spec);
        json_decref(opts);
        fx_free(&fx);
        free(formula_cache);
        formula_cache = NULL;
}

static void run_losses(void) {
        struct fx_file fx;
        char path[4200];
        snprintf(path, sizeof(path), "%s/losses.bin", fx_dir());
        if (!ok(fx_load(path, &fx) == 0, "load %s", path))
                return;
        const struct fx_record *z = fx_get(&fx, "logits"), *yf = fx_get(&fx, "y"), *cw = fx_get(&fx, "class_weights");
        int32_t y[6];
        for (int i = 0; i < 6; i++)
                y[i] = (int32_t)yf->data[i];
        struct {
                const char *tag;
                float ls;
                bool w;
        } cases[] = {{"plain", 0, false}, {"smooth", 0.1f, false}, {"weighted", 0, true}, {"both", 0.2f, true}};
        for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
                struct loss_ce_options o = {.label_smoothing = cases[c].ls,
                                            .class_weights = cases[c].w ? cw->data : NULL};
                float loss, g[30];
                struct ft_error err = {0};
                int r = loss_cross_entropy(z->data, y, 6, 5, &o, &loss, g, &err);
                char name[64];
                snprintf(name, sizeof(name), "ce_%s/loss", cases[c].tag);
                double el = fx_relerr(&loss, fx_get(&fx, name)->data, 1);
                snprintf(name, sizeof(name), "ce_%s/grad", cases[c].tag);
                double eg = fx_relerr(g, fx_get(&fx, name)->data, 30);
                ok(r == 0 && el <= 1e-5 && eg <= 1e-5, "cross-entropy %s: loss rel err %.1e, grad rel err %.1e",
                   cases[c].tag, el, eg);
        }
        float loss, g[30];
        int r = loss_mse(z->data, fx_get(&fx, "mse/target")->data, 6, 5, &loss, g, NULL);
        double el = fx_relerr(&loss, fx_get(&fx, "mse/loss")->data, 1),
               eg = fx_relerr(g, fx_get(&fx, "mse/grad")->data, 30);
        ok(r == 0 && el <= 1e-5 && eg <= 1e-5, "mse: loss rel err %.1e, grad rel err %.1e", el, eg);
        fx_free(&fx);
}

int main(void) {
        run_losses();
        run_model("mlp.bin", "mlp", "{\"inputs\": 64, \"hidden\": [32, 16], \"outputs\": 5}", true, false, 1);
        run_model("cnn.bin", "cnn",
                  "{\"in_channels\": 1, \"input_size\": [16, 16], \"channels\": [4, 8], \"hidden\": 16, "
                  "\"outputs\": 5}",
                  true, false, 1);
        /* the same with two OpenMP threads: other reduction orders, same tolerances */
        run_model("cnn.bin", "cnn",
                  "{\"in_channels\": 1, \"input_size\": [16, 16], \"channels\": [4, 8], \"hidden\": 16, "
                  "\"outputs\": 5}",
                  true, false, 2);
        run_model("resnet18.bin", "resnet18", "{\"num_classes\": 10, \"input_size\": [64, 64]}", false, true, 1);
        return tap_done();
}
