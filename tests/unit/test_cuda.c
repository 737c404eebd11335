/* test_cuda.c - device selection (compute_ctx_new_on) on this build and machine, and, where the CUDA backend
 * can open a GPU, our CUDA kernels against the CPU: 10 optimizer steps of every optimizer (sgd, momentum,
 * nesterov, adam, adamw, with weight decay) on the GPU match optim_step on the CPU to 1e-6 relative.
 *
 * Without CUDA compiled in: "cuda" fails -ENOTSUP "cuda is not available in this build", "auto" is the CPU
 * with that reason. With CUDA and no driver or device: "cuda" fails -ENODEV with the probe's reason, as
 * /v1/version gives it. The GPU part runs where a device is (tools/device-check.sh) and says so otherwise.
 * Not for: the HTTP and CLI side (tests/integration/test_device.sh). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compute/compute.h"
#include "config.h"
#include "tests/tap.h"
#if HAVE_CUDA
#include "compute/backend/cuda/cuda.h"
#endif

static void test_selection(const struct compute_runtime_info *rt) {
        struct ft_error err = {0};
        struct compute_ctx *ctx = NULL;
        int r = compute_ctx_new_on(1, COMPUTE_DEVICE_CPU, 0, &ctx, &err);
        ok(r == 0 && strcmp(compute_ctx_device(ctx), "cpu") == 0 &&
                   strcmp(compute_ctx_device_reason(ctx), "'device' is 'cpu'") == 0,
           "cpu: device cpu, reason \"%s\"", ctx ? compute_ctx_device_reason(ctx) : err.message);
        compute_ctx_free(ctx);
        ctx = NULL;
        r = compute_ctx_new(1, &ctx, &err);
        ok(r == 0 && strcmp(compute_ctx_device(ctx), "cpu") == 0, "compute_ctx_new is the CPU");
        compute_ctx_free(ctx);
        ctx = NULL;

        err = (struct ft_error){0};
        r = compute_ctx_new_on(1, COMPUTE_DEVICE_CUDA, COMPUTE_GPUS_MAX, &ctx, &err);
        ok(r == -EINVAL && !ctx && strcmp(err.param, "gpu") == 0, "gpu %d: -EINVAL: %s", COMPUTE_GPUS_MAX, err.message);
        err = (struct ft_error){0};
        r = compute_ctx_new_on(1, COMPUTE_DEVICE_AUTO, -1, &ctx, &err);
        ok(r == -EINVAL && !ctx && strcmp(err.param, "gpu") == 0, "gpu -1: -EINVAL: %s", err.message);
        err = (struct ft_error){0};
        r = compute_ctx_new_on(1, (enum compute_device)7, 0, &ctx, &err);
        ok(r == -EINVAL && !ctx && strcmp(err.param, "device") == 0, "device 7: -EINVAL: %s", err.message);

        ok(rt->cuda_compiled == HAVE_CUDA, "runtime info: cuda compiled %d", rt->cuda_compiled);
        ok(rt->cuda_device == (rt->cuda_devices > 0) && (rt->cuda_device || rt->cuda_reason[0]),
           "runtime info: device %d, %d devices, reason \"%s\"", rt->cuda_device, rt->cuda_devices, rt->cuda_reason);
        if (!rt->cuda_compiled)
                ok(strcmp(rt->cuda_reason, "cuda is not available in this build") == 0 && !rt->cuda_device,
                   "no CUDA in this build: the reason says so");

        err = (struct ft_error){0};
        r = compute_ctx_new_on(1, COMPUTE_DEVICE_CUDA, 0, &ctx, &err);
        char want[600];
        snprintf(want, sizeof(want), "'device' 'cuda': %s", rt->cuda_reason);
        if (!rt->cuda_compiled)
                ok(r == -ENOTSUP && !ctx && strcmp(err.param, "device") == 0 && strcmp(err.message, want) == 0,
                   "cuda without CUDA compiled in: -ENOTSUP \"%s\"", err.message);
        else if (!rt->cuda_device)
                ok(r == -ENODEV && !ctx && strcmp(err.param, "device") == 0 && strcmp(err.message, want) == 0,
                   "cuda without a device: -ENODEV \"%s\"", err.message);
        else /* the device layer opens it; the layer families are not ported (docs/decisions.md "issue 15") */
                ok(r == -ENOTSUP && !ctx && strcmp(err.param, "device") == 0 &&
                           strstr(err.message, rt->cuda_device_name),
                   "cuda with device '%s': -ENOTSUP until the backend trains: \"%s\"", rt->cuda_device_name,
                   err.message);
        compute_ctx_free(ctx);
        ctx = NULL;

        err = (struct ft_error){0};
        r = compute_ctx_new_on(1, COMPUTE_DEVICE_AUTO, 0, &ctx, &err);
        ok(r == 0 && strcmp(compute_ctx_device(ctx), "cpu") == 0 && strlen(compute_ctx_device_reason(ctx)) > 0 &&
                   (rt->cuda_device || strcmp(compute_ctx_device_reason(ctx), rt->cuda_reason) == 0),
           "auto: the CPU, reason \"%s\"", ctx ? compute_ctx_device_reason(ctx) : err.message);
        compute_ctx_free(ctx);

        char reason[256];
        ok(compute_cuda_check(0, reason, sizeof(reason)) == 0 && reason[0],
           "compute_cuda_check(0): not usable for training here: %s", reason);
        ok(compute_cuda_check(COMPUTE_GPUS_MAX, reason, sizeof(reason)) == 0, "compute_cuda_check(%d): %s",
           COMPUTE_GPUS_MAX, reason);
}

