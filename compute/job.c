/* job.c - one job from spec to result (see job.h): the data a spec names, the base model sized to it, the
 * model/data check, the saved model and metrics.json. `finetuned train` and the daemon's workers both go
 * through here, so they cannot disagree on classes, heads, messages or files.
 *
 * Not for: the store, ids, paths of its own, printing or logging; the training loop (train.c).
 */
#include "compute/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "compute/eval.h"
#include "compute/diagnostics.h"

/* ---- data ------------------------------------------------------------------------ */

/* Every occurrence of `what` in err's message becomes `with` (a blob path becomes the dataset's id). */
static void message_replace(struct ft_error *err, const char *what, const char *with) {
        size_t wn = strlen(what), n = strlen(with);
        char *msg = err->message, *at = msg;
        while (wn && (at = strstr(at, what))) {
                size_t tail = strlen(at + wn);
                if ((size_t)(at - msg) + n + tail + 1 > sizeof(err->message))
                        break;
                memmove(at + n, at + wn, tail + 1);
                memcpy(at, with, n);
                at += n;
        }
}

int job_data_open(const struct jobspec *spec, const struct job_data_source *src, struct dataset **ret,
                  struct ft_error *err) {
        struct data_open_options o = {
                .target = spec->task.target[0] ? spec->task.target : NULL,
                .task = spec->task.type == JOBSPEC_TASK_REGRESSION ? DATA_REGRESSION : DATA_CLASSIFICATION,
                .strict_missing = !spec->preprocess.dropna,
                .max_bytes = src->max_bytes,
        };
        struct dataset *ds = NULL;
        int r = data_open(src->path, src->path2, &o, &ds, err);
        if (r < 0) {
                if (err && src->label) {
                        message_replace(err, src->path, src->label);
                        if (src->path2)
                                message_replace(err, src->path2, src->label);
                }
                if (err && !err->param[0] && src->param)
                        snprintf(err->param, sizeof(err->param), "%s", src->param);
                return r;
        }
        if (src->label) {
                char *label = strdup(src->label);
                if (!label) {
                        dataset_free(ds);
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                }
                free(ds->source);
                ds->source = label;
        }
        *ret = ds;
        return 0;
}

void job_data_facts_of(const struct dataset *ds, struct job_data_facts *ret) {
        *ret = (struct job_data_facts){
                .label = ds->source,
                .kind = ds->kind,
                .task = ds->task,
                .rows = ds->n,
                .n_features = ds->n_features,
                .feature_names = ds->feature_names,
                .target = ds->target_name,
                .n_classes = ds->task == DATA_CLASSIFICATION ? ds->n_classes : 0,
                .class_names = ds->task == DATA_CLASSIFICATION ? ds->class_names : NULL,
                .channels = ds->channels,
                .height = ds->height,
                .width = ds->width,
        };
}

/* Whether the classes in the facts are those of the column the spec trains on. */
static bool same_target(const struct jobspec *spec, const struct job_data_facts *d) {
        return d->kind == DATA_IMAGES || !spec->task.target[0] ||
               (d->target && strcmp(d->target, spec->task.target) == 0);
}

size_t job_outputs(const struct jobspec *spec, const struct job_data_facts *train) {
        if (spec->task.type == JOBSPEC_TASK_REGRESSION)
                return 1;
        return same_target(spec, train) ? train->n_classes : 0;
}

/* ---- the model ------------------------------------------------------------------- */

/* Set the last linear layer's out_features in a spec; -ENOENT when it has none. */
static int spec_set_outputs(json_t *spec, size_t outputs) {
        json_t *layers = json_object_get(spec, "layers");
        for (size_t i = json_array_size(layers); i-- > 0;) {
                json_t *l = json_array_get(layers, i);
                const char *type = json_string_value(json_object_get(l, "type"));
                if (type && strcmp(type, "linear") == 0)
                        return json_object_set_new(l, "out_features", json_integer((json_int_t)outputs)) < 0 ? -ENOMEM
                                                                                                             : 0;
        }
        return -ENOENT;
}

