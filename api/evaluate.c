/* evaluate.c - a model over a whole stored dataset: POST /v1/models/{id}/evaluate answers the metrics at once
 * (the job's final metrics plus log loss, ROC-AUC, curves and calibration, compute/eval.h), POST
 * /v1/models/{id}/predictions queues a predictions job (the worker writes predictions.csv, daemon/workers.c)
 * and answers it like POST /v1/jobs. Not for: rows in the request (predict.c), running jobs.
 */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "common/log.h"
#include "common/sha256.h"
#include "compute/context.h"
#include "compute/eval.h"
#include "compute/metrics_curves.h"
#include "compute/model.h"
#include "store/store.h"

#define RETRY_AFTER_S "10"

const struct api_field api_evaluate_fields[] = {
        {"dataset", API_T_STRING, .required = true, .id_prefix = "ds", .max_len = API_ID_MAX,
         .description = "the dataset to evaluate on, with its labels (from POST /v1/datasets)"},
        {"target", API_T_STRING, .max_len = 256, .description = "CSV: the target column (default: the last column)"},
        {"curve_points", API_T_INT, .min = 2, .max = METRICS_CURVE_POINTS_MAX,
         .description = "most points per ROC / precision-recall curve in the answer (default 1001; longer curves "
                        "are thinned evenly, first and last point kept)"},
        {NULL},
};

const struct api_field api_predictions_fields[] = {
        {"dataset", API_T_STRING, .required = true, .id_prefix = "ds", .max_len = API_ID_MAX,
         .description = "the dataset to predict: a CSV with the model's feature columns (and optionally its target "
                        "column) or an IDX dataset"},
        {"target", API_T_STRING, .max_len = 256, .description = "CSV: the target column, when it is not the last"},
        {NULL},
};

/* The spec of a predictions job (its "spec"). */
const struct api_field api_predictions_spec_shape[] = {
        {"kind", API_T_STRING, .choices = (const char *const[]){"predictions", NULL}},
        {"model", API_T_STRING, .id_prefix = "mdl"},
        {"dataset", API_T_STRING, .id_prefix = "ds"},
        {"target", API_T_STRING, .nullable = true},
        {NULL},
};

const struct api_field api_evaluation_shape[] = {
        {"object", API_T_STRING, .choices = (const char *const[]){"evaluation", NULL}},
        {"model", API_T_STRING, .id_prefix = "mdl"},
        {"dataset", API_T_STRING, .id_prefix = "ds"},
        {"task", API_T_STRING, .choices = (const char *const[]){"classification", "regression", NULL}},
        {"samples", API_T_INT},
        {"metrics", API_T_OBJECT,
         .description = "classification: accuracy, macro/weighted averages, per class, confusion matrix, loss "
                        "(= log_loss), roc_auc {macro, per_class}, average_precision, curves {roc, "
                        "precision_recall}, calibration {ece, mce, bins, reliability, temperature}; regression: mse, "
                        "rmse, mae, r2"},
        {NULL},
};

/* The model (with weights) and the dataset a request names. */
static int load_refs(struct api_request *req, struct store *st, const char *model_id, const char *ds_id,
                     struct store_model **ret_m, struct store_dataset **ret_d, struct ft_error *err) {
        int r = store_model_get(st, model_id, ret_m, err);
        if (r < 0)
                return r;
        if (!(*ret_m)->weights_path[0])
                return ft_error_set(err, -EALREADY, "id", "model '%s' has no weights yet: train it with a job first",
                                    model_id);
        r = store_dataset_get(st, ds_id, ret_d, err);
        if (r == -ENOENT)
                return ft_error_set(err, -EINVAL, "dataset", "'dataset': no dataset '%s'", ds_id);
        (void)req;
        return r;
}

enum MHD_Result api_models_evaluate(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        if (!api_path_id(req, 0, "mdl", "model", &id, &ret))
                return ret;
        json_t *body = api_request_json(req, api_evaluate_fields, &ret);
        if (!body)
                return ret;
        struct store *st = api_store(req, &ret);
        if (!st) {
                json_decref(body);
                return ret;
        }
        const char *ds_id = json_string_value(json_object_get(body, "dataset"));
        const char *target = json_string_value(json_object_get(body, "target"));
        size_t points = (size_t)json_integer_value(json_object_get(body, "curve_points"));
        struct ft_error err = {0};
        struct store_model *rec = NULL;
        struct store_dataset *d = NULL;
        struct eval_model em = {0};
        struct dataset *ds = NULL;
        struct compute_ctx *ctx = NULL;
        struct eval_output out = {0};
        json_t *mspec = NULL, *metrics = NULL, *answer = NULL;
        bool labelled = false;
        int r = load_refs(req, st, id, ds_id, &rec, &d, &err);
        if (r == 0) {
                mspec = json_loads(rec->spec_json, 0, NULL);
                r = eval_model_open(rec->weights_path, mspec, 0, &em, &err);
        }
        if (r == 0) {
                struct eval_data_options o = {
                        .path = d->path,
                        .path2 = d->labels_path[0] ? d->labels_path : NULL,
                        .label = d->id,
                        .param = "dataset",
                        .target = target,
                        .labels_required = true,
                };
                r = eval_data_open(&em, &o, &ds, &labelled, &err);
        }
        if (r == 0)
                r = compute_ctx_new(1, &ctx, &err);
        if (r == 0)
                r = eval_run(&em, ctx, ds, labelled, NULL, &out, &err);
        if (r == -ERANGE && !err.param[0])
                snprintf(err.param, sizeof(err.param), "dataset");
        if (r == 0 && !(metrics = eval_metrics_json(&em, &out, points, &err)))
                r = err.code ? err.code : -ENOMEM;
        if (r == 0) {
                answer = json_pack("{s:s s:s s:s s:s s:I s:o}", "object", "evaluation", "model", rec->id, "dataset",
                                   d->id, "task", em.regression ? "regression" : "classification", "samples",
                                   (json_int_t)out.n, "metrics", metrics);
                r = answer ? 0 : -ENOMEM;
        }
        eval_output_deinit(&out);
        dataset_free(ds);
        eval_model_deinit(&em);
        compute_ctx_free(ctx);
        store_model_free(rec);
        store_dataset_free(d);
        json_decref(mspec);
        json_decref(body);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        return api_reply_json(req, MHD_HTTP_OK, answer);
}

