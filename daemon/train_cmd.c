/* train_cmd.c - `finetuned train JOB.json --out DIR [--resume DIR]`: run one
 * job in the foreground through the same compute/job + compute/train path the
 * daemon's workers take. What is the CLI's own: resolving the spec's
 * references as paths (relative to the job file), opening the weights file,
 * printing the trainer's events as NDJSON on stdout (train_event_json) and a
 * progress line on stderr when it is a terminal, and where the results go:
 * model.safetensors, metrics.json (job_result_save, job_metrics_write) and
 * checkpoints/ under --out.
 *
 * Not for: loading data, sizing or checking models, the files' contents
 * (compute/job.c), the training itself (compute/train.c), queues or HTTP.
 */
#include <fnmatch.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/fileio.h"
#include "compute/compute.h"
#include "compute/estimate.h"
#include "compute/diagnostics.h"
#include "compute/imbalance.h"
#include "daemon/daemon.h"
#include "daemon/dist.h"

#define TRAIN_MAX_FILE_BYTES ((size_t)4 << 30)
#define TRAIN_MAX_SPEC_BYTES ((size_t)1 << 20)

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
        (void)sig;
        stop_requested = 1;
}

static void train_usage(FILE *out) {
        fprintf(out, "Usage: finetuned train JOB.json --out DIR [--resume DIR] [--threads N] [--verbose]\n"
                     "       finetuned train JOB.json --dry-run [--threads N]\n\n"
                     "Run the fine-tuning job JOB.json (the job spec of docs/job-spec.md) in the\n"
                     "foreground. File references in the spec are paths, relative to JOB.json's\n"
                     "directory; \"model\" is a preset name, a .safetensors path or a model spec.\n"
                     "Events go to stdout as NDJSON; a progress line goes to stderr when it is a\n"
                     "terminal. DIR receives model.safetensors, metrics.json, examples.csv (classification) and "
                     "checkpoints/.\n"
                     "SIGINT/SIGTERM stop within one batch after writing a checkpoint (exit 130).\n"
                     "Under `mpirun -np N` the ranks train one job data-parallel; rank 0 alone\n"
                     "prints events and writes DIR.\n\n"
                     "  --out DIR      where the results go (created)\n"
                     "  --resume DIR   continue from the latest checkpoint in DIR (a previous --out,\n"
                     "                 its checkpoints/ or one checkpoint directory)\n"
                     "  --threads N    OpenMP threads (default: all cores)\n"
                     "  --collective-timeout SECONDS\n"
                     "                 under mpirun: how long one allreduce may wait for the other\n"
                     "                 ranks before the job fails (default 600)\n"
                     "  --dry-run      check the job as a real run would, time a few real batches and\n"
                     "                 print the estimate as one JSON object: expected seconds, peak\n"
                     "                 memory, checkpoint bytes x keep, warnings; nothing is written\n"
                     "  --progress-events\n"
                     "                 also print a \"progress\" event per batch on stdout (the\n"
                     "                 daemon's MPI launcher reads them)\n"
                     "  --job-id ID    record ID as the job in model.safetensors' metadata\n"
                     "  -v, --verbose  after the first step, list on stderr the CPU ISA and the oneDNN\n"
                     "                 implementation of every primitive the job runs\n"
                     "  -h, --help     show this help\n");
}

struct cli {
        bool tty;
        bool verbose;
        bool progress_events; /* --progress-events: progress as NDJSON too */
        size_t progress_len;
};

/* Clear the progress line before anything else goes to the terminal. */
static void cli_clear(struct cli *c) {
        if (c->tty && c->progress_len) {
                fprintf(stderr, "\r%*s\r", (int)c->progress_len, "");
                c->progress_len = 0;
        }
}

