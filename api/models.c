/* models.c - /v1/models: register a model from a preset (+ config), from a
 * spec, or with uploaded safetensors weights checked tensor by tensor against
 * the spec; list, get, delete, download weights.
 * Not for: building or running networks (compute/model.h), predict (predict.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "common/log.h"
#include "compute/data.h"
#include "compute/model.h"
#include "compute/safetensors.h"
#include "store/store.h"

const struct api_field api_model_create_fields[] = {
        {"name", API_T_STRING, .max_len = 200, .description = "a name for the model (default: the preset name)"},
        {"preset", API_T_STRING, .choices = model_preset_names, .description = "build from a preset (with config)"},
        {"config", API_T_OBJECT, .description = "preset options, e.g. {\"inputs\": 4, \"outputs\": 3} for mlp"},
        {"spec", API_T_OBJECT, .description = "a full model spec (layers), instead of a preset"},
        {NULL},
};

/* The multipart form of POST /v1/models, checked part by part below. */
const struct api_field api_model_create_parts[] = {
        {"weights", API_T_BINARY, .description = "a safetensors file, every tensor of the model (strict)"},
        {"spec", API_T_STRING, .description = "a model spec, JSON text"},
        {"preset", API_T_STRING, .choices = model_preset_names},
        {"config", API_T_STRING, .description = "preset options, JSON text"},
        {"name", API_T_STRING, .max_len = 200},
        {NULL},
};

/* What api_model_json() answers, for the OpenAPI document. */
const struct api_field api_model_shape[] = {
        {"id", API_T_STRING, .id_prefix = "mdl"},
        {"object", API_T_STRING, .choices = (const char *const[]){"model", NULL}},
        {"name", API_T_STRING},
        {"spec", API_T_OBJECT, .description = "the canonical model spec (docs/model-spec.md)"},
        {"has_weights", API_T_BOOL},
        {"weights_sha256", API_T_STRING, .nullable = true},
        {"source", API_T_STRING, .choices = (const char *const[]){"preset", "upload", "job", NULL}},
        {"source_job", API_T_STRING, .id_prefix = "job", .nullable = true, .description = "source job: the job"},
        {"created_at", API_T_INT},
        {NULL},
};

json_t *api_model_json(const struct store_model *m) {
        return json_pack("{s:s,s:s,s:s,s:o,s:b,s:s?,s:s,s:s?,s:I}", "id", m->id, "object", "model", "name", m->name,
                         "spec", api_json_text(m->spec_json), "has_weights", m->weights_sha256[0] != 0,
                         "weights_sha256", m->weights_sha256[0] ? m->weights_sha256 : NULL, "source",
                         store_model_source_name(m->source), "source_job",
                         m->source_job_id[0] ? m->source_job_id : NULL, "created_at",
                         (json_int_t)(m->created_at / 1000));
}

/* The canonical spec from {preset, config} or {spec}. */
static int spec_from(const char *preset, json_t *config, json_t *spec, json_t **ret, struct ft_error *err) {
        json_t *built = NULL;
        int r;
        if (preset && spec)
                return ft_error_set(err, -EINVAL, "spec", "give either 'preset' (with 'config') or 'spec', not both");
        char list[128];
        if (!preset && !spec)
                return ft_error_set(err, -EINVAL, "preset", "give 'preset' (%s) or 'spec'",
                                    model_preset_list(list, sizeof(list)));
        if (config && !preset)
                return ft_error_set(err, -EINVAL, "config", "'config' goes with 'preset'");
        if (preset) {
                r = model_preset_spec(preset, config, &built, err);
                if (r < 0) {
                        if (err && err->param[0]) { /* "opts.hidden" or "hidden" -> "config.hidden" */
                                const char *rest = strncmp(err->param, "opts", 4) == 0 ? err->param + 4 : err->param;
                                char p[FT_ERROR_PARAM_MAX + 8];
                                snprintf(p, sizeof(p), "config%s%s", *rest && *rest != '.' ? "." : "", rest);
                                snprintf(err->param, sizeof(err->param), "%.*s", (int)sizeof(err->param) - 1, p);
                        }
                        return r;
                }
                spec = built;
        }
        json_t *canonical = NULL;
        r = model_spec_validate(spec, &canonical, err);
        json_decref(built);
        if (r < 0) {
                if (!preset && err) { /* "layers[3].kernel_size" -> "spec.layers[3].kernel_size" */
                        char p[FT_ERROR_PARAM_MAX + 8];
                        snprintf(p, sizeof(p), "spec%s%s", err->param[0] ? "." : "", err->param);
                        snprintf(err->param, sizeof(err->param), "%.*s", (int)sizeof(err->param) - 1, p);
                }
                return r;
        }
        *ret = canonical;
        return 0;
}

