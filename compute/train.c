/* train.c - the fine-tuning loop (see train.h): strategy, epochs over the data
 * loader, loss, backward, clipping, optimizer step with the scheduled rate,
 * validation and metrics every epoch, early stopping with best-weight restore,
 * checkpoints and resume, cancellation.
 *
 * Determinism: the data order and augmentation are functions of (seed, epoch),
 * dropout of the model's counter-based generator, and everything else is
 * arithmetic in a fixed order, so the same seed and thread count give the same
 * bits, and a checkpoint holds all the state needed to continue exactly:
 * weights and BatchNorm statistics, optimizer state, dropout generator,
 * position in the epoch, the epoch's running loss, a full-batch (gd) gradient
 * accumulator, the best weights and the early-stopping counters.
 *
 * Not for: printing, logging, the store, loading models or datasets.
 */
#include "compute/train.h"

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "compute/diagnostics.h"
#include "compute/guards.h"
#include "compute/imbalance.h"
#include "compute/job.h"
#include "compute/loss.h"
#include "compute/metrics.h"
#include "compute/optim.h"
#include "compute/safetensors.h"
#include "compute/schedule.h"

#define STATE_VERSION 1
#define STATE_JSON_MAX ((size_t)64 * 1024 * 1024)

struct trainer {
        const struct jobspec *spec;
        struct model *m;
        struct compute_ctx *ctx;
        const struct train_callbacks *cb;
        const struct train_options *opt;
        const struct train_collective *coll; /* opt->collective: data-parallel, else NULL */
        struct model_bn_sync bn_sync; /* resources.sync_batchnorm over coll (model_set_bn_sync) */
        bool classification;
        bool runtime_sent; /* the "runtime" event of this run */

        struct dataset train_view, val_view; /* shallow copies; val_view.labels may be remapped */
        int32_t *val_labels; /* owned remapped labels, or NULL */
        const struct dataset *train_ds, *val_ds;
        size_t *train_idx, n_train;
        size_t *val_idx, n_val;
        struct data_transform t;
        struct data_loader *train_loader, *eval_loader;
        struct optim *optim;
        struct schedule sched;

        size_t n_out;
        int max_batch;
        float *d_out; /* max_batch * n_out */
        float *accum; /* gd: gradient sum over the epoch, laid out like the gradient span (model_grads) */
        size_t accum_n;
        uint8_t *best; /* early stopping: copy of every model tensor's bytes */
        size_t best_bytes;
        int32_t *pred_cls, *true_cls; /* eval: n_eval */
        float *eval_logits; /* the final evaluation's outputs (n_eval * n_out) for calibration, else NULL */
        float *pred_reg, *true_reg;
        float *class_w; /* hyperparameters.class_weights resolved: [n_out] for the training loss, or NULL */
        struct guards guards; /* training-health guards (guards.h) */

        /* progress of the run (all in checkpoints) */
        unsigned epoch; /* completed epochs */
        size_t batch; /* batches done in the current epoch */
        uint64_t step; /* optimizer steps taken */
        double epoch_loss_sum;
        uint64_t epoch_samples;
        bool has_best;
        double best_value;
        unsigned best_epoch, bad_epochs;
        bool stopped_early;
        bool eval_pending; /* the epoch's batches are done, its validation and report are not */
        struct train_epoch *history; /* every epoch's report */
        size_t n_history, history_cap;

        double run_start, last_progress;
        uint64_t run_start_step;
        double epoch_start, epoch_train_seconds;
        double last_lr;
};

/* ---- strategy ----------------------------------------------------------------- */

