/* job.h - one fine-tuning job from spec to result, the path `finetuned train` (daemon/train_cmd.c) and the
 * daemon's workers (daemon/workers.c) share, so the same spec on the same data gives the same model file:
 *   job_data_open         the data a spec names, read the way the spec says (target, task, dropna)
 *   job_model_build       the base model: a preset sized to the data, a spec, or saved weights, with the head
 *                         replaced when the classes differ (job_model_build_base)
 *   job_check             whether model and data fit: the one check, on typed facts, that train_run applies
 *                         to what it is given and the API applies at submit time to what the store knows
 *   train_run             (train.h) the training itself, with the caller's callbacks
 *   job_result_save       model.safetensors with its metadata (spec, preprocessing, classes, task, job id)
 *   job_metrics_write     metrics.json, the one format of both
 *
 * Not for: ids, leases, the store and its blobs (daemon/workers.c), resolving paths relative to a job file
 * and printing (daemon/train_cmd.c), the training loop (train.h), logging. Paths are always the caller's:
 * this module opens the files it is given and writes where it is told.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"
#include "compute/data.h"
#include "compute/jobspec.h"
#include "compute/model.h"
#include "compute/safetensors.h"
#include "compute/train.h"

/* ---- data --------------------------------------------------------------------- */

struct job_data_source {
        const char *path; /* a CSV file, or either file of an IDX image/label pair */
        const char *path2; /* the other file of an IDX pair, or NULL */
        const char *label; /* what messages call the data instead of its path(s) ("ds_..."); NULL: the path */
        const char *param; /* the spec field it comes from ("training_file"), for err->param */
        size_t max_bytes; /* each file, compressed and not; 0: no limit */
};

/* Read the data as spec says: the CSV target column (task.target, else the last), task.type, dropna; an IDX
 * pair by content, in either order. Classes are compact (every reader's guarantee: an IDX subset labelled 5-9
 * has the 5 classes "5".."9"). ds->source is the label when one is given. Errors name the label and have
 * err->param src->param unless the reader named a field. */
int job_data_open(const struct jobspec *spec, const struct job_data_source *src, struct dataset **ret,
                  struct ft_error *err);

/* What a job needs to know about its data before it trains: what a loaded dataset says (job_data_facts_of),
 * or what the store recorded when it was uploaded (api/jobs.c). Arrays and strings are borrowed. */
struct job_data_facts {
        const char *label; /* how messages name it: a dataset id or a path */
        enum data_kind kind;
        enum data_task task; /* how the target is read */
        size_t rows;
        /* DATA_TABLE */
        size_t n_features;
        char *const *feature_names; /* n_features names, or NULL when not known */
        const char *target; /* the column the classes below are of */
        /* classes of that column read for classification (DATA_IMAGES: the labels) */
        size_t n_classes; /* 0: not known */
        char *const *class_names; /* n_classes names, or NULL when not known */
        /* DATA_IMAGES */
        size_t channels, height, width;
};
void job_data_facts_of(const struct dataset *ds, struct job_data_facts *ret);

/* ---- the model ----------------------------------------------------------------------- */

/* Where the base model comes from: a preset, a spec, or saved weights (with or without a spec). */
struct job_model_source {
        const char *preset; /* a preset name (model_preset_names), sized to the data; or NULL */
        const json_t *options; /* the preset's options; they win over the sizing (may be NULL) */
        const json_t *spec; /* a model spec (with preset NULL); NULL with weights: the weights' own spec */
        const struct st_file *weights; /* the weights to start from, or NULL (a fresh model from spec->seed) */
        const char *weights_label; /* what messages call the weights file */
};

/* The base model of the job, sized to the training data: a preset gets the data's input (features, or the
 * image shape after preprocess.resize / channels) and as many outputs as classes (1 for regression); a spec
 * or saved model gets its head resized or replaced by job_model_build_base. report (may be NULL;
 * st_load_report_deinit it) says whether the head was replaced. Errors have err->param "model" (or
 * "model.options" for a preset's options). */
int job_model_build(const struct jobspec *spec, const struct job_model_source *src, const struct dataset *train,
                    struct model **ret, struct st_load_report *report, struct ft_error *err);

/* Build a fine-tune's base model from its spec, sized to `outputs` (docs/job-spec.md "model"):
 * - when the spec's output count differs from `outputs`, the last "linear" layer gets out_features = outputs
 *   (-EINVAL param "model" when there is none) and the head is replaced;
 * - model_init(seed); then, when weights is not NULL, the head is also replaced when weights'
 *   ST_META_CLASSES names other classes than class_names (n_classes of them; NULL/0: not compared), and the
 *   weights load strictly (st_model_load) except for a replaced head, which is initialised as PyTorch
 *   initialises a new layer.
 * report (may be NULL) says whether and which head was replaced. The spec is not modified. */
int job_model_build_base(const json_t *spec, const struct st_file *weights, size_t outputs, char *const *class_names,
                         size_t n_classes, uint64_t seed, struct model **ret, struct st_load_report *report,
                         struct ft_error *err);

/* The model side of the check: input shape without the batch and output count. */
struct job_model_facts {
        int ndim; /* 1: [features]; 3: [C, H, W] */
        int64_t shape[3];
        size_t outputs;
};
void job_model_facts_of(const struct model *m, struct job_model_facts *ret);
/* The facts of the model `model_spec` builds once job_model_build sizes it to data like `train` (the head
 * resized to the classes when they are known), without building it: what the API checks before queueing. */
int job_model_facts_for(const json_t *model_spec, const struct jobspec *spec, const struct job_data_facts *train,
                        struct job_model_facts *ret, struct ft_error *err);
/* The output count job_model_build sizes the head to: the classes (classification, when known for the
 * target the spec names), 1 (regression), 0 when not known. */
size_t job_outputs(const struct jobspec *spec, const struct job_data_facts *train);

/* ---- the check ---------------------------------------------------------------------- */

/* Whether the model and the data fit the spec and each other: task and target, features or image shape
 * against the model's input (and preprocess.resize / channels), classes against outputs, the validation data
 * against the training data (kind, features, classes). Facts not known are not checked. -EINVAL with
 * err->param naming the spec field ("model", "task.target", "validation_file", ...) and the data by its label.
 * val may be NULL. */
int job_check(const struct jobspec *spec, const struct job_model_facts *model, const struct job_data_facts *train,
              const struct job_data_facts *val, struct ft_error *err);

/* ---- the result -------------------------------------------------------------------- */

/* Save the trained model to path (atomically) with the metadata predict and later jobs read: the spec, the
 * preprocessing res fitted, the training data's class names, "finetuned.task" and, when job_id is not NULL,
 * "finetuned.job". The file loads in PyTorch (load_state_dict, strict). */
int job_result_save(const char *path, struct model *m, const struct jobspec *spec, const struct dataset *train,
                    const struct train_result *res, const char *job_id, struct ft_error *err);

/* The metrics document (new reference, NULL when out of memory): {"split", "best_epoch", "epochs_run",
 * "stopped_early", "metrics": {...}} and, with history, "history": [epoch events] and, for classification,
 * "diagnostics" (diag_report_json with every example). The daemon keeps it without
 * history as the job's "metrics"; metrics.json (CLI and daemon artifact) is it with history. */
json_t *job_metrics_json(const struct train_result *res, bool history);
/* metrics.json at path (atomically, mode 0644): job_metrics_json with history, indented. */
int job_metrics_write(const char *path, const struct train_result *res, struct ft_error *err);