/* One tensor's values as the model will read them (st_tensor_read_*, as at
 * predict and training): F64 beyond float range, I64 not exact in float32 and
 * NaN or Inf are refused naming the tensor. */
static int weights_values_check(const struct tensor *t, const struct st_tensor *s, struct ft_error *err) {
        struct ft_error rerr = {0};
        if (t->dtype == TENSOR_I64) {
                int64_t *v = malloc(FT_MAX(t->numel, (size_t)1) * sizeof(int64_t));
                if (!v)
                        return -ENOMEM;
                int r = st_tensor_read_i64(NULL, s, v, t->numel, &rerr);
                free(v);
                if (r < 0)
                        return ft_error_set(err, -EINVAL, "weights", "weights: tensor '%s' must be I64, not %s",
                                            t->name, st_dtype_name(s->dtype));
                return 0;
        }
        float *v = malloc(FT_MAX(t->numel, (size_t)1) * sizeof(float));
        if (!v)
                return -ENOMEM;
        int r = st_tensor_read_f32(NULL, s, v, t->numel, &rerr);
        if (r < 0) {
                free(v);
                const char *why = strstr(rerr.message, "': "); /* after "'(tensors)': tensor 'NAME'" */
                why = why ? strstr(why + 3, "': ") : NULL;
                return ft_error_set(err, -EINVAL, "weights", "weights: tensor '%s'%s%s", t->name, why ? ": " : "",
                                    why ? why + 3 : " cannot be read as F32");
        }
        for (size_t i = 0; i < t->numel; i++)
                if (!isfinite(v[i])) {
                        double d = v[i];
                        free(v);
                        return ft_error_set(err, -EINVAL, "weights",
                                            "weights: tensor '%s' has a non-finite value (%s) at index %zu", t->name,
                                            isnan(d) ? "NaN"
                                            : d > 0  ? "Inf"
                                                     : "-Inf",
                                            i);
                }
        free(v);
        return 0;
}

/* The preprocessing and class names an uploaded file may carry in its
 * safetensors metadata (the keys the daemon's own files have; predict applies
 * them): "finetuned.preprocess" must be a transform predict can apply (every
 * std > 0), "finetuned.classes" one name per model output. */
static int weights_metadata_check(const struct st_file *f, const struct model *m, struct ft_error *err) {
        const char *pre = st_file_metadata(f, "finetuned.preprocess"), *cls = st_file_metadata(f, "finetuned.classes");
        if (pre) {
                struct data_transform t = {0};
                struct ft_error terr = {0};
                int r = data_transform_from_json(pre, &t, &terr);
                bool pos = r == 0;
                for (size_t i = 0; pos && t.standardize && i < t.n_features; i++)
                        pos = t.std[i] > 0 && isfinite(t.std[i]) && isfinite(t.mean[i]);
                for (size_t i = 0; pos && i < t.n_norm; i++)
                        pos = t.norm_std[i] > 0 && isfinite(t.norm_std[i]) && isfinite(t.norm_mean[i]);
                data_transform_deinit(&t);
                if (!pos)
                        return ft_error_set(err, -EINVAL, "weights",
                                            "weights: metadata 'finetuned.preprocess' is not a preprocessing object "
                                            "(standardize with mean and std, input, normalize; every std > 0)");
        }
        if (cls) {
                json_t *a = json_loads(cls, JSON_REJECT_DUPLICATES, NULL);
                bool good = json_is_array(a) && json_array_size(a) == model_output_count(m);
                for (size_t i = 0; good && i < json_array_size(a); i++)
                        good = json_is_string(json_array_get(a, i));
                json_decref(a);
                if (!good)
                        return ft_error_set(err, -EINVAL, "weights",
                                            "weights: metadata 'finetuned.classes' must be a JSON array of %zu class "
                                            "names (one per model output)",
                                            model_output_count(m));
        }
        return 0;
}

/* Every tensor of the model present in the file with the same shape, and no
 * tensor in the file the model does not have (load_state_dict(strict=True)). */
