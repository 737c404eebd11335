/* test_compute_model.c - the compute engine's contracts other than numerics against PyTorch: preset topology
 * and state_dict names (checked against torchvision's list in tests/fixtures/compute/state_dict_names.txt),
 * spec errors that name the layer and field, canonical specs, init distributions, head re-init, freezing,
 * frozen BatchNorm, the arena's parameter and gradient spans, dropout's generator, batch sizes and plan reuse,
 * optimizer rules on hand-computed cases, loss argument errors, inference mode, partial fine-tuning's backward.
 * Not for: PyTorch equality (test_compute_torch.c) or finite differences (test_compute_gradcheck.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compute/compute.h"
#include "tests/tap.h"
#include "tests/unit/compute_fixture.h"

static struct model *preset(const char *name, const char *opts_json) {
        json_t *opts = opts_json ? json_loads(opts_json, 0, NULL) : NULL, *spec = NULL;
        struct model *m = NULL;
        struct ft_error err = {0};
        if (model_preset_spec(name, opts, &spec, &err) < 0 || model_new(spec, &m, &err) < 0)
                diag("preset %s: %s", name, err.message);
        json_decref(opts);
        json_decref(spec);
        return m;
}

static void test_names(const char *preset_name, const char *fixture_name, const char *opts) {
        struct model *m = preset(preset_name, opts);
        char path[4200];
        snprintf(path, sizeof(path), "%s/state_dict_names.txt", fx_dir());
        FILE *f = fopen(path, "r");
        if (!ok(m && f, "%s: built, names fixture opened", preset_name)) {
                model_free(m);
                if (f)
                        fclose(f);
                return;
        }
        char line[512];
        size_t i = 0;
        int bad = 0;
        while (fgets(line, sizeof(line), f)) {
                char mname[64], tname[256], shape[64];
                if (sscanf(line, "%63s %255s %63s", mname, tname, shape) != 3 || strcmp(mname, fixture_name) != 0)
                        continue;
                struct tensor *t = model_tensor_at(m, i++);
                char got[64] = "";
                for (int d = 0; t && d < t->ndim; d++) {
                        size_t len = strlen(got);
                        snprintf(got + len, sizeof(got) - len, "%s%lld", d ? "x" : "", (long long)t->shape[d]);
                }
                if (t && t->ndim == 0)
                        snprintf(got, sizeof(got), "scalar");
                if (!t || strcmp(t->name, tname) != 0 || strcmp(got, shape) != 0) {
                        if (bad++ < 3)
                                diag("tensor %zu: got %s %s, want %s %s", i - 1, t ? t->name : "(none)", got, tname,
                                     shape);
                }
        }
        fclose(f);
        ok(bad == 0 && i == model_tensor_count(m),
           "%s: %zu tensors in torchvision's state_dict order, names and shapes", preset_name, i);
        model_free(m);
}

static void expect_error(const char *label, const char *spec_json, const char *want_param, const char *want_msg) {
        json_t *spec = json_loads(spec_json, 0, NULL);
        struct ft_error err = {0};
        struct model *m = NULL;
        int r = spec ? model_new(spec, &m, &err) : -1;
        ok(r == -EINVAL && strcmp(err.param, want_param) == 0 && strstr(err.message, want_msg),
           "%s: error \"%s\" (param %s)", label, err.message, err.param);
        json_t *canon = NULL;
        r = spec ? model_spec_validate(spec, &canon, &err) : -1;
        ok(r == -EINVAL && canon == NULL, "%s: model_spec_validate refuses it too", label);
        model_free(m);
        json_decref(spec);
}

static void test_errors(void) {
        expect_error("unknown type", "{\"input\": [4], \"layers\": [{\"type\": \"conv3d\"}]}", "layers[0].type",
                     "unknown layer type 'conv3d'");
        expect_error("zero size", "{\"input\": [4], \"layers\": [{\"type\": \"linear\", \"out_features\": 0}]}",
                     "layers[0].out_features", "'out_features' must be an integer from 1");
        expect_error(
                "negative size",
                "{\"input\": [1, 8, 8], \"layers\": [{\"type\": \"conv2d\", \"name\": \"c\", \"out_channels\": -3, "
                "\"kernel_size\": 3}, {\"type\": \"flatten\"}]}",
                "layers[0].out_channels", "layers[0] ('c')");
        expect_error(
                "kernel larger than input",
                "{\"input\": [1, 5, 5], \"layers\": [{\"type\": \"conv2d\", \"name\": \"big\", \"out_channels\": 2, "
                "\"kernel_size\": 7}, {\"type\": \"flatten\"}]}",
                "layers[0].kernel_size", "kernel 7x7 (dilation 1x1) larger than the padded input 5x5");
        expect_error(
                "linear on an image",
                "{\"input\": [1, 5, 5], \"layers\": [{\"type\": \"linear\", \"name\": \"fc\", \"out_features\": 2}]}",
                "layers[0]", "add a 'flatten' layer");
        expect_error("pool on features",
                     "{\"input\": [4], \"layers\": [{\"type\": \"maxpool2d\", \"kernel_size\": 2}]}", "layers[0]",
                     "needs an image input");
        expect_error("pool padding",
                     "{\"input\": [1, 8, 8], \"layers\": [{\"type\": \"maxpool2d\", \"kernel_size\": 2, "
                     "\"padding\": 2}, {\"type\": \"flatten\"}]}",
                     "layers[0].padding", "at most half");
        expect_error("unknown field", "{\"input\": [4], \"layers\": [{\"type\": \"relu\", \"slope\": 1}]}",
                     "layers[0].slope", "unknown field 'slope'");
        expect_error("dropout p", "{\"input\": [4], \"layers\": [{\"type\": \"dropout\", \"p\": 1.0}]}", "layers[0].p",
                     "'p' must be from 0 to 1");
        expect_error("no input", "{\"layers\": [{\"type\": \"relu\"}]}", "input", "'input' must be");
        expect_error("zero input", "{\"input\": [0], \"layers\": [{\"type\": \"relu\"}]}", "input", "from 1");
        expect_error("empty layers", "{\"input\": [3], \"layers\": []}", "layers", "1 to 512 layers");
        expect_error("image output", "{\"input\": [1, 4, 4], \"layers\": [{\"type\": \"relu\"}]}", "layers",
                     "the last layer must produce flat outputs");
        expect_error("duplicate names",
                     "{\"input\": [4], \"layers\": [{\"type\": \"linear\", \"name\": \"a\", \"out_features\": 2}, "
                     "{\"type\": \"linear\", \"name\": \"a\", \"out_features\": 2}]}",
                     "layers[1].name", "duplicate tensor name 'a.weight'");
        expect_error("too many parameters",
                     "{\"input\": [1048576], \"layers\": [{\"type\": \"linear\", \"out_features\": 1048576}]}",
                     "layers[0]", "more than");
        expect_error("spec not an object", "[1]", "spec", "must be a JSON object");

        struct ft_error err = {0};
        json_t *spec = NULL;
        ok(model_preset_spec("vgg", NULL, &spec, &err) == -EINVAL && strstr(err.message, "unknown preset 'vgg'"),
           "unknown preset: %s", err.message);
        json_t *o = json_loads("{\"hidden\": [0]}", 0, NULL);
        ok(model_preset_spec("mlp", o, &spec, &err) == -EINVAL && strcmp(err.param, "hidden") == 0, "mlp hidden 0: %s",
           err.message);
        json_decref(o);
        o = json_loads("{\"depth\": 3}", 0, NULL);
        ok(model_preset_spec("resnet18", o, &spec, &err) == -EINVAL && strcmp(err.param, "depth") == 0,
           "resnet unknown option: %s", err.message);
        json_decref(o);
        struct compute_ctx *ctx = NULL;
        ok(compute_ctx_new(-1, &ctx, &err) == -EINVAL && ctx == NULL, "threads -1: %s", err.message);
}

/* mutate a valid spec field by field with hostile values: every result is a clean error or a model that runs */
static void test_hostile_specs(struct compute_ctx *ctx) {
        static const char *const base =
                "{\"input\": [3, 9, 9], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 4, \"kernel_size\": 3, "
                "\"stride\": 1, \"padding\": 1, \"dilation\": 1}, {\"type\": \"batchnorm2d\"}, {\"type\": \"relu\"}, "
                "{\"type\": \"maxpool2d\", \"kernel_size\": 2, \"stride\": 2, \"padding\": 0}, {\"type\": "
                "\"avgpool2d\", \"kernel_size\": 2}, {\"type\": \"basic_block\", \"out_channels\": 4, \"stride\": 2}, "
                "{\"type\": \"flatten\"}, {\"type\": \"dropout\", \"p\": 0.5}, {\"type\": \"linear\", "
                "\"out_features\": 3}]}";
        static const char *const values[] = {"0",      "-1",         "1",        "2",     "3",
                                             "7",      "1000000000", "2.5",      "\"x\"", "null",
                                             "[0, 1]", "[1, 1, 1]",  "[100, 1]", "true",  "{}"};
        int built = 0, refused = 0, crashed_free = 1;
        json_t *spec0 = json_loads(base, 0, NULL);
        json_t *layers0 = json_object_get(spec0, "layers");
        for (size_t li = 0; li < json_array_size(layers0); li++) {
                const char *key;
                json_t *v;
                json_object_foreach(json_array_get(layers0, li), key, v) {
                        if (strcmp(key, "type") == 0)
                                continue;
                        for (size_t vi = 0; vi < ARRAY_SIZE(values); vi++) {
                                json_t *spec = json_deep_copy(spec0);
                                json_object_set_new(json_array_get(json_object_get(spec, "layers"), li), key,
                                                    json_loads(values[vi], JSON_DECODE_ANY, NULL));
                                struct model *m = NULL;
                                struct ft_error err = {0};
                                int r = model_new(spec, &m, &err);
                                if (r < 0) {
                                        refused++;
                                        crashed_free &= err.message[0] != 0 && strncmp(err.param, "layers[", 7) == 0;
                                } else {
                                        const float *out;
                                        float x[2 * 3 * 9 * 9] = {0};
                                        r = model_prepare(m, ctx, 2, &err);
                                        r = r ? r : model_forward(m, x, 2, true, &out, &err);
                                        built += r == 0;
                                        crashed_free &= r == 0 || err.message[0] != 0;
                                        model_free(m);
                                }
                                json_decref(spec);
                        }
                }
        }
        json_decref(spec0);
        ok(crashed_free && built > 10 && refused > 100,
           "hostile field values: %d refused with a message naming the layer, %d built and ran", refused, built);
}

