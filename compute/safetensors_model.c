/* safetensors_model.c - a model's state_dict in and out of safetensors: save
 * with self-describing metadata, strict load listing every mismatch by name,
 * head replacement and input-channel adaptation for fine-tuning (the rule for
 * a fine-tune's base model is compute/job.c's job_model_build_base).
 * Not for: the file format itself (safetensors.c) or building models (model.c). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "compute/data.h"
#include "compute/model.h"
#include "compute/safetensors.h"
#include "compute/tensor.h"

void st_load_report_deinit(struct st_load_report *r) {
        if (!r)
                return;
        free(r->mismatch);
        r->mismatch = NULL;
}

void st_classes_free(char **classes, size_t n) {
        if (!classes)
                return;
        for (size_t i = 0; i < n; i++)
                free(classes[i]);
        free(classes);
}

int st_model_save(const char *path, struct model *m, const struct data_transform *t, char *const *class_names,
                  size_t n_classes, struct ft_error *err) {
        return st_model_save_with(path, m, t, class_names, n_classes, NULL, 0, err);
}

int st_model_save_with(const char *path, struct model *m, const struct data_transform *t, char *const *class_names,
                       size_t n_classes, const struct st_meta *extra, size_t n_extra, struct ft_error *err) {
        int rs = model_sync(m, err);
        if (rs < 0)
                return rs;
        size_t n = model_tensor_count(m);
        struct st_tensor *ts = calloc(n ? n : 1, sizeof(*ts));
        struct st_meta *meta = calloc(4 + n_extra, sizeof(*meta));
        char *spec = json_dumps(model_spec(m), JSON_COMPACT | JSON_PRESERVE_ORDER), *pre = NULL, *cls = NULL;
        json_t *ca = NULL;
        int r = -ENOMEM;
        if (!ts || !meta || !spec)
                goto oom;
        for (size_t i = 0; i < n; i++) {
                const struct tensor *x = model_tensor_at(m, i);
                ts[i] = (struct st_tensor){.name = x->name,
                                           .dtype = x->dtype == TENSOR_I64 ? ST_DTYPE_I64 : ST_DTYPE_F32,
                                           .ndim = (size_t)x->ndim,
                                           .data = x->data};
                for (int d = 0; d < x->ndim; d++)
                        ts[i].shape[d] = x->shape[d];
        }
        meta[0] = (struct st_meta){ST_META_FORMAT, "pt"};
        meta[1] = (struct st_meta){ST_META_SPEC, spec};
        size_t nm = 2;
        if (t) {
                if ((r = data_transform_to_json(t, &pre, err)) < 0)
                        goto fail;
                meta[nm++] = (struct st_meta){ST_META_PREPROCESS, pre};
        }
        if (class_names) {
                if (!(ca = json_array()))
                        goto oom;
                for (size_t i = 0; i < n_classes; i++)
                        if (json_array_append_new(ca, json_string(class_names[i])) < 0) {
                                r = ft_error_set(err, -EINVAL, NULL, "class name %zu is not valid UTF-8", i);
                                goto fail;
                        }
                if (!(cls = json_dumps(ca, JSON_COMPACT)))
                        goto oom;
                meta[nm++] = (struct st_meta){ST_META_CLASSES, cls};
        }
        for (size_t i = 0; i < n_extra; i++)
                meta[nm++] = extra[i];
        r = st_write(path, ts, n, meta, nm, err);
        goto fail;
oom:
        r = ft_error_set(err, -ENOMEM, NULL, "out of memory saving '%s'", path);
fail:
        free(meta);
        json_decref(ca);
        free(cls);
        free(pre);
        free(spec);
        free(ts);
        return r;
}

/* "[10, 512]" */
static void shape_str(char *b, size_t n, size_t ndim, const int64_t *shape) {
        size_t o = (size_t)snprintf(b, n, "[");
        for (size_t i = 0; i < ndim && o < n; i++)
                o += (size_t)snprintf(b + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
        if (o < n)
                snprintf(b + o, n - o, "]");
}

/* The layer prefix of a tensor name: "layer1.0.conv1.weight" -> "layer1.0.conv1" (len returned). */
static size_t prefix_len(const char *name) {
        const char *dot = strrchr(name, '.');
        return dot ? (size_t)(dot - name) : 0;
}

static bool in_layer(const char *name, const char *prefix, size_t plen) {
        return plen > 0 && strncmp(name, prefix, plen) == 0 && name[plen] == '.' && !strchr(name + plen + 1, '.');
}

enum fit { FIT_SAME, FIT_HEAD, FIT_INPUT, FIT_BAD };

int st_model_load(struct model *m, const struct st_file *f, const struct st_load_options *opt,
                  struct st_load_report *report, struct ft_error *err) {
        struct st_load_options strict = {0};
        int rs = model_sync(m, err);
        if (rs < 0)
                return rs;
        if (!opt)
                opt = &strict;
        size_t n = model_tensor_count(m);
        const struct st_tensor **src = calloc(n ? n : 1, sizeof(*src));
        enum fit *fit = calloc(n ? n : 1, sizeof(*fit));
        bool *used = calloc(f->n_tensors ? f->n_tensors : 1, sizeof(bool));
        char *list = NULL;
        size_t list_len = 0, n_missing = 0, n_unexpected = 0, n_shape = 0;
        FILE *ls = NULL;
        float *tmp = NULL;
        int r = -ENOMEM;
        struct st_load_report rep = {0};
        if (!src || !fit || !used || !(ls = open_memstream(&list, &list_len)))
                goto oom;

        /* the head: the layer of the last parameter; the input conv: the first parameter, if 4-d */
        const char *head = NULL, *input = NULL;
        size_t hlen = 0;
        for (size_t i = 0; i < n; i++) {
                const struct tensor *t = model_tensor_at(m, i);
                if (!t->is_param)
                        continue;
                if (!input)
                        input = t->ndim == 4 ? t->name : "";
                head = t->name;
        }
        if (head)
                hlen = prefix_len(head);

        char a[96], b[96];
        bool reinit = opt->reinit_head && head;
        for (size_t i = 0; i < n; i++) {
                const struct tensor *t = model_tensor_at(m, i);
                const struct st_tensor *s = st_file_find(f, t->name);
                if (reinit && in_layer(t->name, head, hlen)) {
                        if (s)
                                used[s - f->tensors] = true;
                        fit[i] = FIT_HEAD;
                        continue;
                }
                if (!s) {
                        fprintf(ls, "missing: %s\n", t->name);
                        n_missing++;
                        fit[i] = FIT_BAD;
                        continue;
                }
                used[s - f->tensors] = true;
                src[i] = s;
                if ((t->dtype == TENSOR_I64) != (s->dtype == ST_DTYPE_I64)) {
                        fprintf(ls, "mis-typed: %s is %s in the file, %s in the model\n", t->name,
                                st_dtype_name(s->dtype), tensor_dtype_name(t->dtype));
                        n_shape++;
                        fit[i] = FIT_BAD;
                        continue;
                }
                bool same = s->ndim == (size_t)t->ndim;
                for (int d = 0; same && d < t->ndim; d++)
                        same = s->shape[d] == t->shape[d];
                if (same) {
                        fit[i] = FIT_SAME;
                        continue;
                }
                /* differs only in dim 0 (outputs) in the head layer? only in dim 1 of the input conv? */
                bool rest0 = s->ndim == (size_t)t->ndim && t->ndim >= 1, rest1 = rest0 && t->ndim == 4;
                for (int d = 1; rest0 && d < t->ndim; d++)
                        rest0 = s->shape[d] == t->shape[d];
                for (int d = 0; rest1 && d < 4; d++)
                        rest1 = d == 1 || s->shape[d] == t->shape[d];
                shape_str(a, sizeof(a), s->ndim, s->shape);
                shape_str(b, sizeof(b), (size_t)t->ndim, t->shape);
                if (opt->replace_head && head && in_layer(t->name, head, hlen) && rest0) {
                        fit[i] = FIT_HEAD;
                } else if (opt->adapt_input && input && strcmp(t->name, input) == 0 && rest1 && s->shape[1] > 0) {
                        fit[i] = FIT_INPUT;
                } else {
                        fprintf(ls, "mis-shaped: %s is %s in the file, %s in the model\n", t->name, a, b);
                        n_shape++;
                        fit[i] = FIT_BAD;
                }
        }
        /* a replaced head is replaced whole: its tensors of unchanged shape are re-initialised too */
        for (size_t i = 0; i < n; i++)
                if (fit[i] == FIT_HEAD)
                        for (size_t k = 0; k < n; k++)
                                if (fit[k] == FIT_SAME && in_layer(model_tensor_at(m, k)->name, head, hlen))
                                        fit[k] = FIT_HEAD;
        for (size_t j = 0; j < f->n_tensors; j++)
                if (!used[j] && !(reinit && in_layer(f->tensors[j].name, head, hlen))) {
                        fprintf(ls, "unexpected: %s\n", f->tensors[j].name);
                        n_unexpected++;
                }
        if (fclose(ls) != 0) {
                ls = NULL;
                goto oom;
        }
        ls = NULL;
        if (n_missing + n_unexpected + n_shape > 0) {
                /* the message: counts, then as many lines as fit */
                char brief[FT_ERROR_MSG_MAX - 160];
                size_t o = 0;
                for (const char *p = list; *p && o + 4 < sizeof(brief);) {
                        const char *nl = strchr(p, '\n');
                        size_t k = nl ? (size_t)(nl - p) : strlen(p);
                        if (o + k + 3 >= sizeof(brief)) {
                                o += (size_t)snprintf(brief + o, sizeof(brief) - o, "%s...", o ? "; " : "");
                                break;
                        }
                        o += (size_t)snprintf(brief + o, sizeof(brief) - o, "%s%.*s", o ? "; " : "", (int)k, p);
                        p += k + (nl ? 1 : 0);
                }
                brief[FT_MIN(o, sizeof(brief) - 1)] = '\0';
                r = ft_error_set(err, -EINVAL, NULL,
                                 "'%s' does not match the model (%zu missing, %zu unexpected, %zu mis-shaped): %s",
                                 f->path, n_missing, n_unexpected, n_shape, brief);
                rep.mismatch = list;
                list = NULL;
                if (report)
                        *report = rep;
                goto fail;
        }

        /* nothing can fail from here but the float conversion of odd dtypes: check those first */
        for (size_t i = 0; i < n; i++) {
                const struct tensor *t = model_tensor_at(m, i);
                if (fit[i] == FIT_HEAD || t->dtype != TENSOR_F32 || src[i]->dtype != ST_DTYPE_F64)
                        continue;
                if (!(tmp = realloc(tmp, src[i]->numel * sizeof(float) + 1)))
                        goto oom;
                if ((r = st_tensor_read_f32(f, src[i], tmp, src[i]->numel, err)) < 0)
                        goto fail;
        }
        for (size_t i = 0; i < n; i++) {
                struct tensor *t = model_tensor_at(m, i);
                const struct st_tensor *s = src[i];
                if (fit[i] == FIT_HEAD) {
                        rep.head_replaced = true;
                        snprintf(rep.head, sizeof(rep.head), "%.*s", (int)hlen, head);
                        continue;
                }
                if (t->dtype == TENSOR_I64) {
                        st_tensor_read_i64(f, s, tensor_i64(t), t->numel, err);
                } else if (fit[i] == FIT_SAME) {
                        st_tensor_read_f32(f, s, tensor_f32(t), t->numel, err);
                } else { /* FIT_INPUT */
                        size_t O = (size_t)t->shape[0], Im = (size_t)t->shape[1], If = (size_t)s->shape[1],
                               k = (size_t)(t->shape[2] * t->shape[3]);
                        if (!(tmp = realloc(tmp, s->numel * sizeof(float) + 1)))
                                goto oom;
                        st_tensor_read_f32(f, s, tmp, s->numel, err);
                        float *w = tensor_f32(t);
                        for (size_t o = 0; o < O; o++)
                                for (size_t ci = 0; ci < Im; ci++)
                                        for (size_t q = 0; q < k; q++) {
                                                float v = 0;
                                                if (Im == 1)
                                                        for (size_t cf = 0; cf < If; cf++)
                                                                v += tmp[(o * If + cf) * k + q];
                                                else
                                                        v = tmp[(o * If + ci % If) * k + q] * ((float)If / (float)Im);
                                                w[(o * Im + ci) * k + q] = v;
                                        }
                        rep.input_adapted = true;
                        snprintf(rep.input_conv, sizeof(rep.input_conv), "%s", t->name);
                        rep.from_channels = If;
                        rep.to_channels = Im;
                }
                rep.loaded++;
        }
        if (rep.head_replaced) {
                char pfx[128];
                snprintf(pfx, sizeof(pfx), "%.*s", (int)hlen, head);
                if ((r = model_init_prefix(m, pfx, opt->seed, err)) < 0)
                        goto fail;
        }
        if (report)
                *report = rep;
        r = 0;
        goto fail;
oom:
        r = ft_error_set(err, -ENOMEM, NULL, "out of memory loading '%s'", f->path);
fail:
        if (ls)
                fclose(ls);
        free(list);
        free(tmp);
        free(src);
        free(fit);
        free(used);
        return r;
}

int st_model_open(const char *path, size_t max_bytes, struct model **ret_model, struct data_transform *ret_t,
                  char ***ret_classes, size_t *ret_n_classes, struct ft_error *err) {
        struct st_file *f = NULL;
        struct model *m = NULL;
        json_t *spec = NULL, *ca = NULL;
        struct data_transform t = {0};
        char **classes = NULL;
        size_t nc = 0;
        int r = st_file_open(path, max_bytes, &f, err);
        if (r < 0)
                return r;
        const char *s = st_file_metadata(f, ST_META_SPEC);
        if (!s) {
                r = ft_error_set(err, -EINVAL, NULL,
                                 "'%s' has no '%s' metadata: load it into a model built from a spec instead", path,
                                 ST_META_SPEC);
                goto fail;
        }
        json_error_t je;
        if (!(spec = json_loads(s, JSON_REJECT_DUPLICATES, &je))) {
                r = ft_error_set(err, -EINVAL, NULL, "'%s': metadata '%s' is not JSON: %s", path, ST_META_SPEC,
                                 je.text);
                goto fail;
        }
        if ((r = model_new(spec, &m, err)) < 0)
                goto fail;
        if ((r = st_model_load(m, f, NULL, NULL, err)) < 0)
                goto fail;
        if ((s = st_file_metadata(f, ST_META_PREPROCESS)) && ret_t && (r = data_transform_from_json(s, &t, err)) < 0)
                goto fail;
        if ((s = st_file_metadata(f, ST_META_CLASSES)) && ret_classes) {
                ca = json_loads(s, JSON_REJECT_DUPLICATES, &je);
                if (!json_is_array(ca) || json_array_size(ca) > DATA_CLASSES_MAX) {
                        r = ft_error_set(err, -EINVAL, NULL, "'%s': metadata '%s' is not an array of names", path,
                                         ST_META_CLASSES);
                        goto fail;
                }
                nc = json_array_size(ca);
                if (!(classes = calloc(nc ? nc : 1, sizeof(char *)))) {
                        r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                        goto fail;
                }
                for (size_t i = 0; i < nc; i++) {
                        const char *v = json_string_value(json_array_get(ca, i));
                        if (!v || !(classes[i] = strdup(v))) {
                                r = ft_error_set(err, -EINVAL, NULL, "'%s': class %zu in '%s' is not a string", path, i,
                                                 ST_META_CLASSES);
                                goto fail;
                        }
                }
        }
        *ret_model = m;
        m = NULL;
        if (ret_t)
                *ret_t = t;
        memset(&t, 0, sizeof(t));
        if (ret_classes) {
                *ret_classes = classes;
                *ret_n_classes = nc;
                classes = NULL;
        }
        r = 0;
fail:
        st_classes_free(classes, nc);
        data_transform_deinit(&t);
        json_decref(ca);
        json_decref(spec);
        model_free(m);
        st_file_free(f);
        return r;
}
