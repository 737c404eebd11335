/* eval.h - a trained model over a whole dataset: open the model with what its file says (spec, preprocessing,
 * class names, task, temperature), read the data the way it was trained on (labelled or not), run it in
 * batches with progress and a stop check, and turn the outputs into the evaluation metrics (the job's final
 * ones plus log loss, ROC-AUC, curves and calibration) or a predictions CSV. The one path of
 * `POST /v1/models/{id}/evaluate`, the predictions jobs of the daemon's workers, and `finetuned evaluate` /
 * `finetuned predict`.
 *
 * Not for: the store and ids (api/, daemon/), training (train.h), the metric definitions (metrics.h,
 * metrics_curves.h).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "compute/context.h"
#include "compute/data.h"
#include "compute/model.h"

#define EVAL_META_TEMPERATURE "finetuned.temperature" /* the fitted temperature, as a decimal string */
#define EVAL_BATCH 64

struct eval_model {
        struct model *m;
        struct data_transform t;
        char **classes; /* the training data's class names, index order (NULL/0: not recorded) */
        size_t n_classes;
        bool regression; /* "finetuned.task" is "regression" */
        double temperature; /* 1 unless the model was temperature-scaled */
        bool has_temperature;
};

/* Open the weights at path. spec: the model spec to build (the store's), or NULL for the file's own
 * "finetuned.spec". max_bytes: cap on the file (0: none). */
int eval_model_open(const char *path, const json_t *spec, size_t max_bytes, struct eval_model *ret,
                    struct ft_error *err);
void eval_model_deinit(struct eval_model *em);

struct eval_data_options {
        const char *path, *path2; /* a CSV, or an IDX pair */
        const char *label; /* what messages call it ("ds_..."); NULL: the path */
        const char *param; /* the request field it comes from, for err->param */
        const char *target; /* the CSV target column; NULL: the last one, or none when the file has exactly the
                             * model's features */
        bool labels_required; /* evaluation: a file without its target column is refused */
        size_t max_bytes;
};

/* Read the data for em. *ret_labelled says whether it has a target. A labelled classification dataset's class
 * names must all be the model's (they are mapped to its indices by name); -EINVAL naming the class otherwise. */
int eval_data_open(const struct eval_model *em, const struct eval_data_options *o, struct dataset **ret,
                   bool *ret_labelled, struct ft_error *err);

struct eval_output {
        size_t n, k; /* rows, outputs per row */
        float *outputs; /* n * k: logits (classification) or values (regression) */
        int32_t *labels; /* labelled classification: n indices into the model's classes; else NULL */
        float *targets; /* labelled regression: n values; else NULL */
};
void eval_output_deinit(struct eval_output *o);

struct eval_callbacks {
        void *userdata;
        /* After each batch: rows done of total. May be NULL. */
        void (*on_progress)(void *userdata, size_t done, size_t total);
        /* Before each batch; true stops with -ECANCELED. May be NULL. */
        bool (*should_stop)(void *userdata);
};

/* Run em over every row of ds (labelled as eval_data_open said) on ctx's thread. A non-finite output is
 * -ERANGE naming the row. */
int eval_run(struct eval_model *em, struct compute_ctx *ctx, const struct dataset *ds, bool labelled,
             const struct eval_callbacks *cb, struct eval_output *ret, struct ft_error *err);

/* The metrics of a labelled run (new reference): classification: metrics_classification_to_json's keys, "loss"
 * (= log loss), metrics_scores_to_json's (with curves, thinned to curve_points; null beyond
 * METRICS_CURVES_CLASSES_MAX classes) and "calibration"
 * (metrics_calibration_to_json of the probabilities predict answers, with "temperature" and, for a
 * temperature-scaled model, "uncalibrated": {"ece", "mce"} at T = 1); regression: metrics_regression_to_json.
 * NULL with err on failure. */
json_t *eval_metrics_json(const struct eval_model *em, const struct eval_output *o, size_t curve_points,
                          struct ft_error *err);

/* The predictions as CSV (*ret malloc'd, *ret_len bytes): a header, then one line per row in dataset order:
 * classification "row,[label,]prediction,p_<class>..." (probabilities as predict answers them), regression
 * "row,[target,]prediction". Class names are quoted as RFC 4180 needs. */
int eval_predictions_csv(const struct eval_model *em, const struct eval_output *o, char **ret, size_t *ret_len,
                         struct ft_error *err);
/* eval_predictions_csv into the file at path, atomically. */
int eval_predictions_write(const struct eval_model *em, const struct eval_output *o, const char *path,
                           struct ft_error *err);