static void test_canonical(void) {
        struct model *m = preset("resnet18", "{\"num_classes\": 10, \"input_size\": [32, 32]}");
        struct ft_error err = {0};
        json_t *canon = NULL;
        int r = model_spec_validate(model_spec(m), &canon, &err);
        ok(r == 0 && json_equal(canon, (json_t *)model_spec(m)), "canonical spec is a fixed point");
        struct model *m2 = NULL;
        r = model_new(canon, &m2, &err);
        bool same = r == 0 && model_tensor_count(m2) == model_tensor_count(m);
        for (size_t i = 0; same && i < model_tensor_count(m); i++)
                same = strcmp(model_tensor_at(m, i)->name, model_tensor_at(m2, i)->name) == 0;
        ok(same, "model_new(canonical spec) rebuilds the same tensors");
        int64_t shape[3];
        ok(model_input_shape(m, shape) == 3 && shape[0] == 3 && shape[1] == 32 && shape[2] == 32 &&
                   model_input_numel(m) == 3 * 32 * 32 && model_output_count(m) == 10,
           "input [3, 32, 32], 10 outputs");
        ok(model_param_numel(m) == 11181642, "resnet18 with 10 classes has 11181642 parameters (%zu)",
           model_param_numel(m));
        char *dump = json_dumps(canon, JSON_COMPACT);
        ok(dump && strstr(dump, "\"type\":\"basic_block\",\"name\":\"layer2.0\",\"out_channels\":128,\"stride\":2"),
           "canonical basic_block keeps name, channels and stride");
        free(dump);
        json_decref(canon);
        model_free(m2);
        model_free(m);
}

static void moments(const struct tensor *t, double *mean, double *var, double *maxabs) {
        double s = 0, s2 = 0, mx = 0;
        for (size_t i = 0; i < t->numel; i++) {
                double v = tensor_f32(t)[i];
                s += v;
                s2 += v * v;
                mx = fabs(v) > mx ? fabs(v) : mx;
        }
        *mean = s / (double)t->numel;
        *var = s2 / (double)t->numel - *mean * *mean;
        *maxabs = mx;
}

