/* jobspec.c - parse and validate the job spec JSON (see jobspec.h and
 * docs/job-spec.md). Validation is declarative: one table of fields per JSON
 * object (type, bounds, enum names, where it lands in struct jobspec), walked
 * by one function; only fields with a shape of their own (model, file pairs,
 * glob lists, normalize) have small custom parsers, and cross-field rules run
 * at the end.
 *
 * Not for: resolving references or reading any file.
 */
#include "compute/jobspec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum kind {
        K_BOOL,
        K_UINT, /* integer in [lo, hi] */
        K_U64, /* integer in [0, 2^63) */
        K_NUMBER, /* finite number in [lo, hi] (lo exclusive when lo_open) */
        K_ENUM, /* string, one of names[] -> int */
        K_STRING, /* string, at most size-1 bytes */
        K_OBJECT, /* nested table */
        K_CUSTOM,
};

struct field;
typedef int (*custom_fn)(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err);

struct field {
        const char *key;
        enum kind kind;
        size_t off; /* offset in struct jobspec */
        size_t size; /* K_STRING: buffer size */
        double lo, hi;
        bool lo_open, hi_open;
        const char *const *names; /* K_ENUM, NULL-terminated */
        const struct field *sub; /* K_OBJECT, terminated by key == NULL */
        custom_fn custom;
};

#define OFF(m) offsetof(struct jobspec, m)

static const char *const task_names[] = {"classification", "regression", NULL};
static const char *const optimizer_names[] = {"gd", "sgd", "momentum", "nesterov", "adam", "adamw", NULL};
static const char *const schedule_names[] = {"constant", "step", "cosine", "linear", NULL};
static const char *const strategy_names[] = {"full", "partial", "layerwise", NULL};
static const char *const device_names[] = {"auto", "cpu", "cuda", NULL};

const char *jobspec_optimizer_name(enum jobspec_optimizer o) {
        return (unsigned)o < ARRAY_SIZE(optimizer_names) - 1 ? optimizer_names[o] : "?";
}
const char *jobspec_schedule_name(enum jobspec_schedule s) {
        return (unsigned)s < ARRAY_SIZE(schedule_names) - 1 ? schedule_names[s] : "?";
}
const char *jobspec_strategy_name(enum jobspec_strategy s) {
        return (unsigned)s < ARRAY_SIZE(strategy_names) - 1 ? strategy_names[s] : "?";
}
const char *jobspec_task_name(enum jobspec_task t) {
        return (unsigned)t < ARRAY_SIZE(task_names) - 1 ? task_names[t] : "?";
}
const char *jobspec_device_name(enum jobspec_device d) {
        return (unsigned)d < ARRAY_SIZE(device_names) - 1 ? device_names[d] : "?";
}

static const struct {
        const char *name;
        enum jobspec_mode mode;
        bool classification, regression;
} metrics[] = {
        {"train_loss", JOBSPEC_MODE_MIN, true, true},     {"val_loss", JOBSPEC_MODE_MIN, true, true},
        {"val_accuracy", JOBSPEC_MODE_MAX, true, false},  {"val_f1", JOBSPEC_MODE_MAX, true, false},
        {"val_precision", JOBSPEC_MODE_MAX, true, false}, {"val_recall", JOBSPEC_MODE_MAX, true, false},
        {"val_mse", JOBSPEC_MODE_MIN, false, true},       {"val_rmse", JOBSPEC_MODE_MIN, false, true},
        {"val_mae", JOBSPEC_MODE_MIN, false, true},       {"val_r2", JOBSPEC_MODE_MAX, false, true},
};

int jobspec_metric_mode(enum jobspec_task task, const char *metric, enum jobspec_mode *ret_mode) {
        for (size_t i = 0; i < ARRAY_SIZE(metrics); i++) {
                if (strcmp(metrics[i].name, metric) != 0)
                        continue;
                if (task == JOBSPEC_TASK_CLASSIFICATION ? !metrics[i].classification : !metrics[i].regression)
                        return -EINVAL;
                if (ret_mode)
                        *ret_mode = metrics[i].mode;
                return 0;
        }
        return -ENOENT;
}