/* What can be checked before queueing, on the facts the store recorded: the model takes this kind of data,
 * and a table has the model's features (with or without its target column). */
static int predictions_check(const struct store_model *m, const struct store_dataset *d, const char *target,
                             struct ft_error *err) {
        json_t *spec = json_loads(m->spec_json, 0, NULL);
        int64_t shape[3] = {0};
        int nd = 0;
        size_t outputs = 0;
        int r = spec ? model_spec_io(spec, shape, &nd, &outputs, err) : -EIO;
        json_decref(spec);
        if (r < 0)
                return r;
        bool images = d->facts.kind == STORE_DATASET_IDX;
        if (nd == 3 && !images)
                return ft_error_set(err, -EINVAL, "dataset", "model '%s' takes images; '%s' is a table", m->id, d->id);
        if (nd == 1 && !images) {
                int64_t f = d->facts.features; /* the columns but the last (the target) */
                bool labelled = f == shape[0], unlabelled = !target && f + 1 == shape[0];
                if (!labelled && !unlabelled)
                        return ft_error_set(err, -EINVAL, "dataset",
                                            "'%s' has %lld columns; model '%s' takes %lld features (plus, optionally, "
                                            "the target column)",
                                            d->id, (long long)f + 1, m->id, (long long)shape[0]);
        }
        return 0;
}

enum MHD_Result api_models_predictions(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        if (!api_path_id(req, 0, "mdl", "model", &id, &ret))
                return ret;
        const char *key = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Idempotency-Key");
        if (key && !api_idempotency_key_valid(key))
                return api_reply_error(req, API_ERR_INVALID_REQUEST, "Idempotency-Key",
                                       "'Idempotency-Key' must be 1 to 255 characters");
        json_t *body = api_request_json(req, api_predictions_fields, &ret);
        if (!body)
                return ret;
        struct store *st = api_store(req, &ret);
        if (!st) {
                json_decref(body);
                return ret;
        }
        const char *ds_id = json_string_value(json_object_get(body, "dataset"));
        const char *target = json_string_value(json_object_get(body, "target"));
        struct ft_error err = {0};
        struct store_model *rec = NULL;
        struct store_dataset *d = NULL;
        struct store_job *job = NULL;
        char *spec_text = NULL;
        int64_t queued = 0;
        int r = load_refs(req, st, id, ds_id, &rec, &d, &err);
        if (r == 0)
                r = predictions_check(rec, d, target, &err);
        if (r == 0)
                r = store_job_count(st, STORE_JOB_STATE_BIT(STORE_JOB_QUEUED), &queued, &err);
        if (r < 0)
                goto fail;
        if (queued >= (int64_t)req->server->opts.max_queued_jobs) {
                store_model_free(rec);
                store_dataset_free(d);
                json_decref(body);
                return api_reply_error_headers(req, API_ERR_RATE_LIMITED, NULL,
                                               (const char *const[]){"Retry-After", RETRY_AFTER_S, NULL},
                                               "%lld jobs are queued (the limit is %u): retry later", (long long)queued,
                                               req->server->opts.max_queued_jobs);
        }
        json_t *spec = json_pack("{s:s s:s s:s s:s?}", "kind", "predictions", "model", rec->id, "dataset", d->id,
                                 "target", target);
        spec_text = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
        json_decref(spec);
        if (!spec_text) {
                r = -ENOMEM;
                goto fail;
        }
        char hash[SHA256_HEX_SIZE] = "";
        uint8_t digest[SHA256_DIGEST_SIZE];
        sha256_buffer(spec_text, strlen(spec_text), digest);
        sha256_to_hex(digest, hash);
        struct store_job_new jn = {
                .spec_json = spec_text,
                .model_id = rec->id,
                .training_file = d->id,
                .idempotency_key = key,
                .request_hash = hash,
        };
        r = store_job_enqueue(st, &jn, &job, &err);
        if (r == -EEXIST) {
                free(spec_text);
                store_model_free(rec);
                store_dataset_free(d);
                json_decref(body);
                return api_reply_error(req, API_ERR_IDEMPOTENCY_MISMATCH, "Idempotency-Key",
                                       "'Idempotency-Key' was already used with a different request body");
        }
        if (r == -ENOENT)
                r = -EINVAL;
        if (r < 0)
                goto fail;
        bool replay = r == 1;
        if (!replay)
                log_info("job %s queued: predictions of model %s on %s", job->id, rec->id, d->id);
        char location[64];
        snprintf(location, sizeof(location), "/v1/jobs/%s", job->id);
        json_t *answer = api_job_json(req->server, st, job);
        store_job_free(job);
        free(spec_text);
        store_model_free(rec);
        store_dataset_free(d);
        json_decref(body);
        return api_reply_json_headers(
                req, replay ? MHD_HTTP_OK : MHD_HTTP_CREATED, answer,
                (const char *const[]){"Location", location, "Idempotent-Replayed", replay ? "true" : "false", NULL});
fail:
        free(spec_text);
        store_model_free(rec);
        store_dataset_free(d);
        json_decref(body);
        return api_reply_ft_error(req, r, &err);
}