static void test_init(void) {
        struct model *m = preset("mlp", "{\"inputs\": 400, \"hidden\": [300], \"outputs\": 10}");
        model_init(m, 5);
        double mean, var, mx, bound = 1.0 / sqrt(400.0);
        moments(model_tensor_find(m, "0.weight"), &mean, &var, &mx);
        ok(mx <= bound && fabs(mean) < 0.02 * bound && fabs(var / (bound * bound / 3.0) - 1.0) < 0.02,
           "linear weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)): max %.4f var ratio %.3f", mx,
           var / (bound * bound / 3.0));
        moments(model_tensor_find(m, "0.bias"), &mean, &var, &mx);
        ok(mx <= bound && mx > 0.8 * bound, "linear bias within the same bound");
        model_free(m);

        m = preset("resnet18", "{\"num_classes\": 10}");
        model_init(m, 5);
        struct tensor *w = model_tensor_find(m, "layer3.0.conv2.weight");
        moments(w, &mean, &var, &mx);
        double want = 2.0 / (256.0 * 9.0);
        ok(fabs(var / want - 1.0) < 0.02 && fabs(mean) < 0.01 * sqrt(want),
           "resnet conv weight ~ kaiming_normal(fan_out): var ratio %.3f", var / want);
        struct tensor *g = model_tensor_find(m, "layer3.0.bn2.weight"), *b = model_tensor_find(m, "layer3.0.bn2.bias"),
                      *rv = model_tensor_find(m, "layer3.0.bn2.running_var");
        ok(tensor_f32(g)[7] == 1.0f && tensor_f32(b)[7] == 0.0f && tensor_f32(rv)[7] == 1.0f,
           "batchnorm weight 1, bias 0, running_var 1");
        struct tensor *fc = model_tensor_find(m, "fc.weight"), *c1 = model_tensor_find(m, "conv1.weight");
        float fc0 = tensor_f32(fc)[0], c10 = tensor_f32(c1)[0];
        struct ft_error err = {0};
        ok(model_init_prefix(m, "fc", 99, &err) == 0 && tensor_f32(fc)[0] != fc0 && tensor_f32(c1)[0] == c10,
           "model_init_prefix(\"fc\") re-draws the head only");
        moments(fc, &mean, &var, &mx);
        ok(mx <= 1.0 / sqrt(512.0), "the new head follows Linear's init");
        ok(model_init_prefix(m, "layer9", 1, &err) == -ENOENT, "unknown prefix: %s", err.message);
        model_free(m);
}

static void fill(float *x, size_t n, uint64_t seed) {
        for (size_t i = 0; i < n; i++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                x[i] = (float)((double)(seed >> 40) / 16777216.0 * 2.0 - 1.0);
        }
}

#define SMALL_RESNET                                                                                                   \
        "{\"input\": [3, 8, 8], \"init\": \"torchvision\", \"layers\": [{\"type\": \"conv2d\", \"name\": \"conv1\", "  \
        "\"out_channels\": 8, \"kernel_size\": 3, \"padding\": 1, \"bias\": false}, {\"type\": \"batchnorm2d\", "      \
        "\"name\": \"bn1\"}, {\"type\": \"relu\"}, {\"type\": \"basic_block\", \"name\": \"layer1.0\", "               \
        "\"out_channels\": 8}, {\"type\": \"basic_block\", \"name\": \"layer2.0\", \"out_channels\": 16, \"stride\": " \
        "2}, {\"type\": \"global_avg_pool\"}, {\"type\": \"flatten\"}, {\"type\": \"dropout\", \"p\": 0.0}, "          \
        "{\"type\": \"linear\", \"name\": \"fc\", \"out_features\": 4}]}"

static struct model *small_resnet(struct compute_ctx *ctx, int max_batch) {
        json_t *spec = json_loads(SMALL_RESNET, 0, NULL);
        struct model *m = NULL;
        struct ft_error err = {0};
        if (model_new(spec, &m, &err) < 0 || model_prepare(m, ctx, max_batch, &err) < 0)
                diag("small resnet: %s", err.message);
        json_decref(spec);
        model_init(m, 11);
        return m;
}

static int train_step(struct model *m, const float *x, int batch, float *dout) {
        const float *out;
        struct ft_error err = {0};
        int r = model_forward(m, x, batch, true, &out, &err);
        if (r < 0) {
                diag("forward: %s", err.message);
                return r;
        }
        for (size_t i = 0; i < (size_t)batch * model_output_count(m); i++)
                dout[i] = out[i] * 0.1f + 0.01f * (float)(i % 3);
        r = model_backward(m, dout, &err);
        if (r < 0)
                diag("backward: %s", err.message);
        return r;
}

static void test_freeze(struct compute_ctx *ctx) {
        struct model *a = small_resnet(ctx, 4), *b = small_resnet(ctx, 4);
        float x[4 * 3 * 8 * 8], dout[16];
        fill(x, ARRAY_SIZE(x), 3);
        struct ft_error err = {0};
        size_t count = 0;
        ok(model_freeze(b, "conv1.*", true, &count, &err) == 0 && count == 1, "freeze conv1.* matches 1");
        ok(model_freeze(b, "bn1.*", true, &count, &err) == 0 && count == 2, "freeze bn1.* matches 2 parameters");
        ok(model_freeze(b, "layer1.*", true, &count, &err) == 0 && count == 6, "freeze layer1.* matches 6");
        ok(model_freeze(b, "nothing.*", true, &count, &err) == -ENOENT, "a pattern that matches nothing: %s",
           err.message);
        int r = train_step(a, x, 4, dout);
        r = r ? r : train_step(b, x, 4, dout);
        ok(r == 0, "train steps");
        int frozen_nonzero = 0, mismatch = 0, trainable = 0;
        for (size_t i = 0; i < model_tensor_count(b); i++) {
                struct tensor *tb = model_tensor_at(b, i), *ta = model_tensor_at(a, i);
                if (!tb->is_param)
                        continue;
                for (size_t j = 0; j < tb->numel; j++) {
                        if (tb->frozen && tb->grad[j] != 0.0f)
                                frozen_nonzero++;
                        if (!tb->frozen && tb->grad[j] != ta->grad[j])
                                mismatch++;
                }
                trainable += !tb->frozen;
        }
        ok(frozen_nonzero == 0, "frozen parameters get no gradient");
        ok(mismatch == 0 && trainable == 11, "trainable parameters get the same gradients as without freezing");

        struct optim_config cfg;
        optim_config_default(OPTIM_ADAM, &cfg);
        struct optim *o = NULL;
        float c0 = tensor_f32(model_tensor_find(b, "conv1.weight"))[0],
              f0 = tensor_f32(model_tensor_find(b, "fc.weight"))[0];
        r = optim_new(b, &cfg, &o, &err);
        r = r ? r : optim_step(o, ctx, 0.01f, &err);
        ok(r == 0 && tensor_f32(model_tensor_find(b, "conv1.weight"))[0] == c0 &&
                   tensor_f32(model_tensor_find(b, "fc.weight"))[0] != f0,
           "the optimizer skips frozen parameters");
        optim_free(o);

        /* frozen batchnorm with running statistics */
        struct tensor *rm = model_tensor_find(b, "bn1.running_mean"),
                      *nbt = model_tensor_find(b, "bn1.num_batches_tracked");
        float rm0 = tensor_f32(rm)[0];
        int64_t n0 = tensor_i64(nbt)[0];
        model_set_frozen_bn_eval(b, true);
        r = train_step(b, x, 4, dout);
        ok(r == 0 && tensor_f32(rm)[0] == rm0 && tensor_i64(nbt)[0] == n0,
           "frozen batchnorm with frozen_bn_eval keeps its running stats");
        struct tensor *rm2 = model_tensor_find(b, "layer2.0.bn1.running_mean");
        float rm20 = tensor_f32(rm2)[0];
        r = train_step(b, x, 4, dout);
        ok(r == 0 && tensor_f32(rm2)[0] != rm20, "trainable batchnorm still updates its running stats");
        model_set_frozen_bn_eval(b, false);
        r = train_step(b, x, 4, dout);
        ok(r == 0 && tensor_i64(nbt)[0] == n0 + 1, "with the flag off, frozen batchnorm tracks batches again");

        /* everything frozen: backward is a no-op */
        r = model_freeze(b, "*", true, &count, &err);
        r = r ? r : train_step(b, x, 4, dout);
        ok(r == 0 && count == 20, "everything frozen (%zu parameters): backward succeeds and does nothing", count);
        r = model_freeze(b, "fc.*", false, &count, &err);
        r = r ? r : train_step(b, x, 4, dout);
        int fc_nonzero = 0;
        for (size_t j = 0; j < model_tensor_find(b, "fc.weight")->numel; j++)
                fc_nonzero += model_tensor_find(b, "fc.weight")->grad[j] != 0.0f;
        ok(r == 0 && fc_nonzero > 0 && model_tensor_find(b, "layer2.0.conv1.weight")->grad[0] == 0.0f,
           "only the head trainable: the head gets gradients");
        model_free(a);
        model_free(b);
}

