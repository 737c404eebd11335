/* jobspec.c - parse and validate the job spec JSON (see jobspec.h and
 * docs/job-spec.md), and describe it as JSON Schema. Validation is
 * declarative: one table of fields per JSON object (kind, bounds, enum names,
 * required, nullable, where it lands in struct jobspec, a description), walked
 * by one function; jobspec_schema() walks the same tables, so the schema says
 * exactly what the parser checks field by field. Only `model` has a parser of
 * its own (with its schema beside it), and the cross-field rules run at the
 * end (validate()); JSON Schema cannot state those, so the fields they
 * concern say them in their descriptions.
 *
 * Not for: resolving references or reading any file.
 */
#include "config.h"

#include "compute/jobspec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum kind {
        K_BOOL,
        K_UINT, /* integer in [lo, hi]; with ints: one of them */
        K_U64, /* integer in [0, 2^63) */
        K_NUMBER, /* finite number in [lo, hi] (lo_open / hi_open: exclusive) */
        K_ENUM, /* string, one of names[] -> int */
        K_STRING, /* string of min_n to size-1 bytes, no NUL */
        K_REFS, /* a reference string (char[2][size]); max_n 2: or an array [images, labels] */
        K_NUMBERS, /* min_n..max_n numbers in [lo, hi] (double[]); one bare number when min_n <= 1 */
        K_UINTS, /* exactly max_n integers in [lo, hi] (unsigned[]) */
        K_GLOBS, /* a glob or an array of at most max_n globs (char[][size]) */
        K_GLOB_MAP, /* object glob -> number in [lo, hi], at most max_n entries (struct jobspec_lr_multiplier[]) */
        K_OBJECT, /* nested table */
        K_CUSTOM, /* its own parser (custom) and schema (schema) */
};

struct field;
typedef int (*custom_fn)(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err);
/* Adds to the schema the walker made for f (K_CUSTOM: an empty one). */
typedef int (*schema_fn)(const struct field *f, json_t *schema);

struct field {
        const char *key;
        enum kind kind;
        size_t off; /* offset in struct jobspec */
        size_t size; /* K_STRING, K_REFS, K_GLOBS: buffer size of one string */
        double lo, hi;
        bool lo_open, hi_open;
        size_t min_n, max_n; /* K_STRING: min_n bytes; arrays and maps: entries */
        bool has_n; /* K_NUMBERS (unsigned), K_GLOBS, K_GLOB_MAP (size_t): the count lands at off_n */
        size_t off_n;
        bool required; /* absent is an error */
        bool nullable; /* null is accepted: the defaults (K_OBJECT), else none (zeroes) */
        const unsigned *ints; /* K_UINT: the allowed values, 0-terminated */
        const char *const *names; /* K_ENUM, NULL-terminated */
        const struct field *sub; /* K_OBJECT, terminated by key == NULL */
        custom_fn custom;
        schema_fn schema;
        const char *doc; /* the schema's description (docs/job-spec.md has the long form) */
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
        s->resources.ranks = 1;
        s->limits.max_runtime_seconds = 0;
        s->limits.max_attempts = 3;
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
        s->class_weights = NULL;
        s->guards.nonfinite = true;
        s->guards.plateau_epochs = 5;
        s->guards.plateau_min_delta = 1e-3;
        s->guards.overfit_epochs = 3;
        s->guards.frozen = true;
        s->guards.divergence_factor = 3.0;
}

void jobspec_deinit(struct jobspec *s) {
        if (!s)
                return;
        json_decref(s->model_spec);
        json_decref(s->class_weights);
        jobspec_init(s);
}

/* ---- parsing one value ------------------------------------------------------ */

/* The param of an array entry ("a.b[2]") or a member ("a.b"; "b" at the top),
 * cut to fit (FT_ERROR_PARAM_MAX). */
static void param_index(char *p, size_t size, const char *param, size_t i) {
        if (snprintf(p, size, "%s[%zu]", param, i) >= (int)size)
                p[size - 1] = 0;
}

static void param_member(char *p, size_t size, const char *prefix, const char *key) {
        if (snprintf(p, size, "%s%s%s", prefix, *prefix ? "." : "", key) >= (int)size)
                p[size - 1] = 0;
}

static int copy_string(const json_t *v, char *dst, size_t size, size_t min, const char *param, struct ft_error *err) {
        if (!json_is_string(v))
                return ft_error_set(err, -EINVAL, param, "'%s' must be a string", param);
        size_t n = json_string_length(v);
        const char *str = json_string_value(v);
        if (n < min)
                return ft_error_set(err, -EINVAL, param, "'%s' must not be empty", param);
        if (n >= size)
                return ft_error_set(err, -EINVAL, param, "'%s' is longer than %zu bytes", param, size - 1);
        if (memchr(str, '\0', n))
                return ft_error_set(err, -EINVAL, param, "'%s' contains a NUL byte", param);
        memcpy(dst, str, n + 1);
        return 0;
}

/* "model": a reference (1 to JOBSPEC_REF_MAX-1 bytes) or an inline model spec
 * of at most JOBSPEC_MODEL_SPEC_MAX bytes serialized; model_schema() says the same. */
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
        return copy_string(v, s->model_ref, sizeof(s->model_ref), 1, param, err);
}

static int model_schema(const struct field *f, json_t *schema) {
        return json_object_set_new(
                schema, "anyOf",
                json_pack("[{s:s,s:i,s:I,s:s},{s:s,s:s}]", "type", "string", "minLength", 1, "maxLength",
                          (json_int_t)JOBSPEC_REF_MAX - 1, "description",
                          "a model id (mdl_..., the API), a preset name (mlp, cnn, resnet18, resnet34) or a path to "
                          "a .safetensors file (finetuned train)",
                          "type", "object", "description",
                          "an inline model spec (docs/model-spec.md), at most 65536 bytes as compact JSON; "
                          "finetuned train only: the API takes a model id"));
}

/* hyperparameters.class_weights: null, "balanced", {class: weight} or [weight, ...]; each weight finite, >= 0 and
 * at most JOBSPEC_CLASS_WEIGHT_MAX. Which classes exist is known only with the data (compute/imbalance.h). */
