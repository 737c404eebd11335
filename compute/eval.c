/* eval.c - a trained model over a whole dataset (see eval.h): open, read, run in batches, metrics and the
 * predictions CSV. Not for: the store, training. */
#include "compute/eval.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "compute/metrics.h"
#include "compute/metrics_curves.h"
#include "compute/safetensors.h"

void eval_model_deinit(struct eval_model *em) {
        if (!em)
                return;
        model_free(em->m);
        data_transform_deinit(&em->t);
        st_classes_free(em->classes, em->n_classes);
        memset(em, 0, sizeof(*em));
}

int eval_model_open(const char *path, const json_t *spec, size_t max_bytes, struct eval_model *ret,
                    struct ft_error *err) {
        struct eval_model em = {.temperature = 1.0};
        struct st_file *f = NULL;
        json_t *ca = NULL;
        int r = st_file_open(path, max_bytes, &f, err);
        if (r < 0)
                return r;
        const char *s;
        json_t *own = NULL;
        if (!spec) {
                if (!(s = st_file_metadata(f, ST_META_SPEC))) {
                        r = ft_error_set(err, -EINVAL, "model", "'%s' has no '%s' metadata: it names no model spec",
                                         path, ST_META_SPEC);
                        goto fail;
                }
                if (!(own = json_loads(s, JSON_REJECT_DUPLICATES, NULL))) {
                        r = ft_error_set(err, -EINVAL, "model", "'%s': metadata '%s' is not JSON", path, ST_META_SPEC);
                        goto fail;
                }
                spec = own;
        }
        r = model_new(spec, &em.m, err);
        json_decref(own);
        if (r == 0)
                r = st_model_load(em.m, f, NULL, NULL, err);
        if (r == 0 && (s = st_file_metadata(f, ST_META_PREPROCESS)))
                r = data_transform_from_json(s, &em.t, err);
        if (r < 0)
                goto fail;
        if ((s = st_file_metadata(f, ST_META_CLASSES))) {
                ca = json_loads(s, JSON_REJECT_DUPLICATES, NULL);
                if (!json_is_array(ca) || json_array_size(ca) > DATA_CLASSES_MAX) {
                        r = ft_error_set(err, -EINVAL, "model", "'%s': metadata '%s' is not an array of names", path,
                                         ST_META_CLASSES);
                        goto fail;
                }
                size_t n = json_array_size(ca);
                em.classes = calloc(n ? n : 1, sizeof(char *));
                if (!em.classes) {
                        r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                        goto fail;
                }
                for (; em.n_classes < n; em.n_classes++) {
                        const char *v = json_string_value(json_array_get(ca, em.n_classes));
                        if (!v || !(em.classes[em.n_classes] = strdup(v))) {
                                r = ft_error_set(err, -EINVAL, "model", "'%s': class %zu in '%s' is not a string", path,
                                                 em.n_classes, ST_META_CLASSES);
                                goto fail;
                        }
                }
        }
        s = st_file_metadata(f, "finetuned.task");
        em.regression = s && strcmp(s, "regression") == 0;
        if ((s = st_file_metadata(f, EVAL_META_TEMPERATURE))) {
                char *end;
                double t = strtod(s, &end);
                if (*end || !(t > 0) || !isfinite(t)) {
                        r = ft_error_set(err, -EINVAL, "model", "'%s': metadata '%s' is not a positive number", path,
                                         EVAL_META_TEMPERATURE);
                        goto fail;
                }
                em.temperature = t;
                em.has_temperature = true;
        }
        size_t k = model_output_count(em.m);
        if (!em.regression && em.n_classes && em.n_classes != k) {
                r = ft_error_set(err, -EINVAL, "model", "'%s' names %zu classes but the model has %zu outputs", path,
                                 em.n_classes, k);
                goto fail;
        }
        json_decref(ca);
        st_file_free(f);
        *ret = em;
        return 0;
fail:
        json_decref(ca);
        st_file_free(f);
        eval_model_deinit(&em);
        return r;
}

static void name_error(struct ft_error *err, const struct eval_data_options *o) {
        if (err && !err->param[0] && o->param)
                snprintf(err->param, sizeof(err->param), "%s", o->param);
}