/* spec with its head sized to `outputs` (a new reference: a resized copy, or spec itself when it fits or
 * outputs is 0); *ret_have gets the spec's own output count. */
static int spec_fit(const json_t *spec, size_t outputs, json_t **ret, size_t *ret_have, struct ft_error *err) {
        int64_t shape[3];
        int ndim;
        size_t have;
        int r = model_spec_io(spec, shape, &ndim, &have, err);
        if (r < 0)
                return r;
        *ret_have = have;
        if (!outputs || have == outputs) {
                *ret = json_incref((json_t *)spec);
                return 0;
        }
        json_t *resized = json_deep_copy(spec);
        if (!resized)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        r = spec_set_outputs(resized, outputs);
        if (r < 0) {
                json_decref(resized);
                return r == -ENOENT ? ft_error_set(err, -EINVAL, "model",
                                                   "the model has %zu outputs, the data %zu, and no linear head to "
                                                   "replace",
                                                   have, outputs)
                                    : ft_error_set(err, r, NULL, "out of memory");
        }
        *ret = resized;
        return 0;
}

/* Whether the class names recorded in f differ from class_names (a file without them, or with unreadable
 * ones, does not differ). */
static bool classes_differ(const struct st_file *f, char *const *class_names, size_t n_classes) {
        const char *text = st_file_metadata(f, ST_META_CLASSES);
        json_t *ca = text ? json_loads(text, 0, NULL) : NULL;
        bool differ = json_array_size(ca) > 0 && json_array_size(ca) != n_classes;
        for (size_t i = 0; json_array_size(ca) > 0 && !differ && i < n_classes; i++) {
                const char *name = json_string_value(json_array_get(ca, i));
                differ = !name || strcmp(name, class_names[i]) != 0;
        }
        json_decref(ca);
        return differ;
}

/* The length of a tensor name's module prefix ("fc" of "fc.weight"). */
static size_t prefix_len(const char *name) {
        const char *dot = strrchr(name, '.');
        return dot ? (size_t)(dot - name) : strlen(name);
}

int job_model_build_base(const json_t *spec, const struct st_file *weights, size_t outputs, char *const *class_names,
                         size_t n_classes, uint64_t seed, struct model **ret, struct st_load_report *report,
                         struct ft_error *err) {
        struct st_load_report rep = {0};
        struct model *m = NULL;
        json_t *fitted = NULL;
        size_t have = 0;
        int r = spec_fit(spec, outputs, &fitted, &have, err);
        if (r < 0)
                return r;
        bool replace = outputs && have != outputs;
        r = model_new(fitted, &m, err);
        if (r < 0)
                goto fail;
        model_init(m, seed);
        if (weights) {
                if (!replace && class_names && n_classes)
                        replace = classes_differ(weights, class_names, n_classes);
                struct st_load_options opt = {.replace_head = replace, .reinit_head = replace, .seed = seed};
                r = st_model_load(m, weights, &opt, &rep, err);
                if (r < 0)
                        goto fail;
        } else if (replace) {
                /* no weights: the resized head is as fresh as the rest; name it for the report */
                for (size_t i = model_tensor_count(m); i-- > 0;) {
                        const struct tensor *t = model_tensor_at(m, i);
                        if (t->is_param) {
                                rep.head_replaced = true;
                                snprintf(rep.head, sizeof(rep.head), "%.*s", (int)prefix_len(t->name), t->name);
                                break;
                        }
                }
        }
        json_decref(fitted);
        if (report)
                *report = rep;
        else
                st_load_report_deinit(&rep);
        *ret = m;
        return 0;
fail:
        if (report)
                *report = rep;
        else
                st_load_report_deinit(&rep);
        json_decref(fitted);
        model_free(m);
        return r;
}

