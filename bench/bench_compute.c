/* bench_compute.c - training throughput of the compute engine on the three reference models with Adam on random
 * data: samples/s, achieved GFLOP/s (3x forward flops per sample) against the measured dnnl_sgemm peak, and peak
 * RSS. bench/run.sh runs it alternately with bench_torch.py (the same models in PyTorch).
 *
 *   bench_compute MODEL THREADS SECONDS
 *   MODEL: mlp | cnn | resnet18 (3x64x64, batch 32) | resnet18_224 (3x224x224, batch 16) | resnet18_224_partial
 *          (only layer4 and fc train) | predict_resnet18_224 (evaluation forwards, batch 64) | sgemm
 * prints one JSON line. GFLOP/s counts 3x the forward for training (the nominal count: a partial step does less)
 * and 1x for predict. Not a test: timings are never assertions. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <oneapi/dnnl/dnnl.h>

#include "compute/compute.h"

static double sgemm_peak(int threads) {
        omp_set_num_threads(threads);
        const int n = 1024;
        float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
        for (size_t i = 0; i < (size_t)n * n; i++)
                a[i] = b[i] = 0.001f * (float)(i % 1000);
        dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double best = 0.0;
        for (int r = 0; r < 5; r++) {
                double t0 = ft_now_monotonic();
                dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
                double dt = ft_now_monotonic() - t0, g = 2.0 * n * (double)n * n / dt / 1e9;
                best = g > best ? g : best;
        }
        free(a);
        free(b);
        free(c);
        return best;
}

int main(int argc, char **argv) {
        if (argc != 4) {
                fprintf(stderr, "usage: bench_compute mlp|cnn|resnet18|resnet18_224|resnet18_224_partial|"
                                "predict_resnet18_224|sgemm THREADS SECONDS\n");
                return 2;
        }
        const char *name = argv[1];
        int threads = atoi(argv[2]);
        double seconds = atof(argv[3]);
        if (strcmp(name, "sgemm") == 0) {
                printf("{\"impl\": \"finetuned\", \"model\": \"sgemm\", \"threads\": %d, \"gflops\": %.1f}\n", threads,
                       sgemm_peak(threads));
                return 0;
        }
        const char *preset, *opts;
        int batch;
        bool partial = false, predict = false; /* partial: only layer4 and fc train; predict: eval forwards */
        if (strcmp(name, "mlp") == 0)
                preset = "mlp", opts = "{\"inputs\": 784, \"hidden\": [512, 256], \"outputs\": 10}", batch = 128;
        else if (strcmp(name, "cnn") == 0)
                preset = "cnn", opts = "{}", batch = 64;
        else if (strcmp(name, "resnet18") == 0)
                preset = "resnet18", opts = "{\"num_classes\": 10, \"input_size\": [64, 64]}", batch = 32;
        else if (strcmp(name, "resnet18_224") == 0 || strcmp(name, "resnet18_224_partial") == 0)
                preset = "resnet18", opts = "{\"num_classes\": 10}", batch = 16, partial = name[12] != '\0';
        else if (strcmp(name, "predict_resnet18_224") == 0)
                preset = "resnet18", opts = "{\"num_classes\": 10}", batch = 64, predict = true;
        else {
                fprintf(stderr, "unknown model %s\n", name);
                return 2;
        }
        struct ft_error err = {0};
        json_t *o = json_loads(opts, 0, NULL), *spec = NULL;
        struct model *m = NULL;
        struct compute_ctx *ctx = NULL;
        struct optim *opt = NULL;
        struct optim_config cfg;
        optim_config_default(OPTIM_ADAM, &cfg);
        if (model_preset_spec(preset, o, &spec, &err) < 0 || model_new(spec, &m, &err) < 0) {
                fprintf(stderr, "bench: %s\n", err.message);
                return 1;
        }
        model_set_inference(m, predict); /* predict: what api/predict.c runs (no optimizer either) */
        if (compute_ctx_new(threads, &ctx, &err) < 0 || model_prepare(m, ctx, batch, &err) < 0 ||
            (!predict && optim_new(m, &cfg, &opt, &err) < 0)) {
                fprintf(stderr, "bench: %s\n", err.message);
                return 1;
        }
        model_init(m, 1);
        if (partial &&
            (model_freeze(m, "*", true, NULL, &err) < 0 || model_freeze(m, "layer4.*", false, NULL, &err) < 0 ||
             model_freeze(m, "fc.*", false, NULL, &err) < 0)) {
                fprintf(stderr, "bench: %s\n", err.message);
                return 1;
        }
        size_t in = model_input_numel(m), classes = model_output_count(m);
        float *x = malloc((size_t)batch * in * sizeof(float)), *dlogits = malloc((size_t)batch * classes * 4);
        int32_t *y = malloc((size_t)batch * sizeof(int32_t));
        uint64_t s = 1;
        for (size_t i = 0; i < (size_t)batch * in; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                x[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5);
        }
        for (int i = 0; i < batch; i++)
                y[i] = (int32_t)(i % (int)classes);
        int steps = 0;
        double t0 = 0.0, loss_sum = 0.0;
        for (int it = 0;; it++) {
                if (it == 3)
                        t0 = ft_now_monotonic(); /* 3 warm-up steps */
                const float *out;
                float loss = 0.0f;
                if (predict) {
                        if (model_forward(m, x, batch, false, &out, &err) < 0) {
                                fprintf(stderr, "bench: %s\n", err.message);
                                return 1;
                        }
                } else if (model_forward(m, x, batch, true, &out, &err) < 0 ||
                           loss_cross_entropy(out, y, batch, (int)classes, NULL, &loss, dlogits, &err) < 0 ||
                           model_backward(m, dlogits, &err) < 0 || optim_step(opt, ctx, 1e-3f, &err) < 0) {
                        fprintf(stderr, "bench: %s\n", err.message);
                        return 1;
                }
                loss_sum += loss;
                if (it >= 3) {
                        steps++;
                        if (ft_now_monotonic() - t0 >= seconds && steps >= 3)
                                break;
                }
        }
        double dt = ft_now_monotonic() - t0;
        double sps = (double)steps * batch / dt;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        /* what ran: the ISA and every primitive's implementation (a reference kernel is named on stderr) */
        json_t *rep = model_kernels_report(m, batch, false);
        const json_t *ref;
        size_t ri;
        json_array_foreach(json_object_get(rep, "reference"), ri, ref) {
                char *s_ref = json_dumps(ref, JSON_COMPACT);
                fprintf(stderr, "bench: %s: reference kernel %s\n", name, s_ref ? s_ref : "?");
                free(s_ref);
        }
        char *impls = json_dumps(json_object_get(rep, "implementations"), JSON_COMPACT | JSON_SORT_KEYS);
        printf("{\"impl\": \"finetuned\", \"model\": \"%s\", \"threads\": %d, \"batch\": %d, \"steps\": %d, "
               "\"samples_per_sec\": %.1f, \"gflops\": %.2f, \"peak_rss_mb\": %.1f, \"mean_loss\": %.4f, "
               "\"isa\": \"%s\", \"reference_kernels\": %zu, \"kernels\": %s}\n",
               name, threads, batch, steps, sps, sps * (predict ? 1.0 : 3.0) * model_forward_flops(m) / 1e9,
               ru.ru_maxrss / 1024.0, loss_sum / (steps + 3),
               json_string_value(json_object_get(rep, "isa")) ?: "unknown",
               json_array_size(json_object_get(rep, "reference")), impls ? impls : "{}");
        free(impls);
        json_decref(rep);
        optim_free(opt);
        model_free(m);
        compute_ctx_free(ctx);
        json_decref(spec);
        json_decref(o);
        free(x);
        free(y);
        free(dlogits);
        return 0;
}