void jobspec_init(struct jobspec *s) {
        memset(s, 0, sizeof(*s));
        s->validation_split = 0.2;
        s->task.type = JOBSPEC_TASK_CLASSIFICATION;
        s->preprocess.dropna = false;
        s->preprocess.standardize = true;
        s->preprocess.shuffle = true;
        s->hyperparameters.epochs = 10;
        s->hyperparameters.batch_size = 32;
        s->hyperparameters.learning_rate = 1e-3;
        s->hyperparameters.optimizer = JOBSPEC_OPT_ADAM;
        s->hyperparameters.momentum = 0.9;
        s->hyperparameters.betas[0] = 0.9;
        s->hyperparameters.betas[1] = 0.999;
        s->hyperparameters.eps = 1e-8;
        s->hyperparameters.weight_decay = 0.0;
        s->hyperparameters.schedule = JOBSPEC_SCHED_COSINE;
        s->hyperparameters.warmup_epochs = 0.0;
        s->hyperparameters.step_size = 0;
        s->hyperparameters.gamma = 0.1;
        s->hyperparameters.min_lr = 0.0;
        s->hyperparameters.max_grad_norm = 0.0;
        s->hyperparameters.label_smoothing = 0.0;
        s->strategy.type = JOBSPEC_STRATEGY_FULL;
        s->strategy.train_batchnorm = true;
        s->strategy.layer_decay = 0.75;
        s->early_stopping.enabled = false;
        snprintf(s->early_stopping.metric, sizeof(s->early_stopping.metric), "val_loss");
        s->early_stopping.mode = JOBSPEC_MODE_MIN;
        s->early_stopping.patience = 3;
        s->early_stopping.min_delta = 0.0;
        s->early_stopping.restore_best = true;
        s->checkpoint.every_epochs = 1;
        s->checkpoint.keep = 3;
        s->seed = 42;
        s->device = JOBSPEC_DEVICE_AUTO;
}

void jobspec_deinit(struct jobspec *s) {
        if (!s)
                return;
        json_decref(s->model_spec);
        jobspec_init(s);
}

/* ---- custom field parsers ------------------------------------------------- */

static int copy_string(const json_t *v, char *dst, size_t size, bool allow_empty, const char *param,
                       struct ft_error *err) {
        if (!json_is_string(v))
                return ft_error_set(err, -EINVAL, param, "'%s' must be a string", param);
        size_t n = json_string_length(v);
        const char *str = json_string_value(v);
        if (n == 0 && !allow_empty)
                return ft_error_set(err, -EINVAL, param, "'%s' must not be empty", param);
        if (n >= size)
                return ft_error_set(err, -EINVAL, param, "'%s' is longer than %zu bytes", param, size - 1);
        if (memchr(str, '\0', n))
                return ft_error_set(err, -EINVAL, param, "'%s' contains a NUL byte", param);
        memcpy(dst, str, n + 1);
        return 0;
}

static int parse_model(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        if (json_is_object(v)) {
                char *dump = json_dumps(v, JSON_COMPACT);
                if (!dump)
                        return ft_error_set(err, -ENOMEM, param, "out of memory");
                size_t n = strlen(dump);
                free(dump);
                if (n > JOBSPEC_MODEL_SPEC_MAX)
                        return ft_error_set(err, -EINVAL, param, "'%s' spec is larger than %d bytes", param,
                                            JOBSPEC_MODEL_SPEC_MAX);
                json_t *copy = json_deep_copy(v);
                if (!copy)
                        return ft_error_set(err, -ENOMEM, param, "out of memory");
                json_decref(s->model_spec);
                s->model_spec = copy;
                s->model_ref[0] = 0;
                return 0;
        }
        if (!json_is_string(v))
                return ft_error_set(err, -EINVAL, param,
                                    "'%s' must be a string (model id, preset or path) or an object (model spec)",
                                    param);
        json_decref(s->model_spec);
        s->model_spec = NULL;
        return copy_string(v, s->model_ref, sizeof(s->model_ref), false, param, err);
}

