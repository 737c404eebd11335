/* predict.c - POST /v1/models/{id}/predict: rows of features (or images) in,
 * labels with class probabilities (or regression values) out. The model's
 * safetensors metadata carries its spec, the preprocessing it was trained with
 * (standardization statistics, image transform) and its class names; the rows
 * go through the same data loader as training (no augmentation), so the
 * preprocessing is exactly the training one.
 * Not for: training, batching across requests. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "compute/context.h"
#include "compute/data.h"
#include "compute/eval.h"
#include "compute/model.h"
#include "compute/safetensors.h"
#include "store/store.h"

#define PREDICT_ROWS_MAX 1024
#define PREDICT_BATCH 32

const struct api_field api_predict_fields[] = {
        {"rows", API_T_ARRAY_ARRAY_NUMBER, .min_items = 1, .max_len = PREDICT_ROWS_MAX,
         .description = "feature rows, in the training file's column order without the target"},
        {"images", API_T_ARRAY_ARRAY_NUMBER, .min_items = 1, .max_len = PREDICT_ROWS_MAX,
         .description = "images as flat arrays of C*H*W pixel values 0..255 (as in the IDX file)"},
        {"image_shape", API_T_ARRAY_INT, .min = 1, .max = 4096, .min_items = 3, .max_len = 3,
         .description = "[C, H, W] of the images (default: the model's input)"},
        {"return", API_T_ARRAY_STRING, .optional = true, .min_items = 1, .max_len = 2,
         .choices = (const char *const[]){"probabilities", "logits", NULL},
         .description = "classification: what each prediction carries besides label and index (default "
                        "[\"probabilities\"])"},
        {NULL},
};

/* What the handler answers, for the OpenAPI document (prediction() builds the items). */
static const struct api_field prediction_fields[] = {
        {"label", API_T_STRING, .optional = true, .description = "classification: the most probable class"},
        {"index", API_T_INT, .optional = true, .description = "classification: its index"},
        {"probabilities", API_T_MAP_NUMBER, .optional = true, .description = "classification: class -> probability"},
        {"logits", API_T_MAP_NUMBER, .optional = true,
         .description = "classification, with \"return\": [\"logits\"]: class -> the model's output before softmax"},
        {"value", API_T_NUMBER, .optional = true, .description = "regression: the predicted value"},
        {NULL},
};
const struct api_field api_prediction_shape[] = {
        {"object", API_T_STRING, .choices = (const char *const[]){"prediction", NULL}},
        {"model", API_T_STRING, .id_prefix = "mdl"},
        {"predictions", API_T_ARRAY_OBJECT, .fields = prediction_fields, .description = "one per row or image"},
        {NULL},
};

