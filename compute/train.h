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
 * Not for: resolving ids or paths, loading the base model or the datasets,
 * head replacement (the caller builds the model with as many outputs as the
 * data has classes), or saving the final model (the caller does, with the
 * preprocessing that train_run returns).
 *
 * Events (json objects handed to on_event; the API streams the same objects):
 *   {"type": "epoch", "epoch", "epochs", "step", "train_loss", "val_loss",
 *    "val_accuracy", "val_f1", "val_precision", "val_recall" (macro) | "val_mse", "val_rmse", "val_mae", "val_r2",
 *    "lr", "seconds", "samples_per_sec"}        one per epoch (val_* null when there is no validation data)
 *   {"type": "checkpoint", "epoch", "step", "partial"}      after one is durable
 *   {"type": "early_stopping", "epoch", "best_epoch", "metric", "best_value"}
 *   {"type": "metrics", "split": "validation" | "training", "best_epoch", "epochs_run",
 *    "stopped_early", "metrics": {...}}          once, at the end (see metrics.h for the object)
 * Progress (handed to on_progress, at most TRAIN_PROGRESS_HZ times a second):
 *   {"type": "progress", "epoch", "epochs", "step", "steps", "batch", "batches", "eta_seconds", "train_loss"}
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"
#include "compute/context.h"
#include "compute/data.h"
#include "compute/jobspec.h"
#include "compute/model.h"

#define TRAIN_PROGRESS_HZ 4

struct train_checkpoint_info {
        const char *path; /* the checkpoint directory, durable when the callback runs */
        unsigned epoch; /* completed epochs */
        uint64_t step; /* optimizer steps taken */
        bool partial; /* written on cancel, in the middle of an epoch */
};

struct train_callbacks {
        void *userdata;
        /* An event (borrowed; incref to keep it). A negative return aborts the run with that code. */
        int (*on_event)(void *userdata, const json_t *event);
        /* A progress object (borrowed). */
        void (*on_progress)(void *userdata, const json_t *progress);
        /* A checkpoint is durable at info->path. A negative return aborts the run. */
        int (*on_checkpoint)(void *userdata, const struct train_checkpoint_info *info);
        /* Polled before every training and validation batch; true stops the run within that batch: a partial
         * checkpoint is written (when checkpoints are on) and train_run returns -ECANCELED. During the final
         * evaluation no checkpoint is written: the last epoch's checkpoint resumes straight into it. */
        bool (*should_stop)(void *userdata);
};

struct train_options {
        /* Directory for checkpoints (created if missing): ckpt-<step>/ with model.safetensors,
         * optimizer.safetensors, [best.safetensors,] state.json. NULL: no checkpoints. */
        const char *checkpoint_dir;
        /* A checkpoint directory (one ckpt-<step>) to continue from; NULL: start fresh. The model passed in
         * must have been built the same way as for the original run (same spec, same base weights). */
        const char *resume_from;
};

struct train_result {
        json_t *metrics; /* the final "metrics" event's object (owned) */
        json_t *history; /* array of the epoch events (owned) */
        unsigned best_epoch; /* 0 when early stopping is off */
        unsigned epochs_run;
        bool stopped_early;
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
