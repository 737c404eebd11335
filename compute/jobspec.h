/* jobspec.h - the job spec (ARCHITECTURE.md "The job spec"): parse and validate
 * the JSON a user sends to POST /v1/jobs or gives to `finetuned train` into a
 * plain struct with every default filled in.
 *
 * Not for: resolving ids ("mdl_...", "ds_...") or paths to data, loading
 * anything, or running the job (compute/train.h does that). The API and the
 * CLI both call jobspec_parse(), so a spec that one accepts the other accepts.
 *
 * Every field and its default is documented in docs/job-spec.md. An unknown
 * field, a wrong type or an impossible value is an error whose `param` names
 * the field with dots and indices ("hyperparameters.learning_rate",
 * "preprocess.normalize.mean[1]"); nothing is silently defaulted.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Limits on everything a client controls. */
#define JOBSPEC_REF_MAX 1024 /* model / file references (ids or paths) */
#define JOBSPEC_NAME_MAX 256 /* target column, glob patterns */
#define JOBSPEC_GLOBS_MAX 64 /* freeze / trainable / lr_multipliers entries */
#define JOBSPEC_CHANNELS_MAX 4 /* normalize mean/std entries */
#define JOBSPEC_EPOCHS_MAX 100000
#define JOBSPEC_BATCH_MAX 65536
#define JOBSPEC_RESIZE_MAX 4096
#define JOBSPEC_RANKS_MAX 1024 /* resources.ranks */
#define JOBSPEC_RUNTIME_MAX (366u * 24 * 3600) /* limits.max_runtime_seconds: a year */
#define JOBSPEC_ATTEMPTS_MAX 100 /* limits.max_attempts (the store's limit) */
#define JOBSPEC_MODEL_SPEC_MAX 65536 /* bytes of an inline model spec, serialized */
#define JOBSPEC_CLASS_WEIGHTS_MAX 100000 /* hyperparameters.class_weights entries (DATA_CLASSES_MAX) */
#define JOBSPEC_CLASS_WEIGHT_MAX 1e6

enum jobspec_task {
        JOBSPEC_TASK_CLASSIFICATION,
        JOBSPEC_TASK_REGRESSION,
};

enum jobspec_optimizer {
        JOBSPEC_OPT_GD, /* full-batch gradient descent: one step per epoch over all rows */
        JOBSPEC_OPT_SGD, /* minibatch SGD, no momentum */
        JOBSPEC_OPT_MOMENTUM, /* SGD with heavy-ball momentum (torch.optim.SGD momentum=m) */
        JOBSPEC_OPT_NESTEROV, /* SGD with Nesterov momentum */
        JOBSPEC_OPT_ADAM, /* L2 weight decay added to the gradient */
        JOBSPEC_OPT_ADAMW, /* decoupled weight decay */
};

enum jobspec_schedule {
        JOBSPEC_SCHED_CONSTANT,
        JOBSPEC_SCHED_STEP, /* lr * gamma^floor(epoch / step_size) */
        JOBSPEC_SCHED_COSINE, /* cosine from lr to min_lr over the steps after warmup */
        JOBSPEC_SCHED_LINEAR, /* linear from lr to min_lr over the steps after warmup */
};

enum jobspec_strategy {
        JOBSPEC_STRATEGY_FULL, /* every parameter trains */
        JOBSPEC_STRATEGY_PARTIAL, /* freeze / trainable globs */
        JOBSPEC_STRATEGY_LAYERWISE, /* layer_decay^depth and lr_multipliers */
};

enum jobspec_device {
        JOBSPEC_DEVICE_AUTO,
        JOBSPEC_DEVICE_CPU,
        JOBSPEC_DEVICE_CUDA,
};

/* Which way a metric improves. */
enum jobspec_mode {
        JOBSPEC_MODE_MIN,
        JOBSPEC_MODE_MAX,
};

struct jobspec_lr_multiplier {
        char pattern[JOBSPEC_NAME_MAX]; /* fnmatch glob over parameter names */
        double multiplier; /* >= 0 */
};

struct jobspec {
        /* "model": a string (model id "mdl_...", a preset name, or a path to a
         * .safetensors file; which it is the caller decides) or an object (an
         * inline model spec, kept as JSON for compute/model to build). Exactly
         * one of model_ref[0] != 0 and model_spec != NULL holds. */
        char model_ref[JOBSPEC_REF_MAX];
        json_t *model_spec; /* owned reference, or NULL */

        /* "training_file": one reference (CSV, or IDX images whose labels file
         * the caller finds), or an array [images, labels] for an IDX pair. */
        char training_file[2][JOBSPEC_REF_MAX];
        char validation_file[2][JOBSPEC_REF_MAX]; /* [0][0] == 0: none */
        double validation_split; /* used when no validation_file; 0 = no validation */

        struct {
                enum jobspec_task type;
                char target[JOBSPEC_NAME_MAX]; /* CSV target column; "" = the last column */
        } task;

        struct {
                bool dropna;
                bool standardize;
                bool shuffle;
                unsigned resize[2]; /* {0,0}: no resize (the model's input size is used if needed) */
                unsigned channels; /* 0: as the model wants */
                unsigned normalize_n; /* 0: no normalization beyond scaling images to [0,1] */
                double normalize_mean[JOBSPEC_CHANNELS_MAX];
                double normalize_std[JOBSPEC_CHANNELS_MAX];
                unsigned random_crop_padding;
                bool hflip;
        } preprocess;