int api_model_weights_load(struct model *m, const struct st_file *f, struct ft_error *err) {
        for (size_t i = 0; i < model_tensor_count(m); i++) {
                struct tensor *t = model_tensor_at(m, i);
                const struct st_tensor *s = st_file_find(f, t->name);
                if (!s || s->numel != t->numel)
                        return ft_error_set(err, -EIO, NULL, "weights lack tensor '%s'", t->name);
                int r = t->dtype == TENSOR_I64 ? st_tensor_read_i64(f, s, t->data, t->numel, err)
                                               : st_tensor_read_f32(f, s, t->data, t->numel, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* One row's answer: the label with class probabilities (softmax of the
 * logits), or the regression value. */
static json_t *prediction(const float *o, size_t k, bool regression, const json_t *classes, bool want_probs,
                          bool want_logits, double temperature) {
        if (regression)
                return k == 1 ? json_pack("{s:f}", "value", (double)o[0]) : json_null();
        if (k == 0)
                return NULL;
        double mx = o[0], sum = 0;
        size_t best = 0;
        for (size_t c = 1; c < k; c++)
                if (o[c] > mx) {
                        mx = o[c];
                        best = c;
                }
        /* a temperature-scaled model (calibration.temperature_scaling): softmax(logits / T); the argmax is the same */
        for (size_t c = 0; c < k; c++)
                sum += exp(((double)o[c] - mx) / temperature);
        json_t *probs = json_object(), *logits = json_object();
        for (size_t c = 0; c < k; c++) {
                char fallback[24];
                snprintf(fallback, sizeof(fallback), "%zu", c);
                const char *name = json_string_value(json_array_get(classes, c));
                json_object_set_new(probs, name ? name : fallback,
                                    json_real(exp(((double)o[c] - mx) / temperature) / sum));
                json_object_set_new(logits, name ? name : fallback, json_real((double)o[c]));
        }
        char fb[24];
        snprintf(fb, sizeof(fb), "%zu", best);
        const char *label = json_string_value(json_array_get(classes, best));
        json_t *p = json_pack("{s:s,s:I}", "label", label ? label : fb, "index", (json_int_t)best);
        if (p && want_probs)
                json_object_set(p, "probabilities", probs);
        if (p && want_logits)
                json_object_set(p, "logits", logits);
        json_decref(probs);
        json_decref(logits);
        return p;
}

int api_predict_input(const json_t *body, const struct model *m, struct dataset *ds, struct ft_error *err) {
        const json_t *rows = json_object_get(body, "rows"), *images = json_object_get(body, "images");
        int64_t in[3] = {0};
        int nd = model_input_shape(m, in);
        if ((rows != NULL) == (images != NULL))
                return ft_error_set(err, -EINVAL, "rows", "give either 'rows' (features) or 'images'");
        const json_t *data = rows ? rows : images;
        size_t n = json_array_size(data), width;
        memset(ds, 0, sizeof(*ds));
        ds->n = n;
        ds->task = DATA_CLASSIFICATION;
        ds->labels = calloc(n, sizeof(int32_t));
        ds->targets = calloc(n, sizeof(float));
        if (!ds->labels || !ds->targets)
                return -ENOMEM;
        if (rows) {
                if (nd != 1)
                        return ft_error_set(err, -EINVAL, "rows", "this model takes images: send 'images'");
                width = (size_t)in[0];
                ds->kind = DATA_TABLE;
                ds->n_features = width;
                ds->x = calloc(n * width, sizeof(float));
                if (!ds->x)
                        return -ENOMEM;
        } else {
                const json_t *shape = json_object_get(body, "image_shape");
                size_t c = nd == 3 ? (size_t)in[0] : 1, h = nd == 3 ? (size_t)in[1] : 0,
                       w = nd == 3 ? (size_t)in[2] : 0;
                if (shape) {
                        c = (size_t)json_integer_value(json_array_get(shape, 0));
                        h = (size_t)json_integer_value(json_array_get(shape, 1));
                        w = (size_t)json_integer_value(json_array_get(shape, 2));
                } else if (nd == 1) {
                        size_t side = (size_t)sqrt((double)in[0]);
                        h = w = side;
                }
                if (c * h * w == 0 || c * h * w > (size_t)16 << 20)
                        return ft_error_set(err, -EINVAL, "image_shape", "'image_shape' is needed ([C, H, W])");
                width = c * h * w;
                ds->kind = DATA_IMAGES;
                ds->channels = c;
                ds->height = h;
                ds->width = w;
                ds->pixels = calloc(n, width);
                if (!ds->pixels)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                const json_t *row = json_array_get(data, i);
                char param[48];
                snprintf(param, sizeof(param), "%s[%zu]", rows ? "rows" : "images", i);
                if (json_array_size(row) != width)
                        return ft_error_set(err, -EINVAL, param, "'%s' has %zu values, the model takes %zu", param,
                                            json_array_size(row), width);
                for (size_t k = 0; k < width; k++) {
                        double v = json_number_value(json_array_get(row, k));
                        if (rows) {
                                if (!isfinite(v) || fabs(v) > FLT_MAX) {
                                        char cell[96];
                                        snprintf(cell, sizeof(cell), "%s[%zu]", param, k);
                                        return ft_error_set(
                                                err, -EINVAL, cell,
                                                "'%s' is %g, beyond the float32 range the model computes in", cell, v);
                                }
                                ds->x[i * width + k] = (float)v;
                        } else {
                                if (v < 0 || v > 255)
                                        return ft_error_set(err, -EINVAL, param, "'%s' has a pixel outside 0..255",
                                                            param);
                                ds->pixels[i * width + k] = (uint8_t)lrint(v);
                        }
                }
        }
        return 0;
}

enum MHD_Result api_models_predict(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        if (!api_path_id(req, 0, "mdl", "model", &id, &ret))
                return ret;
        json_t *body = api_request_json(req, api_predict_fields, &ret);
        if (!body)
                return ret;
        struct store *st = api_store(req, &ret);
        if (!st) {
                json_decref(body);
                return ret;
        }
        struct ft_error err = {0};
        struct store_model *rec = NULL;
        struct st_file *f = NULL;
        struct model *m = NULL;
        struct compute_ctx *ctx = NULL;
        struct data_transform t = {0};
        struct data_loader *loader = NULL;
        struct dataset ds = {0};
        json_t *classes = NULL, *mspec = NULL, *out = NULL;
        size_t *idx = NULL;
        bool regression = false, want_probs = true, want_logits = false;
        const json_t *ret_list = json_object_get(body, "return");
        if (ret_list) {
                want_probs = false;
                for (size_t i = 0; i < json_array_size(ret_list); i++) {
                        const char *w = json_string_value(json_array_get(ret_list, i));
                        want_probs = want_probs || strcmp(w, "probabilities") == 0;
                        want_logits = want_logits || strcmp(w, "logits") == 0;
                }
        }

        int r = store_model_get(st, id, &rec, &err);
        if (r < 0)
                goto fail;
        if (!rec->weights_path[0]) {
                r = ft_error_set(&err, -EBUSY, "id", "model '%s' has no weights yet: train it with a job first", id);
                goto fail;
        }
        r = st_file_open(rec->weights_path, 0, &f, &err);
        if (r < 0)
                goto fail;
        const char *pre = st_file_metadata(f, "finetuned.preprocess");
        const char *cls = st_file_metadata(f, "finetuned.classes");
        const char *task = st_file_metadata(f, "finetuned.task");
        regression = task && strcmp(task, "regression") == 0;
        const char *temp = st_file_metadata(f, EVAL_META_TEMPERATURE);
        double temperature = temp ? strtod(temp, NULL) : 1.0;
        if (!(temperature > 0) || !isfinite(temperature))
                temperature = 1.0;
        classes = cls ? json_loads(cls, 0, NULL) : NULL;
        mspec = json_loads(rec->spec_json, 0, NULL);
        r = mspec ? model_new(mspec, &m, &err) : -EIO;
        if (r == 0)
                r = api_model_weights_load(m, f, &err);
        if (r == 0 && pre)
                r = data_transform_from_json(pre, &t, &err);
        if (r < 0)
                goto fail;
        r = api_predict_input(body, m, &ds, &err);
        if (r < 0)
                goto fail;
        if (ds.kind == DATA_TABLE && t.standardize && t.n_features != ds.n_features) {
                r = ft_error_set(&err, -EINVAL, "rows", "the model was trained on %zu features", t.n_features);
                goto fail;
        }
        idx = calloc(ds.n, sizeof(*idx));
        if (!idx) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < ds.n; i++)
                idx[i] = i;
        /* Batches of PREDICT_BATCH: memory is bounded by the batch, not by the request. */
        size_t batch = FT_MIN(ds.n, (size_t)PREDICT_BATCH);
        struct data_loader_options lo = {.batch_size = batch};
        r = data_loader_new(&ds, idx, ds.n, &t, &lo, &loader, &err);
        if (r == 0)
                r = compute_ctx_new(1, &ctx, &err);
        if (r == 0) {
                model_set_inference(m, true); /* forward_inference, activations reused: no training buffers */
                r = model_prepare(m, ctx, (int)batch, &err);
        }
        if (r < 0)
                goto fail;
        data_loader_start(loader, 0);
        size_t k = model_output_count(m);
        json_t *preds = json_array();
        struct data_batch b;
        while (r == 0 && data_loader_next(loader, &b) == 1) {
                if (b.c * b.h * b.w != model_input_numel(m)) {
                        r = ft_error_set(&err, -EINVAL, ds.kind == DATA_TABLE ? "rows" : "image_shape",
                                         "the preprocessed input has %zu values, the model takes %zu", b.c * b.h * b.w,
                                         model_input_numel(m));
                        break;
                }
                const float *y = NULL;
                r = model_forward(m, b.x, (int)b.n, false, &y, &err);
                for (size_t i = 0; r == 0 && i < b.n; i++) {
                        /* never an answer without probabilities: a non-finite output (the preprocessed
                         * input overflowed, or the weights did) is refused naming the row */
                        for (size_t c = 0; r == 0 && c < k; c++)
                                if (!isfinite(y[i * k + c])) {
                                        char param[48];
                                        snprintf(param, sizeof(param), "%s[%zu]",
                                                 ds.kind == DATA_TABLE ? "rows" : "images", json_array_size(preds));
                                        r = ft_error_set(&err, -ERANGE, param,
                                                         "the model's output for '%s' is not a finite number", param);
                                }
                        json_t *p = r == 0 ? prediction(y + i * k, k, regression, classes, want_probs, want_logits,
                                                        temperature)
                                           : NULL;
                        if (r == 0 && (!p || json_is_null(p))) {
                                json_decref(p);
                                r = ft_error_set(&err, -EIO, NULL, "the model gives %zu outputs per row", k);
                        }
                        if (r == 0)
                                json_array_append_new(preds, p);
                }
        }
        if (r < 0) {
                json_decref(preds);
                goto fail;
        }
        out = json_pack("{s:s,s:s,s:o}", "object", "prediction", "model", rec->id, "predictions", preds);
        r = out ? 0 : -ENOMEM;
fail:
        data_loader_free(loader);
        free(idx);
        free(ds.x);
        free(ds.pixels);
        free(ds.labels);
        free(ds.targets);
        data_transform_deinit(&t);
        model_free(m);
        compute_ctx_free(ctx);
        st_file_free(f);
        store_model_free(rec);
        json_decref(classes);
        json_decref(mspec);
        json_decref(body);
        if (r < 0)
                return api_reply_ft_error(req, r == -EBUSY ? -EALREADY : r, &err);
        return api_reply_json(req, MHD_HTTP_OK, out);
}