static int weights_check(const json_t *spec, const char *path, uint64_t max, struct ft_error *err) {
        struct st_file *f = NULL;
        struct model *m = NULL;
        int r = st_file_open(path, (size_t)max, &f, err);
        if (r < 0) {
                snprintf(err->param, sizeof(err->param), "weights");
                return r;
        }
        r = model_new(spec, &m, err);
        if (r < 0)
                goto out;
        size_t n = model_tensor_count(m);
        for (size_t i = 0; i < n; i++) {
                const struct tensor *t = model_tensor_at(m, i);
                const struct st_tensor *s = st_file_find(f, t->name);
                if (!s) {
                        r = ft_error_set(err, -EINVAL, "weights", "weights: tensor '%s' is missing", t->name);
                        goto out;
                }
                bool same = (int)s->ndim == t->ndim || (s->ndim == 0 && t->numel == 1);
                for (int d = 0; same && d < t->ndim && d < (int)s->ndim; d++)
                        same = s->shape[d] == t->shape[d];
                if (!same || s->numel != t->numel) {
                        char want[96] = "", got[96] = "";
                        for (int d = 0; d < t->ndim; d++)
                                snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%lld", d ? ", " : "",
                                         (long long)t->shape[d]);
                        for (size_t d = 0; d < s->ndim; d++)
                                snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", d ? ", " : "",
                                         (long long)s->shape[d]);
                        r = ft_error_set(err, -EINVAL, "weights",
                                         "weights: tensor '%s' has shape [%s], the model wants [%s]", t->name, got,
                                         want);
                        goto out;
                }
        }
        /* the values: every one a finite float32 (or an exact int64 buffer), checked here where the
         * user is rather than at predict */
        for (size_t i = 0; i < n; i++) {
                r = weights_values_check(model_tensor_at(m, i), st_file_find(f, model_tensor_at(m, i)->name), err);
                if (r < 0)
                        goto out;
        }
        r = weights_metadata_check(f, m, err);
        if (r < 0)
                goto out;
        if (f->n_tensors != n) {
                for (size_t i = 0; i < f->n_tensors; i++)
                        if (!model_tensor_find(m, f->tensors[i].name)) {
                                r = ft_error_set(err, -EINVAL, "weights",
                                                 "weights: tensor '%s' is not a parameter or buffer of the model",
                                                 f->tensors[i].name);
                                goto out;
                        }
        }
        r = 0;
out:
        model_free(m);
        st_file_free(f);
        return r;
}

static json_t *form_json(struct api_request *req, const char *name, struct ft_error *err, int *r) {
        struct api_upload *u = api_upload_get(req, name);
        if (!u)
                return NULL;
        json_error_t je;
        json_t *j = u->text ? json_loads(u->text, JSON_REJECT_DUPLICATES, &je) : NULL;
        if (!j || !json_is_object(j)) {
                json_decref(j);
                *r = ft_error_set(err, -EINVAL, name, "part '%s' must be a JSON object", name);
                return NULL;
        }
        return j;
}

