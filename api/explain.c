/* explain.c - POST /v1/models/{id}/explain: one image in (as predict takes it), a per-pixel saliency map out for a
 * chosen class (default: the predicted one): integrated gradients (default) or gradient x input, computed by the
 * engine's own backward pass to the input (compute/explain.h). The image goes through the preprocessing the model
 * was trained with, exactly as in predict; the map is over the model's input (after resize), one value per pixel:
 * the attributions of its channels summed.
 *
 * Memory: the model is built for this request in input-gradient mode (every activation kept for the backward, at
 * most EXPLAIN_BATCH interpolation points at a time); predict's models stay in inference mode.
 * Not for: predict (predict.c), the saliency math (compute/explain.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "compute/context.h"
#include "compute/data.h"
#include "compute/explain.h"
#include "compute/model.h"
#include "compute/safetensors.h"
#include "store/store.h"

#define EXPLAIN_IMAGE_VALUES_MAX ((size_t)3 * 1024 * 1024) /* C*H*W of the image sent */

static const char *const methods[] = {"integrated_gradients", "gradient_x_input", NULL};
static const char *const baselines[] = {"zeros", "black", NULL};

const struct api_field api_explain_fields[] = {
        {"images", API_T_ARRAY_ARRAY_NUMBER, .required = true, .min_items = 1, .max_len = 1,
         .description = "exactly one image, as predict takes it: a flat array of C*H*W pixel values 0..255"},
        {"image_shape", API_T_ARRAY_INT, .min = 1, .max = 4096, .min_items = 3, .max_len = 3,
         .description = "[C, H, W] of the image (default: the model's input)"},
        {"target", API_T_ANY,
         .description = "the class to explain: its name (a label predict answers) or its index (default: the "
                        "predicted class)"},
        {"method", API_T_STRING, .choices = methods,
         .description = "integrated_gradients (default) or gradient_x_input"},
        {"steps", API_T_INT, .min = 1, .max = EXPLAIN_STEPS_MAX,
         .description = "integrated gradients: steps of the Riemann sum (default 32); each is a forward and a "
                        "backward pass"},
        {"baseline", API_T_STRING, .choices = baselines,
         .description = "integrated gradients: the reference input, zeros (default: all zeros after "
                        "preprocessing, the mean colour under a normalization) or black (a black image, "
                        "preprocessed)"},
        {NULL},
};

static const struct api_field class_fields[] = {
        {"label", API_T_STRING, .description = "the class name"},
        {"index", API_T_INT, .description = "its index"},
        {"probability", API_T_NUMBER, .description = "its probability for the image"},
        {"logit", API_T_NUMBER, .description = "the model's output for it before softmax: the score explained"},
        {NULL},
};

static const struct api_field completeness_fields[] = {
        {"sum", API_T_NUMBER, .description = "the attributions' sum"},
        {"score_difference", API_T_NUMBER,
         .description = "the explained logit at the image minus at the baseline (zeros for gradient_x_input)"},
        {"error", API_T_NUMBER,
         .description = "sum - score_difference: near 0 for integrated gradients with enough steps"},
        {NULL},
};

const struct api_field api_explanation_shape[] = {
        {"object", API_T_STRING, .choices = (const char *const[]){"explanation", NULL}},
        {"model", API_T_STRING, .id_prefix = "mdl"},
        {"method", API_T_STRING, .choices = methods},
        {"steps", API_T_INT, .description = "integrated gradients' steps; 1 for gradient_x_input"},
        {"baseline", API_T_STRING, .choices = baselines, .nullable = true,
         .description = "integrated gradients' baseline; null for gradient_x_input"},
        {"target", API_T_OBJECT, .fields = class_fields, .description = "the class explained"},
        {"prediction", API_T_OBJECT, .fields = class_fields, .description = "the predicted class"},
        {"input_shape", API_T_ARRAY_INT, .description = "[C, H, W]: the model's input, after preprocessing"},
        {"map", API_T_ARRAY_ARRAY_NUMBER,
         .description = "H rows of W values: per pixel of the model's input, its channels' attributions summed "
                        "(positive: pushed towards the target class)"},
        {"min", API_T_NUMBER, .description = "the map's smallest value"},
        {"max", API_T_NUMBER, .description = "the map's largest value"},
        {"completeness", API_T_OBJECT, .fields = completeness_fields},
        {NULL},
};

static double softmax_at(const float *o, size_t k, size_t c) {
        double mx = o[0], sum = 0;
        for (size_t i = 1; i < k; i++)
                mx = o[i] > mx ? o[i] : mx;
        for (size_t i = 0; i < k; i++)
                sum += exp((double)o[i] - mx);
        return exp((double)o[c] - mx) / sum;
}

static json_t *class_json(const json_t *classes, const float *o, size_t k, size_t c) {
        char fb[24];
        snprintf(fb, sizeof(fb), "%zu", c);
        const char *label = json_string_value(json_array_get(classes, c));
        return json_pack("{s:s s:I s:f s:f}", "label", label ? label : fb, "index", (json_int_t)c, "probability",
                         softmax_at(o, k, c), "logit", (double)o[c]);
}