#if HAVE_CUDA
/* Run `kind` 10 steps on the CPU (optim_step) and on the GPU (kernels.cu) from the same weights and gradients;
 * the largest difference relative to max(1, |w|). */
static double optim_parity(struct cuda_device *d, enum optim_kind kind, const char **ret_name) {
        static const char *spec_json = "{\"input\": [37], \"layers\": [{\"type\": \"linear\", \"out_features\": 300},"
                                       "{\"type\": \"relu\"}, {\"type\": \"linear\", \"out_features\": 5}]}";
        struct ft_error err = {0};
        json_t *spec = json_loads(spec_json, 0, NULL);
        struct model *m = NULL;
        struct optim *o = NULL;
        double worst = INFINITY;
        uint64_t dp = 0, dg = 0, d1 = 0, d2 = 0;
        float *p, *g, *w0 = NULL, *gpu = NULL, *zero = NULL;
        size_t n;
        struct optim_config c;
        optim_config_default(kind, &c);
        c.weight_decay = kind == OPTIM_ADAMW ? 0.01f : 1e-3f;
        if (kind == OPTIM_MOMENTUM)
                c.dampening = 0.1f;
        *ret_name = optim_kind_name(kind);
        if (!spec || model_new(spec, &m, &err) < 0)
                goto out;
        model_init(m, 7);
        model_params(m, &p, &n);
        model_grads(m, &g, &n);
        w0 = malloc(n * sizeof(float));
        gpu = malloc(n * sizeof(float));
        zero = calloc(n, sizeof(float));
        if (!w0 || !gpu || !zero || optim_new(m, &c, &o, &err) < 0)
                goto out;
        uint64_t s = 12345;
        for (size_t j = 0; j < n; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                g[j] = (float)((double)(s >> 40) / (double)(1ull << 24) - 0.5);
        }
        memcpy(w0, p, n * sizeof(float));
        if (cuda_alloc(d, n, &dp, &err) < 0 || cuda_alloc(d, n, &dg, &err) < 0 || cuda_alloc(d, n, &d1, &err) < 0 ||
            cuda_alloc(d, n, &d2, &err) < 0 || cuda_upload(d, dp, p, n, &err) < 0 ||
            cuda_upload(d, dg, g, n, &err) < 0 || cuda_upload(d, d1, zero, n, &err) < 0 ||
            cuda_upload(d, d2, zero, n, &err) < 0)
                goto out;
        float lr = 0.01f;
        long ln = (long)n;
        for (int step = 1; step <= 10; step++) {
                if (optim_step(o, NULL, lr, &err) < 0)
                        goto out;
                double bc1 = 1.0 - pow((double)c.beta1, step), bc2 = 1.0 - pow((double)c.beta2, step);
                float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), decay = 1.0f - lr * c.weight_decay;
                int nesterov = kind == OPTIM_NESTEROV, first = step == 1, decoupled = kind == OPTIM_ADAMW;
                int r;
                switch (kind) {
                case OPTIM_GD:
                case OPTIM_SGD:
                        r = cuda_launch(d, "ft_sgd", ln, (void *[]){&dp, &dg, &ln, &lr, &c.weight_decay}, &err);
                        break;
                case OPTIM_MOMENTUM:
                case OPTIM_NESTEROV:
                        r = cuda_launch(d, "ft_momentum", ln,
                                        (void *[]){&dp, &dg, &d1, &ln, &lr, &c.weight_decay, &c.momentum, &c.dampening,
                                                   &nesterov, &first},
                                        &err);
                        break;
                default:
                        r = cuda_launch(d, "ft_adam", ln,
                                        (void *[]){&dp, &dg, &d1, &d2, &ln, &decoupled, &step_size, &bc2_sqrt, &decay,
                                                   &c.weight_decay, &c.beta1, &c.beta2, &c.eps},
                                        &err);
                        break;
                }
                if (r < 0)
                        goto out;
        }
        if (cuda_download(d, gpu, dp, n, &err) < 0)
                goto out;
        worst = 0; /* over the parameters only: the span may have padding the CPU optimizer does not touch */
        for (size_t k = 0; k < model_tensor_count(m); k++) {
                struct tensor *t = model_tensor_at(m, k);
                if (!t->is_param || t->dtype != TENSOR_F32)
                        continue;
                size_t off = (size_t)(tensor_f32(t) - p);
                for (size_t j = off; j < off + t->numel && j < n; j++)
                        worst = fmax(worst, fabs((double)gpu[j] - p[j]) / fmax(1.0, fabs(p[j])));
        }
