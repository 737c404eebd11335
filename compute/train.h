/* train.h - the fine-tuning loop: run a job spec against a model and datasets,
 * with a strategy (full, partial, layerwise), a schedule, validation every
 * epoch, early stopping with best-weight restore, checkpoints that resume
 * bit-identically, and cancellation within one batch.
 *
 * The loop reports through callbacks and never prints, logs or touches the
 * store: `finetuned train` prints the events as NDJSON, the daemon's worker
 * stores them. Checkpoints are the one thing it writes, to the directory the
 * caller names, each atomically (see train_checkpoint_*).
 *
 * Before it trains, train_run applies compute/job's job_check to the model
 * and data it was given (the one model/data check, also the API's).
 *
 * Not for: resolving ids or paths, loading the base model or the datasets,
 * head replacement (compute/job.h builds the model with as many outputs as
 * the data has classes), or saving the final model (job_result_save, with the
 * preprocessing that train_run returns).
 *
 * Events are structs handed to typed callbacks (struct train_callbacks); train_event_json is the one
 * serialiser to the wire format that `finetuned train` prints as NDJSON, the daemon stores and the API streams
 * (docs/api.md, the dashboard and the tests read it):
 *   {"type": "epoch", "epoch", "epochs", "step", "train_loss", "val_loss",
 *    "val_accuracy", "val_f1", "val_precision", "val_recall" (macro) | "val_mse", "val_rmse", "val_mae", "val_r2",
 *    "lr", "seconds", "samples_per_sec"}        one per epoch (val_* null when there is no validation data)
 *   {"type": "checkpoint", "epoch", "step", "partial"}      after one is durable
 *   {"type": "early_stopping", "epoch", "best_epoch", "metric", "best_value"}
 *   {"type": "metrics", "split": "validation" | "training", "best_epoch", "epochs_run",
 *    "stopped_early", "metrics": {...}}          once, at the end (see metrics.h for the object)
 *   {"type": "runtime", "backend", "device_used", "device_reason", "threads", "batch", "isa", "primitives",
 * "implementations", "reference", ...} after each run's first training step (model_kernels_report)
 *   {"type": "progress", "epoch", "epochs", "step", "steps", "batch", "batches", "eta_seconds", "train_loss"}
 *                                               at most TRAIN_PROGRESS_HZ times a second
 *   {"type": "warning", "code", "epoch", "message", ["tensor",] ["batch",] ["best_epoch"]}
 *                                               a training-health guard fired (compute/guards.h)
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"
#include "compute/context.h"
#include "compute/data.h"
#include "compute/jobspec.h"
#include "compute/metrics.h"
#include "compute/metrics_curves.h"
#include "compute/model.h"

#define TRAIN_PROGRESS_HZ 4

struct diag_report; /* compute/diagnostics.h */

/* ---- events ------------------------------------------------------------------ */

/* One epoch's report. The val_* fields hold values only when `validated` (there was validation data); which
 * of them exist depends on the task. */
struct train_epoch {
        unsigned epoch; /* completed epochs, 1-based */
        unsigned epochs; /* hyperparameters.epochs */
        uint64_t step; /* optimizer steps taken */
        double train_loss; /* mean over the epoch's samples */
        bool classification;
        bool validated;
        double val_loss;
        double val_accuracy, val_f1, val_precision, val_recall; /* classification, macro averages */
        double val_mse, val_rmse, val_mae, val_r2; /* regression */
        double lr; /* the rate of the epoch's last step */
        double seconds; /* the epoch's wall time, validation included (ms resolution) */
        double samples_per_sec; /* training samples per second of training time */
};

/* An epoch's metric by name (jobspec_metric_mode's names: "train_loss", "val_loss", "val_f1", ...), looked up
 * in one table: true with *ret when the epoch has it (val_* need validation and the task's kind). */
bool train_epoch_metric(const struct train_epoch *e, const char *name, double *ret);