        struct {
                unsigned epochs;
                unsigned batch_size;
                double learning_rate;
                enum jobspec_optimizer optimizer;
                double momentum;
                double betas[2];
                double eps;
                double weight_decay;
                enum jobspec_schedule schedule;
                double warmup_epochs; /* linear warmup from ~0 to learning_rate; may be fractional */
                unsigned step_size; /* step schedule: epochs between decays; 0 = max(1, epochs/3) */
                double gamma; /* step schedule decay factor */
                double min_lr; /* cosine/linear end point */
                double max_grad_norm; /* 0 = no clipping (global L2 norm, as clip_grad_norm_) */
                double label_smoothing;
        } hyperparameters;

        struct {
                enum jobspec_strategy type;
                size_t n_freeze;
                char freeze[JOBSPEC_GLOBS_MAX][JOBSPEC_NAME_MAX];
                size_t n_trainable;
                char trainable[JOBSPEC_GLOBS_MAX][JOBSPEC_NAME_MAX];
                bool train_batchnorm;
                double layer_decay;
                size_t n_lr_multipliers;
                struct jobspec_lr_multiplier lr_multipliers[JOBSPEC_GLOBS_MAX];
        } strategy;

        struct {
                bool enabled; /* the "early_stopping" object was given */
                char metric[32];
                enum jobspec_mode mode;
                unsigned patience;
                double min_delta;
                bool restore_best;
        } early_stopping;

        struct {
                unsigned every_epochs; /* 0 = never */
                unsigned keep; /* the newest `keep` checkpoints stay, older ones are deleted; 0 = all */
        } checkpoint;

        struct {
                unsigned ranks; /* data-parallel MPI ranks (the daemon's launcher); 1: one process */
                bool sync_batchnorm; /* BatchNorm statistics over the global batch (SyncBatchNorm); false: per rank */
        } resources;

        struct {
                bool temperature_scaling; /* fit a temperature on the validation split, save it with the model */
        } calibration;

        struct {
                unsigned max_runtime_seconds; /* running time (pauses excluded) before it fails with "timeout"; 0: none
                                               */
                unsigned max_attempts; /* claims before a lost worker fails the job (the daemon's queue) */
        } limits;

        /* "from_checkpoint": start from the weights of a checkpoint of another job (the daemon resolves it into
         * the base model; finetuned train names the checkpoint's model.safetensors as "model" instead). */
        struct {
                bool given;
                char job[JOBSPEC_NAME_MAX];
                char checkpoint[32];
        } from_checkpoint;

        uint64_t seed;
        enum jobspec_device device;

        /* hyperparameters.class_weights (classification): NULL (none), the string "balanced", an object
         * {class name: weight} (a class not named weighs 1) or an array of weights in class order; owned. Resolved
         * against the data's classes by compute/imbalance.h. */
        json_t *class_weights;

        /* "guards": training-health rules (docs/job-spec.md "guards"), each off-switchable. */
        struct {
                bool nonfinite; /* a NaN/Inf gradient fails the run naming epoch, batch and tensor */
                unsigned plateau_epochs; /* "loss_not_decreasing" after this many epochs; 0: off */
                double plateau_min_delta; /* relative improvement that counts */
                unsigned overfit_epochs; /* "overfitting" after this many epochs; 0: off */
                bool frozen; /* "frozen_tensor_changed" */
                double divergence_factor; /* "diverging": train loss > factor x its lowest; 0: off */
        } guards;
};

/* Fill spec with every default (docs/job-spec.md). model and training_file
 * are empty: they have no default. */
void jobspec_init(struct jobspec *spec);

/* Release what jobspec_parse() took (the inline model spec). Safe on an
 * initialised or zeroed struct; leaves it initialised. */
void jobspec_deinit(struct jobspec *spec);

/* Parse and validate `root` (a JSON object). On success fills *ret_spec (which
 * the caller later passes to jobspec_deinit) and returns 0; on failure returns
 * -EINVAL with err->param naming the field and err->message saying what is
 * wrong, and leaves *ret_spec untouched. */
int jobspec_parse(const json_t *root, struct jobspec *ret_spec, struct ft_error *err);

/* The same from text (a file's contents or a request body). A JSON syntax
 * error names the line and column; duplicate keys are rejected. */
int jobspec_parse_string(const char *text, size_t len, struct jobspec *ret_spec, struct ft_error *err);

/* The spec as JSON with every default written out (what the API echoes back
 * and what checkpoints record). Returns a new reference or NULL on OOM. */
json_t *jobspec_to_json(const struct jobspec *spec);

/* The job spec as JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1),
 * generated from the tables jobspec_parse() validates with: every field with
 * its type, bounds, enum, description and default (jobspec_init()'s, as
 * jobspec_to_json() writes it); `additionalProperties: false` everywhere, as
 * unknown fields are refused. The rules between fields, which JSON Schema
 * cannot state, are in the descriptions. Returns a new reference or NULL on OOM. */
json_t *jobspec_schema(void);

/* Metric names that early stopping may watch for a task, and their mode. */
int jobspec_metric_mode(enum jobspec_task task, const char *metric, enum jobspec_mode *ret_mode);

const char *jobspec_optimizer_name(enum jobspec_optimizer o);
const char *jobspec_schedule_name(enum jobspec_schedule s);
const char *jobspec_strategy_name(enum jobspec_strategy s);
const char *jobspec_task_name(enum jobspec_task t);
const char *jobspec_device_name(enum jobspec_device d);