/* A preset's spec sized to the training data (after the spec's resize / channels). */
static int preset_for_data(const struct jobspec *spec, const char *name, const json_t *options,
                           const struct dataset *ds, size_t outputs, json_t **ret, struct ft_error *err) {
        struct model_preset_size size = {
                .features = ds->kind == DATA_TABLE ? ds->n_features : ds->channels * ds->height * ds->width,
                .channels = spec->preprocess.channels ? spec->preprocess.channels : ds->channels,
                .height = spec->preprocess.resize[0] ? spec->preprocess.resize[0] : ds->height,
                .width = spec->preprocess.resize[1] ? spec->preprocess.resize[1] : ds->width,
                .outputs = outputs,
        };
        char list[128];
        if (!model_preset_exists(name))
                return ft_error_set(err, -EINVAL, options ? "model.preset" : "model", "%s '%.64s' is not one of %s",
                                    options ? "'model.preset'" : "the preset", name,
                                    model_preset_list(list, sizeof(list)));
        int r = model_preset_spec_sized(name, &size, options, ret, err);
        if (r < 0 && err)
                snprintf(err->param, sizeof(err->param), "%s", options ? "model.options" : "model");
        return r;
}

int job_model_build(const struct jobspec *spec, const struct job_model_source *src, const struct dataset *train,
                    struct model **ret, struct st_load_report *report, struct ft_error *err) {
        struct job_data_facts facts;
        job_data_facts_of(train, &facts);
        bool classify = spec->task.type == JOBSPEC_TASK_CLASSIFICATION;
        size_t outputs = job_outputs(spec, &facts);
        json_t *mspec = NULL;
        int r;

        if (report)
                memset(report, 0, sizeof(*report));
        if (src->preset) {
                r = preset_for_data(spec, src->preset, src->options, train, outputs, &mspec, err);
                if (r < 0)
                        return r;
        } else if (src->spec) {
                mspec = json_incref((json_t *)src->spec);
        } else if (src->weights) {
                const char *text = st_file_metadata(src->weights, ST_META_SPEC);
                mspec = text ? json_loads(text, 0, NULL) : NULL;
                if (!mspec)
                        return ft_error_set(err, -EINVAL, "model",
                                            "'%s' has no model spec in its metadata: name the architecture too (a "
                                            "preset or a spec) with these weights",
                                            src->weights_label ? src->weights_label : "the weights");
        } else {
                return ft_error_set(err, -EINVAL, "model", "'model' names no preset, spec or weights");
        }
        r = job_model_build_base(mspec, src->weights, outputs, classify ? train->class_names : NULL,
                                 classify ? train->n_classes : 0, spec->seed, ret, report, err);
        if (r < 0 && err && !err->param[0])
                snprintf(err->param, sizeof(err->param), "model");
        json_decref(mspec);
        return r;
}

void job_model_facts_of(const struct model *m, struct job_model_facts *ret) {
        memset(ret, 0, sizeof(*ret));
        ret->ndim = model_input_shape(m, ret->shape);
        ret->outputs = model_output_count(m);
}

int job_model_facts_for(const json_t *model_spec, const struct jobspec *spec, const struct job_data_facts *train,
                        struct job_model_facts *ret, struct ft_error *err) {
        json_t *fitted = NULL;
        size_t have;
        struct job_model_facts f = {0};
        int r = spec_fit(model_spec, job_outputs(spec, train), &fitted, &have, err);
        if (r == 0)
                r = model_spec_io(fitted, f.shape, &f.ndim, &f.outputs, err);
        json_decref(fitted);
        if (r < 0) {
                if (err && !err->param[0])
                        snprintf(err->param, sizeof(err->param), "model");
                return r;
        }
        *ret = f;
        return 0;
}

/* ---- the check ------------------------------------------------------------------------ */

static bool names_have(char *const *names, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (names[i] && strcmp(names[i], name) == 0)
                        return true;
        return false;
}

static bool is_number(const char *s) {
        char *end = NULL;
        strtod(s, &end);
        return end != s && !*end;
}

static const char *task_word(enum data_task t) {
        return t == DATA_CLASSIFICATION ? "classification" : "regression";
}