struct train_progress {
        unsigned epoch; /* the epoch running, 1-based */
        unsigned epochs;
        uint64_t step, steps; /* optimizer steps taken, and in the whole run */
        size_t batch, batches; /* batches done in this epoch, and per epoch */
        bool has_eta;
        double eta_seconds; /* 0.1 s resolution */
        bool has_loss;
        double train_loss; /* the epoch's running mean */
};

struct train_checkpoint_info {
        const char *path; /* the checkpoint directory, durable when the callback runs */
        unsigned epoch; /* completed epochs */
        uint64_t step; /* optimizer steps taken */
        bool partial; /* written on cancel, in the middle of an epoch */
};

struct train_early_stop {
        unsigned epoch; /* the epoch that ran out of patience */
        unsigned best_epoch;
        const char *metric; /* early_stopping.metric */
        double best_value;
};

/* Calibration of the final evaluation's probabilities (classification): the ECE and reliability diagram at
 * T = 1 and, with calibration.temperature_scaling, the temperature fitted on the validation split (a 1-D
 * golden-section search on the NLL, metrics_temperature_fit) with the same after scaling. */
struct train_calibration {
        bool computed;
        struct metrics_calibration before;
        bool scaled;
        double temperature; /* 1 unless scaled */
        double nll_before, nll_after;
        struct metrics_calibration after;
};
/* Fill *ret from the final evaluation's logits (n x k) and labels (train_calibration.c). */
int train_calibration(const struct jobspec *spec, const float *logits, const int32_t *labels, size_t n, size_t k,
                      bool on_validation, struct train_calibration *ret, struct ft_error *err);
/* {"ece", "mce", "bins", "samples", "reliability", "temperature_scaling": null | {"temperature", "nll_before",
 * "nll_after", "ece", "mce", "reliability"}} */
json_t *train_calibration_json(const struct train_calibration *c);

/* The final evaluation, on the validation data (or the training data when there is none), with the best
 * epoch's weights when early stopping restored them. */
struct train_final {
        bool classification;
        bool on_validation; /* "split": "validation", else "training" */
        bool has_best; /* early stopping ran: best_epoch is set */
        unsigned best_epoch;
        unsigned epochs_run;
        bool stopped_early;
        double loss;
        struct metrics_classification cls; /* classification (arrays owned: train_result_deinit) */
        struct metrics_regression reg; /* regression */
        char *const *class_names; /* the training data's class names (borrowed: valid while it lives) */
        struct train_calibration calibration; /* classification */
};

/* A training-health guard's report (compute/guards.h), or the data's (a class imbalance at submit). */
struct train_warning {
        const char *code; /* "nonfinite", "loss_not_decreasing", "overfitting", "frozen_tensor_changed",
                           * "diverging", "class_imbalance" */
        unsigned epoch; /* the epoch it concerns (1-based), 0: before training */
        const char *message; /* what happened and what to do, for a person */
        const char *tensor; /* nonfinite, frozen_tensor_changed: the tensor's name; else NULL */
        size_t batch; /* nonfinite: the batch of the epoch (1-based); else 0 */
        unsigned best_epoch; /* overfitting: the epoch with the lowest validation loss; else 0 */
};

/* What the first training step of a run ran on. */
struct train_runtime {
        const char *backend; /* compute_ctx_backend_name */
        const char *device; /* compute_ctx_device: "cpu", "cuda" (the event's "device_used") */
        const char *device_reason; /* compute_ctx_device_reason (the event's "device_reason") */
        int threads;
        int batch; /* the batch size of that step */
        const struct model_kernel *kernels; /* every primitive the step created (borrowed, valid during the
                                             * callback), model_kernels() */
        size_t n_kernels;
        const json_t *summary; /* model_kernels_report(): isa, primitives, implementations, reference (borrowed);
                                * NULL when the backend reports none */
};

enum train_event_type {
        TRAIN_EVENT_EPOCH,
        TRAIN_EVENT_PROGRESS,
        TRAIN_EVENT_CHECKPOINT,
        TRAIN_EVENT_EARLY_STOP,
        TRAIN_EVENT_FINAL,
        TRAIN_EVENT_RUNTIME,
        TRAIN_EVENT_WARNING,
};