static int parse_class_weights(const json_t *v, struct jobspec *s, const char *param, struct ft_error *err) {
        json_decref(s->class_weights);
        s->class_weights = NULL;
        if (json_is_null(v))
                return 0;
        if (json_is_string(v)) {
                if (strcmp(json_string_value(v), "balanced") != 0)
                        return ft_error_set(err, -EINVAL, param,
                                            "'%s' must be \"balanced\", an object of class weights or an array, "
                                            "not '%.64s'",
                                            param, json_string_value(v));
                s->class_weights = json_incref((json_t *)v);
                return 0;
        }
        if (!json_is_object(v) && !json_is_array(v))
                return ft_error_set(err, -EINVAL, param,
                                    "'%s' must be \"balanced\", an object {class: weight} or an array of weights",
                                    param);
        size_t n = json_is_object(v) ? json_object_size(v) : json_array_size(v);
        if (n == 0 || n > JOBSPEC_CLASS_WEIGHTS_MAX)
                return ft_error_set(err, -EINVAL, param, "'%s' must have 1 to %d entries", param,
                                    JOBSPEC_CLASS_WEIGHTS_MAX);
        char p[FT_ERROR_PARAM_MAX];
        const char *key;
        const json_t *w;
        size_t i;
        if (json_is_object(v)) {
                json_object_foreach((json_t *)v, key, w) {
                        param_member(p, sizeof(p), param, key);
                        if (!key[0] || strlen(key) >= JOBSPEC_NAME_MAX)
                                return ft_error_set(err, -EINVAL, param, "'%s': a class name has 1 to %d bytes", param,
                                                    JOBSPEC_NAME_MAX - 1);
                        if (!json_is_number(w) || !(json_number_value(w) >= 0) ||
                            json_number_value(w) > JOBSPEC_CLASS_WEIGHT_MAX)
                                return ft_error_set(err, -EINVAL, p, "'%s' must be a number from 0 to %g", p,
                                                    JOBSPEC_CLASS_WEIGHT_MAX);
                }
        } else {
                json_array_foreach(v, i, w) {
                        snprintf(p, sizeof(p), "%s[%zu]", param, i);
                        if (!json_is_number(w) || !(json_number_value(w) >= 0) ||
                            json_number_value(w) > JOBSPEC_CLASS_WEIGHT_MAX)
                                return ft_error_set(err, -EINVAL, p, "'%s' must be a number from 0 to %g", p,
                                                    JOBSPEC_CLASS_WEIGHT_MAX);
                }
        }
        s->class_weights = json_deep_copy(v);
        return s->class_weights ? 0 : ft_error_set(err, -ENOMEM, param, "out of memory");
}

static int class_weights_schema(const struct field *f, json_t *schema) {
        json_t *num = json_pack("{s:s,s:i,s:f}", "type", "number", "minimum", 0, "maximum", JOBSPEC_CLASS_WEIGHT_MAX);
        return json_object_set_new(
                schema, "anyOf",
                json_pack("[{s:s},{s:s,s:[s]},{s:s,s:i,s:I,s:{s:i,s:I},s:O},{s:s,s:i,s:I,s:o}]", "type", "null", "type",
                          "string", "enum", "balanced", "type", "object", "minProperties", 1, "maxProperties",
                          (json_int_t)JOBSPEC_CLASS_WEIGHTS_MAX, "propertyNames", "minLength", 1, "maxLength",
                          (json_int_t)JOBSPEC_NAME_MAX - 1, "additionalProperties", num, "type", "array", "minItems", 1,
                          "maxItems", (json_int_t)JOBSPEC_CLASS_WEIGHTS_MAX, "items", num));
}

/* early_stopping.metric: a string here; validate() checks it against the
 * metrics table, which metric_schema() lists as the enum. */
static int metric_schema(const struct field *f, json_t *schema);

static void describe_range(char *buf, size_t size, const struct field *f) {
        snprintf(buf, size, "%s %g and %s %g", f->lo_open ? "greater than" : "at least", f->lo,
                 f->hi_open ? "less than" : "at most", f->hi);
}

static int number_in(const json_t *v, const struct field *f, const char *param, double *ret, struct ft_error *err) {
        char range[128];
        if (!json_is_number(v))
                return ft_error_set(err, -EINVAL, param, "'%s' must be a number", param);
        double x = json_number_value(v);
        if (!isfinite(x) || (f->lo_open ? x <= f->lo : x < f->lo) || (f->hi_open ? x >= f->hi : x > f->hi)) {
                describe_range(range, sizeof(range), f);
                return ft_error_set(err, -EINVAL, param, "'%s' must be %s", param, range);
        }
        *ret = x;
        return 0;
}

/* An integer as JSON Schema means it: a number with no fraction (2 and 2.0). */
static bool is_integral(const json_t *v) {
        return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
}

static int uint_in(const json_t *v, const struct field *f, const char *param, unsigned *ret, struct ft_error *err) {
        double x = json_number_value(v);
        bool in = is_integral(v) && x >= f->lo && x <= f->hi;
        if (in && f->ints) {
                in = false;
                for (const unsigned *p = f->ints; *p; p++)
                        in |= x == *p;
        }
        if (in) {
                *ret = (unsigned)x;
                return 0;
        }
        if (!f->ints)
                return ft_error_set(err, -EINVAL, param, "'%s' must be an integer from %.0f to %.0f", param, f->lo,
                                    f->hi);
        char list[64] = "";
        size_t len = 0;
        for (const unsigned *p = f->ints; *p && len < sizeof(list); p++)
                len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%u",
                                        p == f->ints ? ""
                                        : p[1]       ? ", "
                                                     : " or ",
                                        *p);
        return ft_error_set(err, -EINVAL, param, "'%s' must be %s", param, list);
}