static int check_validation(const struct jobspec *spec, const struct job_data_facts *t, const struct job_data_facts *v,
                            struct ft_error *err) {
        if (v->kind != t->kind || v->task != t->task)
                return ft_error_set(err, -EINVAL, "validation_file", "'%s' is not the same kind of data as '%s'",
                                    v->label, t->label);
        if (t->kind == DATA_TABLE && v->n_features != t->n_features)
                return ft_error_set(err, -EINVAL, "validation_file", "'%s' has %zu features, '%s' has %zu", v->label,
                                    v->n_features, t->label, t->n_features);
        if (spec->task.type == JOBSPEC_TASK_CLASSIFICATION && same_target(spec, t) && same_target(spec, v) &&
            t->class_names && v->class_names)
                for (size_t c = 0; c < v->n_classes; c++)
                        if (!names_have(t->class_names, t->n_classes, v->class_names[c]))
                                return ft_error_set(err, -EINVAL, "validation_file",
                                                    "'%s' has class '%.64s' that '%s' does not have", v->label,
                                                    v->class_names[c], t->label);
        return 0;
}

int job_check(const struct jobspec *spec, const struct job_model_facts *m, const struct job_data_facts *t,
              const struct job_data_facts *v, struct ft_error *err) {
        bool classify = spec->task.type == JOBSPEC_TASK_CLASSIFICATION;
        const char *target = spec->task.target[0] ? spec->task.target : NULL;
        bool same = same_target(spec, t);

        if (t->rows == 0)
                return ft_error_set(err, -EINVAL, "training_file", "'%s' has no rows", t->label);
        /* the task and the target */
        if (t->kind == DATA_IMAGES) {
                if (target)
                        return ft_error_set(err, -EINVAL, "task.target",
                                            "'task.target' does not apply to an image dataset ('%s')", t->label);
                if (!classify)
                        return ft_error_set(err, -EINVAL, "task.type",
                                            "'task.type' is regression but '%s' holds images with class labels",
                                            t->label);
        } else {
                if (!same && t->feature_names && !names_have(t->feature_names, t->n_features, target))
                        return ft_error_set(err, -EINVAL, "task.target", "'task.target': '%s' has no column '%.64s'",
                                            t->label, target);
                if ((t->task == DATA_CLASSIFICATION) != classify)
                        return ft_error_set(err, -EINVAL, "task.type", "'task.type' is %s but '%s' was read for %s",
                                            jobspec_task_name(spec->task.type), t->label, task_word(t->task));
                for (size_t c = 0; !classify && same && t->class_names && c < t->n_classes; c++)
                        if (!is_number(t->class_names[c]))
                                return ft_error_set(err, -EINVAL, "task.type",
                                                    "'task.type' is regression but column '%s' of '%s' holds text "
                                                    "('%.64s')",
                                                    t->target ? t->target : "?", t->label, t->class_names[c]);
        }
        if (classify && same && t->n_classes && t->n_classes < 2)
                return ft_error_set(err, -EINVAL, "training_file", "'%s' has only %zu class", t->label, t->n_classes);

        /* the model's input */
        if (t->kind == DATA_TABLE) {
                if (m->ndim != 1)
                        return ft_error_set(
                                err, -EINVAL, "model", "'model' takes %lldx%lldx%lld images, '%s' is a table",
                                (long long)m->shape[0], (long long)m->shape[1], (long long)m->shape[2], t->label);
                if ((size_t)m->shape[0] != t->n_features)
                        return ft_error_set(err, -EINVAL, "model",
                                            "'model' takes %lld input features, '%s' has %zu (besides the target)",
                                            (long long)m->shape[0], t->label, t->n_features);
        } else {
                if (m->ndim != 3)
                        return ft_error_set(err, -EINVAL, "model",
                                            "'model' takes %lld input features, not images: '%s' holds %zux%zux%zu "
                                            "images",
                                            (long long)m->shape[0], t->label, t->channels, t->height, t->width);
                if (spec->preprocess.resize[0] &&
                    (spec->preprocess.resize[0] != m->shape[1] || spec->preprocess.resize[1] != m->shape[2]))
                        return ft_error_set(err, -EINVAL, "preprocess.resize",
                                            "'preprocess.resize' [%u, %u] differs from the model's input %lldx%lld",
                                            spec->preprocess.resize[0], spec->preprocess.resize[1],
                                            (long long)m->shape[1], (long long)m->shape[2]);
                if (spec->preprocess.channels && spec->preprocess.channels != m->shape[0])
                        return ft_error_set(err, -EINVAL, "preprocess.channels",
                                            "'preprocess.channels' %u differs from the model's %lld input channels",
                                            spec->preprocess.channels, (long long)m->shape[0]);
                size_t c = (size_t)m->shape[0];
                if (t->channels && c != t->channels && !(t->channels == 1 && c == 3))
                        return ft_error_set(err, -EINVAL, "preprocess.channels",
                                            "'%s' has %zu-channel images; the model takes %zu channels", t->label,
                                            t->channels, c);
        }

        /* the model's outputs */
        if (classify && same && t->n_classes && m->outputs != t->n_classes)
                return ft_error_set(err, -EINVAL, "model", "'model' has %zu outputs but '%s' has %zu classes",
                                    m->outputs, t->label, t->n_classes);
        if (!classify && m->outputs != 1)
                return ft_error_set(err, -EINVAL, "model", "'model' has %zu outputs; regression needs 1", m->outputs);

        return v ? check_validation(spec, t, v, err) : 0;
}