/* The arena as [params][grads][buffers]: one parameter span and one gradient span, every parameter's data and
 * grad at the same 64-byte aligned offset in them, buffers outside; frozen parts and the gaps zero after backward;
 * zero_grad clears it all; pack / unpack convert a span-shaped array to state_dict order and back. */
static void test_grad_span(struct compute_ctx *ctx) {
        struct model *m = small_resnet(ctx, 4);
        float x[4 * 3 * 8 * 8], dout[16];
        fill(x, ARRAY_SIZE(x), 5);
        float *params, *grads;
        size_t n, np;
        model_params(m, &params, &np);
        model_grads(m, &grads, &n);
        ok(n == np && n >= model_param_numel(m) && n < model_param_numel(m) + 16 * model_tensor_count(m) &&
                   grads == params + n,
           "params and grads: %zu floats each (%zu parameters and the gaps), the gradients right after", n,
           model_param_numel(m));
        size_t off = 0;
        int misplaced = 0, inside = 0;
        for (size_t i = 0; i < model_tensor_count(m); i++) {
                struct tensor *t = model_tensor_at(m, i);
                if (!t->is_param) {
                        const char *d = t->data;
                        inside += d >= (const char *)params && d < (const char *)(grads + n);
                        continue;
                }
                misplaced += (float *)t->data != params + off || t->grad != grads + off || (uintptr_t)t->grad % 64;
                off += (t->numel + 15) / 16 * 16;
        }
        ok(misplaced == 0 && inside == 0 && off == n,
           "each parameter's data and grad at its state_dict offset, 64-byte aligned; the buffers after both spans");

        struct ft_error err = {0};
        int r = model_freeze(m, "layer1.*", true, NULL, &err);
        r = r ? r : train_step(m, x, 4, dout);
        double norm_span = 0, norm_tensors = 0;
        int frozen_nonzero = 0, trainable_nonzero = 0;
        for (size_t k = 0; k < n; k++)
                norm_span += (double)grads[k] * (double)grads[k];
        for (size_t i = 0; i < model_tensor_count(m); i++) {
                struct tensor *t = model_tensor_at(m, i);
                for (size_t j = 0; t->is_param && j < t->numel; j++) {
                        if (t->frozen)
                                frozen_nonzero += t->grad[j] != 0.0f;
                        else {
                                trainable_nonzero += t->grad[j] != 0.0f;
                                norm_tensors += (double)t->grad[j] * (double)t->grad[j];
                        }
                }
        }
        ok(r == 0 && frozen_nonzero == 0 && trainable_nonzero > 0 && norm_span == norm_tensors && norm_span > 0,
           "after backward (weights in the backend's layout): frozen parts of the span zero, its norm that of the "
           "trainable tensors (%g)",
           norm_span);
        float *grads2;
        model_grads(m, &grads2, &n);
        model_zero_grad(m);
        int nonzero = 0;
        for (size_t k = 0; k < n; k++)
                nonzero += grads[k] != 0.0f;
        ok(grads2 == grads && nonzero == 0, "the span stays in place and model_zero_grad clears all of it");

        float *a = calloc(n, sizeof(float));
        int packed_bad = 0, unpacked_bad = 0;
        for (size_t i = 0, k = 0; a && i < model_tensor_count(m); i++) {
                struct tensor *t = model_tensor_at(m, i);
                for (size_t j = 0; t->is_param && j < t->numel; j++)
                        a[(size_t)(t->grad - grads) + j] = (float)(++k);
        }
        if (a) {
                model_span_pack(m, a);
                for (size_t k = 0; k < model_param_numel(m); k++)
                        packed_bad += a[k] != (float)(k + 1);
                if (n > model_param_numel(m))
                        a[model_param_numel(m)] = 99.0f; /* unpack zeroes the gaps whatever was there */
                model_span_unpack(m, a);
                size_t k = 0;
                for (size_t i = 0; i < model_tensor_count(m); i++) {
                        struct tensor *t = model_tensor_at(m, i);
                        if (!t->is_param)
                                continue;
                        size_t o = (size_t)(t->grad - grads), part = (t->numel + 15) / 16 * 16;
                        for (size_t j = 0; j < part; j++)
                                unpacked_bad += a[o + j] != (j < t->numel ? (float)(++k) : 0.0f);
                }
        }
        ok(a && packed_bad == 0 && unpacked_bad == 0, "model_span_pack to state_dict order and model_span_unpack back");
        free(a);
        model_free(m);
}