static int parse_file_ref(const json_t *v, char dst[2][JOBSPEC_REF_MAX], const char *param, struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        if (json_is_string(v)) {
                dst[1][0] = 0;
                return copy_string(v, dst[0], JOBSPEC_REF_MAX, false, param, err);
        }
        if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > 2)
                return ft_error_set(err, -EINVAL, param,
                                    "'%s' must be a string or an array of 1 or 2 strings ([images, labels])", param);
        dst[1][0] = 0;
        for (size_t i = 0; i < json_array_size(v); i++) {
                snprintf(p, sizeof(p), "%s[%zu]", param, i);
                int r = copy_string(json_array_get(v, i), dst[i], JOBSPEC_REF_MAX, false, p, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_training_file(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        return parse_file_ref(v, s->training_file, param, err);
}

static int parse_validation_file(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        if (json_is_null(v)) {
                s->validation_file[0][0] = s->validation_file[1][0] = 0;
                return 0;
        }
        return parse_file_ref(v, s->validation_file, param, err);
}

static int parse_number_array(const json_t *v, double *dst, size_t min_n, size_t max_n, size_t *ret_n, double lo,
                              bool lo_open, double hi, const char *param, struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        if (json_is_number(v) && min_n <= 1) {
                /* a bare number is shorthand for a one-element array */
                double x = json_number_value(v);
                if (!isfinite(x) || (lo_open ? x <= lo : x < lo) || x > hi)
                        return ft_error_set(err, -EINVAL, param, "'%s' must be %s %g and at most %g", param,
                                            lo_open ? "greater than" : "at least", lo, hi);
                dst[0] = x;
                *ret_n = 1;
                return 0;
        }
        if (!json_is_array(v) || json_array_size(v) < min_n || json_array_size(v) > max_n) {
                if (min_n == max_n)
                        return ft_error_set(err, -EINVAL, param, "'%s' must be an array of %zu numbers", param, min_n);
                return ft_error_set(err, -EINVAL, param, "'%s' must be an array of %zu to %zu numbers", param, min_n,
                                    max_n);
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
                const json_t *e = json_array_get(v, i);
                snprintf(p, sizeof(p), "%s[%zu]", param, i);
                if (!json_is_number(e))
                        return ft_error_set(err, -EINVAL, p, "'%s' must be a number", p);
                double x = json_number_value(e);
                if (!isfinite(x) || (lo_open ? x <= lo : x < lo) || x > hi)
                        return ft_error_set(err, -EINVAL, p, "'%s' must be %s %g and at most %g", p,
                                            lo_open ? "greater than" : "at least", lo, hi);
                dst[i] = x;
        }
        *ret_n = json_array_size(v);
        return 0;
}

static int parse_betas(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        size_t n;
        double b[2];
        int r = parse_number_array(v, b, 2, 2, &n, 0.0, false, 0.999999999, param, err);
        if (r < 0)
                return r;
        s->hyperparameters.betas[0] = b[0];
        s->hyperparameters.betas[1] = b[1];
        return 0;
}

static int parse_resize(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        if (json_is_null(v)) {
                s->preprocess.resize[0] = s->preprocess.resize[1] = 0;
                return 0;
        }
        if (!json_is_array(v) || json_array_size(v) != 2)
                return ft_error_set(err, -EINVAL, param, "'%s' must be an array [height, width]", param);
        for (size_t i = 0; i < 2; i++) {
                const json_t *e = json_array_get(v, i);
                snprintf(p, sizeof(p), "%s[%zu]", param, i);
                if (!json_is_integer(e) || json_integer_value(e) < 1 || json_integer_value(e) > JOBSPEC_RESIZE_MAX)
                        return ft_error_set(err, -EINVAL, p, "'%s' must be an integer from 1 to %d", p,
                                            JOBSPEC_RESIZE_MAX);
                s->preprocess.resize[i] = (unsigned)json_integer_value(e);
        }
        return 0;
}

static int parse_channels(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        if (json_is_null(v)) {
                s->preprocess.channels = 0;
                return 0;
        }
        if (!json_is_integer(v) || (json_integer_value(v) != 1 && json_integer_value(v) != 3))
                return ft_error_set(err, -EINVAL, param, "'%s' must be 1 or 3", param);
        s->preprocess.channels = (unsigned)json_integer_value(v);
        return 0;
}

static int parse_globs(const json_t *v, char dst[][JOBSPEC_NAME_MAX], size_t *ret_n, const char *param,
                       struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        if (json_is_string(v)) {
                int r = copy_string(v, dst[0], JOBSPEC_NAME_MAX, false, param, err);
                if (r < 0)
                        return r;
                *ret_n = 1;
                return 0;
        }
        if (!json_is_array(v))
                return ft_error_set(err, -EINVAL, param, "'%s' must be an array of glob patterns", param);
        if (json_array_size(v) > JOBSPEC_GLOBS_MAX)
                return ft_error_set(err, -EINVAL, param, "'%s' has more than %d patterns", param, JOBSPEC_GLOBS_MAX);
        for (size_t i = 0; i < json_array_size(v); i++) {
                snprintf(p, sizeof(p), "%s[%zu]", param, i);
                int r = copy_string(json_array_get(v, i), dst[i], JOBSPEC_NAME_MAX, false, p, err);
                if (r < 0)
                        return r;
        }
        *ret_n = json_array_size(v);
        return 0;
}

static int parse_freeze(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        return parse_globs(v, s->strategy.freeze, &s->strategy.n_freeze, param, err);
}

static int parse_trainable(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        return parse_globs(v, s->strategy.trainable, &s->strategy.n_trainable, param, err);
}

static int parse_lr_multipliers(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        const char *key;
        json_t *val;
        size_t n = 0;
        if (!json_is_object(v))
                return ft_error_set(err, -EINVAL, param, "'%s' must be an object mapping glob patterns to numbers",
                                    param);
        if (json_object_size(v) > JOBSPEC_GLOBS_MAX)
                return ft_error_set(err, -EINVAL, param, "'%s' has more than %d patterns", param, JOBSPEC_GLOBS_MAX);
        json_object_foreach((json_t *)v, key, val) {
                snprintf(p, sizeof(p), "%s.%s", param, key);
                size_t kl = strlen(key);
                if (kl == 0 || kl >= JOBSPEC_NAME_MAX)
                        return ft_error_set(err, -EINVAL, p, "'%s' pattern must be 1 to %d bytes", p,
                                            JOBSPEC_NAME_MAX - 1);
                if (!json_is_number(val) || !isfinite(json_number_value(val)) || json_number_value(val) < 0 ||
                    json_number_value(val) > 1e4)
                        return ft_error_set(err, -EINVAL, p, "'%s' must be a number from 0 to 10000", p);
                memcpy(s->strategy.lr_multipliers[n].pattern, key, kl + 1);
                s->strategy.lr_multipliers[n].multiplier = json_number_value(val);
                n++;
        }
        s->strategy.n_lr_multipliers = n;
        return 0;
}

static int parse_normalize(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err);
static int parse_es_metric(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        return copy_string(v, s->early_stopping.metric, sizeof(s->early_stopping.metric), false, param, err);
}

/* ---- the tables ------------------------------------------------------------ */

#define F_BOOL(k, m)                                                                                                   \
        { .key = k, .kind = K_BOOL, .off = OFF(m) }
#define F_UINT(k, m, l, h)                                                                                             \
        { .key = k, .kind = K_UINT, .off = OFF(m), .lo = l, .hi = h }
#define F_NUM(k, m, l, lopen, h, hopen)                                                                                \
        { .key = k, .kind = K_NUMBER, .off = OFF(m), .lo = l, .lo_open = lopen, .hi = h, .hi_open = hopen }
#define F_ENUM(k, m, n)                                                                                                \
        { .key = k, .kind = K_ENUM, .off = OFF(m), .names = n }
#define F_STR(k, m)                                                                                                    \
        { .key = k, .kind = K_STRING, .off = OFF(m), .size = sizeof(((struct jobspec *)0)->m) }
#define F_OBJ(k, t)                                                                                                    \
        { .key = k, .kind = K_OBJECT, .sub = t }
#define F_FN(k, f)                                                                                                     \
        { .key = k, .kind = K_CUSTOM, .custom = f }

static const struct field task_fields[] = {
        F_ENUM("type", task.type, task_names),
        F_STR("target", task.target),
        {0},
};

static const struct field augment_fields[] = {
        F_UINT("random_crop_padding", preprocess.random_crop_padding, 0, 64),
        F_BOOL("hflip", preprocess.hflip),
        {0},
};

static const struct field preprocess_fields[] = {
        F_BOOL("dropna", preprocess.dropna),   F_BOOL("standardize", preprocess.standardize),
        F_BOOL("shuffle", preprocess.shuffle), F_FN("resize", parse_resize),
        F_FN("channels", parse_channels),      F_FN("normalize", parse_normalize),
        F_OBJ("augment", augment_fields),      {0},
};

static const struct field hyper_fields[] = {
        F_UINT("epochs", hyperparameters.epochs, 1, JOBSPEC_EPOCHS_MAX),
        F_UINT("batch_size", hyperparameters.batch_size, 1, JOBSPEC_BATCH_MAX),
        F_NUM("learning_rate", hyperparameters.learning_rate, 0, true, 10, false),
        F_ENUM("optimizer", hyperparameters.optimizer, optimizer_names),
        F_NUM("momentum", hyperparameters.momentum, 0, false, 1, true),
        F_FN("betas", parse_betas),
        F_NUM("eps", hyperparameters.eps, 0, true, 1, false),
        F_NUM("weight_decay", hyperparameters.weight_decay, 0, false, 10, false),
        F_ENUM("schedule", hyperparameters.schedule, schedule_names),
        F_NUM("warmup_epochs", hyperparameters.warmup_epochs, 0, false, JOBSPEC_EPOCHS_MAX, false),
        F_UINT("step_size", hyperparameters.step_size, 0, JOBSPEC_EPOCHS_MAX),
        F_NUM("gamma", hyperparameters.gamma, 0, true, 1, false),
        F_NUM("min_lr", hyperparameters.min_lr, 0, false, 10, false),
        F_NUM("max_grad_norm", hyperparameters.max_grad_norm, 0, false, 1e6, false),
        F_NUM("label_smoothing", hyperparameters.label_smoothing, 0, false, 1, true),
        {0},
};

static const struct field strategy_fields[] = {
        F_ENUM("type", strategy.type, strategy_names),
        F_FN("freeze", parse_freeze),
        F_FN("trainable", parse_trainable),
        F_BOOL("train_batchnorm", strategy.train_batchnorm),
        F_NUM("layer_decay", strategy.layer_decay, 0, true, 1, false),
        F_FN("lr_multipliers", parse_lr_multipliers),
        {0},
};

static const struct field early_fields[] = {
        F_FN("metric", parse_es_metric),
        F_UINT("patience", early_stopping.patience, 0, JOBSPEC_EPOCHS_MAX),
        F_NUM("min_delta", early_stopping.min_delta, 0, false, 1e12, false),
        F_BOOL("restore_best", early_stopping.restore_best),
        {0},
};

static const struct field checkpoint_fields[] = {
        F_UINT("every_epochs", checkpoint.every_epochs, 0, JOBSPEC_EPOCHS_MAX),
        F_UINT("keep", checkpoint.keep, 0, JOBSPEC_EPOCHS_MAX),
        {0},
};

static const struct field root_fields[] = {
        F_FN("model", parse_model),
        F_FN("training_file", parse_training_file),
        F_FN("validation_file", parse_validation_file),
        F_NUM("validation_split", validation_split, 0, false, 1, true),
        F_OBJ("task", task_fields),
        F_OBJ("preprocess", preprocess_fields),
        F_OBJ("hyperparameters", hyper_fields),
        F_OBJ("strategy", strategy_fields),
        F_OBJ("early_stopping", early_fields),
        F_OBJ("checkpoint", checkpoint_fields),
        {.key = "seed", .kind = K_U64, .off = OFF(seed)},
        F_ENUM("device", device, device_names),
        {0},
};

static const struct field normalize_fields[] = {
        {.key = "mean"},
        {.key = "std"},
        {0},
};

static int parse_normalize(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        const char *key;
        json_t *val;
        size_t nm = 0, ns = 0;
        if (json_is_null(v)) {
                s->preprocess.normalize_n = 0;
                return 0;
        }
        if (!json_is_object(v))
                return ft_error_set(err, -EINVAL, param, "'%s' must be an object {\"mean\": [...], \"std\": [...]}",
                                    param);
        json_object_foreach((json_t *)v, key, val) {
                bool known = false;
                for (const struct field *f = normalize_fields; f->key; f++)
                        known |= strcmp(f->key, key) == 0;
                snprintf(p, sizeof(p), "%s.%s", param, key);
                if (!known)
                        return ft_error_set(err, -EINVAL, p, "unknown field '%s'", p);
        }
        const json_t *mean = json_object_get(v, "mean"), *std = json_object_get(v, "std");
        snprintf(p, sizeof(p), "%s.mean", param);
        if (!mean)
                return ft_error_set(err, -EINVAL, p, "'%s' is required", p);
        int r = parse_number_array(mean, s->preprocess.normalize_mean, 1, JOBSPEC_CHANNELS_MAX, &nm, -1e6, false, 1e6,
                                   p, err);
        if (r < 0)
                return r;
        snprintf(p, sizeof(p), "%s.std", param);
        if (!std)
                return ft_error_set(err, -EINVAL, p, "'%s' is required", p);
        r = parse_number_array(std, s->preprocess.normalize_std, 1, JOBSPEC_CHANNELS_MAX, &ns, 0, true, 1e6, p, err);
        if (r < 0)
                return r;
        if (nm != ns)
                return ft_error_set(err, -EINVAL, p, "'%s' has %zu entries but '%s.mean' has %zu", p, ns, param, nm);
        s->preprocess.normalize_n = (unsigned)nm;
        return 0;
}

static void describe_range(char *buf, size_t size, const struct field *f) {
        snprintf(buf, size, "%s %g and %s %g", f->lo_open ? "greater than" : "at least", f->lo,
                 f->hi_open ? "less than" : "at most", f->hi);
}

static int parse_object(const json_t *obj, const struct field *table, const char *prefix, struct jobspec *s,
                        struct ft_error *err) {
        const char *key;
        json_t *v;
        char param[FT_ERROR_PARAM_MAX];
        char range[128];

        if (!json_is_object(obj)) {
                if (*prefix)
                        return ft_error_set(err, -EINVAL, prefix, "'%s' must be an object", prefix);
                return ft_error_set(err, -EINVAL, NULL, "the job spec must be a JSON object");
        }
        json_object_foreach((json_t *)obj, key, v) {
                const struct field *f = table;
                while (f->key && strcmp(f->key, key) != 0)
                        f++;
                if (*prefix)
                        snprintf(param, sizeof(param), "%s.%s", prefix, key);
                else
                        snprintf(param, sizeof(param), "%s", key);
                if (!f->key)
                        return ft_error_set(err, -EINVAL, param, "unknown field '%s'", param);
                char *dst = (char *)s + f->off;
                int r;
                switch (f->kind) {
                case K_BOOL:
                        if (!json_is_boolean(v))
                                return ft_error_set(err, -EINVAL, param, "'%s' must be true or false", param);
                        *(bool *)dst = json_is_true(v);
                        break;
                case K_UINT: {
                        if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)f->lo ||
                            json_integer_value(v) > (json_int_t)f->hi)
                                return ft_error_set(err, -EINVAL, param, "'%s' must be an integer from %.0f to %.0f",
                                                    param, f->lo, f->hi);
                        *(unsigned *)dst = (unsigned)json_integer_value(v);
                        break;
                }
                case K_U64:
                        if (!json_is_integer(v) || json_integer_value(v) < 0)
                                return ft_error_set(err, -EINVAL, param, "'%s' must be a non-negative integer", param);
                        *(uint64_t *)dst = (uint64_t)json_integer_value(v);
                        break;
                case K_NUMBER: {
                        double x;
                        if (!json_is_number(v))
                                return ft_error_set(err, -EINVAL, param, "'%s' must be a number", param);
                        x = json_number_value(v);
                        if (!isfinite(x) || (f->lo_open ? x <= f->lo : x < f->lo) ||
                            (f->hi_open ? x >= f->hi : x > f->hi)) {
                                describe_range(range, sizeof(range), f);
                                return ft_error_set(err, -EINVAL, param, "'%s' must be %s", param, range);
                        }
                        *(double *)dst = x;
                        break;
                }
                case K_ENUM: {
                        size_t i;
                        const char *str = json_string_value(v);
                        if (!json_is_string(v))
                                return ft_error_set(err, -EINVAL, param, "'%s' must be a string", param);
                        for (i = 0; f->names[i]; i++)
                                if (strcmp(f->names[i], str) == 0)
                                        break;
                        if (!f->names[i]) {
                                char list[256] = "";
                                size_t len = 0;
                                for (size_t j = 0; f->names[j] && len < sizeof(list); j++)
                                        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", j ? ", " : "",
                                                                f->names[j]);
                                return ft_error_set(err, -EINVAL, param, "'%s' must be one of %s, not \"%.64s\"", param,
                                                    list, str);
                        }
                        *(int *)dst = (int)i;
                        break;
                }
                case K_STRING:
                        r = copy_string(v, dst, f->size, true, param, err);
                        if (r < 0)
                                return r;
                        break;
                case K_OBJECT:
                        if (json_is_null(v)) /* null: the defaults */
                                break;
                        r = parse_object(v, f->sub, param, s, err);
                        if (r < 0)
                                return r;
                        break;
                case K_CUSTOM:
                        r = f->custom(v, s, param, err);
                        if (r < 0)
                                return r;
                        break;
                }
        }
        return 0;
}