int eval_data_open(const struct eval_model *em, const struct eval_data_options *o, struct dataset **ret,
                   bool *ret_labelled, struct ft_error *err) {
        int64_t in[3] = {0};
        int nd = model_input_shape(em->m, in);
        struct data_open_options dopt = {
                .target = o->target,
                .task = em->regression ? DATA_REGRESSION : DATA_CLASSIFICATION,
                .max_bytes = o->max_bytes,
                .one_class_ok = true,
        };
        struct dataset *ds = NULL;
        int r;
        bool labelled = true;
        if (!o->path2 && !o->target && nd == 1) {
                /* a table with exactly the model's features and no target column: data to predict on */
                struct data_open_options plain = dopt;
                plain.no_target = true;
                struct ft_error ignored = {0};
                if (data_open(o->path, NULL, &plain, &ds, &ignored) == 0 && ds->kind == DATA_TABLE &&
                    ds->n_features == (size_t)in[0])
                        labelled = false;
                else {
                        dataset_free(ds);
                        ds = NULL;
                }
        }
        if (!ds) {
                r = data_open(o->path, o->path2, &dopt, &ds, err);
                if (r < 0) {
                        name_error(err, o);
                        return r;
                }
        }
        const char *label = o->label ? o->label : o->path;
        if (!labelled && o->labels_required) {
                dataset_free(ds);
                return ft_error_set(err, -EINVAL, o->param,
                                    "'%s' has the model's %lld feature columns but no target column: evaluation needs "
                                    "the labels",
                                    label, (long long)in[0]);
        }
        if (labelled && !em->regression && ds->task == DATA_CLASSIFICATION) {
                /* the data's classes onto the model's, by name */
                size_t k = model_output_count(em->m);
                int32_t *map = calloc(ds->n_classes ? ds->n_classes : 1, sizeof(int32_t));
                if (!map) {
                        dataset_free(ds);
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                }
                for (size_t j = 0; j < ds->n_classes; j++) {
                        map[j] = -1;
                        if (!em->n_classes) {
                                char *end;
                                long v = strtol(ds->class_names[j], &end, 10);
                                if (!*end && v >= 0 && (size_t)v < k)
                                        map[j] = (int32_t)v;
                        }
                        for (size_t c = 0; c < em->n_classes && map[j] < 0; c++)
                                if (strcmp(em->classes[c], ds->class_names[j]) == 0)
                                        map[j] = (int32_t)c;
                        if (map[j] < 0) {
                                r = ft_error_set(err, -EINVAL, o->param,
                                                 "'%s' has class '%.64s', which the model was not trained on", label,
                                                 ds->class_names[j]);
                                free(map);
                                dataset_free(ds);
                                return r;
                        }
                }
                for (size_t i = 0; i < ds->n; i++)
                        ds->labels[i] = map[ds->labels[i]];
                free(map);
                /* the dataset's class list now is the model's (the labels index it) */
                st_classes_free(ds->class_names, ds->n_classes);
                free(ds->class_counts);
                ds->class_names = NULL;
                ds->class_counts = NULL;
                ds->n_classes = k;
        }
        if (!ds->labels && !ds->targets) { /* the loader copies labels: zeros it never reports */
                ds->labels = calloc(ds->n ? ds->n : 1, sizeof(int32_t));
                if (!ds->labels) {
                        dataset_free(ds);
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                }
        }
        if (ds->kind == DATA_TABLE && em->t.standardize && em->t.n_features != ds->n_features) {
                r = ft_error_set(err, -EINVAL, o->param, "'%s' has %zu feature columns, the model was trained on %zu",
                                 label, ds->n_features, em->t.n_features);
                dataset_free(ds);
                return r;
        }
        *ret = ds;
        *ret_labelled = labelled;
        return 0;
}

void eval_output_deinit(struct eval_output *o) {
        if (!o)
                return;
        free(o->outputs);
        free(o->labels);
        free(o->targets);
        memset(o, 0, sizeof(*o));
}