static void test_batches_and_dropout(struct compute_ctx *ctx) {
        struct model *m = small_resnet(ctx, 8);
        float x[8 * 3 * 8 * 8], o4[8 * 4], dout[32];
        fill(x, ARRAY_SIZE(x), 9);
        const float *out;
        struct ft_error err = {0};
        ok(model_forward(m, x, 0, false, &out, &err) == -EINVAL && strcmp(err.param, "batch_size") == 0, "batch 0: %s",
           err.message);
        ok(model_forward(m, x, 9, false, &out, &err) == -EINVAL, "batch above max_batch: %s", err.message);
        ok(model_backward(m, dout, &err) == -EINVAL, "backward before a training forward: %s", err.message);
        ok(model_prepare(m, ctx, 0, &err) == -EINVAL, "prepare with max_batch 0: %s", err.message);
        model_prepare(m, ctx, 8, &err);
        int r = model_forward(m, x, 4, false, &out, &err);
        memcpy(o4, out, 16 * sizeof(float));
        bool same = r == 0;
        for (int b = 1; same && b <= 8; b++) { /* 8 batch sizes: more than the plan cache holds */
                r = model_forward(m, x, b, false, &out, &err);
                for (int i = 0; r == 0 && i < 4 * (b < 4 ? b : 4); i++)
                        same = same && fabsf(out[i] - o4[i]) <= 1e-5f * (1.0f + fabsf(o4[i]));
                same = same && r == 0;
        }
        r = model_forward(m, x, 4, false, &out, &err);
        same = same && r == 0 && memcmp(out, o4, 16 * sizeof(float)) == 0;
        ok(same, "eval outputs agree across batch sizes 1..8 and after plan eviction");
        r = train_step(m, x, 4, dout);
        float g4 = model_tensor_find(m, "fc.weight")->grad[0];
        r = r ? r : train_step(m, x, 3, dout);
        r = r ? r : train_step(m, x, 4, dout);
        ok(r == 0 && g4 != 0.0f, "plans made for eval train and backward too, at several batch sizes");
        model_free(m);
        json_t *spec = json_loads(
                "{\"input\": [3, 1, 1], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 4, "
                "\"kernel_size\": 1}, {\"type\": \"batchnorm2d\", \"name\": \"bn\"}, {\"type\": \"flatten\"}]}",
                0, NULL);
        r = model_new(spec, &m, &err);
        json_decref(spec);
        r = r ? r : model_prepare(m, ctx, 2, &err);
        r = r ? r : model_forward(m, x, 1, true, &out, &err);
        ok(r == -EINVAL && strstr(err.message, "more than one value per channel"),
           "training batchnorm on one value per channel is refused: %s", err.message);
        ok(model_forward(m, x, 2, true, &out, &err) == 0 && model_forward(m, x, 1, false, &out, &err) == 0,
           "batch 2 trains, batch 1 evaluates");
        model_free(m);

        /* dropout */
        spec = json_loads("{\"input\": [64], \"layers\": [{\"type\": \"linear\", \"out_features\": 256}, "
                          "{\"type\": \"dropout\", \"p\": 0.25}, {\"type\": \"flatten\"}]}",
                          0, NULL);
        r = model_new(spec, &m, &err);
        json_decref(spec);
        r = r ? r : model_prepare(m, ctx, 4, &err);
        model_init(m, 3);
        float y1[1024], y2[1024];
        struct model_rng_state st;
        model_rng_get(m, &st);
        r = r ? r : model_forward(m, x, 4, true, &out, &err);
        memcpy(y1, out, sizeof(y1));
        int zeros = 0;
        for (int i = 0; i < 1024; i++)
                zeros += y1[i] == 0.0f;
        r = r ? r : model_forward(m, x, 4, true, &out, &err);
        memcpy(y2, out, sizeof(y2));
        ok(r == 0 && memcmp(y1, y2, sizeof(y1)) != 0, "two training forwards draw different masks");
        ok(zeros > 200 && zeros < 320, "about a quarter dropped (%d of 1024)", zeros);
        model_rng_set(m, &st);
        r = model_forward(m, x, 4, true, &out, &err);
        ok(r == 0 && memcmp(out, y1, sizeof(y1)) == 0, "restoring the generator state replays the mask bit for bit");
        r = model_forward(m, x, 4, false, &out, &err);
        zeros = 0;
        for (int i = 0; i < 1024; i++)
                zeros += out[i] == 0.0f;
        ok(r == 0 && zeros == 0, "no dropout in eval");
        model_free(m);
}

/* one step on hand-computed cases: p = 1, g = 0.5 (and lr_mult 2 on a second tensor) */
/* resnet34 on a grayscale 32x32 input: builds, trains a step, every parameter gets a gradient */
static void test_resnet34(struct compute_ctx *ctx) {
        struct model *m = preset("resnet34", "{\"num_classes\": 7, \"in_channels\": 1, \"input_size\": [32, 32]}");
        struct ft_error err = {0};
        float x[2 * 32 * 32], dout[14];
        fill(x, ARRAY_SIZE(x), 5);
        int r = m ? model_prepare(m, ctx, 2, &err) : -1;
        if (r == 0)
                model_init(m, 1);
        r = r ? r : train_step(m, x, 2, dout);
        size_t zero = 0, params = 0;
        for (size_t i = 0; r == 0 && i < model_tensor_count(m); i++) {
                struct tensor *t = model_tensor_at(m, i);
                if (!t->is_param)
                        continue;
                params++;
                bool any = false;
                for (size_t j = 0; j < t->numel && !any; j++)
                        any = t->grad[j] != 0.0f;
                zero += !any;
        }
        ok(r == 0 && params == 110 && zero == 0 && model_tensor_find(m, "conv1.weight")->shape[1] == 1,
           "resnet34 (1 input channel, 7 classes): a training step gives all %zu parameters a gradient", params);
        model_free(m);
}