static int validate(const json_t *root, struct jobspec *s, struct ft_error *err) {
        if (!s->model_ref[0] && !s->model_spec)
                return ft_error_set(err, -EINVAL, "model", "'model' is required");
        if (!s->training_file[0][0])
                return ft_error_set(err, -EINVAL, "training_file", "'training_file' is required");

        const json_t *es = json_object_get(root, "early_stopping");
        s->early_stopping.enabled = es != NULL && !json_is_null(es);
        int r = jobspec_metric_mode(s->task.type, s->early_stopping.metric, &s->early_stopping.mode);
        if (r == -ENOENT)
                return ft_error_set(err, -EINVAL, "early_stopping.metric",
                                    "'early_stopping.metric' \"%s\" is not a metric this trainer reports",
                                    s->early_stopping.metric);
        if (r < 0)
                return ft_error_set(err, -EINVAL, "early_stopping.metric",
                                    "'early_stopping.metric' \"%s\" is not reported for %s tasks",
                                    s->early_stopping.metric, jobspec_task_name(s->task.type));
        bool has_val = s->validation_file[0][0] || s->validation_split > 0;
        if (s->early_stopping.enabled && !has_val && strncmp(s->early_stopping.metric, "val_", 4) == 0)
                return ft_error_set(err, -EINVAL, "early_stopping.metric",
                                    "'early_stopping.metric' \"%s\" needs validation data: give 'validation_file' "
                                    "or a 'validation_split' above 0",
                                    s->early_stopping.metric);

        if (s->hyperparameters.warmup_epochs > s->hyperparameters.epochs)
                return ft_error_set(err, -EINVAL, "hyperparameters.warmup_epochs",
                                    "'hyperparameters.warmup_epochs' (%g) is more than 'hyperparameters.epochs' (%u)",
                                    s->hyperparameters.warmup_epochs, s->hyperparameters.epochs);
        if (s->hyperparameters.min_lr > s->hyperparameters.learning_rate)
                return ft_error_set(err, -EINVAL, "hyperparameters.min_lr",
                                    "'hyperparameters.min_lr' (%g) is more than 'hyperparameters.learning_rate' (%g)",
                                    s->hyperparameters.min_lr, s->hyperparameters.learning_rate);
        if (s->strategy.n_freeze && s->strategy.n_trainable)
                return ft_error_set(err, -EINVAL, "strategy.trainable",
                                    "'strategy.trainable' cannot be combined with 'strategy.freeze': give one");
        if (s->task.type == JOBSPEC_TASK_REGRESSION && s->hyperparameters.label_smoothing > 0)
                return ft_error_set(err, -EINVAL, "hyperparameters.label_smoothing",
                                    "'hyperparameters.label_smoothing' applies to classification only");
        return 0;
}