int eval_run(struct eval_model *em, struct compute_ctx *ctx, const struct dataset *ds, bool labelled,
             const struct eval_callbacks *cb, struct eval_output *ret, struct ft_error *err) {
        struct eval_output o = {.n = ds->n, .k = model_output_count(em->m)};
        struct data_loader *loader = NULL;
        size_t *idx = calloc(ds->n ? ds->n : 1, sizeof(size_t)), cells;
        int r = idx && ft_mul_size(o.n, o.k, &cells) ? 0 : -ENOMEM;
        if (r == 0 && !(o.outputs = malloc((cells ? cells : 1) * sizeof(float))))
                r = -ENOMEM;
        if (r == 0 && labelled && !em->regression && !(o.labels = malloc((o.n ? o.n : 1) * sizeof(int32_t))))
                r = -ENOMEM;
        if (r == 0 && labelled && em->regression && !(o.targets = malloc((o.n ? o.n : 1) * sizeof(float))))
                r = -ENOMEM;
        if (r < 0) {
                ft_error_set(err, r, NULL, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < ds->n; i++)
                idx[i] = i;
        size_t batch = FT_MAX((size_t)1, FT_MIN(ds->n, (size_t)EVAL_BATCH));
        struct data_loader_options lo = {.batch_size = batch};
        r = data_loader_new(ds, idx, ds->n, &em->t, &lo, &loader, err);
        if (r == 0) {
                model_set_inference(em->m, true);
                r = model_prepare(em->m, ctx, (int)batch, err);
        }
        if (r < 0)
                goto fail;
        data_loader_start(loader, 0);
        struct data_batch b;
        size_t done = 0;
        while (r == 0 && data_loader_next(loader, &b) == 1) {
                if (cb && cb->should_stop && cb->should_stop(cb->userdata)) {
                        r = ft_error_set(err, -ECANCELED, NULL, "cancelled");
                        break;
                }
                if (b.c * b.h * b.w != model_input_numel(em->m)) {
                        r = ft_error_set(err, -EINVAL, NULL,
                                         "the preprocessed input has %zu values, the model takes %zu", b.c * b.h * b.w,
                                         model_input_numel(em->m));
                        break;
                }
                const float *y = NULL;
                r = model_forward(em->m, b.x, (int)b.n, false, &y, err);
                for (size_t i = 0; r == 0 && i < b.n * o.k; i++)
                        if (!isfinite(y[i]))
                                r = ft_error_set(err, -ERANGE, NULL, "the model's output for row %zu is not finite",
                                                 done + i / o.k);
                if (r < 0)
                        break;
                memcpy(o.outputs + done * o.k, y, b.n * o.k * sizeof(float));
                for (size_t i = 0; i < b.n; i++) {
                        if (o.labels)
                                o.labels[done + i] = b.labels[i];
                        if (o.targets)
                                o.targets[done + i] = b.targets[i];
                }
                done += b.n;
                if (cb && cb->on_progress)
                        cb->on_progress(cb->userdata, done, ds->n);
        }
        if (r < 0)
                goto fail;
        data_loader_free(loader);
        free(idx);
        *ret = o;
        return 0;
fail:
        data_loader_free(loader);
        free(idx);
        eval_output_deinit(&o);
        return r;
}

json_t *eval_metrics_json(const struct eval_model *em, const struct eval_output *o, size_t curve_points,
                          struct ft_error *err) {
        if (em->regression) {
                if (!o->targets) {
                        ft_error_set(err, -EINVAL, NULL, "the data has no targets");
                        return NULL;
                }
                float *pred = malloc((o->n ? o->n : 1) * sizeof(float));
                if (!pred) {
                        ft_error_set(err, -ENOMEM, NULL, "out of memory");
                        return NULL;
                }
                for (size_t i = 0; i < o->n; i++)
                        pred[i] = o->outputs[i * o->k];
                struct metrics_regression mr;
                int r = metrics_regression_compute(o->targets, pred, o->n, &mr, err);
                free(pred);
                return r < 0 ? NULL : metrics_regression_to_json(&mr);
        }
        if (!o->labels) {
                ft_error_set(err, -EINVAL, NULL, "the data has no labels");
                return NULL;
        }
        size_t n = o->n, k = o->k, cells = n * k;
        double *p = malloc((cells ? cells : 1) * sizeof(double));
        int32_t *pred = malloc((n ? n : 1) * sizeof(int32_t));
        json_t *doc = NULL, *scores = NULL, *cal = NULL;
        struct metrics_classification mc = {0};
        struct metrics_scores ms = {0};
        struct metrics_calibration mcal;
        if (!p || !pred) {
                ft_error_set(err, -ENOMEM, NULL, "out of memory");
                goto out;
        }
        metrics_softmax(o->outputs, n, k, em->temperature, p);
        for (size_t i = 0; i < n; i++) {
                int32_t best = 0;
                for (size_t c = 1; c < k; c++)
                        if (o->outputs[i * k + c] > o->outputs[i * k + (size_t)best])
                                best = (int32_t)c;
                pred[i] = best;
        }
        const char *const *names = em->n_classes == k ? (const char *const *)em->classes : NULL;
        if (metrics_classification_compute(o->labels, pred, n, k, &mc, err) < 0 ||
            metrics_scores_compute(o->labels, p, n, k, k <= METRICS_CURVES_CLASSES_MAX, &ms, err) < 0 ||
            metrics_calibration_compute(o->labels, p, n, k, &mcal, err) < 0)
                goto out;
        doc = metrics_classification_to_json(&mc, names);
        scores = metrics_scores_to_json(&ms, names, curve_points);
        cal = metrics_calibration_to_json(&mcal);
        if (!doc || !scores || !cal) {
                json_decref(doc);
                doc = NULL;
                ft_error_set(err, -ENOMEM, NULL, "out of memory");
                goto out;
        }
        json_object_update(doc, scores);
        if (!ms.roc)
                json_object_set_new(doc, "curves", json_null());
        json_object_set_new(doc, "loss", json_real(ms.log_loss));
        json_object_set_new(cal, "temperature", json_real(em->temperature));
        if (em->has_temperature) {
                struct metrics_calibration raw;
                metrics_softmax(o->outputs, n, k, 1.0, p);
                if (metrics_calibration_compute(o->labels, p, n, k, &raw, err) == 0)
                        json_object_set_new(cal, "uncalibrated",
                                            json_pack("{s:f s:f}", "ece", raw.ece, "mce", raw.mce));
        }
        json_object_set(doc, "calibration", cal);
out:
        json_decref(scores);
        json_decref(cal);
        metrics_classification_deinit(&mc);
        metrics_scores_deinit(&ms);
        free(p);
        free(pred);
        return doc;
}

/* A CSV field: quoted when it has a delimiter, quote or line break. */
static int csv_field(FILE *f, const char *s) {
        if (!strpbrk(s, ",\"\r\n"))
                return fputs(s, f) < 0 ? -EIO : 0;
        fputc('"', f);
        for (; *s; s++) {
                if (*s == '"')
                        fputc('"', f);
                fputc(*s, f);
        }
        return fputc('"', f) == EOF ? -EIO : 0;
}

int eval_predictions_csv(const struct eval_model *em, const struct eval_output *o, char **ret, size_t *ret_len,
                         struct ft_error *err) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        size_t k = o->k;
        char fallback[32];
        fputs("row", f);
        if (em->regression) {
                fputs(o->targets ? ",target,prediction\n" : ",prediction\n", f);
        } else {
                fputs(o->labels ? ",label,prediction" : ",prediction", f);
                for (size_t c = 0; c < k; c++) {
                        snprintf(fallback, sizeof(fallback), "%zu", c);
                        char name[DATA_NAME_MAX + 8];
                        snprintf(name, sizeof(name), "p_%s", em->n_classes == k ? em->classes[c] : fallback);
                        fputc(',', f);
                        csv_field(f, name);
                }
                fputc('\n', f);
        }
        double *p = em->regression ? NULL : malloc((k ? k : 1) * sizeof(double));
        if (!em->regression && !p) {
                fclose(f);
                free(buf);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        for (size_t i = 0; i < o->n; i++) {
                const float *z = o->outputs + i * k;
                fprintf(f, "%zu", i);
                if (em->regression) {
                        if (o->targets)
                                fprintf(f, ",%.9g", (double)o->targets[i]);
                        fprintf(f, ",%.9g\n", (double)z[0]);
                        continue;
                }
                size_t best = 0;
                for (size_t c = 1; c < k; c++)
                        if (z[c] > z[best])
                                best = c;
                metrics_softmax(z, 1, k, em->temperature, p);
                if (o->labels) {
                        snprintf(fallback, sizeof(fallback), "%d", o->labels[i]);
                        fputc(',', f);
                        csv_field(f, em->n_classes == k ? em->classes[o->labels[i]] : fallback);
                }
                snprintf(fallback, sizeof(fallback), "%zu", best);
                fputc(',', f);
                csv_field(f, em->n_classes == k ? em->classes[best] : fallback);
                for (size_t c = 0; c < k; c++)
                        fprintf(f, ",%.9g", p[c]);
                fputc('\n', f);
        }
        free(p);
        if (fclose(f) != 0) {
                free(buf);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory writing the predictions");
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

int eval_predictions_write(const struct eval_model *em, const struct eval_output *o, const char *path,
                           struct ft_error *err) {
        char *buf = NULL;
        size_t len = 0;
        int r = eval_predictions_csv(em, o, &buf, &len, err);
        if (r == 0)
                r = fileio_write_atomic(path, buf, len, 0644, err);
        free(buf);
        return r;
}