static void test_optim_rules(struct compute_ctx *ctx) {
        json_t *spec =
                json_loads("{\"input\": [1], \"layers\": [{\"type\": \"linear\", \"out_features\": 1}]}", 0, NULL);
        struct model *m = NULL;
        struct ft_error err = {0};
        model_new(spec, &m, &err);
        json_decref(spec);
        struct tensor *w = model_tensor_find(m, "0.weight"), *b = model_tensor_find(m, "0.bias");
        struct {
                const char *name;
                float wd, damp;
                double want_w[2], want_b[2]; /* after step 1 and step 2 (same gradient) */
        } cases[] = {
                /* sgd lr .1 wd .1: g' = .5 + .1 = .6; p = 1 - .06 = .94; step 2: g' = .5 + .094 = .594 -> .8806 */
                {"sgd", 0.1f, 0, {0.94, 0.8806}, {0.88, 0.76}},
                /* momentum .9 damp .5: b1 = g = .5 -> .95; b2 = .9*.5 + .5*.5 = .7 -> .88 */
                {"momentum", 0.0f, 0.5f, {0.95, 0.88}, {0.90, 0.76}},
                /* nesterov: b1 = .5, d = .5 + .45 = .95 -> .905; b2 = .45+.5 = .95, d = .5 + .855 -> .7695 */
                {"nesterov", 0.0f, 0, {0.905, 0.7695}, {0.81, 0.539}},
                /* adam: step 1 m^ = g, v^ = g^2 -> p -= lr * g/(|g| + eps) = .1 (eps 1e-8): .9, then .8 */
                {"adam", 0.0f, 0, {0.9, 0.8}, {0.8, 0.6}},
                /* adamw wd .5: p *= 1 - .1*.5 = .95, then -.1 -> .85; then .85*.95 - .1 = .7075 */
                {"adamw", 0.5f, 0, {0.85, 0.7075}, {0.70, 0.4}},
        };
        for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
                struct optim_config cfg;
                enum optim_kind kind;
                optim_kind_from_string(cases[c].name, &kind);
                optim_config_default(kind, &cfg);
                cfg.weight_decay = cases[c].wd;
                cfg.dampening = cases[c].damp;
                struct optim *o = NULL;
                int r = optim_new(m, &cfg, &o, &err);
                tensor_f32(w)[0] = 1.0f;
                tensor_f32(b)[0] = 1.0f;
                b->lr_mult = 2.0f;
                bool good = r == 0;
                for (int s = 0; good && s < 2; s++) {
                        w->grad[0] = 0.5f;
                        b->grad[0] = 0.5f;
                        good = optim_step(o, ctx, 0.1f, &err) == 0;
                        if (strcmp(cases[c].name, "adamw") == 0 && s == 1) /* bias: lr .2: .7*.9 - .2 = .43 */
                                cases[c].want_b[1] = 0.43;
                        if (strcmp(cases[c].name, "adamw") == 0 && s == 0) /* bias: 1*.9 - .2 */
                                cases[c].want_b[0] = 0.70;
                        if (strcmp(cases[c].name, "sgd") == 0) /* bias lr .2: .6 -> .88; .5+.088=.588 -> .7624 */
                                cases[c].want_b[1] = 0.7624;
                        good = good && fabs(tensor_f32(w)[0] - cases[c].want_w[s]) < 1e-5 &&
                               fabs(tensor_f32(b)[0] - cases[c].want_b[s]) < 1e-5;
                        if (!good)
                                diag("%s step %d: w %.6f want %.6f, b %.6f want %.6f", cases[c].name, s + 1,
                                     tensor_f32(w)[0], cases[c].want_w[s], tensor_f32(b)[0], cases[c].want_b[s]);
                }
                ok(good, "%s: two steps by hand (weight decay %.1f, dampening %.1f, lr_mult 2 on the bias)",
                   cases[c].name, cases[c].wd, cases[c].damp);
                size_t want_state = kind == OPTIM_SGD ? 1 : kind == OPTIM_ADAM || kind == OPTIM_ADAMW ? 5 : 3;
                ok(optim_state_count(o) == want_state &&
                           (kind == OPTIM_SGD ||
                            optim_state_find(o, kind >= OPTIM_ADAM ? "0.weight.exp_avg" : "0.weight.momentum_buffer")),
                   "%s: %zu state tensors with parameter names", cases[c].name, want_state);
                optim_free(o);
        }
        struct optim_config cfg;
        struct optim *o = NULL;
        optim_config_default(OPTIM_ADAM, &cfg);
        cfg.beta2 = 1.0f;
        ok(optim_new(m, &cfg, &o, &err) == -EINVAL && strcmp(err.param, "betas") == 0, "beta2 1.0: %s", err.message);
        optim_config_default(OPTIM_NESTEROV, &cfg);
        cfg.dampening = 0.1f;
        ok(optim_new(m, &cfg, &o, &err) == -EINVAL, "nesterov with dampening: %s", err.message);
        enum optim_kind k;
        ok(optim_kind_from_string("rmsprop", &k) == -EINVAL, "unknown optimizer name refused");
        model_free(m);
}

/* Between steps the backend keeps weights, gradients and optimizer state permuted into its kernels' formats
 * (model_sync). Two identical models train 4 Adam steps (and gd-style followers), one synced to PyTorch layout after
 * every step and one never: their weights and state must end bit-identical, and the unsynced one must really have
 * been permuted (else this tests nothing). */