enum MHD_Result api_models_create(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st = api_store(req, &ret);
        if (!st)
                return ret;
        struct ft_error err = {0};
        json_t *body = NULL, *spec = NULL, *config = NULL, *given_spec = NULL;
        const char *preset = NULL, *name = NULL;
        struct api_upload *weights = NULL;
        int r = 0;

        if (req->n_uploads == 0) {
                body = api_request_json(req, api_model_create_fields, &ret);
                if (!body)
                        return ret;
                preset = json_string_value(json_object_get(body, "preset"));
                name = json_string_value(json_object_get(body, "name"));
                config = json_incref(json_object_get(body, "config"));
                given_spec = json_incref(json_object_get(body, "spec"));
        } else {
                for (unsigned i = 0; i < req->n_uploads; i++) {
                        const struct api_upload *u = &req->uploads[i];
                        const struct api_field *part = api_model_create_parts;
                        while (part->name && strcmp(u->name, part->name) != 0)
                                part++;
                        if (!part->name) {
                                r = ft_error_set(&err, -EINVAL, u->name,
                                                 "unknown part '%s' (expected weights, spec or preset/config, name)",
                                                 u->name);
                                goto fail;
                        }
                        if (u->is_file != (part->type == API_T_BINARY)) {
                                r = ft_error_set(&err, -EINVAL, u->name,
                                                 u->is_file ? "part '%s' must be a form field (curl -F '%s=...')"
                                                            : "part '%s' must be a file (curl -F '%s=@FILE')",
                                                 u->name, u->name);
                                goto fail;
                        }
                }
                weights = api_upload_get(req, "weights");
                struct api_upload *p = api_upload_get(req, "preset"), *n = api_upload_get(req, "name");
                preset = p ? p->text : NULL;
                name = n ? n->text : NULL;
                config = form_json(req, "config", &err, &r);
                given_spec = r == 0 ? form_json(req, "spec", &err, &r) : NULL;
                if (r < 0)
                        goto fail;
                if (preset && !model_preset_exists(preset)) {
                        char list[128];
                        r = ft_error_set(&err, -EINVAL, "preset", "'preset' must be one of %s",
                                         model_preset_list(list, sizeof(list)));
                        goto fail;
                }
        }
        json_t *name_ok = name ? json_string(name) : NULL; /* NULL unless valid UTF-8 */
        json_decref(name_ok);
        if (name && (!*name || strlen(name) > 200 || !name_ok)) {
                r = ft_error_set(&err, -EINVAL, "name", "'name' must be 1 to 200 characters of UTF-8");
                goto fail;
        }
        r = spec_from(preset, config, given_spec, &spec, &err);
        if (r < 0)
                goto fail;
        if (weights) {
                r = weights_check(spec, weights->path, req->server->opts.upload_max, &err);
                if (r < 0) {
                        if (r != -ENOMEM && r != -EIO)
                                r = -EINVAL; /* whatever the reader says, the file is the client's problem */
                        snprintf(err.param, sizeof(err.param), "weights");
                        api_message_replace(err.message, sizeof(err.message), weights->path,
                                            weights->filename[0] ? weights->filename : "weights");
                        goto fail;
                }
        }
        char *spec_text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
        struct store_model_new mn = {
                .name = name     ? name
                        : preset ? preset
                                 : "model",
                .spec_json = spec_text,
                .weights_sha256 = weights ? weights->sha256 : NULL,
                .source = weights ? STORE_MODEL_UPLOAD : STORE_MODEL_PRESET,
        };
        struct store_model *m = NULL;
        r = spec_text ? store_model_create(st, &mn, &m, &err) : -ENOMEM;
        free(spec_text);
        if (r < 0)
                goto fail;
        json_decref(body);
        json_decref(spec);
        json_decref(config);
        json_decref(given_spec);
        log_info("model %s created: '%s' (%s)", m->id, m->name, store_model_source_name(m->source));
        char location[64];
        snprintf(location, sizeof(location), "/v1/models/%s", m->id);
        json_t *out = api_model_json(m);
        store_model_free(m);
        return api_reply_json_headers(req, MHD_HTTP_CREATED, out, (const char *const[]){"Location", location, NULL});
fail:
        json_decref(body);
        json_decref(spec);
        json_decref(config);
        json_decref(given_spec);
        return api_reply_ft_error(req, r, &err);
}

enum MHD_Result api_models_list(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st = api_store(req, &ret);
        if (!st)
                return ret;
        struct api_page page;
        api_page_from_query(req, &page);
        struct store_page sp = {.limit = page.limit, .after = page.after};
        struct store_model_list l = {0};
        struct ft_error err = {0};
        int r = store_model_list(st, &sp, &l, &err);
        if (r < 0)
                return api_reply_ft_error(req, r == -ENOENT ? -EINVAL : r, &err);
        json_t *items = json_array();
        for (size_t i = 0; i < l.n; i++)
                json_array_append_new(items, api_model_json(l.items[i]));
        bool more = l.has_more;
        store_model_list_deinit(&l);
        return api_reply_json(req, MHD_HTTP_OK, api_page_envelope(items, more, "id"));
}

enum MHD_Result api_models_get(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        struct store *st;
        if (!api_path_store(req, "mdl", "model", &id, &st, &ret))
                return ret;
        struct store_model *m = NULL;
        struct ft_error err = {0};
        int r = store_model_get(st, id, &m, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        json_t *body = api_model_json(m);
        store_model_free(m);
        return api_reply_json(req, MHD_HTTP_OK, body);
}

enum MHD_Result api_models_delete(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        struct store *st;
        if (!api_path_store(req, "mdl", "model", &id, &st, &ret))
                return ret;
        struct ft_error err = {0};
        int r = store_model_delete(st, id, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err); /* -EBUSY: 409 */
        return api_reply_deleted(req, "model", id);
}

enum MHD_Result api_models_weights(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        struct store *st;
        if (!api_path_store(req, "mdl", "model", &id, &st, &ret))
                return ret;
        struct store_model *m = NULL;
        struct ft_error err = {0};
        int r = store_model_get(st, id, &m, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        if (!m->weights_sha256[0]) {
                store_model_free(m);
                return api_reply_error(req, API_ERR_NOT_FOUND, "id",
                                       "model '%s' has no weights yet (a preset that no job has trained)", id);
        }
        char name[STORE_ID_MAX + 16];
        snprintf(name, sizeof(name), "%s.safetensors", m->id);
        ret = api_reply_file(req, m->weights_path, "application/octet-stream", name);
        store_model_free(m);
        return ret;
}