static int parse_refs(const json_t *v, const struct field *f, char *dst, const char *param, struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        if (json_is_string(v)) {
                dst[f->size] = 0;
                return copy_string(v, dst, f->size, 1, param, err);
        }
        if (f->max_n < 2 || !json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > f->max_n)
                return ft_error_set(err, -EINVAL, param,
                                    "'%s' must be a string or an array of 1 or 2 strings ([images, labels])", param);
        dst[f->size] = 0;
        for (size_t i = 0; i < json_array_size(v); i++) {
                param_index(p, sizeof(p), param, i);
                int r = copy_string(json_array_get(v, i), dst + i * f->size, f->size, 1, p, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_numbers(const json_t *v, const struct field *f, double *dst, size_t *ret_n, const char *param,
                         struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        if (json_is_number(v) && f->min_n <= 1) { /* a bare number is shorthand for a one-element array */
                *ret_n = 1;
                return number_in(v, f, param, dst, err);
        }
        if (!json_is_array(v) || json_array_size(v) < f->min_n || json_array_size(v) > f->max_n) {
                if (f->min_n == f->max_n)
                        return ft_error_set(err, -EINVAL, param, "'%s' must be an array of %zu numbers", param,
                                            f->min_n);
                return ft_error_set(err, -EINVAL, param, "'%s' must be an array of %zu to %zu numbers", param, f->min_n,
                                    f->max_n);
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
                param_index(p, sizeof(p), param, i);
                int r = number_in(json_array_get(v, i), f, p, &dst[i], err);
                if (r < 0)
                        return r;
        }
        *ret_n = json_array_size(v);
        return 0;
}

static int parse_uints(const json_t *v, const struct field *f, unsigned *dst, const char *param, struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        if (!json_is_array(v) || json_array_size(v) != f->max_n)
                return ft_error_set(err, -EINVAL, param, "'%s' must be an array of %zu integers", param, f->max_n);
        for (size_t i = 0; i < f->max_n; i++) {
                param_index(p, sizeof(p), param, i);
                int r = uint_in(json_array_get(v, i), f, p, &dst[i], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_globs(const json_t *v, const struct field *f, char *dst, size_t *ret_n, const char *param,
                       struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        if (json_is_string(v)) {
                int r = copy_string(v, dst, f->size, 1, param, err);
                if (r < 0)
                        return r;
                *ret_n = 1;
                return 0;
        }
        if (!json_is_array(v))
                return ft_error_set(err, -EINVAL, param, "'%s' must be an array of glob patterns", param);
        if (json_array_size(v) > f->max_n)
                return ft_error_set(err, -EINVAL, param, "'%s' has more than %zu patterns", param, f->max_n);
        for (size_t i = 0; i < json_array_size(v); i++) {
                param_index(p, sizeof(p), param, i);
                int r = copy_string(json_array_get(v, i), dst + i * f->size, f->size, 1, p, err);
                if (r < 0)
                        return r;
        }
        *ret_n = json_array_size(v);
        return 0;
}

static int parse_glob_map(const json_t *v, const struct field *f, struct jobspec_lr_multiplier *dst, size_t *ret_n,
                          const char *param, struct ft_error *err) {
        char p[FT_ERROR_PARAM_MAX];
        const char *key;
        json_t *val;
        size_t n = 0;
        if (!json_is_object(v))
                return ft_error_set(err, -EINVAL, param, "'%s' must be an object mapping glob patterns to numbers",
                                    param);
        if (json_object_size(v) > f->max_n)
                return ft_error_set(err, -EINVAL, param, "'%s' has more than %zu patterns", param, f->max_n);
        json_object_foreach((json_t *)v, key, val) {
                param_member(p, sizeof(p), param, key);
                size_t kl = strlen(key);
                if (kl == 0 || kl >= sizeof(dst[n].pattern))
                        return ft_error_set(err, -EINVAL, p, "'%s' pattern must be 1 to %zu bytes", p,
                                            sizeof(dst[n].pattern) - 1);
                int r = number_in(val, f, p, &dst[n].multiplier, err);
                if (r < 0)
                        return r;
                memcpy(dst[n].pattern, key, kl + 1);
                n++;
        }
        *ret_n = n;
        return 0;
}

/* Bytes a nullable field occupies: null sets them to zero (none). */
static size_t field_bytes(const struct field *f) {
        switch (f->kind) {
        case K_UINT: return sizeof(unsigned);
        case K_UINTS: return f->max_n * sizeof(unsigned);
        case K_REFS: return 2 * f->size;
        default: return 0;
        }
}

static int parse_object(const json_t *obj, const struct field *table, const char *prefix, struct jobspec *s,
                        struct ft_error *err);

static int parse_value(const json_t *v, const struct field *f, const char *param, struct jobspec *s,
                       struct ft_error *err) {
        char *dst = (char *)s + f->off;
        size_t n = 0;
        int r = 0;
        if (json_is_null(v) && f->nullable) {
                memset(dst, 0, field_bytes(f)); /* K_OBJECT: null means the defaults */
                return 0;
        }
        switch (f->kind) {
        case K_BOOL:
                if (!json_is_boolean(v))
                        return ft_error_set(err, -EINVAL, param, "'%s' must be true or false", param);
                *(bool *)dst = json_is_true(v);
                return 0;
        case K_UINT: return uint_in(v, f, param, (unsigned *)dst, err);
        case K_U64: {
                json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
                if (is_integral(v) && json_is_real(v) && json_real_value(v) >= 0 &&
                    json_real_value(v) < 9223372036854775808.0)
                        x = (json_int_t)json_real_value(v);
                if (x < 0)
                        return ft_error_set(err, -EINVAL, param, "'%s' must be a non-negative integer", param);
                *(uint64_t *)dst = (uint64_t)x;
                return 0;
        }
        case K_NUMBER: return number_in(v, f, param, (double *)dst, err);
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
                        return ft_error_set(err, -EINVAL, param, "'%s' must be one of %s, not '%.64s'", param, list,
                                            str);
                }
                *(int *)dst = (int)i;
                return 0;
        }
        case K_STRING: return copy_string(v, dst, f->size, f->min_n, param, err);
        case K_REFS: return parse_refs(v, f, dst, param, err);
        case K_NUMBERS:
                r = parse_numbers(v, f, (double *)dst, &n, param, err);
                if (r == 0 && f->has_n)
                        *(unsigned *)((char *)s + f->off_n) = (unsigned)n;
                return r;
        case K_UINTS: return parse_uints(v, f, (unsigned *)dst, param, err);
        case K_GLOBS:
                r = parse_globs(v, f, dst, &n, param, err);
                if (r == 0)
                        *(size_t *)((char *)s + f->off_n) = n;
                return r;
        case K_GLOB_MAP:
                r = parse_glob_map(v, f, (struct jobspec_lr_multiplier *)dst, &n, param, err);
                if (r == 0)
                        *(size_t *)((char *)s + f->off_n) = n;
                return r;
        case K_OBJECT: return parse_object(v, f->sub, param, s, err);
        case K_CUSTOM: return f->custom(v, s, param, err);
        }
        return ft_error_set(err, -EINVAL, param, "'%s' has no parser", param);
}

static int parse_object(const json_t *obj, const struct field *table, const char *prefix, struct jobspec *s,
                        struct ft_error *err) {
        const char *key;
        json_t *v;
        char param[FT_ERROR_PARAM_MAX];

        if (!json_is_object(obj)) {
                if (*prefix)
                        return ft_error_set(err, -EINVAL, prefix, "'%s' must be an object", prefix);
                return ft_error_set(err, -EINVAL, NULL, "the job spec must be a JSON object");
        }
        json_object_foreach((json_t *)obj, key, v) {
                const struct field *f = table;
                while (f->key && strcmp(f->key, key) != 0)
                        f++;
                param_member(param, sizeof(param), prefix, key);
                if (!f->key)
                        return ft_error_set(err, -EINVAL, param, "unknown field '%s'", param);
                int r = parse_value(v, f, param, s, err);
                if (r < 0)
                        return r;
        }
        for (const struct field *f = table; f->key; f++) {
                param_member(param, sizeof(param), prefix, f->key);
                if (f->required && !json_object_get(obj, f->key))
                        return ft_error_set(err, -EINVAL, param, "'%s' is required", param);
        }
        return 0;
}

/* ---- the tables --------------------------------------------------------------- */

#define F_BOOL(k, m, d)                                                                                                \
        { .key = k, .kind = K_BOOL, .off = OFF(m), .doc = d }
#define F_UINT(k, m, l, h, d)                                                                                          \
        { .key = k, .kind = K_UINT, .off = OFF(m), .lo = l, .hi = h, .doc = d }
#define F_NUM(k, m, l, lopen, h, hopen, d)                                                                             \
        { .key = k, .kind = K_NUMBER, .off = OFF(m), .lo = l, .lo_open = lopen, .hi = h, .hi_open = hopen, .doc = d }
#define F_ENUM(k, m, n, d)                                                                                             \
        { .key = k, .kind = K_ENUM, .off = OFF(m), .names = n, .doc = d }
#define F_STR(k, m, d)                                                                                                 \
        { .key = k, .kind = K_STRING, .off = OFF(m), .size = sizeof(((struct jobspec *)0)->m), .doc = d }
#define F_OBJ(k, t, d)                                                                                                 \
        { .key = k, .kind = K_OBJECT, .sub = t, .nullable = true, .doc = d }
#define F_GLOBS(k, m, d)                                                                                               \
        {                                                                                                              \
                .key = k, .kind = K_GLOBS, .off = OFF(strategy.m), .size = JOBSPEC_NAME_MAX,                           \
                .max_n = JOBSPEC_GLOBS_MAX, .has_n = true, .off_n = OFF(strategy.n_##m), .doc = d                      \
        }

static const struct field task_fields[] = {
        F_ENUM("type", task.type, task_names,
               "classification: cross-entropy and classification metrics; regression: MSE and regression metrics"),
        F_STR("target", task.target, "the CSV column to predict; \"\" is the last column (image datasets: \"\")"),
        {0},
};

static const struct field augment_fields[] = {
        F_UINT("random_crop_padding", preprocess.random_crop_padding, 0, 64,
               "random crop with this zero padding, training only; 0: none"),
        F_BOOL("hflip", preprocess.hflip, "random horizontal flip, training only"),
        {0},
};

static const struct field normalize_fields[] = {
        {.key = "mean",
         .kind = K_NUMBERS,
         .off = OFF(preprocess.normalize_mean),
         .lo = -1e6,
         .hi = 1e6,
         .min_n = 1,
         .max_n = JOBSPEC_CHANNELS_MAX,
         .has_n = true,
         .off_n = OFF(preprocess.normalize_n),
         .required = true,
         .doc = "per-channel means (one number: every channel)"},
        {.key = "std",
         .kind = K_NUMBERS,
         .off = OFF(preprocess.normalize_std),
         .lo = 0,
         .lo_open = true,
         .hi = 1e6,
         .min_n = 1,
         .max_n = JOBSPEC_CHANNELS_MAX,
         .required = true,
         .doc = "per-channel standard deviations, as many as 'mean'"},
        {0},
};

static const struct field preprocess_fields[] = {
        F_BOOL("dropna", preprocess.dropna,
               "drop CSV rows with a missing value; otherwise a missing value is an error naming its line and column"),
        F_BOOL("standardize", preprocess.standardize,
               "z-score every CSV feature with the training split's mean and deviation (saved with the model)"),
        F_BOOL("shuffle", preprocess.shuffle, "shuffle the split and the training order every epoch (seeded)"),
        {.key = "resize",
         .kind = K_UINTS,
         .off = OFF(preprocess.resize),
         .lo = 1,
         .hi = JOBSPEC_RESIZE_MAX,
         .max_n = 2,
         .nullable = true,
         .doc = "[height, width] the model takes (bilinear); null: the model's size"},
        {.key = "channels",
         .kind = K_UINT,
         .off = OFF(preprocess.channels),
         .lo = 1,
         .hi = 3,
         .ints = (const unsigned[]){1, 3, 0},
         .nullable = true,
         .doc = "image channels the model takes (gray is replicated to 3); null: as the model wants"},
        {.key = "normalize",
         .kind = K_OBJECT,
         .sub = normalize_fields,
         .nullable = true,
         .doc = "per-channel normalisation after scaling pixels to [0, 1]; null: none"},
        F_OBJ("augment", augment_fields, "training-time augmentation of images"),
        {0},
};

static const struct field hyper_fields[] = {
        F_UINT("epochs", hyperparameters.epochs, 1, JOBSPEC_EPOCHS_MAX, "passes over the training data"),
        F_UINT("batch_size", hyperparameters.batch_size, 1, JOBSPEC_BATCH_MAX,
               "rows per step (gd: per chunk of the one full-batch step)"),
        F_NUM("learning_rate", hyperparameters.learning_rate, 0, true, 10, false, "the peak learning rate"),
        F_ENUM("optimizer", hyperparameters.optimizer, optimizer_names,
               "gd is full-batch gradient descent, one step per epoch; torch.optim semantics otherwise"),
        F_NUM("momentum", hyperparameters.momentum, 0, false, 1, true, "momentum and nesterov"),
        {.key = "betas",
         .kind = K_NUMBERS,
         .off = OFF(hyperparameters.betas),
         .lo = 0,
         .hi = 1,
         .hi_open = true,
         .min_n = 2,
         .max_n = 2,
         .doc = "adam and adamw: [beta1, beta2]"},
        F_NUM("eps", hyperparameters.eps, 0, true, 1, false, "adam and adamw, outside the square root as torch"),
        F_NUM("weight_decay", hyperparameters.weight_decay, 0, false, 10, false,
              "L2 added to the gradient; decoupled for adamw"),
        F_ENUM("schedule", hyperparameters.schedule, schedule_names, "how the learning rate changes, per step"),
        F_NUM("warmup_epochs", hyperparameters.warmup_epochs, 0, false, JOBSPEC_EPOCHS_MAX, false,
              "linear warmup over this many epochs (fractions allowed); at most 'epochs'"),
        F_UINT("step_size", hyperparameters.step_size, 0, JOBSPEC_EPOCHS_MAX,
               "step schedule: epochs between decays; 0: max(1, epochs / 3)"),
        F_NUM("gamma", hyperparameters.gamma, 0, true, 1, false, "step schedule: decay factor"),
        F_NUM("min_lr", hyperparameters.min_lr, 0, false, 10, false,
              "where cosine and linear end; at most 'learning_rate'"),
        F_NUM("max_grad_norm", hyperparameters.max_grad_norm, 0, false, 1e6, false,
              "clip the global L2 norm of the gradients; 0: no clipping"),
        F_NUM("label_smoothing", hyperparameters.label_smoothing, 0, false, 1, true,
              "as CrossEntropyLoss(label_smoothing=); classification only"),
        {.key = "class_weights",
         .kind = K_CUSTOM,
         .custom = parse_class_weights,
         .schema = class_weights_schema,
         .doc = "classification: weights of the classes in the loss, as CrossEntropyLoss(weight=): \"balanced\" "
                "(n_samples / (n_classes * count), scikit-learn's), {class: weight} (others weigh 1) or [weight, "
                "...] in class order; null: every class weighs 1"},
        {0},
};

static const struct field strategy_fields[] = {
        F_ENUM("type", strategy.type, strategy_names,
               "full: every parameter trains; partial: freeze or trainable decide (neither: only the head); "
               "layerwise: layer_decay and lr_multipliers"),
        F_GLOBS("freeze", freeze, "parameters to freeze (fnmatch globs over state_dict names); not with 'trainable'"),
        F_GLOBS("trainable", trainable, "train only these parameters (globs); not with 'freeze'"),
        F_BOOL("train_batchnorm", strategy.train_batchnorm,
               "false: a BatchNorm whose weight and bias are frozen keeps its running statistics"),
        F_NUM("layer_decay", strategy.layer_decay, 0, true, 1, false,
              "layerwise: a tensor's rate is learning_rate * layer_decay^depth, depth counted from the head"),
        {.key = "lr_multipliers",
         .kind = K_GLOB_MAP,
         .off = OFF(strategy.lr_multipliers),
         .lo = 0,
         .hi = 1e4,
         .size = JOBSPEC_NAME_MAX,
         .max_n = JOBSPEC_GLOBS_MAX,
         .has_n = true,
         .off_n = OFF(strategy.n_lr_multipliers),
         .doc = "layerwise: glob -> multiplier of the rate of matching parameters (the first match wins)"},
        {0},
};

static const struct field early_fields[] = {
        {.key = "metric",
         .kind = K_STRING,
         .off = OFF(early_stopping.metric),
         .min_n = 1,
         .size = sizeof(((struct jobspec *)0)->early_stopping.metric),
         .schema = metric_schema,
         .doc = "the epoch metric to watch (losses and errors are minimised, the rest maximised); a val_* metric "
                "needs validation data"},
        F_UINT("patience", early_stopping.patience, 0, JOBSPEC_EPOCHS_MAX,
               "stop after this many epochs without improvement"),
        F_NUM("min_delta", early_stopping.min_delta, 0, false, 1e12, false,
              "an improvement must beat the best by more than this"),
        F_BOOL("restore_best", early_stopping.restore_best, "end with the best epoch's weights"),
        {0},
};

static const struct field checkpoint_fields[] = {
        F_UINT("every_epochs", checkpoint.every_epochs, 0, JOBSPEC_EPOCHS_MAX,
               "write a checkpoint every N epochs (and at the last and an early stop); 0: never"),
        F_UINT("keep", checkpoint.keep, 0, JOBSPEC_EPOCHS_MAX, "the newest N checkpoints stay; 0: all"),
        {0},
};

static const struct field guards_fields[] = {
        F_BOOL("nonfinite", guards.nonfinite,
               "check every step's gradients: a NaN or Inf gradient fails the job naming the epoch, the batch and "
               "the first tensor that went bad (a NaN or Inf loss always fails it)"),
        F_UINT("plateau_epochs", guards.plateau_epochs, 0, JOBSPEC_EPOCHS_MAX,
               "warn 'loss_not_decreasing' when the training loss of this many epochs in a row is not below the "
               "best before them by plateau_min_delta (relative); 0: off"),
        F_NUM("plateau_min_delta", guards.plateau_min_delta, 0, false, 1, false,
              "the relative improvement plateau_epochs counts as one"),
        F_UINT("overfit_epochs", guards.overfit_epochs, 0, JOBSPEC_EPOCHS_MAX,
               "warn 'overfitting' when the validation loss rose and the training loss fell in each of this many "
               "epochs in a row, naming the epoch of the lowest validation loss; 0: off"),
        F_BOOL("frozen", guards.frozen, "warn 'frozen_tensor_changed' when a frozen parameter's bytes change"),
        F_NUM("divergence_factor", guards.divergence_factor, 0, false, 1e6, false,
              "warn 'diverging' when an epoch's training loss is above both the first epoch's and this factor "
              "times the lowest before it (the learning rate is too high); 0: off"),
        {0},
};

static const struct field resources_fields[] = {
        F_UINT("ranks", resources.ranks, 1, JOBSPEC_RANKS_MAX,
               "data-parallel MPI ranks: the daemon starts its launcher (--mpirun) around finetuned train; "
               "needs a build with MPI"),
        F_BOOL("sync_batchnorm", resources.sync_batchnorm,
               "data-parallel: BatchNorm layers use the whole global batch's statistics (SyncBatchNorm); false: "
               "each rank's own (DDP's default)"),
        {0},
};

static const struct field calibration_fields[] = {
        F_BOOL("temperature_scaling", calibration.temperature_scaling,
               "classification: fit a temperature T on the validation split (minimising its NLL) and save it with "
               "the model; predict and evaluate then answer softmax(logits / T); needs validation data"),
        {0},
};

static const struct field limits_fields[] = {
        F_UINT("max_runtime_seconds", limits.max_runtime_seconds, 0, JOBSPEC_RUNTIME_MAX,
               "running time allowed, summed over attempts and pauses excluded; past it the job stops within one batch "
               "and fails with code 'timeout', keeping its checkpoints; 0: no limit"),
        F_UINT("max_attempts", limits.max_attempts, 1, JOBSPEC_ATTEMPTS_MAX,
               "the daemon runs a job whose worker died again, at most this many times in all; a pause or a daemon "
               "restart does not count"),
        {0},
};

static const struct field from_checkpoint_fields[] = {
        {.key = "job",
         .kind = K_STRING,
         .off = OFF(from_checkpoint.job),
         .min_n = 1,
         .size = sizeof(((struct jobspec *)0)->from_checkpoint.job),
         .required = true,
         .doc = "the job (job_...) whose checkpoint the weights come from"},
        {.key = "checkpoint",
         .kind = K_STRING,
         .off = OFF(from_checkpoint.checkpoint),
         .min_n = 1,
         .size = sizeof(((struct jobspec *)0)->from_checkpoint.checkpoint),
         .required = true,
         .doc = "its id, as GET /v1/jobs/{id}/checkpoints lists it"},
        {0},
};

static const struct field root_fields[] = {
        {.key = "model",
         .kind = K_CUSTOM,
         .custom = parse_model,
         .schema = model_schema,
         .required = true,
         .doc = "the base model"},
        {.key = "training_file",
         .kind = K_REFS,
         .off = OFF(training_file),
         .size = JOBSPEC_REF_MAX,
         .max_n = 2,
         .required = true,
         .doc = "the training data: a dataset id (ds_..., the API) or a path (finetuned train); [images, labels] "
                "names an IDX pair"},
        {.key = "validation_file",
         .kind = K_REFS,
         .off = OFF(validation_file),
         .size = JOBSPEC_REF_MAX,
         .max_n = 2,
         .nullable = true,
         .doc = "validation data, as training_file; when given, validation_split is not used"},
        F_NUM("validation_split", validation_split, 0, false, 1, true,
              "fraction of the training data held out for validation (stratified, seeded); 0: none"),
        F_OBJ("task", task_fields, "what to predict"),
        F_OBJ("preprocess", preprocess_fields, "how rows and images are prepared"),
        F_OBJ("hyperparameters", hyper_fields, "optimizer, schedule and their settings"),
        F_OBJ("strategy", strategy_fields, "which parameters train, and how fast"),
        F_OBJ("early_stopping", early_fields, "giving the object turns early stopping on; null: off"),
        F_OBJ("checkpoint", checkpoint_fields, "how often checkpoints are written and how many stay"),
        F_OBJ("resources", resources_fields, "what one job runs on"),
        F_OBJ("calibration", calibration_fields, "calibration of the predicted probabilities"),
        F_OBJ("limits", limits_fields, "how long and how often a job may run"),
        F_OBJ("from_checkpoint", from_checkpoint_fields,
              "the daemon: start from the weights of another job's checkpoint, registered as a model (as POST "
              "/v1/jobs/{id}/checkpoints/{n}/model) that becomes 'model' (then omit 'model'); null: start from "
              "'model'"),
        F_OBJ("guards", guards_fields, "training-health rules, each reported as a 'warning' event"),
        {.key = "seed",
         .kind = K_U64,
         .off = OFF(seed),
         .doc = "seeds the split, shuffling, augmentation, dropout and fresh initialisation"},
        F_ENUM("device", device, device_names, "auto uses a GPU when the build and the machine have one"),
        {0},
};

/* Entries of a K_NUMBERS value (a bare number is one). */
static size_t numbers_count(const json_t *v) {
        return json_is_array(v) ? json_array_size(v) : 1;
}

/* The rules between fields, which JSON Schema cannot state: the fields they
 * concern say them in their descriptions (and so in the schema). */
static int validate(const json_t *root, struct jobspec *s, struct ft_error *err) {
        const json_t *norm = json_object_get(json_object_get(root, "preprocess"), "normalize");
        if (json_is_object(norm)) {
                size_t nm = numbers_count(json_object_get(norm, "mean")),
                       ns = numbers_count(json_object_get(norm, "std"));
                if (nm != ns)
                        return ft_error_set(
                                err, -EINVAL, "preprocess.normalize.std",
                                "'preprocess.normalize.std' has %zu entries but 'preprocess.normalize.mean' "
                                "has %zu",
                                ns, nm);
        }

        const json_t *fc = json_object_get(root, "from_checkpoint");
        s->from_checkpoint.given = fc != NULL && !json_is_null(fc);
        const json_t *es = json_object_get(root, "early_stopping");
        s->early_stopping.enabled = es != NULL && !json_is_null(es);
        int r = jobspec_metric_mode(s->task.type, s->early_stopping.metric, &s->early_stopping.mode);
        if (r == -ENOENT)
                return ft_error_set(err, -EINVAL, "early_stopping.metric",
                                    "'early_stopping.metric' '%s' is not a metric this trainer reports",
                                    s->early_stopping.metric);
        if (r < 0)
                return ft_error_set(err, -EINVAL, "early_stopping.metric",
                                    "'early_stopping.metric' '%s' is not reported for %s tasks",
                                    s->early_stopping.metric, jobspec_task_name(s->task.type));
        bool has_val = s->validation_file[0][0] || s->validation_split > 0;
        if (s->early_stopping.enabled && !has_val && strncmp(s->early_stopping.metric, "val_", 4) == 0)
                return ft_error_set(err, -EINVAL, "early_stopping.metric",
                                    "'early_stopping.metric' '%s' needs validation data: give 'validation_file' "
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
        if (s->task.type == JOBSPEC_TASK_REGRESSION && s->class_weights)
                return ft_error_set(err, -EINVAL, "hyperparameters.class_weights",
                                    "'hyperparameters.class_weights' applies to classification only");
        if (s->task.type == JOBSPEC_TASK_REGRESSION && s->hyperparameters.label_smoothing > 0)
                return ft_error_set(err, -EINVAL, "hyperparameters.label_smoothing",
                                    "'hyperparameters.label_smoothing' applies to classification only");
        if (s->calibration.temperature_scaling && s->task.type != JOBSPEC_TASK_CLASSIFICATION)
                return ft_error_set(err, -EINVAL, "calibration.temperature_scaling",
                                    "'calibration.temperature_scaling' applies to classification only");
        if (s->calibration.temperature_scaling && !has_val)
                return ft_error_set(err, -EINVAL, "calibration.temperature_scaling",
                                    "'calibration.temperature_scaling' is fitted on validation data: give "
                                    "'validation_file' or a 'validation_split' above 0");
        if (!HAVE_MPI && s->resources.ranks > 1)
                return ft_error_set(err, -EINVAL, "resources.ranks",
                                    "'resources.ranks' %u needs data-parallel training, which this build does not "
                                    "have (rebuild with -Dmpi=enabled and Open MPI installed)",
                                    s->resources.ranks);
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

/* class_weights and guards (issue 19), added to what jobspec_to_json packs; steals doc. */
static json_t *jobspec_to_json_diagnose(const struct jobspec *s, json_t *doc) {
        const __typeof__(s->guards) *g = &s->guards;
        json_t *guards = json_pack("{s:b s:I s:f s:I s:b s:f}", "nonfinite", g->nonfinite, "plateau_epochs",
                                   (json_int_t)g->plateau_epochs, "plateau_min_delta", g->plateau_min_delta,
                                   "overfit_epochs", (json_int_t)g->overfit_epochs, "frozen", g->frozen,
                                   "divergence_factor", g->divergence_factor);
        if (!guards || json_object_set_new(doc, "guards", guards) < 0 ||
            json_object_set_new(json_object_get(doc, "hyperparameters"), "class_weights",
                                s->class_weights ? json_deep_copy(s->class_weights) : json_null()) < 0) {
                json_decref(doc);
                return NULL;
        }
        return doc;
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
        json_t *from_ckpt = s->from_checkpoint.given ? json_pack("{s:s s:s}", "job", s->from_checkpoint.job,
                                                                 "checkpoint", s->from_checkpoint.checkpoint)
                                                     : json_null();
        json_t *doc = json_pack(
                "{s:o s:o s:o s:f"
                " s:{s:s s:s}"
                " s:{s:b s:b s:b s:o s:o s:o s:{s:I s:b}}"
                " s:{s:I s:I s:f s:s s:f s:[ff] s:f s:f s:s s:f s:I s:f s:f s:f s:f}"
                " s:{s:s s:o s:o s:b s:f s:o}"
                " s:o s:{s:I s:I} s:{s:I s:b} s:{s:I s:I} s:o s:I s:s}",
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
                (json_int_t)s->checkpoint.every_epochs, "keep", (json_int_t)s->checkpoint.keep, "resources", "ranks",
                (json_int_t)s->resources.ranks, "sync_batchnorm", s->resources.sync_batchnorm, "limits", "max_runtime_seconds",
                (json_int_t)s->limits.max_runtime_seconds, "max_attempts", (json_int_t)s->limits.max_attempts,
                "from_checkpoint", from_ckpt, "seed",
                (json_int_t)s->seed, "device", jobspec_device_name(s->device));
        if (doc &&
            json_object_set_new(doc, "calibration",
                                json_pack("{s:b}", "temperature_scaling", s->calibration.temperature_scaling)) < 0) {
                json_decref(doc);
                return NULL;
        }
        return doc ? jobspec_to_json_diagnose(s, doc) : NULL;
}

/* ---- the schema ---------------------------------------------------------------- */

/* A bound as JSON: an integer when it is one (10, not 10.0). */
static json_t *schema_number(double x) {
        if (x == floor(x) && fabs(x) < 9007199254740992.0)
                return json_integer((json_int_t)x);
        return json_real(x);
}

static json_t *schema_type(const char *type, bool nullable) {
        return nullable ? json_pack("[ss]", type, "null") : json_string(type);
}

static json_t *schema_range(json_t *s, const struct field *f) {
        json_object_set_new(s, f->lo_open ? "exclusiveMinimum" : "minimum", schema_number(f->lo));
        json_object_set_new(s, f->hi_open ? "exclusiveMaximum" : "maximum", schema_number(f->hi));
        return s;
}

static json_t *schema_string(size_t min, size_t size) {
        return json_pack("{s:s,s:I,s:I}", "type", "string", "minLength", (json_int_t)min, "maxLength",
                         (json_int_t)(size - 1));
}

static int metric_schema(const struct field *f, json_t *schema) {
        char text[1024], cls[256] = "", reg[256] = "";
        json_t *e = json_array();
        for (size_t i = 0; i < ARRAY_SIZE(metrics); i++) {
                json_array_append_new(e, json_string(metrics[i].name));
                if (metrics[i].classification)
                        snprintf(cls + strlen(cls), sizeof(cls) - strlen(cls), "%s%s", cls[0] ? ", " : "",
                                 metrics[i].name);
                if (metrics[i].regression)
                        snprintf(reg + strlen(reg), sizeof(reg) - strlen(reg), "%s%s", reg[0] ? ", " : "",
                                 metrics[i].name);
        }
        snprintf(text, sizeof(text), "%s; classification reports %s; regression reports %s", f->doc, cls, reg);
        json_object_set_new(schema, "description", json_string(text));
        return json_object_set_new(schema, "enum", e);
}

static json_t *object_schema(const struct field *table, const json_t *plain, const json_t *full, bool nullable);

/* plain and full: the parent object in jobspec_to_json() of the defaults,
 * with early stopping off (what an absent object means) and on (the defaults
 * of its members). */
static json_t *field_schema(const struct field *f, const json_t *plain, const json_t *full) {
        json_t *s = json_object(), *any = NULL;
        switch (f->kind) {
        case K_BOOL: json_object_set_new(s, "type", schema_type("boolean", f->nullable)); break;
        case K_UINT:
                json_object_set_new(s, "type", schema_type("integer", f->nullable));
                schema_range(s, f);
                if (f->ints) {
                        json_t *e = json_array();
                        for (const unsigned *p = f->ints; *p; p++)
                                json_array_append_new(e, json_integer(*p));
                        if (f->nullable)
                                json_array_append_new(e, json_null());
                        json_object_set_new(s, "enum", e);
                }
                break;
        case K_U64:
                json_object_set_new(s, "type", schema_type("integer", f->nullable));
                json_object_set_new(s, "minimum", json_integer(0));
                json_object_set_new(s, "maximum", json_integer(INT64_MAX));
                break;
        case K_NUMBER:
                json_object_set_new(s, "type", schema_type("number", f->nullable));
                schema_range(s, f);
                break;
        case K_ENUM: {
                json_t *e = json_array();
                for (const char *const *n = f->names; *n; n++)
                        json_array_append_new(e, json_string(*n));
                json_object_set_new(s, "type", schema_type("string", f->nullable));
                json_object_set_new(s, "enum", e);
                break;
        }
        case K_STRING:
                json_decref(s);
                s = schema_string(f->min_n, f->size);
                break;
        case K_REFS:
                any = json_pack("[o]", schema_string(1, f->size));
                if (f->max_n >= 2)
                        json_array_append_new(any, json_pack("{s:s,s:o,s:i,s:I,s:s}", "type", "array", "items",
                                                             schema_string(1, f->size), "minItems", 1, "maxItems",
                                                             (json_int_t)f->max_n, "description", "[images, labels]"));
                break;
        case K_NUMBERS: {
                json_t *arr = json_pack("{s:s,s:o,s:I,s:I}", "type", "array", "items",
                                        schema_range(json_pack("{s:s}", "type", "number"), f), "minItems",
                                        (json_int_t)f->min_n, "maxItems", (json_int_t)f->max_n);
                if (f->min_n <= 1) {
                        any = json_pack("[o,o]", schema_range(json_pack("{s:s}", "type", "number"), f), arr);
                } else {
                        json_decref(s);
                        s = arr;
                        if (f->nullable)
                                json_object_set_new(s, "type", schema_type("array", true));
                }
                break;
        }
        case K_UINTS:
                json_object_set_new(s, "type", schema_type("array", f->nullable));
                json_object_set_new(s, "items", schema_range(json_pack("{s:s}", "type", "integer"), f));
                json_object_set_new(s, "minItems", json_integer((json_int_t)f->max_n));
                json_object_set_new(s, "maxItems", json_integer((json_int_t)f->max_n));
                break;
        case K_GLOBS:
                any = json_pack("[o,{s:s,s:o,s:I}]", schema_string(1, f->size), "type", "array", "items",
                                schema_string(1, f->size), "maxItems", (json_int_t)f->max_n);
                break;
        case K_GLOB_MAP:
                json_object_set_new(s, "type", schema_type("object", f->nullable));
                json_object_set_new(s, "maxProperties", json_integer((json_int_t)f->max_n));
                json_object_set_new(s, "propertyNames",
                                    json_pack("{s:i,s:I}", "minLength", 1, "maxLength", (json_int_t)f->size - 1));
                json_object_set_new(s, "additionalProperties", schema_range(json_pack("{s:s}", "type", "number"), f));
                break;
        case K_OBJECT: {
                json_decref(s);
                const json_t *p = json_object_get(plain, f->key), *q = json_object_get(full, f->key);
                s = object_schema(f->sub, json_is_object(p) ? p : q, q, f->nullable);
                break;
        }
        case K_CUSTOM: break;
        }
        if (!s)
                return NULL;
        if (any) {
                if (f->nullable)
                        json_array_append_new(any, json_pack("{s:s}", "type", "null"));
                json_object_set_new(s, "anyOf", any);
        }
        if (f->doc)
                json_object_set_new(s, "description", json_string(f->doc));
        if (f->schema)
                f->schema(f, s);
        /* The default is what jobspec_init() leaves, as jobspec_to_json() writes
         * it; an object's members carry theirs, the object only a null one. */
        const json_t *def = json_object_get(json_is_object(plain) ? plain : full, f->key);
        if (!f->required && def && (f->kind != K_OBJECT || json_is_null(def)))
                json_object_set_new(s, "default", json_deep_copy(def));
        return s;
}

static json_t *object_schema(const struct field *table, const json_t *plain, const json_t *full, bool nullable) {
        json_t *props = json_object(), *required = json_array();
        for (const struct field *f = table; f->key; f++) {
                json_object_set_new(props, f->key, field_schema(f, plain, full));
                if (f->required)
                        json_array_append_new(required, json_string(f->key));
        }
        json_t *s = json_pack("{s:o,s:o,s:b}", "type", schema_type("object", nullable), "properties", props,
                              "additionalProperties", 0);
        if (s && json_array_size(required))
                json_object_set_new(s, "required", required);
        else
                json_decref(required);
        return s;
}

json_t *jobspec_schema(void) {
        struct jobspec *d = malloc(sizeof(*d));
        if (!d)
                return NULL;
        jobspec_init(d);
        json_t *plain = jobspec_to_json(d);
        d->early_stopping.enabled = true;
        d->from_checkpoint.given = true;
        json_t *full = jobspec_to_json(d);
        free(d);
        json_t *s = plain && full ? object_schema(root_fields, plain, full, false) : NULL;
        json_decref(plain);
        json_decref(full);
        if (!s)
                return NULL;
        json_object_set_new(s, "title", json_string("JobSpec"));
        json_object_set_new(
                s, "description",
                json_string("A fine-tuning job (docs/job-spec.md), the same for POST /v1/jobs and finetuned train. "
                            "Every field but model and training_file has a default; an unknown field, a wrong type "
                            "or an impossible value is refused with param naming the field. Rules between fields, "
                            "checked too: preprocess.normalize.std has as many entries as mean; "
                            "early_stopping.metric is reported for task.type, and a val_* metric needs validation "
                            "data; hyperparameters.warmup_epochs <= epochs and min_lr <= learning_rate; "
                            "hyperparameters.label_smoothing and class_weights are for classification only; "
                            "strategy.freeze and "
                            "strategy.trainable are not both given."));
        return s;
}