/* One event as an NDJSON line on stdout. */
static int cli_print(struct cli *c, const struct train_event *ev) {
        cli_clear(c);
        json_t *j = train_event_json(ev);
        if (!j)
                return -ENOMEM;
        int r = json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        json_decref(j);
        if (r < 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
                return -EIO;
        return 0;
}

static int cli_on_epoch(void *ud, const struct train_epoch *e) {
        return cli_print(ud, &(struct train_event){TRAIN_EVENT_EPOCH, .epoch = e});
}

static int cli_on_checkpoint(void *ud, const struct train_checkpoint_info *info) {
        return cli_print(ud, &(struct train_event){TRAIN_EVENT_CHECKPOINT, .checkpoint = info});
}

static int cli_on_early_stop(void *ud, const struct train_early_stop *es) {
        return cli_print(ud, &(struct train_event){TRAIN_EVENT_EARLY_STOP, .early_stop = es});
}

/* A training-health guard (compute/guards.h) or the data's imbalance: the event on stdout, and on a terminal the
 * message on stderr. */
static int cli_on_warning(void *ud, const struct train_warning *w) {
        struct cli *c = ud;
        if (c->tty) { /* a person is watching; otherwise stderr stays for errors and the event says it */
                cli_clear(c);
                fprintf(stderr, "finetuned train: warning: %s: %s\n", w->code, w->message);
        }
        return cli_print(ud, &(struct train_event){TRAIN_EVENT_WARNING, .warning = w});
}

static int cli_on_final(void *ud, const struct train_final *f) {
        return cli_print(ud, &(struct train_event){TRAIN_EVENT_FINAL, .final = f});
}

/* The run's "runtime" event: on stderr a warning for every reference kernel, and with --verbose the ISA and
 * every primitive's implementation; on stdout the event. */
static int cli_on_runtime(void *ud, const struct train_runtime *rt) {
        struct cli *c = ud;
        cli_clear(c);
        for (size_t i = 0; i < rt->n_kernels; i++) {
                const struct model_kernel *k = &rt->kernels[i];
                if (model_kernel_is_reference(k))
                        fprintf(stderr,
                                "finetuned train: warning: layer '%s' %s %s runs oneDNN's reference kernel %s (%s): "
                                "expect it to be slow\n",
                                k->layer, k->primitive, k->pass, k->impl, k->formats);
        }
        if (c->verbose) {
                fprintf(stderr, "finetuned train: backend %s on %s (%s), ISA %s, %d threads, batch %d\n", rt->backend,
                        rt->device, rt->device_reason, json_string_value(json_object_get(rt->summary, "isa")) ?: "?",
                        rt->threads, rt->batch);
                for (size_t i = 0; i < rt->n_kernels; i++) {
                        const struct model_kernel *k = &rt->kernels[i];
                        fprintf(stderr, "  %-28s %-20s %-17s %-24s %s\n", k->layer, k->primitive, k->pass, k->impl,
                                k->formats);
                }
        }
        return cli_print(c, &(struct train_event){TRAIN_EVENT_RUNTIME, .runtime = rt});
}

static void cli_on_progress(void *ud, const struct train_progress *p) {
        struct cli *c = ud;
        if (c->progress_events)
                (void)cli_print(c, &(struct train_event){TRAIN_EVENT_PROGRESS, .progress = p});
        if (!c->tty)
                return;
        char line[256];
        int n = snprintf(line, sizeof(line), "epoch %u/%u  batch %zu/%zu  loss %s%.4f  eta %s%.0fs", p->epoch,
                         p->epochs, p->batch, p->batches, p->has_loss ? "" : "~", p->has_loss ? p->train_loss : 0.0,
                         p->has_eta ? "" : "~", p->has_eta ? p->eta_seconds : 0.0);
        if (n < 0)
                return;
        fprintf(stderr, "\r%s", line);
        if ((size_t)n < c->progress_len)
                fprintf(stderr, "%*s", (int)(c->progress_len - (size_t)n), "");
        c->progress_len = (size_t)n;
        fflush(stderr);
}

static double run_deadline; /* limits.max_runtime_seconds as a monotonic time; 0: none */
static bool timed_out;

static bool cli_should_stop(void *ud) {
        (void)ud;
        if (run_deadline > 0 && ft_now_monotonic() >= run_deadline)
                timed_out = true;
        return stop_requested != 0 || timed_out;
}

/* ---- references --------------------------------------------------------------- */

/* ref relative to the job file's directory; -ENAMETOOLONG (err naming param) when the result does not fit. */
static int resolve(const char *base_dir, const char *ref, char *out, size_t size, const char *param,
                   struct ft_error *err) {
        int r = ref[0] == '/' ? ft_path_join(out, size, ref, NULL) : ft_path_join(out, size, base_dir, ref, NULL);
        return r < 0 ? ft_error_set(err, r, param, "'%s': the path '%.64s...' is too long", param, ref) : 0;
}

static bool ends_with(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool looks_like_idx(const char *path) {
        return strstr(path, "idx3") || strstr(path, "idx1") || ends_with(path, ".idx");
}

/* The data a spec field names, as paths relative to the job file: a CSV, or an IDX pair ([images, labels], or
 * an images file whose labels file follows the usual naming). */
static int load_data(const char *base_dir, const char refs[2][JOBSPEC_REF_MAX], const struct jobspec *spec,
                     const char *param, struct dataset **ret, struct ft_error *err) {
        char a[PATH_MAX], b[PATH_MAX];
        bool pair = refs[1][0] != 0;
        int r = resolve(base_dir, refs[0], a, sizeof(a), param, err);
        if (r < 0)
                return r;
        if (pair) {
                r = resolve(base_dir, refs[1], b, sizeof(b), param, err);
                if (r < 0)
                        return r;
        } else if (looks_like_idx(a)) {
                if (idx_labels_path(a, b, sizeof(b)) < 0)
                        return ft_error_set(err, -EINVAL, param,
                                            "'%s': give the IDX labels file too: [\"images\", \"labels\"]", param);
                pair = true;
        }
        struct job_data_source src = {
                .path = a,
                .path2 = pair ? b : NULL,
                .param = param,
                .max_bytes = TRAIN_MAX_FILE_BYTES,
        };
        return job_data_open(spec, &src, ret, err);
}

/* ---- the model ------------------------------------------------------------------- */

/* The base model: "model" is a preset name, a .safetensors path, or an object ({"preset", "options"} or a
 * full spec, either with "weights": a path); compute/job builds it, sized to the data. */
static int build_model(const char *base_dir, const struct jobspec *spec, const struct dataset *ds, struct model **ret,
                       struct ft_error *err) {
        struct job_model_source src = {0};
        json_t *mspec = NULL;
        char weights[PATH_MAX] = "";
        struct st_file *f = NULL;
        int r;

        if (spec->model_spec) {
                const json_t *preset = json_object_get(spec->model_spec, "preset");
                const json_t *w = json_object_get(spec->model_spec, "weights");
                if (w && !json_is_string(w))
                        return ft_error_set(err, -EINVAL, "model.weights", "'model.weights' must be a path");
                if (w &&
                    (r = resolve(base_dir, json_string_value(w), weights, sizeof(weights), "model.weights", err)) < 0)
                        return r;
                if (preset && !json_is_string(preset))
                        return ft_error_set(err, -EINVAL, "model.preset", "'model.preset' must be a preset name");
                if (preset) {
                        src.preset = json_string_value(preset);
                        src.options = json_object_get(spec->model_spec, "options");
                } else {
                        mspec = json_deep_copy(spec->model_spec);
                        if (!mspec)
                                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                        json_object_del(mspec, "weights");
                        src.spec = mspec;
                }
        } else if (model_preset_exists(spec->model_ref)) {
                src.preset = spec->model_ref;
        } else {
                /* a model saved by finetuned: the spec and class names are in its metadata */
                r = resolve(base_dir, spec->model_ref, weights, sizeof(weights), "model", err);
                if (r < 0)
                        return r;
        }
        if (weights[0]) {
                r = st_file_open(weights, TRAIN_MAX_FILE_BYTES, &f, err);
                if (r < 0) {
                        if (err)
                                snprintf(err->param, sizeof(err->param), "model");
                        goto out;
                }
                src.weights = f;
                src.weights_label = weights;
        }
        r = job_model_build(spec, &src, ds, ret, NULL, err);
out:
        st_file_free(f);
        json_decref(mspec);
        return r;
}

static int read_file(const char *path, size_t max, char **ret, size_t *ret_len, struct ft_error *err) {
        FILE *f = fopen(path, "rb");
        if (!f)
                return ft_error_set(err, -errno, NULL, "cannot open '%s': %s", path, strerror(errno));
        char *buf = malloc(max + 1);
        size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
        bool bad = ferror(f);
        fclose(f);
        if (!buf)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        if (bad || n > max) {
                free(buf);
                return ft_error_set(err, bad ? -EIO : -EFBIG, NULL, "'%s' %s", path,
                                    bad ? "cannot be read" : "is larger than 1 MiB");
        }
        buf[n] = 0;
        *ret = buf;
        *ret_len = n;
        return 0;
}

/* --dry-run: the estimate of compute/estimate.h as one JSON object on stdout (docs/job-spec.md "Dry runs"). */
static int dry_run_print(const struct jobspec *spec, struct model *m, struct compute_ctx *ctx,
                         const struct dataset *train, const struct dataset *val, int threads, uint64_t rss_before,
                         struct ft_error *err) {
        struct job_estimate e;
        int r = job_estimate_run(spec, m, ctx, train, val, &e, err);
        if (r < 0)
                return r;
        e.peak_memory_bytes = e.peak_memory_bytes > rss_before ? e.peak_memory_bytes - rss_before : 0;
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        json_t *warnings = json_array();
        if (threads > 0 && cores > 0 && threads > cores)
                json_array_append_new(warnings,
                                      json_sprintf("--threads %d exceeds the %ld cores: threads wait for each "
                                                   "other and the run is slower than with %ld",
                                                   threads, cores, cores));
        json_t *doc = json_pack("{s:s,s:b,s:o,s:i,s:o}", "type", "dry_run", "valid", true, "estimate",
                                job_estimate_json(&e), "threads", compute_ctx_threads(ctx), "warnings", warnings);
        char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        if (!text)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        printf("%s\n", text);
        fflush(stdout);
        free(text);
        return 0;
}

int train_main(int argc, char **argv) {
        static const struct option opts[] = {
                {"out", required_argument, NULL, 'o'},
                {"resume", required_argument, NULL, 'r'},
                {"threads", required_argument, NULL, 't'},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {"collective-timeout", required_argument, NULL, 'T'},
                {"progress-events", no_argument, NULL, 'P'},
                {"job-id", required_argument, NULL, 'J'},
                {"dry-run", no_argument, NULL, 'D'},
                {0},
        };
        const char *out = NULL, *resume = NULL, *job_id = NULL;
        int threads = 0, c;
        double coll_timeout = DIST_TIMEOUT_DEFAULT;
        bool verbose = false, dry_run = false, progress_events = false;
        optind = 1;
        while ((c = getopt_long(argc, argv, "ho:v", opts, NULL)) != -1) {
                switch (c) {
                case 'v': verbose = true; break;
                case 'D': dry_run = true; break;
                case 'o': out = optarg; break;
                case 'r': resume = optarg; break;
                case 't': {
                        char *e;
                        long v = strtol(optarg, &e, 10);
                        if (*e || e == optarg || v < 0 || v > COMPUTE_THREADS_MAX) {
                                fprintf(stderr, "finetuned train: --threads '%s' is not a thread count\n", optarg);
                                return 2;
                        }
                        threads = (int)v;
                        break;
                }
                case 'T': {
                        char *e;
                        coll_timeout = strtod(optarg, &e);
                        if (*e || e == optarg || !(coll_timeout > 0 && coll_timeout <= 86400)) {
                                fprintf(stderr, "finetuned train: --collective-timeout '%s' is not from 0 to 86400 s\n",
                                        optarg);
                                return 2;
                        }
                        break;
                }
                case 'P': progress_events = true; break;
                case 'J':
                        if (!optarg[0] || strlen(optarg) > 64 ||
                            strspn(optarg, "abcdefghijklmnopqrstuvwxyz"
                                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != strlen(optarg)) {
                                fprintf(stderr,
                                        "finetuned train: --job-id '%.80s' is not 1 to 64 letters, digits, "
                                        "'_' or '-'\n",
                                        optarg);
                                return 2;
                        }
                        job_id = optarg;
                        break;
                case 'h': train_usage(stdout); return 0;
                default: train_usage(stderr); return 2;
                }
        }
        if (argc - optind != 1 || (!out && !dry_run)) {
                train_usage(stderr);
                return 2;
        }
        const char *job_path = argv[optind];
        struct ft_error err = {0};
        struct jobspec spec;
        struct dataset *train = NULL, *val = NULL;
        struct model *m = NULL;
        struct compute_ctx *ctx = NULL;
        struct train_result res = {0};
        char *text = NULL, *ckpt = NULL;
        struct dist *dist = NULL;
        const struct train_collective *coll = NULL;
        bool report = true; /* rank 0, or one process: prints events and writes --out */
        size_t len = 0;
        int status = 1, r;
        char base_dir[PATH_MAX], path[PATH_MAX], ckpt_dir[PATH_MAX];

        uint64_t rss_before = job_estimate_rss(); /* the dry run's memory counts from here */
        jobspec_init(&spec);
        if (dist_launched()) {
                if (dist_open(coll_timeout, &dist, &err) < 0) {
                        fprintf(stderr, "finetuned train: started by an MPI launcher, but %s\n", err.message);
                        goto out;
                }
                coll = dist_collective(dist);
                report = coll->rank == 0;
        }
        snprintf(path, sizeof(path), "%s", job_path);
        snprintf(base_dir, sizeof(base_dir), "%s", dirname(path));
        if (read_file(job_path, TRAIN_MAX_SPEC_BYTES, &text, &len, &err) < 0 ||
            jobspec_parse_string(text, len, &spec, &err) < 0) {
                fprintf(stderr, "finetuned train: '%s': %s\n", job_path, err.message);
                goto out;
        }
        if (spec.from_checkpoint.given) {
                fprintf(stderr,
                        "finetuned train: '%s': from_checkpoint: names a job of the daemon; here give the "
                        "checkpoint's model.safetensors as 'model' (it carries its spec)\n",
                        job_path);
                goto out;
        }
        /* 'device' first: a job that asks for a GPU it cannot have fails before reading its data */
        if (compute_ctx_new_on(threads, (enum compute_device)spec.device, 0, &ctx, &err) < 0) {
                fprintf(stderr, "finetuned train: '%s': %s\n", job_path, err.message);
                goto out;
        }
        if (load_data(base_dir, spec.training_file, &spec, "training_file", &train, &err) < 0 ||
            (spec.validation_file[0][0] &&
             load_data(base_dir, spec.validation_file, &spec, "validation_file", &val, &err) < 0)) {
                fprintf(stderr, "finetuned train: %s\n", err.message);
                goto out;
        }
        if (build_model(base_dir, &spec, train, &m, &err) < 0) {
                fprintf(stderr, "finetuned train: %s%s%s\n", err.param[0] ? err.param : "", err.param[0] ? ": " : "",
                        err.message);
                goto out;
        }
        if (dry_run) {
                status = dry_run_print(&spec, m, ctx, train, val, threads, rss_before, &err) < 0 ? 1 : 0;
                if (status)
                        fprintf(stderr, "finetuned train: --dry-run: %s\n", err.message);
                goto out;
        }
        if (fileio_mkdir_p(out, 0755, &err) < 0) {
                fprintf(stderr, "finetuned train: %s\n", err.message);
                goto out;
        }
        if (resume && train_checkpoint_find_latest(resume, &ckpt, &err) < 0) {
                fprintf(stderr, "finetuned train: --resume: %s\n", err.message);
                goto out;
        }

        struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);

        struct cli cli = {
                .tty = report && isatty(STDERR_FILENO), .verbose = verbose, .progress_events = progress_events};
        struct train_callbacks quiet = {.should_stop = cli_should_stop}; /* ranks other than 0 */
        struct train_callbacks cb = {
                .userdata = &cli,
                .on_epoch = cli_on_epoch,
                .on_progress = cli_on_progress,
                .on_checkpoint = cli_on_checkpoint,
                .on_early_stop = cli_on_early_stop,
                .on_warning = cli_on_warning,
                .on_final = cli_on_final,
                .on_runtime = cli_on_runtime,
                .should_stop = cli_should_stop,
        };
        /* every file this run writes is a short name under out/ or out/checkpoints/ckpt-<step>/ */
        if (ft_path_join(ckpt_dir, sizeof(ckpt_dir), out, "checkpoints", "ckpt-18446744073709551615",
                         "optimizer.safetensors", NULL) < 0) {
                fprintf(stderr, "finetuned train: '--out %.64s...': the path is too long\n", out);
                goto out;
        }
        ft_path_join(ckpt_dir, sizeof(ckpt_dir), out, "checkpoints", NULL);
        struct train_options topt = {
                .checkpoint_dir = report ? ckpt_dir : NULL,
                .resume_from = ckpt,
                .collective = coll,
        };
        if (spec.limits.max_runtime_seconds)
                run_deadline = ft_now_monotonic() + spec.limits.max_runtime_seconds;
        char imbalance[512]; /* the daemon says it at submit; here before the first epoch */
        if (report && spec.task.type == JOBSPEC_TASK_CLASSIFICATION &&
            imbalance_message(train->class_names, train->class_counts, train->n_classes, spec.class_weights != NULL,
                              imbalance, sizeof(imbalance)))
                (void)cli_on_warning(&cli, &(struct train_warning){.code = "class_imbalance", .message = imbalance});
        r = train_run(&spec, m, ctx, train, val, &topt, report ? &cb : &quiet, &res, &err);
        if (cli.tty && cli.progress_len)
                fprintf(stderr, "\n");
        if (r == -ECANCELED && timed_out) {
                if (report)
                        fprintf(stderr,
                                "finetuned train: timeout: 'limits.max_runtime_seconds' (%u s) ran out; the "
                                "checkpoint stays: continue with --resume %s\n",
                                spec.limits.max_runtime_seconds, out);
                status = 124;
                goto out;
        }
        if (r == -ECANCELED) {
                if (report)
                        fprintf(stderr, "finetuned train: stopped; continue with --resume %s\n", out);
                status = 130;
                goto out;
        }
        if (r < 0) {
                fprintf(stderr, "finetuned train: %s%s%s\n", err.param[0] ? err.param : "", err.param[0] ? ": " : "",
                        err.message);
                goto out;
        }
        if (!report) {
                status = 0;
                goto out;
        }
        ft_path_join(path, sizeof(path), out, "model.safetensors", NULL); /* fits: checked above */
        if (job_result_save(path, m, &spec, train, &res, job_id, &err) < 0) {
                fprintf(stderr, "finetuned train: %s\n", err.message);
                goto out;
        }
        (void)chmod(path, 0644);
        ft_path_join(path, sizeof(path), out, "metrics.json", NULL);
        if (job_metrics_write(path, &res, &err) < 0) {
                fprintf(stderr, "finetuned train: %s\n", err.message);
                goto out;
        }
        ft_path_join(path, sizeof(path), out, "examples.csv", NULL); /* per-example diagnostics */
        if (res.diagnostics && diag_csv_write(path, res.diagnostics, train->class_names, &err) < 0) {
                fprintf(stderr, "finetuned train: %s\n", err.message);
                goto out;
        }
        if (cli.tty) {
                bool cls = res.final.classification;
                fprintf(stderr,
                        "finetuned train: %s %s %.4f after %u epochs; wrote %s/model.safetensors and metrics.json\n",
                        res.final.on_validation ? "validation" : "training", cls ? "accuracy" : "r2",
                        cls ? res.final.cls.accuracy : res.final.reg.r2, res.epochs_run, out);
        }
        status = 0;
out:
        train_result_deinit(&res);
        model_free(m);
        compute_ctx_free(ctx);
        dataset_free(train);
        dataset_free(val);
        jobspec_deinit(&spec);
        free(text);
        free(ckpt);
        dist_close(dist);
        return status;
}