static void test_layout_sync(struct compute_ctx *ctx) {
        const char *spec_json =
                "{\"input\": [16, 6, 6], \"layers\": [{\"type\": \"conv2d\", \"out_channels\": 32, \"kernel_size\": 3,"
                "\"padding\": 1}, {\"type\": \"batchnorm2d\"}, {\"type\": \"relu\"}, {\"type\": \"conv2d\", "
                "\"out_channels\": 32, \"kernel_size\": 3, \"stride\": 3, \"padding\": 1}, {\"type\": \"conv2d\", "
                "\"out_channels\": 16, \"kernel_size\": 3, \"padding\": 1}, {\"type\": \"flatten\"}, {\"type\": "
                "\"linear\", \"out_features\": 32}, {\"type\": \"relu\"}, {\"type\": \"linear\", \"out_features\": "
                "5}]}";
        json_t *spec = json_loads(spec_json, 0, NULL);
        struct model *m[2] = {NULL, NULL};
        struct optim *o[2] = {NULL, NULL};
        struct ft_error err = {0};
        float *extra[2] = {NULL, NULL};
        int r = 0;
        enum { B = 4 };
        float x[B * 16 * 36], d[B * 5];
        for (size_t i = 0; i < ARRAY_SIZE(x); i++)
                x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
        for (size_t i = 0; i < ARRAY_SIZE(d); i++)
                d[i] = (float)((i * 13) % 7) / 7.0f - 0.4f;
        struct optim_config cfg;
        optim_config_default(OPTIM_ADAM, &cfg);
        for (int k = 0; k < 2 && r == 0; k++) {
                r = model_new(spec, &m[k], &err);
                if (r == 0) {
                        model_init(m[k], 5);
                        r = model_prepare(m[k], ctx, B, &err);
                }
                r = r ? r : optim_new(m[k], &cfg, &o[k], &err);
                struct tensor *w = r ? NULL : model_tensor_find(m[k], "3.weight");
                extra[k] = w ? calloc(w->numel, sizeof(float)) : NULL;
                if (extra[k]) {
                        for (size_t i = 0; i < w->numel; i++)
                                extra[k][i] = (float)i; /* a follower that records where each element went */
                        r = model_follow(m[k], w, extra[k], &err);
                }
        }
        if (!ok(r == 0 && extra[0] && extra[1], "layout: two models, Adam, a follower (%s)", err.message))
                goto out;
        int permuted = 0, follower_moved = 0, state_mismatch = -1;
        for (int s = 0; s < 4 && r == 0; s++)
                for (int k = 0; k < 2 && r == 0; k++) {
                        const float *out;
                        r = model_forward(m[k], x, B, true, &out, &err);
                        r = r ? r : model_backward(m[k], d, &err);
                        r = r ? r : optim_step(o[k], ctx, 0.01f, &err);
                        if (r == 0 && k == 1 && s == 3) { /* the unsynced model, still in the backend's layout */
                                for (size_t i = 0; i < model_tensor_count(m[0]); i++) {
                                        struct tensor *a = model_tensor_at(m[0], i), *b = model_tensor_at(m[1], i);
                                        permuted += memcmp(a->data, b->data, tensor_nbytes(a)) != 0;
                                }
                                struct tensor *w = model_tensor_find(m[1], "3.weight");
                                for (size_t i = 0; i < w->numel; i++)
                                        follower_moved += extra[1][i] != (float)i;
                        }
                        if (r == 0 && k == 0)
                                r = model_sync(m[0], &err);
                        if (r == 0 && k == 0 && s == 0) { /* after Adam's first step exp_avg = (1 - beta1) * grad */
                                state_mismatch = 0;
                                for (size_t i = 0; i < model_tensor_count(m[0]); i++) {
                                        struct tensor *t = model_tensor_at(m[0], i);
                                        char ename[TENSOR_NAME_MAX + 16];
                                        snprintf(ename, sizeof(ename), "%s.exp_avg", t->name);
                                        struct tensor *ea = t->is_param ? optim_state_find(o[0], ename) : NULL;
                                        for (size_t j = 0; ea && j < t->numel; j++)
                                                state_mismatch += tensor_f32(ea)[j] !=
                                                                  cfg.beta1 * 0.0f + (1.0f - cfg.beta1) * t->grad[j];
                                }
                        }
                }
        ok(r == 0 && permuted > 0 && follower_moved > 0,
           "layout: %d of %zu tensors, and a follower, held in another layout between steps (%s)", permuted,
           model_tensor_count(m[0]), err.message);
        ok(state_mismatch == 0, "layout: synced, Adam's exp_avg lines up with the gradient element by element (%d off)",
           state_mismatch);
        r = model_sync(m[1], &err);
        int differ = 0;
        for (size_t i = 0; r == 0 && i < model_tensor_count(m[0]); i++) {
                struct tensor *a = model_tensor_at(m[0], i), *b = model_tensor_at(m[1], i);
                differ += memcmp(a->data, b->data, tensor_nbytes(a)) != 0;
                differ += a->grad && memcmp(a->grad, b->grad, tensor_nbytes(a)) != 0;
        }
        for (size_t i = 0; r == 0 && i < optim_state_count(o[0]); i++) {
                struct tensor *a = optim_state_at(o[0], i), *b = optim_state_at(o[1], i);
                differ += memcmp(a->data, b->data, tensor_nbytes(a)) != 0;
        }
        bool identity = true;
        for (size_t i = 0; r == 0 && i < model_tensor_find(m[1], "3.weight")->numel; i++)
                identity = identity && extra[1][i] == (float)i && extra[0][i] == (float)i;
        ok(r == 0 && differ == 0 && identity,
           "layout: synced every step and never synced end bit-identical (%d arrays differ), followers back in place",
           differ);
out:
        for (int k = 0; k < 2; k++) {
                if (m[k] && extra[k])
                        model_unfollow(model_tensor_find(m[k], "3.weight"), extra[k]);
                optim_free(o[k]);
                model_free(m[k]);
                free(extra[k]);
        }
        json_decref(spec);
}

static void test_loss_errors(void) {
        float z[6] = {0}, loss, t[6] = {0};
        int32_t y[2] = {0, 3};
        struct ft_error err = {0};
        ok(loss_cross_entropy(z, y, 2, 3, NULL, &loss, NULL, &err) == -EINVAL && strcmp(err.param, "targets") == 0,
           "target out of range: %s", err.message);
        y[1] = 1;
        struct loss_ce_options o = {.label_smoothing = 1.0f};
        ok(loss_cross_entropy(z, y, 2, 3, &o, &loss, NULL, &err) == -EINVAL, "label smoothing 1.0: %s", err.message);
        float w[3] = {0, 0, 1};
        o = (struct loss_ce_options){.class_weights = w};
        ok(loss_cross_entropy(z, y, 2, 3, &o, &loss, NULL, &err) == -EINVAL, "zero total weight: %s", err.message);
        ok(loss_cross_entropy(z, y, 0, 3, NULL, &loss, NULL, &err) == -EINVAL, "batch 0: %s", err.message);
        ok(loss_mse(z, t, 0, 3, &loss, NULL, &err) == -EINVAL, "mse batch 0: %s", err.message);
        ok(loss_cross_entropy(z, y, 2, 3, NULL, &loss, NULL, &err) == 0 && fabsf(loss - logf(3.0f)) < 1e-6f,
           "uniform logits: loss ln 3");
}

/* Inference mode (model_set_inference, what api/predict.c runs): the same outputs as an evaluation forward of the
 * same model in training mode, only forward_inference-capable primitives and no backward ones, training refused. */