int jobspec_parse(const json_t *root, struct jobspec *ret_spec, struct ft_error *err) {
        struct jobspec *s = malloc(sizeof(*s));
        if (!s)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        jobspec_init(s);
        int r = parse_object(root, root_fields, "", s, err);
        if (r >= 0)
                r = validate(root, s, err);
        if (r < 0) {
                jobspec_deinit(s);
                free(s);
                return r;
        }
        *ret_spec = *s;
        free(s);
        return 0;
}

int jobspec_parse_string(const char *text, size_t len, struct jobspec *ret_spec, struct ft_error *err) {
        json_error_t jerr;
        json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return ft_error_set(err, -EINVAL, NULL, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                                    jerr.text);
        int r = jobspec_parse(root, ret_spec, err);
        json_decref(root);
        return r;
}

static json_t *numbers(const double *v, size_t n) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_real(v[i]));
        return a;
}

static json_t *file_ref_json(const char ref[2][JOBSPEC_REF_MAX]) {
        if (!ref[0][0])
                return json_null();
        if (!ref[1][0])
                return json_string(ref[0]);
        return json_pack("[ss]", ref[0], ref[1]);
}

json_t *jobspec_to_json(const struct jobspec *s) {
        json_t *freeze = json_array(), *trainable = json_array(), *mult = json_object();
        for (size_t i = 0; i < s->strategy.n_freeze; i++)
                json_array_append_new(freeze, json_string(s->strategy.freeze[i]));
        for (size_t i = 0; i < s->strategy.n_trainable; i++)
                json_array_append_new(trainable, json_string(s->strategy.trainable[i]));
        for (size_t i = 0; i < s->strategy.n_lr_multipliers; i++)
                json_object_set_new(mult, s->strategy.lr_multipliers[i].pattern,
                                    json_real(s->strategy.lr_multipliers[i].multiplier));
        json_t *resize = s->preprocess.resize[0] ? json_pack("[II]", (json_int_t)s->preprocess.resize[0],
                                                             (json_int_t)s->preprocess.resize[1])
                                                 : json_null();
        json_t *normalize = s->preprocess.normalize_n
                                    ? json_pack("{s:o s:o}", "mean",
                                                numbers(s->preprocess.normalize_mean, s->preprocess.normalize_n), "std",
                                                numbers(s->preprocess.normalize_std, s->preprocess.normalize_n))
                                    : json_null();
        json_t *channels = s->preprocess.channels ? json_integer(s->preprocess.channels) : json_null();
        json_t *model = s->model_spec ? json_deep_copy(s->model_spec) : json_string(s->model_ref);
        json_t *early = s->early_stopping.enabled
                                ? json_pack("{s:s s:I s:f s:b}", "metric", s->early_stopping.metric, "patience",
                                            (json_int_t)s->early_stopping.patience, "min_delta",
                                            s->early_stopping.min_delta, "restore_best", s->early_stopping.restore_best)
                                : json_null();
        const __typeof__(s->hyperparameters) *h = &s->hyperparameters;
        return json_pack(
                "{s:o s:o s:o s:f"
                " s:{s:s s:s}"
                " s:{s:b s:b s:b s:o s:o s:o s:{s:I s:b}}"
                " s:{s:I s:I s:f s:s s:f s:[ff] s:f s:f s:s s:f s:I s:f s:f s:f s:f}"
                " s:{s:s s:o s:o s:b s:f s:o}"
                " s:o s:{s:I s:I} s:I s:s}",
                "model", model, "training_file", file_ref_json(s->training_file), "validation_file",
                file_ref_json(s->validation_file), "validation_split", s->validation_split, "task", "type",
                jobspec_task_name(s->task.type), "target", s->task.target, "preprocess", "dropna", s->preprocess.dropna,
                "standardize", s->preprocess.standardize, "shuffle", s->preprocess.shuffle, "resize", resize,
                "channels", channels, "normalize", normalize, "augment", "random_crop_padding",
                (json_int_t)s->preprocess.random_crop_padding, "hflip", s->preprocess.hflip, "hyperparameters",
                "epochs", (json_int_t)h->epochs, "batch_size", (json_int_t)h->batch_size, "learning_rate",
                h->learning_rate, "optimizer", jobspec_optimizer_name(h->optimizer), "momentum", h->momentum, "betas",
                h->betas[0], h->betas[1], "eps", h->eps, "weight_decay", h->weight_decay, "schedule",
                jobspec_schedule_name(h->schedule), "warmup_epochs", h->warmup_epochs, "step_size",
                (json_int_t)h->step_size, "gamma", h->gamma, "min_lr", h->min_lr, "max_grad_norm", h->max_grad_norm,
                "label_smoothing", h->label_smoothing, "strategy", "type", jobspec_strategy_name(s->strategy.type),
                "freeze", freeze, "trainable", trainable, "train_batchnorm", s->strategy.train_batchnorm, "layer_decay",
                s->strategy.layer_decay, "lr_multipliers", mult, "early_stopping", early, "checkpoint", "every_epochs",
                (json_int_t)s->checkpoint.every_epochs, "keep", (json_int_t)s->checkpoint.keep, "seed",
                (json_int_t)s->seed, "device", jobspec_device_name(s->device));
}