/* Any one event, for the serialiser. */
struct train_event {
        enum train_event_type type;
        union {
                const struct train_epoch *epoch;
                const struct train_progress *progress;
                const struct train_checkpoint_info *checkpoint;
                const struct train_early_stop *early_stop;
                const struct train_final *final;
                const struct train_runtime *runtime;
                const struct train_warning *warning;
        };
};

/* The event's "type" on the wire: "epoch", "progress", "checkpoint", "early_stopping", "metrics", "runtime",
 * "warning". */
const char *train_event_type_name(enum train_event_type type);
/* The event as its wire object (the formats above, keys in that order); a new reference, NULL when out of
 * memory. The one struct -> JSON step: the CLI's NDJSON, the daemon's stored events and progress, checkpoints'
 * history and metrics.json all go through it. */
json_t *train_event_json(const struct train_event *ev);
/* An "epoch" object back into its struct (checkpoints keep the history as state.json, a file): 0, or -EINVAL
 * when a field is missing or of the wrong type. */
int train_epoch_from_json(const json_t *j, bool classification, struct train_epoch *ret);
/* A "progress" object back into its struct (the daemon reads `finetuned train --progress-events` under its MPI
 * launcher): 0, or -EINVAL when a field is missing or of the wrong type. */
int train_progress_from_json(const json_t *j, struct train_progress *ret);

struct train_callbacks {
        void *userdata;
        /* After each epoch's validation (and early-stopping decision). A negative return aborts the run. */
        int (*on_epoch)(void *userdata, const struct train_epoch *e);
        /* Progress within an epoch, at most TRAIN_PROGRESS_HZ times a second. */
        void (*on_progress)(void *userdata, const struct train_progress *p);
        /* A checkpoint is durable at info->path (the "checkpoint" event). A negative return aborts the run. */
        int (*on_checkpoint)(void *userdata, const struct train_checkpoint_info *info);
        /* Early stopping ran out of patience (after that epoch's on_epoch). */
        int (*on_early_stop)(void *userdata, const struct train_early_stop *es);
        /* The final metrics, once, before train_run returns them in its result. */
        int (*on_final)(void *userdata, const struct train_final *f);
        /* After the run's first training step. */
        int (*on_runtime)(void *userdata, const struct train_runtime *rt);
        /* A training-health guard fired (compute/guards.h): after that epoch's on_epoch, or right before the run
         * fails with the nonfinite guard's error. A negative return aborts the run. NULL: not reported. */
        int (*on_warning)(void *userdata, const struct train_warning *w);
        /* Polled before every training and validation batch; true stops the run within that batch: a partial
         * checkpoint is written (when checkpoints are on) and train_run returns -ECANCELED. During the final
         * evaluation no checkpoint is written: the last epoch's checkpoint resumes straight into it. */
        bool (*should_stop)(void *userdata);
        /* Right before a written checkpoint is renamed into place (info->path is where it will be). A negative
         * return abandons it: the temporary directory is removed, nothing is renamed, and the run aborts with
         * that code. The daemon checks here that its attempt still holds the job, so a worker that lost its
         * lease (frozen, then thawed) never replaces a checkpoint. NULL: always commit. */
        int (*before_checkpoint_commit)(void *userdata, const struct train_checkpoint_info *info);
};

/* Data-parallel training: the collectives one replica of a run uses to agree with the others (daemon/dist.c
 * implements them over MPI). Every replica runs train_run with the same spec, data and model; each batch is split
 * into `size` contiguous shards of rows (rank r takes rows [n*r/size, n*(r+1)/size)), each replica computes the
 * gradient of its shard weighted by its share of the batch, the gradient span is sum-allreduced, and every replica
 * takes the identical optimizer step; BatchNorm buffers follow rank 0's after every step. Each call returns 0 or a
 * negative errno with err set; after a failure the run ends with that error. */
