/* eval_cmd.c - `finetuned evaluate MODEL DATA [DATA2]` prints the evaluation metrics of a saved model on a
 * labelled dataset as JSON (what POST /v1/models/{id}/evaluate answers as "metrics"); `finetuned predict MODEL
 * DATA [DATA2] [-o FILE]` writes predictions.csv (what a predictions job writes). MODEL is a .safetensors file
 * with finetuned's metadata (a job's model.safetensors). Not for: the evaluation itself (compute/eval.h). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "compute/context.h"
#include "compute/eval.h"
#include "compute/metrics_curves.h"
#include "daemon/daemon.h"

#define EVAL_DEFAULT_MAX_BYTES ((size_t)4 << 30)

static void usage(FILE *out, bool predict) {
        if (predict)
                fprintf(out, "Usage: finetuned predict [OPTIONS] MODEL DATA [DATA2]\n\n"
                             "Run MODEL (a model.safetensors written by finetuned) over every row of DATA (a CSV with\n"
                             "the model's feature columns, with or without the target column, or an IDX pair DATA\n"
                             "DATA2) and write the predictions as CSV: row,[label,]prediction,p_<class>... for\n"
                             "classification (probabilities with the model's temperature), row,[target,]prediction\n"
                             "for regression.\n\n"
                             "  -o, --output FILE  write the CSV to FILE (default: stdout)\n");
        else
                fprintf(out,
                        "Usage: finetuned evaluate [OPTIONS] MODEL DATA [DATA2]\n\n"
                        "Evaluate MODEL (a model.safetensors written by finetuned) on the labelled DATA (a CSV\n"
                        "or an IDX pair DATA DATA2) and print the metrics as JSON: a job's final metrics plus\n"
                        "log loss, ROC-AUC, average precision, ROC and precision-recall curves and calibration\n"
                        "(ECE, 15-bin reliability diagram); regression: mse, rmse, mae, r2.\n\n"
                        "  --curve-points N   most points per curve (default %d; 2..%d)\n",
                        METRICS_CURVE_POINTS_DEFAULT, METRICS_CURVE_POINTS_MAX);
        fprintf(out, "  --target COLUMN    the CSV target column (default: the last column)\n"
                     "  --threads N        compute threads (default: all cores)\n"
                     "  -h, --help         show this help\n");
}

static int run(int argc, char **argv, bool predict) {
        static const struct option opts[] = {
                {"target", required_argument, NULL, 't'},
                {"threads", required_argument, NULL, 'j'},
                {"curve-points", required_argument, NULL, 'c'},
                {"output", required_argument, NULL, 'o'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *cmd = predict ? "predict" : "evaluate", *target = NULL, *output = NULL;
        long threads = 0, points = 0;
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, predict ? "ho:" : "h", opts, NULL)) != -1) {
                char *e;
                switch (c) {
                case 't': target = optarg; break;
                case 'o':
                        if (!predict)
                                goto bad;
                        output = optarg;
                        break;
                case 'j':
                case 'c': {
                        errno = 0;
                        long v = strtol(optarg, &e, 10);
                        long lo = c == 'j' ? 1 : 2, hi = c == 'j' ? 1024 : METRICS_CURVE_POINTS_MAX;
                        if (errno || *e || v < lo || v > hi || (c == 'c' && predict)) {
                                fprintf(stderr, "finetuned %s: --%s '%s' is not a number in %ld..%ld\n", cmd,
                                        c == 'j' ? "threads" : "curve-points", optarg, lo, hi);
                                return 2;
                        }
                        *(c == 'j' ? &threads : &points) = v;
                        break;
                }
                case 'h': usage(stdout, predict); return 0;
                default:
                bad:
                        usage(stderr, predict);
                        return 2;
                }
        }
        int nargs = argc - optind;
        if (nargs < 2 || nargs > 3) {
                usage(stderr, predict);
                return 2;
        }
        struct ft_error err = {0};
        struct eval_model em = {0};
        struct dataset *ds = NULL;
        struct compute_ctx *ctx = NULL;
        struct eval_output out = {0};
        bool labelled = false;
        int rc = 1;
        if (threads == 0)
                threads = FT_MAX(1L, sysconf(_SC_NPROCESSORS_ONLN));
        int r = eval_model_open(argv[optind], NULL, EVAL_DEFAULT_MAX_BYTES, &em, &err);
        if (r == 0) {
                struct eval_data_options o = {
                        .path = argv[optind + 1],
                        .path2 = nargs == 3 ? argv[optind + 2] : NULL,
                        .target = target,
                        .labels_required = !predict,
                        .max_bytes = EVAL_DEFAULT_MAX_BYTES,
                };
                r = eval_data_open(&em, &o, &ds, &labelled, &err);
        }
        if (r == 0)
                r = compute_ctx_new((int)threads, &ctx, &err);
        if (r == 0)
                r = eval_run(&em, ctx, ds, labelled, NULL, &out, &err);
        if (r == 0 && predict) {
                if (output) {
                        r = eval_predictions_write(&em, &out, output, &err);
                } else {
                        char *csv = NULL;
                        size_t len = 0;
                        r = eval_predictions_csv(&em, &out, &csv, &len, &err);
                        if (r == 0 && fwrite(csv, 1, len, stdout) != len)
                                r = ft_error_set(&err, -EIO, NULL, "cannot write to stdout");
                        free(csv);
                }
        } else if (r == 0) {
                json_t *m = eval_metrics_json(&em, &out, (size_t)points, &err);
                if (!m) {
                        r = -EINVAL;
                } else {
                        json_dumpf(m, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                        fputc('\n', stdout);
                        json_decref(m);
                }
        }
        if (r < 0)
                fprintf(stderr, "finetuned %s: %s\n", cmd, err.message[0] ? err.message : strerror(-r));
        else
                rc = fflush(stdout) == 0 ? 0 : 1;
        eval_output_deinit(&out);
        dataset_free(ds);
        eval_model_deinit(&em);
        compute_ctx_free(ctx);
        return rc;
}

int evaluate_main(int argc, char **argv) {
        return run(argc, argv, false);
}

int predict_main(int argc, char **argv) {
        return run(argc, argv, true);
}