/* "target": a class name or index -> index, or -1 (absent: the predicted class) */
static int target_index(const json_t *v, const json_t *classes, size_t k, long long *ret, struct ft_error *err) {
        *ret = -1;
        if (!v || json_is_null(v))
                return 0;
        if (json_is_integer(v)) {
                json_int_t i = json_integer_value(v);
                if (i < 0 || (size_t)i >= k)
                        return ft_error_set(err, -EINVAL, "target", "'target' %lld is not a class index from 0 to %zu",
                                            (long long)i, k - 1);
                *ret = (long long)i;
                return 0;
        }
        if (!json_is_string(v))
                return ft_error_set(err, -EINVAL, "target", "'target' must be a class name or index");
        const char *s = json_string_value(v);
        for (size_t c = 0; c < k; c++) {
                char fb[24];
                snprintf(fb, sizeof(fb), "%zu", c);
                const char *name = json_string_value(json_array_get(classes, c));
                if (strcmp(s, name ? name : fb) == 0) {
                        *ret = (long long)c;
                        return 0;
                }
        }
        return ft_error_set(err, -EINVAL, "target", "'target' '%.64s' is not one of the model's %zu classes", s, k);
}

int api_explain_file(const char *weights_path, const char *spec_json, const char *model_id, const void *body_v,
                     void **ret, struct ft_error *err) {
        const json_t *body = body_v;
        struct st_file *f = NULL;
        struct model *m = NULL;
        struct compute_ctx *ctx = NULL;
        struct data_transform t = {0};
        struct data_loader *loader = NULL;
        struct dataset ds = {0};
        struct explain_result res = {0};
        json_t *classes = NULL, *mspec = NULL, *out = NULL;
        size_t idx[2] = {0, 1};
        const char *method = json_string_value(json_object_get(body, "method"));
        const char *baseline = json_string_value(json_object_get(body, "baseline"));
        bool ig = !method || strcmp(method, "integrated_gradients") == 0;
        bool black = baseline && strcmp(baseline, "black") == 0;
        json_int_t steps = json_integer_value(json_object_get(body, "steps"));
        int64_t in[3] = {0};
        const char *id = model_id;

        int r = api_validate(body, api_explain_fields, "", err);
        if (r < 0)
                return r;
        if ((r = st_file_open(weights_path, 0, &f, err)) < 0)
                goto fail;
        const char *pre = st_file_metadata(f, ST_META_PREPROCESS);
        const char *cls = st_file_metadata(f, ST_META_CLASSES);
        const char *task = st_file_metadata(f, "finetuned.task");
        classes = cls ? json_loads(cls, 0, NULL) : NULL;
        if (!spec_json)
                spec_json = st_file_metadata(f, ST_META_SPEC);
        mspec = spec_json ? json_loads(spec_json, 0, NULL) : NULL;
        if (!mspec) {
                r = ft_error_set(err, -EINVAL, "id", "model '%s' has no model spec", id);
                goto fail;
        }
        if ((r = model_new(mspec, &m, err)) < 0)
                goto fail;
        if (model_input_shape(m, in) != 3) {
                r = ft_error_set(err, -EINVAL, "id",
                                 "model '%s' takes %lld features, not images: explain needs an image model", id,
                                 (long long)in[0]);
                goto fail;
        }
        if (task && strcmp(task, "regression") == 0) {
                r = ft_error_set(err, -EINVAL, "id", "model '%s' is a regression model: explain needs a classifier",
                                 id);
                goto fail;
        }
        if ((r = api_model_weights_load(m, f, err)) < 0 || (pre && (r = data_transform_from_json(pre, &t, err)) < 0))
                goto fail;
        const json_t *shape = json_object_get(body, "image_shape");
        size_t values = 1;
        for (size_t i = 0; i < json_array_size(shape); i++)
                values *= (size_t)json_integer_value(json_array_get(shape, i)); /* each <= 4096: no overflow */
        if (shape && values > EXPLAIN_IMAGE_VALUES_MAX) {
                r = ft_error_set(err, -EINVAL, "image_shape", "the image has %zu values; explain takes at most %zu",
                                 values, EXPLAIN_IMAGE_VALUES_MAX);
                goto fail;
        }
        if ((r = api_predict_input(body, m, &ds, err)) < 0)
                goto fail;
        long long target;
        if ((r = target_index(json_object_get(body, "target"), classes, model_output_count(m), &target, err)) < 0)
                goto fail;
        /* the image and a black one, through the loader: the preprocessed input and the black baseline */
        size_t width = ds.channels * ds.height * ds.width;
        uint8_t *px = realloc(ds.pixels, 2 * width);
        int32_t *lb = px ? realloc(ds.labels, 2 * sizeof(int32_t)) : NULL;
        float *tg = lb ? realloc(ds.targets, 2 * sizeof(float)) : NULL;
        if (px)
                ds.pixels = px;
        if (lb)
                ds.labels = lb;
        if (tg)
                ds.targets = tg;
        if (!tg) {
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                goto fail;
        }
        memset(ds.pixels + width, 0, width);
        ds.labels[1] = 0;
        ds.targets[1] = 0;
        ds.n = 2;
        struct data_loader_options lo = {.batch_size = 2};
        struct data_batch b;
        if ((r = data_loader_new(&ds, idx, 2, &t, &lo, &loader, err)) < 0)
                goto fail;
        data_loader_start(loader, 0);
        if (data_loader_next(loader, &b) != 1 || b.c * b.h * b.w != model_input_numel(m)) {
                r = ft_error_set(err, -EINVAL, "image_shape",
                                 "the preprocessed image has %zu values, the model takes %zu", b.c * b.h * b.w,
                                 model_input_numel(m));
                goto fail;
        }
        if ((r = compute_ctx_new(1, &ctx, err)) < 0)
                goto fail;
        struct explain_options o = {
                .method = ig ? EXPLAIN_INTEGRATED_GRADIENTS : EXPLAIN_GRADIENT_X_INPUT,
                .target = target,
                .steps = steps ? (int)steps : EXPLAIN_STEPS_DEFAULT,
                .baseline = ig && black ? b.x + model_input_numel(m) : NULL,
        };
        if ((r = explain_run(m, ctx, b.x, &o, &res, err)) < 0) {
                /* explain.h's names: the model (too big to explain) is the path's id, its input the image */
                if (strcmp(err->param, "model") == 0)
                        snprintf(err->param, sizeof(err->param), "id");
                else if (strcmp(err->param, "input") == 0)
                        snprintf(err->param, sizeof(err->param), "images[0]");
                goto fail;
        }
        /* the map: channels summed, per pixel of the model's input */
        size_t C = (size_t)in[0], H = (size_t)in[1], W = (size_t)in[2];
        json_t *map = json_array();
        double lo_v = INFINITY, hi_v = -INFINITY;
        for (size_t y = 0; map && y < H; y++) {
                json_t *row = json_array();
                for (size_t x = 0; row && x < W; x++) {
                        double v = 0;
                        for (size_t c = 0; c < C; c++)
                                v += res.attribution[(c * H + y) * W + x];
                        lo_v = v < lo_v ? v : lo_v;
                        hi_v = v > hi_v ? v : hi_v;
                        json_array_append_new(row, json_real((double)(float)v));
                }
                if (!row || json_array_append_new(map, row) < 0) {
                        json_decref(map);
                        map = NULL;
                }
        }
        out = map ? json_pack("{s:s s:s s:s s:i s:s? s:o s:o s:[I,I,I] s:o s:f s:f s:{s:f s:f s:f}}", "object",
                              "explanation", "model", id, "method", ig ? "integrated_gradients" : "gradient_x_input",
                              "steps", res.steps, "baseline", ig ? (black ? "black" : "zeros") : NULL, "target",
                              class_json(classes, res.output, res.outputs, res.target), "prediction",
                              class_json(classes, res.output, res.outputs, res.predicted), "input_shape", (json_int_t)C,
                              (json_int_t)H, (json_int_t)W, "map", map, "min", lo_v, "max", hi_v, "completeness", "sum",
                              res.sum, "score_difference", res.score - res.baseline_score, "error", res.delta)
                  : NULL;
        r = out ? 0 : -ENOMEM;
        if (r == 0)
                *ret = out;
fail:
        explain_result_deinit(&res);
        data_loader_free(loader);
        free(ds.x);
        free(ds.pixels);
        free(ds.labels);
        free(ds.targets);
        data_transform_deinit(&t);
        model_free(m);
        compute_ctx_free(ctx);
        st_file_free(f);
        json_decref(classes);
        json_decref(mspec);
        return r;
}

enum MHD_Result api_models_explain(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        if (!api_path_id(req, 0, "mdl", "model", &id, &ret))
                return ret;
        json_t *body = api_request_json(req, api_explain_fields, &ret);
        if (!body)
                return ret;
        struct store *st = api_store(req, &ret);
        if (!st) {
                json_decref(body);
                return ret;
        }
        struct ft_error err = {0};
        struct store_model *rec = NULL;
        json_t *out = NULL;
        int r = store_model_get(st, id, &rec, &err);
        if (r == 0 && !rec->weights_path[0])
                r = ft_error_set(&err, -EBUSY, "id", "model '%s' has no weights yet: train it with a job first", id);
        if (r == 0)
                r = api_explain_file(rec->weights_path, rec->spec_json, rec->id, body, (void **)&out, &err);
        store_model_free(rec);
        json_decref(body);
        if (r < 0)
                return api_reply_ft_error(req, r == -EBUSY ? -EALREADY : r, &err);
        return api_reply_json(req, MHD_HTTP_OK, out);
}