static void test_inference(struct compute_ctx *ctx, const char *name, const char *opts) {
        struct model *a = preset(name, opts), *b = preset(name, opts);
        struct ft_error err = {0};
        if (!ok(a && b, "%s: inference models", name))
                goto out;
        enum { B = 3 };
        size_t in = model_input_numel(a), k = model_output_count(a);
        float *x = malloc(B * in * sizeof(float)), *dout = malloc(B * k * sizeof(float));
        const float *ya, *yb;
        fill(x, B * in, 5);
        int r = model_prepare(a, ctx, B, &err);
        r = r ? r : model_prepare(b, ctx, B, &err);
        model_init(a, 3);
        model_init(b, 3);
        /* one training step on both: running statistics that are not the defaults */
        r = r ? r : train_step(a, x, B, dout);
        r = r ? r : train_step(b, x, B, dout);
        model_set_inference(b, true);
        ok(model_is_inference(b), "%s: in inference mode", name);
        fill(x, B * in, 6);
        r = r ? r : model_forward(a, x, B, false, &ya, &err);
        r = r ? r : model_forward(b, x, B, false, &yb, &err);
        if (!ok(r == 0, "%s: evaluation and inference forwards (%s)", name, err.message))
                goto done;
        double worst = 0, scale = 0;
        for (size_t i = 0; i < B * k; i++) {
                double d = ya[i] > yb[i] ? ya[i] - yb[i] : yb[i] - ya[i];
                worst = d > worst ? d : worst;
                scale = (ya[i] > 0 ? ya[i] : -ya[i]) > scale ? (ya[i] > 0 ? ya[i] : -ya[i]) : scale;
        }
        ok(worst <= 1e-5 * (scale > 1 ? scale : 1), "%s: inference output equals evaluation output (max diff %g)", name,
           worst);
        const struct model_kernel *kern;
        size_t n = 0, inference = 0, backward = 0;
        r = model_kernels(b, B, &kern, &n, &err);
        for (size_t i = 0; r == 0 && i < n; i++) {
                inference += strcmp(kern[i].pass, "forward_inference") == 0;
                backward += strncmp(kern[i].pass, "backward", 8) == 0;
        }
        ok(r == 0 && inference > 0 && backward == 0, "%s: %zu forward_inference primitives, no backward ones", name,
           inference);
        ok(model_forward(b, x, B, true, &yb, &err) == -EINVAL, "%s: a training forward is refused: %s", name,
           err.message);
        ok(model_backward(b, dout, &err) == -EINVAL, "%s: backward is refused: %s", name, err.message);
        ok(model_plan(b, B, true, &err) == -EINVAL, "%s: a backward plan is refused: %s", name, err.message);
        model_set_inference(b, false);
        ok(train_step(b, x, B, dout) == 0, "%s: out of inference mode it trains again", name);
done:
        free(x);
        free(dout);
out:
        model_free(a);
        model_free(b);
}

/* partial fine-tuning: with everything but layer4 and fc frozen, the step builds backward primitives only for
 * layer4 and fc (no data or weight gradient below the lowest trainable layer), and unfreezing more rebuilds it. */
static void test_frozen_backward(struct compute_ctx *ctx) {
        struct model *m = preset("resnet18", "{\"num_classes\": 5, \"input_size\": [32, 32]}");
        struct ft_error err = {0};
        enum { B = 2 };
        if (!ok(m && model_prepare(m, ctx, B, &err) == 0, "partial: model (%s)", err.message))
                goto out;
        model_init(m, 4);
        size_t in = model_input_numel(m), k = model_output_count(m);
        float *x = malloc(B * in * sizeof(float)), *dout = malloc(B * k * sizeof(float));
        fill(x, B * in, 7);
        for (int pass = 0; pass < 2; pass++) {
                int r = model_freeze(m, "*", true, NULL, &err);
                r = r ? r : model_freeze(m, "layer4.*", false, NULL, &err);
                r = r ? r : model_freeze(m, "fc.*", false, NULL, &err);
                if (pass == 1)
                        r = r ? r : model_freeze(m, "layer3.1.*", false, NULL, &err);
                r = r ? r : train_step(m, x, B, dout);
                const struct model_kernel *kern;
                size_t n = 0, below = 0, above = 0, l31 = 0;
                r = r ? r : model_kernels(m, B, &kern, &n, &err);
                for (size_t i = 0; r == 0 && i < n; i++) {
                        if (strncmp(kern[i].pass, "backward", 8) != 0 && strcmp(kern[i].pass, "") != 0)
                                continue;
                        if (strcmp(kern[i].pass, "") == 0) /* reorders: count only the backward's (after forward) */
                                continue;
                        bool top = strncmp(kern[i].layer, "layer4", 6) == 0 || strncmp(kern[i].layer, "fc", 2) == 0 ||
                                   strcmp(kern[i].layer, "avgpool") == 0 || strcmp(kern[i].layer, "flatten") == 0;
                        bool l3 = strncmp(kern[i].layer, "layer3.1.", 9) == 0;
                        above += top;
                        l31 += l3;
                        below += !top && !(pass == 1 && l3);
                }
                if (pass == 0)
                        ok(r == 0 && above > 0 && below == 0 && l31 == 0,
                           "partial (layer4, fc): %zu backward primitives, all in layer4 and the head (%zu below)",
                           above, below);
                else
                        ok(r == 0 && l31 > 0 && below == 0,
                           "unfreezing layer3.1 rebuilds the backward: %zu primitives there, %zu below", l31, below);
        }
        free(x);
        free(dout);
out:
        model_free(m);
}

int main(void) {
        test_names("resnet18", "resnet18", NULL);
        test_names("resnet34", "resnet34", "{\"num_classes\": 7}");
        test_names("mlp", "mlp", "{\"inputs\": 64, \"hidden\": [32, 16], \"outputs\": 5}");
        test_names("cnn", "cnn", "{\"input_size\": [16, 16], \"channels\": [4, 8], \"hidden\": 16, \"outputs\": 5}");
        test_errors();
        test_canonical();
        test_init();
        struct compute_ctx *ctx = NULL;
        struct ft_error err = {0};
        if (!ok(compute_ctx_new(1, &ctx, &err) == 0, "context (%s)", err.message))
                return tap_done();
        ok(strcmp(compute_ctx_backend_name(ctx), "onednn") == 0 && compute_ctx_threads(ctx) == 1, "onednn, 1 thread");
        test_hostile_specs(ctx);
        test_freeze(ctx);
        test_grad_span(ctx);
        test_batches_and_dropout(ctx);
        test_resnet34(ctx);
        test_optim_rules(ctx);
        test_layout_sync(ctx);
        test_inference(ctx, "resnet18", "{\"num_classes\": 5, \"input_size\": [32, 32]}");
        test_inference(ctx, "mlp", "{\"inputs\": 20, \"hidden\": [16], \"outputs\": 4, \"dropout\": 0.5}");
        test_inference(ctx, "cnn", "{\"input_size\": [16, 16], \"channels\": [4, 8], \"hidden\": 16, \"outputs\": 5}");
        test_frozen_backward(ctx);
        test_loss_errors();
        compute_ctx_free(ctx);
        return tap_done();
}