/* ---- the result ------------------------------------------------------------------------- */

int job_result_save(const char *path, struct model *m, const struct jobspec *spec, const struct dataset *train,
                    const struct train_result *res, const char *job_id, struct ft_error *err) {
        static char *const no_classes[1] = {NULL};
        bool classify = train->task == DATA_CLASSIFICATION;
        char temperature[32];
        snprintf(temperature, sizeof(temperature), "%.17g", res->final.calibration.temperature);
        struct st_meta extra[3] = {{"finetuned.task", jobspec_task_name(spec->task.type)}};
        size_t n = 1;
        if (classify && res->final.calibration.scaled)
                extra[n++] = (struct st_meta){EVAL_META_TEMPERATURE, temperature};
        if (job_id)
                extra[n++] = (struct st_meta){"finetuned.job", job_id};
        return st_model_save_with(path, m, &res->transform, classify ? train->class_names : no_classes,
                                  classify ? train->n_classes : 0, extra, n, err);
}

json_t *job_metrics_json(const struct train_result *res, bool history) {
        json_t *doc = train_event_json(&(struct train_event){TRAIN_EVENT_FINAL, .final = &res->final});
        if (!doc)
                return NULL;
        json_object_del(doc, "type");
        if (!history)
                return doc;
        json_t *h = json_array();
        if (!h || json_object_set_new(doc, "history", h) < 0) {
                json_decref(doc);
                return NULL;
        }
        for (size_t i = 0; i < res->n_history; i++)
                if (json_array_append_new(h, train_event_json(&(struct train_event){TRAIN_EVENT_EPOCH,
                                                                                    .epoch = &res->history[i]})) < 0) {
                        json_decref(doc);
                        return NULL;
                }
        /* the file's per-example diagnostics (compute/diagnostics.h), every example included */
        if (res->diagnostics && res->final.class_names &&
            json_object_set_new(doc, "diagnostics", diag_report_json(res->diagnostics, res->final.class_names, true)) <
                    0) {
                json_decref(doc);
                return NULL;
        }
        return doc;
}

int job_metrics_write(const char *path, const struct train_result *res, struct ft_error *err) {
        json_t *doc = job_metrics_json(res, true);
        char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(doc);
        if (!text)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        size_t n = strlen(text);
        text[n] = '\n'; /* the terminating NUL becomes the last newline */
        int r = fileio_write_atomic(path, text, n + 1, 0644, err);
        free(text);
        return r;
}