static bool is_digits(const char *s, size_t n) {
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

/* The group key of a tensor name into buf: the top-level module, or "stage.block" inside a ResNet stage. */
static void group_key(const char *name, char *buf, size_t size) {
        const char *d1 = strchr(name, '.');
        if (!d1) {
                snprintf(buf, size, "%s", name);
                return;
        }
        const char *d2 = strchr(d1 + 1, '.');
        if (d2 && is_digits(d1 + 1, (size_t)(d2 - d1 - 1)) && strchr(d2 + 1, '.')) {
                snprintf(buf, size, "%.*s", (int)(d2 - name), name);
                return;
        }
        snprintf(buf, size, "%.*s", (int)(d1 - name), name);
}

int train_layer_depths(struct model *m, int *ret_depth) {
        size_t n = model_tensor_count(m), n_keys = 0;
        int *group = calloc(n ? n : 1, sizeof(int)), *key_group = calloc(n ? n : 1, sizeof(int));
        char(*keys)[TENSOR_NAME_MAX] = calloc(n ? n : 1, TENSOR_NAME_MAX);
        int n_groups = 0;
        if (!group || !key_group || !keys) {
                free(group);
                free(key_group);
                free(keys);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                const char *name = model_tensor_at(m, i)->name;
                char key[TENSOR_NAME_MAX], module[TENSOR_NAME_MAX], probe[TENSOR_NAME_MAX + 16];
                group_key(name, key, sizeof(key));
                const char *last = strrchr(name, '.');
                snprintf(module, sizeof(module), "%.*s", last ? (int)(last - name) : 0, name);
                snprintf(probe, sizeof(probe), "%s.running_mean", module);
                int g = -1;
                for (size_t k = 0; k < n_keys; k++)
                        if (strcmp(keys[k], key) == 0)
                                g = key_group[k];
                if (g < 0) {
                        bool top_level_bn = strcmp(module, key) == 0 && model_tensor_find(m, probe) != NULL;
                        /* a top-level BatchNorm joins the group before it (conv1 + bn1) */
                        g = top_level_bn && i > 0 ? group[i - 1] : n_groups++;
                        snprintf(keys[n_keys], TENSOR_NAME_MAX, "%s", key);
                        key_group[n_keys++] = g;
                }
                group[i] = g;
        }
        for (size_t i = 0; i < n; i++)
                ret_depth[i] = n_groups - 1 - group[i];
        free(group);
        free(key_group);
        free(keys);
        return n_groups;
}

int train_apply_strategy(const struct jobspec *spec, struct model *m, struct ft_error *err) {
        char param[FT_ERROR_PARAM_MAX];
        size_t n = model_tensor_count(m), count;
        enum jobspec_strategy type = spec->strategy.type;
        int r;

        r = model_freeze(m, "*", false, NULL, NULL);
        (void)r;
        for (size_t i = 0; i < n; i++)
                model_tensor_at(m, i)->lr_mult = 1.0f;
        model_set_frozen_bn_eval(m, false);
        if (type == JOBSPEC_STRATEGY_FULL)
                return 0;

        int *depth = calloc(n ? n : 1, sizeof(int));
        if (!depth)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        train_layer_depths(m, depth);

        if (spec->strategy.n_freeze) {
                for (size_t i = 0; i < spec->strategy.n_freeze; i++) {
                        snprintf(param, sizeof(param), "strategy.freeze[%zu]", i);
                        r = model_freeze(m, spec->strategy.freeze[i], true, &count, NULL);
                        if (r < 0 || count == 0) {
                                free(depth);
                                return ft_error_set(err, -EINVAL, param,
                                                    "'%s' pattern '%s' matches no parameter of the model", param,
                                                    spec->strategy.freeze[i]);
                        }
                }
        } else if (spec->strategy.n_trainable) {
                model_freeze(m, "*", true, NULL, NULL);
                for (size_t i = 0; i < spec->strategy.n_trainable; i++) {
                        snprintf(param, sizeof(param), "strategy.trainable[%zu]", i);
                        r = model_freeze(m, spec->strategy.trainable[i], false, &count, NULL);
                        if (r < 0 || count == 0) {
                                free(depth);
                                return ft_error_set(err, -EINVAL, param,
                                                    "'%s' pattern '%s' matches no parameter of the model", param,
                                                    spec->strategy.trainable[i]);
                        }
                }
        } else if (type == JOBSPEC_STRATEGY_PARTIAL) {
                /* partial with no lists: train the head only (a linear probe) */
                model_freeze(m, "*", true, NULL, NULL);
                for (size_t i = 0; i < n; i++) {
                        struct tensor *t = model_tensor_at(m, i);
                        if (t->is_param && depth[i] == 0)
                                model_freeze(m, t->name, false, NULL, NULL);
                }
        }
        model_set_frozen_bn_eval(m, !spec->strategy.train_batchnorm);

        size_t trainable = 0;
        for (size_t i = 0; i < n; i++) {
                struct tensor *t = model_tensor_at(m, i);
                trainable += t->is_param && !t->frozen;
        }
        if (trainable == 0) {
                free(depth);
                return ft_error_set(err, -EINVAL, "strategy", "'strategy' leaves no parameter to train");
        }

        if (type == JOBSPEC_STRATEGY_LAYERWISE) {
                for (size_t i = 0; i < n; i++)
                        model_tensor_at(m, i)->lr_mult = (float)pow(spec->strategy.layer_decay, depth[i]);
                for (size_t k = 0; k < spec->strategy.n_lr_multipliers; k++) {
                        const struct jobspec_lr_multiplier *lm = &spec->strategy.lr_multipliers[k];
                        bool any = false;
                        for (size_t i = 0; i < n; i++) {
                                struct tensor *t = model_tensor_at(m, i);
                                if (!t->is_param || fnmatch(lm->pattern, t->name, 0) != 0)
                                        continue;
                                /* the first matching pattern wins */
                                bool earlier = false;
                                for (size_t e = 0; e < k; e++)
                                        earlier |= fnmatch(spec->strategy.lr_multipliers[e].pattern, t->name, 0) == 0;
                                if (!earlier)
                                        t->lr_mult = (float)((double)t->lr_mult * lm->multiplier);
                                any = true;
                        }
                        if (!any) {
                                snprintf(param, sizeof(param), "strategy.lr_multipliers.%.100s", lm->pattern);
                                free(depth);
                                return ft_error_set(err, -EINVAL, param,
                                                    "'%s' pattern matches no parameter of the model", param);
                        }
                }
        }
        free(depth);
        return 0;
}

/* ---- setup ---------------------------------------------------------------------- */

static int setup_data(struct trainer *tr, const struct dataset *train, const struct dataset *val,
                      struct ft_error *err) {
        const struct jobspec *spec = tr->spec;
        int64_t shape[3];
        model_input_shape(tr->m, shape);

        /* model and data fit (the one check, job.h); everything below relies on it */
        struct job_data_facts tf, vf;
        struct job_model_facts mf;
        job_data_facts_of(train, &tf);
        if (val)
                job_data_facts_of(val, &vf);
        job_model_facts_of(tr->m, &mf);
        int rc = job_check(spec, &mf, &tf, val ? &vf : NULL, err);
        if (rc < 0)
                return rc;

        /* the transform: model input shape, spec preprocessing */
        memset(&tr->t, 0, sizeof(tr->t));
        if (train->kind == DATA_TABLE) {
                tr->t.standardize = spec->preprocess.standardize;
                tr->t.n_features = train->n_features;
        } else {
                tr->t.channels = (size_t)shape[0];
                tr->t.height = (size_t)shape[1];
                tr->t.width = (size_t)shape[2];
                tr->t.n_norm = spec->preprocess.normalize_n;
                for (unsigned i = 0; i < spec->preprocess.normalize_n; i++) {
                        tr->t.norm_mean[i] = (float)spec->preprocess.normalize_mean[i];
                        tr->t.norm_std[i] = (float)spec->preprocess.normalize_std[i];
                }
                tr->t.crop_padding = spec->preprocess.random_crop_padding;
                tr->t.hflip = spec->preprocess.hflip;
        }

        /* the split */
        tr->train_view = *train;
        tr->train_ds = &tr->train_view;
        if (val) {
                tr->val_view = *val;
                if (tr->classification) {
                        /* map the validation file's class names onto the training file's */
                        tr->val_labels = malloc((val->n ? val->n : 1) * sizeof(int32_t));
                        int32_t *map = malloc(val->n_classes * sizeof(int32_t));
                        if (!tr->val_labels || !map) {
                                free(map);
                                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                        }
                        for (size_t c = 0; c < val->n_classes; c++) {
                                map[c] = -1;
                                for (size_t k = 0; k < train->n_classes; k++)
                                        if (strcmp(val->class_names[c], train->class_names[k]) == 0)
                                                map[c] = (int32_t)k;
                                assert(map[c] >= 0); /* job_check: every validation class is a training class */
                        }
                        for (size_t i = 0; i < val->n; i++)
                                tr->val_labels[i] = map[val->labels[i]];
                        free(map);
                        tr->val_view.labels = tr->val_labels;
                        tr->val_view.n_classes = train->n_classes;
                        tr->val_view.class_names = train->class_names;
                }
                tr->val_ds = &tr->val_view;
                tr->n_train = train->n;
                tr->n_val = val->n;
                tr->train_idx = malloc(tr->n_train * sizeof(size_t));
                tr->val_idx = malloc((tr->n_val ? tr->n_val : 1) * sizeof(size_t));
                if (!tr->train_idx || !tr->val_idx)
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                for (size_t i = 0; i < tr->n_train; i++)
                        tr->train_idx[i] = i;
                for (size_t i = 0; i < tr->n_val; i++)
                        tr->val_idx[i] = i;
        } else {
                struct data_split split;
                int r = data_split_make(train, spec->validation_split, spec->preprocess.shuffle, spec->seed, &split,
                                        err);
                if (r < 0) {
                        if (err && !err->param[0])
                                snprintf(err->param, sizeof(err->param), "validation_split");
                        return r;
                }
                tr->train_idx = split.train;
                tr->n_train = split.n_train;
                tr->val_idx = split.val;
                tr->n_val = split.n_val;
                tr->val_ds = &tr->train_view;
                if (tr->n_train == 0)
                        return ft_error_set(err, -EINVAL, "validation_split",
                                            "'validation_split' %g leaves no training rows", spec->validation_split);
        }

        int r = data_transform_fit(&tr->t, tr->train_ds, tr->train_idx, tr->n_train, err);
        if (r >= 0)
                r = data_transform_check(&tr->t, tr->train_ds, err);
        if (r >= 0 && val)
                r = data_transform_check(&tr->t, tr->val_ds, err);
        if (r < 0)
                return r;

        /* loaders: the training one shuffles and augments, the evaluation one neither */
        bool gd = spec->hyperparameters.optimizer == JOBSPEC_OPT_GD;
        size_t bs = spec->hyperparameters.batch_size;
        tr->max_batch = (int)FT_MIN(bs, FT_MAX(tr->n_train, tr->n_val));
        struct data_loader_options lo = {
                .batch_size = bs,
                .shuffle = spec->preprocess.shuffle && !gd,
                .augment = true,
                .drop_last = false,
                .seed = spec->seed,
        };
        r = data_loader_new(tr->train_ds, tr->train_idx, tr->n_train, &tr->t, &lo, &tr->train_loader, err);
        if (r < 0)
                return r;
        size_t n_eval = tr->n_val ? tr->n_val : tr->n_train;
        struct data_loader_options eo = {.batch_size = bs, .seed = spec->seed};
        r = data_loader_new(tr->n_val ? tr->val_ds : tr->train_ds, tr->n_val ? tr->val_idx : tr->train_idx, n_eval,
                            &tr->t, &eo, &tr->eval_loader, err);
        if (r < 0)
                return r;
        if (tr->classification) {
                tr->pred_cls = malloc(n_eval * sizeof(int32_t));
                tr->true_cls = malloc(n_eval * sizeof(int32_t));
                if (!tr->pred_cls || !tr->true_cls)
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        } else {
                tr->pred_reg = malloc(n_eval * sizeof(float));
                tr->true_reg = malloc(n_eval * sizeof(float));
                if (!tr->pred_reg || !tr->true_reg)
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        return 0;
}

/* The class weights of the training loss (imbalance.h) and the training-health guards (guards.h). */
static int setup_health(struct trainer *tr, struct ft_error *err) {
        if (tr->classification && tr->spec->class_weights) {
                size_t *counts = calloc(tr->n_out, sizeof(size_t));
                tr->class_w = malloc(tr->n_out * sizeof(float));
                if (!counts || !tr->class_w) {
                        free(counts);
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                }
                for (size_t i = 0; i < tr->n_train; i++)
                        counts[tr->train_ds->labels[tr->train_idx[i]]]++;
                int r = imbalance_class_weights(tr->spec, tr->train_ds->class_names, counts, tr->n_out, tr->class_w,
                                                err);
                free(counts);
                if (r < 0)
                        return r;
        }
        return guards_init(&tr->guards, tr->spec, tr->m, err);
}

static int setup_optim(struct trainer *tr, struct ft_error *err) {
        const __typeof__(tr->spec->hyperparameters) *h = &tr->spec->hyperparameters;
        static const enum optim_kind kinds[] = {
                [JOBSPEC_OPT_GD] = OPTIM_GD,
                [JOBSPEC_OPT_SGD] = OPTIM_SGD,
                [JOBSPEC_OPT_MOMENTUM] = OPTIM_MOMENTUM,
                [JOBSPEC_OPT_NESTEROV] = OPTIM_NESTEROV,
                [JOBSPEC_OPT_ADAM] = OPTIM_ADAM,
                [JOBSPEC_OPT_ADAMW] = OPTIM_ADAMW,
        };
        struct optim_config cfg;
        optim_config_default(kinds[h->optimizer], &cfg);
        cfg.momentum = (float)h->momentum;
        cfg.dampening = 0.0f;
        cfg.beta1 = (float)h->betas[0];
        cfg.beta2 = (float)h->betas[1];
        cfg.eps = (float)h->eps;
        cfg.weight_decay = (float)h->weight_decay;
        int r = optim_new(tr->m, &cfg, &tr->optim, err);
        if (r < 0) {
                if (err)
                        snprintf(err->param, sizeof(err->param), "hyperparameters");
                return r;
        }
        uint64_t steps = h->optimizer == JOBSPEC_OPT_GD ? 1 : data_loader_batches(tr->train_loader);
        schedule_init(&tr->sched, tr->spec, steps);

        tr->n_out = model_output_count(tr->m);
        tr->d_out = malloc((size_t)tr->max_batch * tr->n_out * sizeof(float));
        if (!tr->d_out)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        if (h->optimizer == JOBSPEC_OPT_GD) {
                float *g;
                model_grads(tr->m, &g, &tr->accum_n);
                tr->accum = calloc(tr->accum_n ? tr->accum_n : 1, sizeof(float));
                if (!tr->accum)
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                for (size_t i = 0; i < model_tensor_count(tr->m); i++) { /* each slice moves with its parameter */
                        struct tensor *t = model_tensor_at(tr->m, i);
                        if (t->is_param && (r = model_follow(tr->m, t, tr->accum + (t->grad - g), err)) < 0)
                                return r;
                }
        }
        if (tr->spec->early_stopping.enabled && tr->spec->early_stopping.restore_best) {
                size_t total = 0;
                for (size_t i = 0; i < model_tensor_count(tr->m); i++)
                        total += tensor_nbytes(model_tensor_at(tr->m, i));
                tr->best_bytes = total;
                tr->best = malloc(total ? total : 1);
                if (!tr->best)
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        return 0;
}

/* ---- weights copies ------------------------------------------------------------ */

static int weights_copy(struct model *m, uint8_t *buf, bool save, struct ft_error *err) {
        size_t off = 0;
        int r = model_sync(m, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < model_tensor_count(m); i++) {
                struct tensor *t = model_tensor_at(m, i);
                size_t nb = tensor_nbytes(t);
                if (save)
                        memcpy(buf + off, t->data, nb);
                else
                        memcpy(t->data, buf + off, nb);
                off += nb;
        }
        return 0;
}

/* ---- checkpoints ------------------------------------------------------------------ */

static void fill_st(struct st_tensor *st, const struct tensor *t, const void *data) {
        memset(st, 0, sizeof(*st));
        st->name = t->name;
        st->dtype = t->dtype == TENSOR_I64 ? ST_DTYPE_I64 : ST_DTYPE_F32;
        st->ndim = (size_t)t->ndim;
        for (int d = 0; d < t->ndim; d++)
                st->shape[d] = t->shape[d];
        st->data = data ? data : t->data;
}

static int write_model_tensors(const char *path, struct model *m, const uint8_t *from, struct ft_error *err) {
        size_t n = model_tensor_count(m), off = 0;
        struct st_tensor *st = calloc(n ? n : 1, sizeof(*st));
        if (!st)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        for (size_t i = 0; i < n; i++) {
                struct tensor *t = model_tensor_at(m, i);
                fill_st(&st[i], t, from ? from + off : NULL);
                off += tensor_nbytes(t);
        }
        char *spec = json_dumps(model_spec(m), JSON_COMPACT);
        struct st_meta meta[] = {{"finetuned.spec", spec ? spec : "{}"}};
        int r = st_write(path, st, n, meta, 1, err);
        free(spec);
        free(st);
        return r;
}

static int write_optim_tensors(const char *path, struct trainer *tr, struct ft_error *err) {
        size_t n = optim_state_count(tr->optim);
        struct st_tensor *st = calloc(n + 1, sizeof(*st));
        if (!st)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        for (size_t i = 0; i < n; i++)
                fill_st(&st[i], optim_state_at(tr->optim, i), NULL);
        if (tr->accum) { /* stored packed (model_param_numel floats), whatever the span's alignment */
                model_span_pack(tr->m, tr->accum);
                st[n].name = "__grad_accum";
                st[n].dtype = ST_DTYPE_F32;
                st[n].ndim = 1;
                st[n].shape[0] = (int64_t)model_param_numel(tr->m);
                st[n].data = tr->accum;
                n++;
        }
        int r = st_write(path, st, n, NULL, 0, err);
        if (tr->accum)
                model_span_unpack(tr->m, tr->accum);
        free(st);
        return r;
}

/* Append e to the history. */
static int history_push(struct trainer *tr, const struct train_epoch *e) {
        if (tr->n_history == tr->history_cap) {
                size_t cap = tr->history_cap ? tr->history_cap * 2 : 16;
                struct train_epoch *h = realloc(tr->history, cap * sizeof(*h));
                if (!h)
                        return -ENOMEM;
                tr->history = h;
                tr->history_cap = cap;
        }
        tr->history[tr->n_history++] = *e;
        return 0;
}

static json_t *history_json(const struct train_epoch *h, size_t n) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++)
                if (json_array_append_new(
                            a, train_event_json(&(struct train_event){TRAIN_EVENT_EPOCH, .epoch = &h[i]})) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static json_t *state_json(const struct trainer *tr, bool partial) {
        struct model_rng_state rng;
        model_rng_get(tr->m, &rng);
        json_t *history = history_json(tr->history, tr->n_history);
        if (!history)
                return NULL;
        return json_pack(
                "{s:i s:I s:I s:I s:b s:b s:f s:I s:{s:I s:I} s:{s:b s:f s:I s:I s:b} s:{s:I s:I s:I} s:o s:o}",
                "version", STATE_VERSION, "epoch", (json_int_t)tr->epoch, "batch", (json_int_t)tr->batch, "step",
                (json_int_t)tr->step, "partial", partial, "eval_pending", tr->eval_pending, "epoch_loss_sum",
                tr->epoch_loss_sum, "epoch_samples", (json_int_t)tr->epoch_samples, "rng", "seed", (json_int_t)rng.seed,
                "counter", (json_int_t)rng.counter, "early_stopping", "has_best", tr->has_best, "best_value",
                tr->best_value, "best_epoch", (json_int_t)tr->best_epoch, "bad_epochs", (json_int_t)tr->bad_epochs,
                "stopped", tr->stopped_early, "data", "seed", (json_int_t)tr->spec->seed, "n_train",
                (json_int_t)tr->n_train, "n_val", (json_int_t)tr->n_val, "history", history, "spec",
                jobspec_to_json(tr->spec));
}

static int remove_tree_files(const char *dir) {
        DIR *d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        struct dirent *e;
        char path[PATH_MAX];
        while ((e = readdir(d))) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                if (ft_path_join(path, sizeof(path), dir, e->d_name, NULL) >= 0)
                        unlink(path);
        }
        closedir(d);
        return rmdir(dir) < 0 ? -errno : 0;
}

/* "ckpt-<step>" (digits only) -> step */
static bool ckpt_name_step(const char *name, uint64_t *ret_step) {
        char *end;
        if (strncmp(name, "ckpt-", 5) != 0 || !isdigit((unsigned char)name[5]))
                return false;
        errno = 0;
        unsigned long long step = strtoull(name + 5, &end, 10);
        if (*end || errno)
                return false;
        *ret_step = step;
        return true;
}

static int cmp_u64_desc(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? 1 : x > y ? -1 : 0;
}

/* checkpoint.keep: delete all but the newest `keep` ckpt-<step> directories of root, by step; the one just written
 * (step `current`) always stays. Best effort: a directory that cannot be removed is left for the next time. */
static void checkpoints_prune(const char *root, unsigned keep, uint64_t current) {
        DIR *d = keep ? opendir(root) : NULL;
        if (!d)
                return;
        uint64_t *steps = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
                uint64_t step;
                if (!ckpt_name_step(e->d_name, &step) || step == current)
                        continue;
                if (n == cap) {
                        size_t c = cap ? cap * 2 : 16;
                        uint64_t *s = realloc(steps, c * sizeof(*s));
                        if (!s)
                                break;
                        steps = s;
                        cap = c;
                }
                steps[n++] = step;
        }
        closedir(d);
        if (n)
                qsort(steps, n, sizeof(*steps), cmp_u64_desc);
        for (size_t i = keep - 1; i < n; i++) {
                char path[PATH_MAX], name[32];
                snprintf(name, sizeof(name), "ckpt-%llu", (unsigned long long)steps[i]);
                if (ft_path_join(path, sizeof(path), root, name, NULL) >= 0)
                        remove_tree_files(path);
        }
        free(steps);
}

static int checkpoint_write(struct trainer *tr, bool partial, struct ft_error *err) {
        const char *root = tr->opt ? tr->opt->checkpoint_dir : NULL;
        char final[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], final_name[32];
        int r;
        if (!root)
                return 0;
        r = model_sync(tr->m, err);
        if (r < 0)
                return r;
        r = fileio_mkdir_p(root, 0755, err);
        if (r < 0)
                return r;
        snprintf(final_name, sizeof(final_name), "ckpt-%llu", (unsigned long long)tr->step);
        if (ft_path_join(final, sizeof(final), root, final_name, NULL) < 0)
                return ft_error_set(err, -ENAMETOOLONG, NULL, "checkpoint directory path is too long");
        const char *tag = tr->opt->temp_tag && tr->opt->temp_tag[0] ? tr->opt->temp_tag : NULL;
        char tmp_name[128];
        snprintf(tmp_name, sizeof(tmp_name), ".tmp-ckpt-%llu%s%.64s", (unsigned long long)tr->step, tag ? "-" : "",
                 tag ? tag : "");
        r = ft_path_join(tmp, sizeof(tmp), root, tmp_name, NULL);
        if (r < 0)
                return ft_error_set(err, r, NULL, "checkpoint directory path is too long");
        remove_tree_files(tmp); /* this run's own leftover (same step, same tag) */
        if (mkdir(tmp, 0755) < 0)
                return ft_error_set(err, -errno, NULL, "cannot create '%s': %s", tmp, strerror(errno));

        /* tmp fits in PATH_MAX - 32, so each file name below fits too */
        if (strlen(tmp) + 32 > sizeof(path)) {
                remove_tree_files(tmp);
                return ft_error_set(err, -ENAMETOOLONG, NULL, "checkpoint directory path is too long");
        }
        /* the weights as a complete model file, like a job's result: the spec, the fitted preprocessing, the
         * class names and the task, so a checkpoint can become a model that predicts (POST
         * /v1/jobs/{id}/checkpoints/{n}/model) */
        ft_path_join(path, sizeof(path), tmp, "model.safetensors", NULL);
        {
                static char *const no_classes[1] = {NULL};
                const struct dataset *d = tr->train_ds;
                bool classify = tr->classification && d && d->class_names;
                struct st_meta task = {"finetuned.task", jobspec_task_name(tr->spec->task.type)};
                r = st_model_save_with(path, tr->m, &tr->t, classify ? d->class_names : no_classes,
                                       classify ? d->n_classes : 0, &task, 1, err);
        }
        if (r >= 0) {
                ft_path_join(path, sizeof(path), tmp, "optimizer.safetensors", NULL);
                r = write_optim_tensors(path, tr, err);
        }
        if (r >= 0 && tr->best && tr->has_best) {
                ft_path_join(path, sizeof(path), tmp, "best.safetensors", NULL);
                r = write_model_tensors(path, tr->m, tr->best, err);
        }
        if (r >= 0) {
                json_t *state = state_json(tr, partial);
                char *text = state ? json_dumps(state, JSON_INDENT(1) | JSON_REAL_PRECISION(17)) : NULL;
                json_decref(state);
                ft_path_join(path, sizeof(path), tmp, "state.json", NULL);
                r = text ? fileio_write_atomic(path, text, strlen(text), 0644, err)
                         : ft_error_set(err, -ENOMEM, NULL, "out of memory");
                free(text);
        }
        if (r < 0) {
                remove_tree_files(tmp);
                return r;
        }
        /* the caller's last word: a run that may no longer write (a lost lease) abandons its checkpoint */
        if (tr->cb && tr->cb->before_checkpoint_commit) {
                struct train_checkpoint_info info = {final, tr->epoch, tr->step, partial};
                r = tr->cb->before_checkpoint_commit(tr->cb->userdata, &info);
                if (r < 0) {
                        remove_tree_files(tmp);
                        return ft_error_set(err, r, NULL, "checkpoint at step %llu abandoned",
                                            (unsigned long long)tr->step);
                }
        }
        /* a checkpoint of the same step already there holds the same state: replace it */
        remove_tree_files(final);
        if (rename(tmp, final) < 0) {
                r = ft_error_set(err, -errno, NULL, "cannot rename '%s' to '%s': %s", tmp, final, strerror(errno));
                remove_tree_files(tmp);
                return r;
        }
        r = fileio_fsync_dir(root, err);
        if (r < 0)
                return r;

        if (tr->cb && tr->cb->on_checkpoint) {
                struct train_checkpoint_info info = {final, tr->epoch, tr->step, partial};
                r = tr->cb->on_checkpoint(tr->cb->userdata, &info);
                if (r < 0)
                        return ft_error_set(err, r, NULL, "checkpoint callback failed");
        }
        checkpoints_prune(root, tr->spec->checkpoint.keep, tr->step);
        return 0;
}

int train_checkpoint_find_latest(const char *dir, char **ret_path, struct ft_error *err) {
        char path[PATH_MAX];
        struct stat st;
        if (ft_path_join(path, sizeof(path), dir, "checkpoints", "ckpt-18446744073709551615", "state.json", NULL) < 0)
                return ft_error_set(err, -ENAMETOOLONG, NULL, "'%.64s...' is too long a path", dir);
        ft_path_join(path, sizeof(path), dir, "state.json", NULL);
        if (stat(path, &st) == 0) {
                char *p = strdup(dir);
                if (!p)
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                *ret_path = p;
                return 0;
        }
        const char *subs[] = {"", "checkpoints"};
        for (size_t s = 0; s < ARRAY_SIZE(subs); s++) {
                char base[PATH_MAX];
                ft_path_join(base, sizeof(base), dir, subs[s], NULL); /* fits: checked above */
                DIR *d = opendir(base);
                if (!d)
                        continue;
                struct dirent *e;
                uint64_t best = 0;
                bool found = false;
                while ((e = readdir(d))) {
                        uint64_t step;
                        if (!ckpt_name_step(e->d_name, &step))
                                continue;
                        if (ft_path_join(path, sizeof(path), base, e->d_name, "state.json", NULL) < 0 ||
                            stat(path, &st) < 0)
                                continue;
                        if (!found || step > best) {
                                best = step;
                                found = true;
                        }
                }
                closedir(d);
                if (found) {
                        char name[32];
                        snprintf(name, sizeof(name), "ckpt-%llu", (unsigned long long)best);
                        if (ft_path_join(path, sizeof(path), base, name, NULL) < 0)
                                return ft_error_set(err, -ENAMETOOLONG, NULL, "'%s' is too long a path", dir);
                        char *p = strdup(path);
                        if (!p)
                                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                        *ret_path = p;
                        return 0;
                }
        }
        return ft_error_set(err, -ENOENT, NULL, "no checkpoint in '%s'", dir);
}

static int load_tensors(const char *path, size_t n, struct tensor *(*at)(void *, size_t), void *obj, uint8_t *into,
                        float *accum, size_t accum_n, struct ft_error *err) {
        struct st_file *f = NULL;
        int r = st_file_open(path, 0, &f, err);
        if (r < 0)
                return r;
        size_t off = 0;
        for (size_t i = 0; i < n && r >= 0; i++) {
                struct tensor *t = at(obj, i);
                const struct st_tensor *s = st_file_find(f, t->name);
                if (!s || s->numel != t->numel) {
                        r = ft_error_set(err, -EINVAL, NULL, "'%s': tensor '%s' is %s", path, t->name,
                                         s ? "of another shape" : "missing");
                        break;
                }
                void *dst = into ? (void *)(into + off) : t->data;
                if (t->dtype == TENSOR_I64)
                        r = st_tensor_read_i64(f, s, dst, t->numel, err);
                else
                        r = st_tensor_read_f32(f, s, dst, t->numel, err);
                off += tensor_nbytes(t);
        }
        if (r >= 0 && accum) {
                const struct st_tensor *s = st_file_find(f, "__grad_accum");
                if (!s || s->numel != accum_n)
                        r = ft_error_set(err, -EINVAL, NULL, "'%s': the gradient accumulator is missing", path);
                else
                        r = st_tensor_read_f32(f, s, accum, accum_n, err);
        }
        st_file_free(f);
        return r;
}

static struct tensor *model_at(void *m, size_t i) {
        return model_tensor_at(m, i);
}
static struct tensor *optim_at(void *o, size_t i) {
        return optim_state_at(o, i);
}

static int checkpoint_load(struct trainer *tr, const char *dir, struct ft_error *err) {
        char path[PATH_MAX];
        json_error_t jerr;
        int r = model_sync(tr->m, err);
        if (r < 0)
                return r;
        if (ft_path_join(path, sizeof(path), dir, "optimizer.safetensors", NULL) < 0) /* the longest name here */
                return ft_error_set(err, -ENAMETOOLONG, NULL, "'%.64s...' is too long a path", dir);
        ft_path_join(path, sizeof(path), dir, "state.json", NULL);
        json_t *state = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        if (!state)
                return ft_error_set(err, -EINVAL, NULL, "'%s':%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        json_int_t version = 0, epoch = 0, batch = 0, step = 0, samples = 0, rseed = 0, rcounter = 0;
        json_int_t best_epoch = 0, bad = 0, dseed = 0, n_train = 0, n_val = 0;
        int partial = 0, has_best = 0, stopped = 0, eval_pending = 0;
        double loss_sum = 0, best_value = 0;
        json_t *history = NULL;
        if (json_unpack_ex(state, &jerr, 0,
                           "{s:I s:I s:I s:I s:b s:b s:F s:I s:{s:I s:I} s:{s:b s:F s:I s:I s:b} s:{s:I s:I s:I} s:o}",
                           "version", &version, "epoch", &epoch, "batch", &batch, "step", &step, "partial", &partial,
                           "eval_pending", &eval_pending, "epoch_loss_sum", &loss_sum, "epoch_samples", &samples, "rng",
                           "seed", &rseed, "counter", &rcounter, "early_stopping", "has_best", &has_best, "best_value",
                           &best_value, "best_epoch", &best_epoch, "bad_epochs", &bad, "stopped", &stopped, "data",
                           "seed", &dseed, "n_train", &n_train, "n_val", &n_val, "history", &history) < 0 ||
            version != STATE_VERSION || !json_is_array(history)) {
                json_decref(state);
                return ft_error_set(err, -EINVAL, NULL, "'%s': not a checkpoint state of this version (%s)", path,
                                    jerr.text);
        }
        if ((uint64_t)dseed != tr->spec->seed || (size_t)n_train != tr->n_train || (size_t)n_val != tr->n_val) {
                json_decref(state);
                return ft_error_set(err, -EINVAL, "seed",
                                    "'%s' was written for other data (seed %lld, %lld training and %lld validation "
                                    "rows; now seed %llu, %zu and %zu)",
                                    path, (long long)dseed, (long long)n_train, (long long)n_val,
                                    (unsigned long long)tr->spec->seed, tr->n_train, tr->n_val);
        }
        tr->epoch = (unsigned)epoch;
        tr->batch = (size_t)batch;
        tr->step = (uint64_t)step;
        tr->epoch_loss_sum = loss_sum;
        tr->epoch_samples = (uint64_t)samples;
        tr->has_best = has_best;
        tr->best_value = best_value;
        tr->best_epoch = (unsigned)best_epoch;
        tr->bad_epochs = (unsigned)bad;
        tr->stopped_early = stopped;
        tr->eval_pending = eval_pending;
        tr->n_history = 0;
        for (size_t i = 0; i < json_array_size(history); i++) {
                struct train_epoch e;
                if (train_epoch_from_json(json_array_get(history, i), tr->classification, &e) < 0 ||
                    history_push(tr, &e) < 0) {
                        json_decref(state);
                        return ft_error_set(err, -EINVAL, NULL, "'%s': history entry %zu is not an epoch report", path,
                                            i);
                }
        }
        struct model_rng_state rng = {(uint64_t)rseed, (uint64_t)rcounter};
        json_decref(state);

        ft_path_join(path, sizeof(path), dir, "model.safetensors", NULL);
        r = load_tensors(path, model_tensor_count(tr->m), model_at, tr->m, NULL, NULL, 0, err);
        if (r < 0)
                return r;
        ft_path_join(path, sizeof(path), dir, "optimizer.safetensors", NULL);
        r = load_tensors(path, optim_state_count(tr->optim), optim_at, tr->optim, NULL, tr->accum,
                         tr->accum ? model_param_numel(tr->m) : 0, err);
        if (r < 0)
                return r;
        if (tr->accum)
                model_span_unpack(tr->m, tr->accum);
        if (tr->best && tr->has_best) {
                ft_path_join(path, sizeof(path), dir, "best.safetensors", NULL);
                r = load_tensors(path, model_tensor_count(tr->m), model_at, tr->m, tr->best, NULL, 0, err);
                if (r < 0)
                        return r;
        }
        model_rng_set(tr->m, &rng);
        return 0;
}

/* ---- the loop ---------------------------------------------------------------------- */

static int callback_result(int r, struct ft_error *err) {
        return r < 0 ? ft_error_set(err, r, NULL, "event callback failed") : 0;
}

/* After the run's first training step: what the step runs on, the implementation of every primitive (counted
 * by family, pass and implementation) and any reference kernel by name, so a user sees a slow path at once. */
static int emit_runtime(struct trainer *tr, int batch, struct ft_error *err) {
        if (!tr->cb || !tr->cb->on_runtime)
                return 0;
        json_t *summary = model_kernels_report(tr->m, batch, false);
        if (!summary)
                return 0; /* a report, never a reason to fail the run */
        struct train_runtime rt = {
                .backend = compute_ctx_backend_name(tr->ctx),
                .device = compute_ctx_device(tr->ctx),
                .device_reason = compute_ctx_device_reason(tr->ctx),
                .threads = compute_ctx_threads(tr->ctx),
                .batch = batch,
                .summary = summary,
        };
        if (model_kernels(tr->m, batch, &rt.kernels, &rt.n_kernels, NULL) < 0) {
                rt.kernels = NULL;
                rt.n_kernels = 0;
        }
        int r = tr->cb->on_runtime(tr->cb->userdata, &rt);
        json_decref(summary);
        return callback_result(r, err);
}

/* Over the model's one gradient span (model_grads): frozen parameters' parts are zero, so they add nothing to the
 * norm and stay zero when scaled, and the sums run in the same order as a walk over the trainable tensors. */
static double grad_norm(struct model *m) {
        float *g;
        size_t n;
        double sum = 0;
        model_grads(m, &g, &n);
        for (size_t k = 0; k < n; k++)
                sum += (double)g[k] * (double)g[k];
        return sqrt(sum);
}

static void grad_clip(struct model *m, double max_norm) {
        double norm = grad_norm(m);
        float coef = (float)(max_norm / (norm + 1e-6));
        if (coef >= 1.0f)
                return;
        float *g;
        size_t n;
        model_grads(m, &g, &n);
        for (size_t k = 0; k < n; k++)
                g[k] *= coef;
}

/* tr->accum is laid out like the gradient span (each parameter's slice follows its layout); a frozen parameter's
 * slice stays zero, as its gradient does */
static void accum_grads(struct trainer *tr, float scale, bool add_to_accum) {
        float *g;
        size_t n;
        model_grads(tr->m, &g, &n);
        if (add_to_accum)
                for (size_t k = 0; k < n; k++)
                        tr->accum[k] += scale * g[k];
        else
                memcpy(g, tr->accum, n * sizeof(float));
}

static int optimizer_step(struct trainer *tr, struct ft_error *err) {
        if (tr->spec->hyperparameters.max_grad_norm > 0)
                grad_clip(tr->m, tr->spec->hyperparameters.max_grad_norm);
        double lr = schedule_lr(&tr->sched, tr->step);
        tr->last_lr = lr;
        int r = optim_step(tr->optim, tr->ctx, (float)lr, err);
        if (r < 0)
                return r;
        tr->step++;
        return 0;
}

static int batch_loss(struct trainer *tr, const struct data_batch *b, const float *out, float *loss, float *d_out,
                      struct ft_error *err) {
        if (tr->classification) {
                /* class weights weigh the training loss only (d_out: a training step); a batch whose classes all
                 * weigh 0 teaches nothing, rather than dividing by zero */
                const float *cw = d_out ? tr->class_w : NULL;
                struct loss_ce_options o = {.label_smoothing = (float)tr->spec->hyperparameters.label_smoothing,
                                            .class_weights = cw};
                float wsum = 0;
                for (size_t i = 0; cw && i < b->n; i++)
                        wsum += cw[b->labels[i]];
                if (cw && !(wsum > 0)) {
                        *loss = 0;
                        memset(d_out, 0, b->n * tr->n_out * sizeof(float));
                        return 0;
                }
                return loss_cross_entropy(out, b->labels, (int)b->n, (int)tr->n_out, &o, loss, d_out, err);
        }
        return loss_mse(out, b->targets, (int)b->n, 1, loss, d_out, err);
}

static void progress(struct trainer *tr, size_t batches, bool force) {
        if (!tr->cb || !tr->cb->on_progress)
                return;
        double now = ft_now_monotonic();
        if (!force && now - tr->last_progress < 1.0 / TRAIN_PROGRESS_HZ)
                return;
        tr->last_progress = now;
        uint64_t steps_per_epoch = tr->sched.steps_per_epoch;
        uint64_t total_batches = (uint64_t)batches * tr->spec->hyperparameters.epochs;
        uint64_t done_batches = (uint64_t)tr->epoch * batches + tr->batch;
        uint64_t run_batches = done_batches - FT_MIN(done_batches, tr->run_start_step);
        double eta =
                run_batches ? (now - tr->run_start) / (double)run_batches * (double)(total_batches - done_batches) : -1;
        struct train_progress p = {
                .epoch = tr->epoch + 1,
                .epochs = tr->spec->hyperparameters.epochs,
                .step = tr->step,
                .steps = steps_per_epoch * tr->spec->hyperparameters.epochs,
                .batch = tr->batch,
                .batches = batches,
                .has_eta = eta >= 0,
                .eta_seconds = eta >= 0 ? round(eta * 10) / 10 : 0,
                .has_loss = tr->epoch_samples > 0,
                .train_loss = tr->epoch_samples ? tr->epoch_loss_sum / (double)tr->epoch_samples : 0,
        };
        tr->cb->on_progress(tr->cb->userdata, &p);
}

/* Evaluate on the evaluation loader: mean loss and predictions. */
static int evaluate(struct trainer *tr, double *ret_loss, size_t *ret_n, struct ft_error *err) {
        struct data_batch b;
        double loss_sum = 0;
        size_t n = 0;
        data_loader_start(tr->eval_loader, 0);
        while (data_loader_next(tr->eval_loader, &b) > 0) {
                const float *out;
                float loss;
                if (tr->cb && tr->cb->should_stop && tr->cb->should_stop(tr->cb->userdata))
                        return -ECANCELED;
                int r = model_forward(tr->m, b.x, (int)b.n, false, &out, err);
                if (r >= 0)
                        r = batch_loss(tr, &b, out, &loss, NULL, err);
                if (r < 0)
                        return r;
                loss_sum += (double)loss * (double)b.n;
                for (size_t i = 0; i < b.n; i++) {
                        const float *row = out + i * tr->n_out;
                        if (tr->eval_logits)
                                memcpy(tr->eval_logits + (n + i) * tr->n_out, row, tr->n_out * sizeof(float));
                        if (tr->classification) {
                                int32_t best = 0;
                                for (size_t c = 1; c < tr->n_out; c++)
                                        if (row[c] > row[best])
                                                best = (int32_t)c;
                                tr->pred_cls[n + i] = best;
                                tr->true_cls[n + i] = b.labels[i];
                        } else {
                                tr->pred_reg[n + i] = row[0];
                                tr->true_reg[n + i] = b.targets[i];
                        }
                }
                n += b.n;
        }
        *ret_loss = n ? loss_sum / (double)n : 0;
        *ret_n = n;
        return 0;
}

/* The epoch's report: validation, the epoch event, early stopping, the checkpoint. Runs with eval_pending set
 * (also first thing after resuming from a checkpoint written during validation). */
static int end_of_epoch(struct trainer *tr, double train_seconds, struct ft_error *err) {
        struct train_epoch e = {
                .epoch = tr->epoch,
                .epochs = tr->spec->hyperparameters.epochs,
                .step = tr->step,
                .train_loss = tr->epoch_samples ? tr->epoch_loss_sum / (double)tr->epoch_samples : 0,
                .classification = tr->classification,
        };
        int r;
        if (tr->n_val) {
                size_t n;
                r = evaluate(tr, &e.val_loss, &n, err);
                if (r == -ECANCELED) {
                        r = checkpoint_write(tr, true, err);
                        return r < 0 ? r : ft_error_set(err, -ECANCELED, NULL, "training was cancelled");
                }
                if (r < 0)
                        return r;
                e.validated = true;
                if (tr->classification) {
                        struct metrics_classification mc;
                        r = metrics_classification_compute(tr->true_cls, tr->pred_cls, n, tr->n_out, &mc, err);
                        if (r < 0)
                                return r;
                        e.val_accuracy = mc.accuracy;
                        e.val_f1 = mc.macro_f1;
                        e.val_precision = mc.macro_precision;
                        e.val_recall = mc.macro_recall;
                        metrics_classification_deinit(&mc);
                } else {
                        struct metrics_regression mr;
                        r = metrics_regression_compute(tr->true_reg, tr->pred_reg, n, &mr, err);
                        if (r < 0)
                                return r;
                        e.val_mse = mr.mse;
                        e.val_rmse = mr.rmse;
                        e.val_mae = mr.mae;
                        e.val_r2 = mr.r2;
                }
        }
        double seconds = ft_now_monotonic() - tr->epoch_start;
        e.lr = tr->last_lr;
        e.seconds = round(seconds * 1000) / 1000;
        e.samples_per_sec = train_seconds > 0 ? round((double)tr->n_train / train_seconds * 10) / 10 : 0;

        /* early stopping */
        const __typeof__(tr->spec->early_stopping) *es = &tr->spec->early_stopping;
        if (es->enabled) {
                double v;
                if (train_epoch_metric(&e, es->metric, &v)) {
                        bool better =
                                !tr->has_best || (es->mode == JOBSPEC_MODE_MIN ? v < tr->best_value - es->min_delta
                                                                               : v > tr->best_value + es->min_delta);
                        if (better) {
                                tr->has_best = true;
                                tr->best_value = v;
                                tr->best_epoch = tr->epoch;
                                tr->bad_epochs = 0;
                                int rc = tr->best ? weights_copy(tr->m, tr->best, true, err) : 0;
                                if (rc < 0)
                                        return rc;
                        } else if (++tr->bad_epochs >= es->patience) {
                                tr->stopped_early = true;
                        }
                }
        }
        if (history_push(tr, &e) < 0)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        if (tr->cb && tr->cb->on_epoch && (r = callback_result(tr->cb->on_epoch(tr->cb->userdata, &e), err)) < 0)
                return r;
        if (tr->cb && (r = guards_epoch(&tr->guards, tr->m, tr->history, tr->n_history, tr->cb->on_warning,
                                        tr->cb->userdata, err)) < 0)
                return r;
        if (tr->stopped_early && tr->cb && tr->cb->on_early_stop) {
                struct train_early_stop stop = {tr->epoch, tr->best_epoch, es->metric, tr->best_value};
                if ((r = callback_result(tr->cb->on_early_stop(tr->cb->userdata, &stop), err)) < 0)
                        return r;
        }
        tr->epoch_loss_sum = 0;
        tr->epoch_samples = 0;
        tr->eval_pending = false;
        unsigned every = tr->spec->checkpoint.every_epochs;
        if (every && (tr->epoch % every == 0 || tr->stopped_early || tr->epoch == tr->spec->hyperparameters.epochs))
                return checkpoint_write(tr, false, err);
        return 0;
}

/* One data-parallel step's forward and backward (train_options.collective): this replica's shard of the batch,
 * its gradient weighted by the shard's share of the batch (the loss is a mean over the batch), then one sum over
 * the replicas of the whole gradient span and one of the loss and the stop requests. *ret_loss is the batch's mean
 * loss and *ret_stop whether any replica was asked to stop, the same on every replica. */
static int shard_step(struct trainer *tr, const struct data_batch *b, float *ret_loss, bool *ret_stop,
                      struct ft_error *err) {
        const struct train_collective *c = tr->coll;
        size_t lo = b->n * (size_t)c->rank / (size_t)c->size, hi = b->n * (size_t)(c->rank + 1) / (size_t)c->size;
        size_t row = b->c * b->h * b->w;
        /* SyncBatchNorm's allreduces run inside every replica's forward and backward: each needs rows */
        if (tr->spec->resources.sync_batchnorm && b->n < (size_t)c->size)
                return ft_error_set(err, -EINVAL, "resources.sync_batchnorm",
                                    "'resources.sync_batchnorm': a batch of %zu rows cannot give each of %d ranks a "
                                    "row; make 'hyperparameters.batch_size', and the epoch's last batch, at least "
                                    "the rank count",
                                    b->n, c->size);
        struct data_batch s = {
                .n = hi - lo,
                .c = b->c,
                .h = b->h,
                .w = b->w,
                .x = b->x + lo * row,
                .labels = b->labels ? b->labels + lo : NULL,
                .targets = b->targets ? b->targets + lo : NULL,
        };
        double sums[2] = {0, tr->cb && tr->cb->should_stop && tr->cb->should_stop(tr->cb->userdata)};
        float *g;
        size_t n;
        int r;
        model_grads(tr->m, &g, &n);
        if (s.n > 0) {
                const float *out;
                float loss;
                r = model_forward(tr->m, s.x, (int)s.n, true, &out, err);
                if (r >= 0)
                        r = batch_loss(tr, &s, out, &loss, tr->d_out, err);
                if (r >= 0)
                        r = model_backward(tr->m, tr->d_out, err);
                if (r < 0)
                        return r;
                float share = (float)((double)s.n / (double)b->n);
                for (size_t k = 0; k < n; k++)
                        g[k] *= share;
                sums[0] = (double)loss * (double)s.n;
        } else {
                model_zero_grad(tr->m);
        }
        if ((r = c->allreduce_f64(c->userdata, sums, 2, err)) < 0 || (r = c->allreduce_f32(c->userdata, g, n, err)) < 0)
                return r;
        *ret_loss = (float)(sums[0] / (double)b->n);
        *ret_stop = sums[1] > 0;
        return 0;
}

/* Data-parallel: every replica's BatchNorm running statistics become rank 0's (PyTorch DDP's broadcast_buffers),
 * so the replicas evaluate, checkpoint and stop early alike. */
static int buffers_follow_rank0(struct trainer *tr, struct ft_error *err) {
        const struct train_collective *c = tr->coll;
        if (!c)
                return 0;
        for (size_t i = 0; i < model_tensor_count(tr->m); i++) {
                struct tensor *t = model_tensor_at(tr->m, i);
                if (t->is_param)
                        continue;
                int r = c->broadcast(c->userdata, t->data, tensor_nbytes(t), err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int run_epoch(struct trainer *tr, struct ft_error *err) {
        struct data_batch b;
        bool gd = tr->accum != NULL;
        size_t batches = data_loader_batches(tr->train_loader);
        int r;

        data_loader_start(tr->train_loader, tr->epoch);
        /* resuming inside an epoch: skip the batches already done (same order, same augmentation) */
        for (size_t i = 0; i < tr->batch; i++)
                if (data_loader_next(tr->train_loader, &b) <= 0)
                        break;
        tr->epoch_start = ft_now_monotonic();
        while (data_loader_next(tr->train_loader, &b) > 0) {
                /* polled before every batch; the batch fetched is redone on resume */
                if (!tr->coll && tr->cb && tr->cb->should_stop && tr->cb->should_stop(tr->cb->userdata)) {
                        r = checkpoint_write(tr, true, err);
                        if (r < 0)
                                return r;
                        return ft_error_set(err, -ECANCELED, NULL, "training was cancelled");
                }
                const float *out;
                float loss;
                if (tr->coll) {
                        bool stop = false;
                        r = shard_step(tr, &b, &loss, &stop, err);
                        if (r >= 0 && stop) {
                                r = checkpoint_write(tr, true, err);
                                if (r < 0)
                                        return r;
                                return ft_error_set(err, -ECANCELED, NULL, "training was cancelled");
                        }
                } else {
                        r = model_forward(tr->m, b.x, (int)b.n, true, &out, err);
                        if (r >= 0)
                                r = batch_loss(tr, &b, out, &loss, tr->d_out, err);
                }
                struct train_warning bad = {0};
                if (r >= 0 && !isfinite(loss))
                        r = guards_loss_nonfinite(tr->m, loss, tr->epoch + 1, tr->batch + 1, tr->step + 1, &bad, err);
                if (r >= 0 && !tr->coll)
                        r = model_backward(tr->m, tr->d_out, err);
                if (r >= 0 && tr->spec->guards.nonfinite)
                        r = guards_gradients(tr->m, tr->epoch + 1, tr->batch + 1, tr->step + 1, &bad, err);
                if (r == -EDOM && bad.code && tr->cb && tr->cb->on_warning) /* the guard's event, then the failure */
                        (void)tr->cb->on_warning(tr->cb->userdata, &bad);
                if (r >= 0 && !tr->runtime_sent) {
                        /* data-parallel: this rank's shard is the batch its plans run */
                        size_t rows = tr->coll ? b.n * (size_t)(tr->coll->rank + 1) / (size_t)tr->coll->size -
                                                         b.n * (size_t)tr->coll->rank / (size_t)tr->coll->size
                                               : b.n;
                        tr->runtime_sent = true;
                        r = rows ? emit_runtime(tr, (int)rows, err) : 0;
                }
                if (r < 0)
                        return r;
                if (gd)
                        accum_grads(tr, (float)((double)b.n / (double)tr->n_train), true);
                else if ((r = optimizer_step(tr, err)) < 0 || (r = buffers_follow_rank0(tr, err)) < 0)
                        return r;
                tr->epoch_loss_sum += (double)loss * (double)b.n;
                tr->epoch_samples += b.n;
                tr->batch++;
                progress(tr, batches, false);
        }
        if (gd) {
                accum_grads(tr, 0, false);
                memset(tr->accum, 0, tr->accum_n * sizeof(float));
                if ((r = optimizer_step(tr, err)) < 0 || (r = buffers_follow_rank0(tr, err)) < 0)
                        return r;
        }
        tr->epoch++;
        tr->batch = 0;
        tr->eval_pending = true;
        return end_of_epoch(tr, ft_now_monotonic() - tr->epoch_start, err);
}

/* The per-example diagnostics of the final evaluation (compute/diagnostics.h), into res->diagnostics. */
static int final_diagnostics(struct trainer *tr, size_t n, struct train_result *res, struct ft_error *err) {
        struct diag_report *d = calloc(1, sizeof(*d));
        if (!d)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        const struct dataset *ds = tr->n_val ? tr->val_ds : tr->train_ds;
        int r = diag_compute(tr->eval_logits, tr->true_cls, tr->n_val ? tr->val_idx : tr->train_idx, ds->lines, n, tr->n_out,
                             d, err);
        if (r < 0) {
                free(d);
                return r;
        }
        d->on_validation = tr->n_val > 0;
        res->diagnostics = d;
        return 0;
}

static int final_metrics(struct trainer *tr, struct train_result *res, struct ft_error *err) {
        struct train_final *f = &res->final;
        size_t n, n_eval = tr->n_val ? tr->n_val : tr->n_train;
        /* one copy of the final evaluation's outputs, for the calibration (two or more classes) and the
         * per-example diagnostics (within their caps) */
        bool calibrate = tr->classification && tr->n_out >= 2;
        bool diagnose = tr->classification && n_eval <= DIAG_EXAMPLES_MAX && n_eval * tr->n_out <= DIAG_LOGITS_MAX;
        if ((calibrate || diagnose) && !(tr->eval_logits = malloc(FT_MAX(n_eval * tr->n_out, 1) * sizeof(float))))
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        int r = evaluate(tr, &f->loss, &n, err);
        if (r >= 0 && diagnose && tr->eval_logits && n > 0)
                r = final_diagnostics(tr, n, res, err);
        if (r == -ECANCELED) /* the last epoch's checkpoint resumes straight into this evaluation */
                return ft_error_set(err, -ECANCELED, NULL, "training was cancelled");
        if (r < 0)
                return r;
        f->classification = tr->classification;
        f->on_validation = tr->n_val > 0;
        f->has_best = tr->has_best;
        f->best_epoch = tr->has_best ? tr->best_epoch : 0;
        f->epochs_run = tr->epoch;
        f->stopped_early = tr->stopped_early;
        f->class_names = tr->train_ds->class_names;
        if (tr->classification)
                r = metrics_classification_compute(tr->true_cls, tr->pred_cls, n, tr->n_out, &f->cls, err);
        else
                r = metrics_regression_compute(tr->true_reg, tr->pred_reg, n, &f->reg, err);
        if (r == 0 && calibrate && tr->eval_logits && n)
                r = train_calibration(tr->spec, tr->eval_logits, tr->true_cls, n, tr->n_out, f->on_validation,
                                      &f->calibration, err);
        if (r < 0)
                return r;
        if (tr->cb && tr->cb->on_final)
                return callback_result(tr->cb->on_final(tr->cb->userdata, f), err);
        return 0;
}

static void trainer_deinit(struct trainer *tr) {
        (void)model_sync(tr->m, NULL); /* PyTorch layout on every way out (a no-op after train_run's own) */
        float *g;
        size_t n;
        model_grads(tr->m, &g, &n);
        for (size_t i = 0; tr->accum && i < model_tensor_count(tr->m); i++) {
                struct tensor *t = model_tensor_at(tr->m, i);
                if (t->is_param)
                        model_unfollow(t, tr->accum + (t->grad - g));
        }
        data_loader_free(tr->train_loader);
        data_loader_free(tr->eval_loader);
        optim_free(tr->optim);
        free(tr->train_idx);
        free(tr->val_idx);
        free(tr->val_labels);
        free(tr->d_out);
        free(tr->accum);
        free(tr->best);
        free(tr->pred_cls);
        free(tr->true_cls);
        free(tr->eval_logits);
        free(tr->pred_reg);
        free(tr->true_reg);
        free(tr->class_w);
        guards_deinit(&tr->guards);
        free(tr->history);
        data_transform_deinit(&tr->t);
}

void train_result_deinit(struct train_result *r) {
        if (!r)
                return;
        metrics_classification_deinit(&r->final.cls);
        diag_report_free(r->diagnostics);
        free(r->history);
        data_transform_deinit(&r->transform);
        memset(r, 0, sizeof(*r));
}

int train_run(const struct jobspec *spec, struct model *m, struct compute_ctx *ctx, const struct dataset *train,
              const struct dataset *val, const struct train_options *opt, const struct train_callbacks *cb,
              struct train_result *ret, struct ft_error *err) {
        struct trainer tr = {
                .spec = spec,
                .m = m,
                .ctx = ctx,
                .cb = cb,
                .opt = opt,
                .classification = spec->task.type == JOBSPEC_TASK_CLASSIFICATION,
                .coll = opt && opt->collective && opt->collective->size > 1 ? opt->collective : NULL,
        };
        struct train_result res = {0};
        int r;

        tr.n_out = model_output_count(m);
        r = setup_data(&tr, train, val, err);
        if (r < 0)
                goto fail;
        r = train_apply_strategy(spec, m, err);
        if (r < 0)
                goto fail;
        r = model_prepare(m, ctx, tr.max_batch, err);
        if (r < 0)
                goto fail;
        if (tr.coll && spec->resources.sync_batchnorm) {
                tr.bn_sync = (struct model_bn_sync){tr.coll->userdata, tr.coll->allreduce_f64};
                model_set_bn_sync(m, &tr.bn_sync);
        }
        r = setup_optim(&tr, err);
        if (r < 0)
                goto fail;
        r = setup_health(&tr, err);
        if (r < 0)
                goto fail;
        model_rng_set(m, &(struct model_rng_state){spec->seed, 0});
        if (opt && opt->resume_from) {
                r = checkpoint_load(&tr, opt->resume_from, err);
                if (r < 0)
                        goto fail;
        }

        tr.run_start = ft_now_monotonic();
        tr.run_start_step = (uint64_t)tr.epoch * data_loader_batches(tr.train_loader) + tr.batch;
        tr.last_lr = schedule_lr(&tr.sched, tr.step ? tr.step - 1 : 0);
        tr.epoch_start = ft_now_monotonic();
        if (tr.eval_pending && (r = end_of_epoch(&tr, 0, err)) < 0)
                goto fail;
        while (tr.epoch < spec->hyperparameters.epochs && !tr.stopped_early) {
                r = run_epoch(&tr, err);
                if (r < 0)
                        goto fail;
        }
        if (tr.best && tr.has_best && (r = weights_copy(m, tr.best, false, err)) < 0)
                goto fail;
        r = final_metrics(&tr, &res, err);
        if (r < 0)
                goto fail;
        r = model_sync(m, err); /* the caller reads and saves the weights */
        if (r < 0)
                goto fail;

        res.history = tr.history;
        res.n_history = tr.n_history;
        tr.history = NULL;
        res.best_epoch = tr.has_best ? tr.best_epoch : 0;
        res.epochs_run = tr.epoch;
        res.stopped_early = tr.stopped_early;
        res.transform = tr.t;
        memset(&tr.t, 0, sizeof(tr.t));
        model_set_bn_sync(m, NULL);
        trainer_deinit(&tr);
        *ret = res;
        return 0;
fail:
        model_set_bn_sync(m, NULL);
        trainer_deinit(&tr);
        train_result_deinit(&res);
        return r;
}