out:
        if (err.message[0])
                printf("# %s: %s\n", *ret_name, err.message);
        cuda_free(d, dp);
        cuda_free(d, dg);
        cuda_free(d, d1);
        cuda_free(d, d2);
        optim_free(o);
        model_free(m);
        json_decref(spec);
        free(w0);
        free(gpu);
        free(zero);
        return worst;
}

static void test_gpu(const struct compute_runtime_info *rt) {
        struct ft_error err = {0};
        struct cuda_device *d = NULL;
        int r = cuda_device_open(0, &d, &err);
        if (!rt->cuda_device) {
                ok(r == -ENODEV && !d && strcmp(err.message, rt->cuda_reason) == 0,
                   "cuda_device_open without a device: -ENODEV \"%s\"", err.message);
                printf("# no CUDA device here (%s): the GPU kernel parity runs in tools/device-check.sh\n",
                       rt->cuda_reason);
                return;
        }
        if (!ok(r == 0, "cuda_device_open(0): '%s', %llu MiB free%s%s", d ? cuda_device_name(d) : "?",
                d ? (unsigned long long)(cuda_device_free_bytes(d) >> 20) : 0ull, r < 0 ? ": " : "",
                r < 0 ? err.message : ""))
                return;
        r = cuda_device_open(rt->cuda_devices, &(struct cuda_device *){NULL}, &err);
        ok(r == -ENODEV && strstr(err.message, "no CUDA device"), "device %d: -ENODEV: %s", rt->cuda_devices,
           err.message);
        static const enum optim_kind kinds[] = {OPTIM_SGD, OPTIM_MOMENTUM, OPTIM_NESTEROV, OPTIM_ADAM, OPTIM_ADAMW};
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
                const char *name;
                double e = optim_parity(d, kinds[i], &name);
                ok(e <= 1e-6, "%s: 10 GPU steps match the CPU's: max relative difference %.3g", name, e);
        }
        cuda_device_close(d);
}
#endif

int main(void) {
        struct compute_runtime_info rt;
        compute_runtime_info(&rt);
        printf("# cuda: compiled %d, device %d (%d: '%s', %llu bytes), driver %d, reason \"%s\"\n", rt.cuda_compiled,
               rt.cuda_device, rt.cuda_devices, rt.cuda_device_name, (unsigned long long)rt.cuda_memory_bytes,
               rt.cuda_driver_version, rt.cuda_reason);
        test_selection(&rt);
#if HAVE_CUDA
        test_gpu(&rt);
#endif
        return tap_done();
}