struct train_collective {
        int rank, size;
        void *userdata;
        /* In place, over every replica: buf[i] = sum of buf[i]. */
        int (*allreduce_f32)(void *userdata, float *buf, size_t n, struct ft_error *err);
        int (*allreduce_f64)(void *userdata, double *buf, size_t n, struct ft_error *err);
        /* rank 0's bytes into every replica's buf */
        int (*broadcast)(void *userdata, void *buf, size_t bytes, struct ft_error *err);
};

struct train_options {
        /* Directory for checkpoints (created if missing): ckpt-<step>/ with model.safetensors,
         * optimizer.safetensors, [best.safetensors,] state.json. NULL: no checkpoints. */
        const char *checkpoint_dir;
        /* A checkpoint directory (one ckpt-<step>) to continue from; NULL: start fresh. The model passed in
         * must have been built the same way as for the original run (same spec, same base weights). */
        const char *resume_from;
        /* Appended to every temporary name the run writes under checkpoint_dir (".tmp-ckpt-<step>-<tag>"), so
         * two runs of one job (the daemon's attempts: "a<attempt>") never write the same temporary files.
         * NULL or "": ".tmp-ckpt-<step>". Letters, digits, '-' and '_' only. */
        const char *temp_tag;

        /* Data-parallel replica (see struct train_collective); NULL: one process. Only the replica that should
         * report passes callbacks that print and a checkpoint_dir. */
        const struct train_collective *collective;
};

struct train_result {
        struct train_final final; /* what on_final reported (its arrays owned) */
        struct train_epoch *history; /* every epoch's report, in order (owned; a resumed run's include the epochs
                                      * before the checkpoint) */
        size_t n_history;
        unsigned best_epoch; /* 0 when early stopping is off */
        unsigned epochs_run;
        bool stopped_early;
        /* Classification: the final evaluation's per-example diagnostics (compute/diagnostics.h; owned), NULL
         * for regression or above DIAG_EXAMPLES_MAX / DIAG_LOGITS_MAX. */
        struct diag_report *diagnostics;
        /* The preprocessing fitted on the training split (standardization statistics, image transform), to
         * save with the model. Release with data_transform_deinit (train_result_deinit does). */
        struct data_transform transform;
};

void train_result_deinit(struct train_result *r);

/* Train `m` (built, initialised or loaded; not yet prepared) on `train` with the validation data `val`
 * (NULL: spec->validation_split of `train`, stratified for classification). ctx belongs to the calling
 * thread. On success m holds the final weights (the best epoch's when early stopping restored them) and
 * *ret is filled. Errors: -EINVAL with err->param naming the job spec field (or err naming the data
 * problem), -ECANCELED when should_stop asked, -EIO for checkpoint writes, or a callback's code. */
int train_run(const struct jobspec *spec, struct model *m, struct compute_ctx *ctx, const struct dataset *train,
              const struct dataset *val, const struct train_options *opt, const struct train_callbacks *cb,
              struct train_result *ret, struct ft_error *err);

/* The latest checkpoint (highest step) under dir, which is either one checkpoint itself (has state.json)
 * or a directory of ckpt-<step>/ checkpoints. *ret_path is malloc'd. -ENOENT when there is none. */
int train_checkpoint_find_latest(const char *dir, char **ret_path, struct ft_error *err);

/* Apply spec->strategy to m: freeze/unfreeze by glob, BatchNorm mode, per-tensor lr multipliers
 * (layer_decay^depth for layerwise times the first matching lr_multipliers glob). Called by train_run;
 * public for tests and for the API to preview. Errors name "strategy.freeze[i]" etc. */
int train_apply_strategy(const struct jobspec *spec, struct model *m, struct ft_error *err);

/* The layer depth of each model tensor counted from the head (0 = the head), as layerwise decay uses it:
 * tensors are grouped by their top-level module ("conv1", "fc", "0" in a Sequential) or, inside a ResNet
 * stage, by block ("layer1.0"); a top-level BatchNorm joins the group before it (conv1 + bn1). ret_depth
 * has model_tensor_count(m) entries. Returns the number of groups. */
int train_layer_depths(struct model *m, int *ret_depth);
