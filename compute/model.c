/* model.c - model specs (JSON) -> layer graph with PyTorch state_dict names through a table of layer types
 * (layer_types: per spec type its fields, builder and init); the arena as [params][grads][buffers]; init;
 * freezing; the forward/backward entry points that dispatch to the backend (backend.h).
 *
 * Not for: executing layers (compute/backend/), presets (presets.c), losses, optimizers. */
#include "compute/model.h"

#include <assert.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "compute/compute.h"
#include "compute/nn.h"

/* ---- building ---------------------------------------------------------------------------------------- */

struct builder {
        struct model *m;
        int cap_nodes;
        size_t cap_tensors;
        uint64_t total_numel;
        int layer; /* index of the spec layer being parsed */
        const char *lname; /* its name */
        struct ft_error *err;
};

#define LAYER_NAME_MAX 80

static int layer_error(struct builder *b, const char *field, const char *fmt, ...) _printf_(3, 4);
static int layer_error(struct builder *b, const char *field, const char *fmt, ...) {
        char msg[FT_ERROR_MSG_MAX], param[FT_ERROR_PARAM_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (field)
                snprintf(param, sizeof(param), "layers[%d].%s", b->layer, field);
        else
                snprintf(param, sizeof(param), "layers[%d]", b->layer);
        if (b->lname)
                return ft_error_set(b->err, -EINVAL, param, "layers[%d] ('%s'): %s", b->layer, b->lname, msg);
        return ft_error_set(b->err, -EINVAL, param, "layers[%d]: %s", b->layer, msg);
}

static int get_int(struct builder *b, const json_t *o, const char *key, bool required, int64_t def, int64_t min,
                   int64_t max, int64_t *ret) {
        json_t *v = json_object_get(o, key);
        if (!v) {
                if (required)
                        return layer_error(b, key, "missing '%s'", key);
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return layer_error(b, key, "'%s' must be an integer from %lld to %lld", key, (long long)min,
                                   (long long)max);
        *ret = json_integer_value(v);
        return 0;
}

/* an int or a [h, w] pair */
static int get_pair(struct builder *b, const json_t *o, const char *key, bool required, int64_t def, int64_t min,
                    int64_t max, int64_t ret[2]) {
        json_t *v = json_object_get(o, key);
        if (!v) {
                if (required)
                        return layer_error(b, key, "missing '%s'", key);
                ret[0] = ret[1] = def;
                return 0;
        }
        if (json_is_integer(v)) {
                if (json_integer_value(v) < min || json_integer_value(v) > max)
                        goto bad;
                ret[0] = ret[1] = json_integer_value(v);
                return 0;
        }
        if (json_is_array(v) && json_array_size(v) == 2) {
                for (int i = 0; i < 2; i++) {
                        json_t *e = json_array_get(v, (size_t)i);
                        if (!json_is_integer(e) || json_integer_value(e) < min || json_integer_value(e) > max)
                                goto bad;
                        ret[i] = json_integer_value(e);
                }
                return 0;
        }
bad:
        return layer_error(b, key, "'%s' must be an integer or a pair of integers from %lld to %lld", key,
                           (long long)min, (long long)max);
}

static int get_real(struct builder *b, const json_t *o, const char *key, double def, double min, double max,
                    bool max_inclusive, double *ret) {
        json_t *v = json_object_get(o, key);
        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_is_number(v))
                return layer_error(b, key, "'%s' must be a number", key);
        double d = json_number_value(v);
        if (!isfinite(d) || d < min || d > max || (!max_inclusive && d == max))
                return layer_error(b, key, "'%s' must be from %g to %g%s", key, min, max,
                                   max_inclusive ? "" : " (exclusive)");
        *ret = d;
        return 0;
}

static int get_bool(struct builder *b, const json_t *o, const char *key, bool def, bool *ret) {
        json_t *v = json_object_get(o, key);
        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_is_boolean(v))
                return layer_error(b, key, "'%s' must be true or false", key);
        *ret = json_is_true(v);
        return 0;
}

static int add_tensor(struct builder *b, const char *prefix, const char *suffix, enum tensor_dtype dtype, int ndim,
                      const int64_t *shape, bool is_param) {
        struct model *m = b->m;
        if (m->n_tensors == b->cap_tensors) {
                size_t cap = b->cap_tensors ? b->cap_tensors * 2 : 64;
                struct tensor *t = realloc(m->tensors, cap * sizeof(*t));
                if (!t)
                        return ft_error_set(b->err, -ENOMEM, NULL, "out of memory");
                m->tensors = t;
                b->cap_tensors = cap;
        }
        struct tensor *t = &m->tensors[m->n_tensors];
        memset(t, 0, sizeof(*t));
        snprintf(t->name, sizeof(t->name), "%s.%s", prefix, suffix);
        t->dtype = dtype;
        t->ndim = ndim;
        t->numel = 1;
        for (int i = 0; i < TENSOR_NDIM_MAX; i++)
                t->shape[i] = 1;
        for (int i = 0; i < ndim; i++) {
                t->shape[i] = shape[i];
                t->numel *= (size_t)shape[i];
        }
        assert(!is_param || dtype == TENSOR_F32); /* the parameter and gradient spans hold floats */
        t->is_param = is_param;
        t->lr_mult = 1.0f;
        b->total_numel += t->numel;
        if (b->total_numel > MODEL_PARAMS_MAX)
                return layer_error(b, NULL, "the model has more than %llu parameters",
                                   (unsigned long long)MODEL_PARAMS_MAX);
        for (size_t i = 0; i < m->n_tensors; i++)
                if (strcmp(m->tensors[i].name, t->name) == 0)
                        return layer_error(b, "name", "duplicate tensor name '%s'", t->name);
        return (int)m->n_tensors++;
}

static int add_node(struct builder *b, enum node_kind kind, const char *name, int in0, struct node **ret) {
        struct model *m = b->m;
        if (m->n_nodes == b->cap_nodes) {
                int cap = b->cap_nodes ? b->cap_nodes * 2 : 32;
                struct node *n = realloc(m->nodes, (size_t)cap * sizeof(*n));
                if (!n)
                        return ft_error_set(b->err, -ENOMEM, NULL, "out of memory");
                m->nodes = n;
                b->cap_nodes = cap;
        }
        struct node *n = &m->nodes[m->n_nodes++];
        memset(n, 0, sizeof(*n));
        n->kind = kind;
        n->n_in = 1;
        n->in[0] = in0;
        n->in[1] = -1;
        n->ti_weight = n->ti_bias = n->ti_rmean = n->ti_rvar = n->ti_nbt = -1;
        n->out = in0 == 0 ? m->input : m->nodes[in0 - 1].out;
        snprintf(n->name, sizeof(n->name), "%s", name);
        *ret = n;
        return m->n_nodes; /* value index of its output */
}

static int need_3d(struct builder *b, const struct value_shape *s, const char *type) {
        if (s->ndim != 3)
                return layer_error(b, NULL, "'%s' needs an image input [C, H, W], got [%lld] features", type,
                                   (long long)s->c);
        return 0;
}

/* ---- init: PyTorch's constructors, per layer type ------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s) {
        uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) { /* [0, 1) */
        return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t name_hash(const char *s) {
        uint64_t h = 1469598103934665603ull;
        for (; *s; s++)
                h = (h ^ (uint8_t)*s) * 1099511628211ull;
        return h;
}

/* linear, conv2d: kaiming_uniform(a=sqrt(5)) weight and its bound for the bias, or torchvision's
 * kaiming_normal(fan_out, relu) for conv weights */
static void init_weighted(struct node *n, uint64_t seed) {
        struct tensor *w = n->weight;
        size_t fan_in = w->numel / (size_t)w->shape[0];
        uint64_t s = seed ^ name_hash(w->name);
        if (n->torchvision_init) {
                /* kaiming_normal_(mode="fan_out", nonlinearity="relu") */
                double fan_out = (double)w->shape[0] * (double)(w->numel / ((size_t)w->shape[0] * (size_t)w->shape[1]));
                double std = sqrt(2.0 / fan_out);
                for (size_t j = 0; j < w->numel; j++) {
                        double u1 = rng_uniform(&s), u2 = rng_uniform(&s);
                        double z = sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
                        tensor_f32(w)[j] = (float)(z * std);
                }
        } else {
                double bound = 1.0 / sqrt((double)fan_in);
                for (size_t j = 0; j < w->numel; j++)
                        tensor_f32(w)[j] = (float)((2.0 * rng_uniform(&s) - 1.0) * bound);
        }
        if (n->bias) {
                double bound = 1.0 / sqrt((double)fan_in);
                uint64_t sb = seed ^ name_hash(n->bias->name);
                for (size_t j = 0; j < n->bias->numel; j++)
                        tensor_f32(n->bias)[j] = (float)((2.0 * rng_uniform(&sb) - 1.0) * bound);
        }
}

static void init_bn(struct node *n, uint64_t seed) {
        (void)seed;
        for (size_t j = 0; j < n->weight->numel; j++) {
                tensor_f32(n->weight)[j] = 1.0f;
                tensor_f32(n->bias)[j] = 0.0f;
                tensor_f32(n->running_mean)[j] = 0.0f;
                tensor_f32(n->running_var)[j] = 1.0f;
        }
        tensor_i64(n->num_batches_tracked)[0] = 0;
}

/* ---- layer types: the spec's "type" values ---------------------------------------------------------------- */

/* A layer's fields, parsed (the ones its type has; the others stay zero). */
struct layer_args {
        int64_t out; /* out_features, out_channels */
        int64_t kernel[2], stride[2], padding[2], dilation[2]; /* basic_block's stride (an int): stride[0] */
        double eps, momentum, slope, p;
        bool bias;
};

enum field_type {
        FIELD_INT, /* an integer from min to max */
        FIELD_PAIR, /* an integer or [h, w], each from min to max */
        FIELD_REAL, /* a number from min to max (max excluded with max_open) */
        FIELD_BOOL,
};

struct layer_field {
        const char *key; /* NULL ends a type's list */
        enum field_type type;
        size_t offset; /* where its value goes in struct layer_args */
        bool required;
        double def, min, max;
        bool max_open;
};

#define FIELD(k, t, member, req, d, lo, hi, open)                                                                      \
        { k, t, offsetof(struct layer_args, member), req, d, lo, hi, open }
#define FIELDS_END                                                                                                     \
        { NULL, FIELD_INT, 0, false, 0, 0, 0, false }

struct layer_type;
/* Append the layer's nodes (and tensors) after value *cur: b->lname names it, b->layer is its index, a holds its
 * fields (a builder may resolve a default, e.g. a pool's stride; the canonical spec is written from a after). */
typedef int (*layer_build_fn)(struct builder *b, const struct layer_type *lt, struct layer_args *a, int cur);

struct layer_type {
        const char *type; /* the spec's "type" */
        int kind; /* the node kind it makes (enum node_kind); -1: made of other types' nodes */
        bool image; /* needs an image input [C, H, W] */
        enum act_kind act; /* activations: which one */
        const struct layer_field *fields; /* besides "type" and "name", in canonical order */
        layer_build_fn build;
        void (*init)(struct node *n, uint64_t seed); /* its kind's parameters and buffers as PyTorch's constructor
                                                      * makes them (model_init); NULL: nothing to initialise */
};

static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
        int64_t ext = d * (k - 1) + 1;
        if (in + 2 * p < ext)
                return 0;
        return (in + 2 * p - ext) / s + 1;
}

static struct value_shape cur_shape(const struct builder *b, int cur) {
        return cur == 0 ? b->m->input : b->m->nodes[cur - 1].out;
}

static int build_conv(struct builder *b, int in, const char *name, int64_t oc, const int64_t k[2], const int64_t s[2],
                      const int64_t p[2], const int64_t d[2], bool bias, bool tv, int *ret_v) {
        struct model *m = b->m;
        struct value_shape is = cur_shape(b, in);
        int64_t oh = conv_out(is.h, k[0], s[0], p[0], d[0]), ow = conv_out(is.w, k[1], s[1], p[1], d[1]);
        if (oh < 1 || ow < 1)
                return layer_error(b, "kernel_size",
                                   "kernel %lldx%lld (dilation %lldx%lld) larger than the padded input %lldx%lld",
                                   (long long)k[0], (long long)k[1], (long long)d[0], (long long)d[1],
                                   (long long)(is.h + 2 * p[0]), (long long)(is.w + 2 * p[1]));
        struct node *n;
        int v = add_node(b, NODE_CONV, name, in, &n);
        if (v < 0)
                return v;
        n->kh = k[0], n->kw = k[1], n->sh = s[0], n->sw = s[1], n->ph = p[0], n->pw = p[1], n->dh = d[0], n->dw = d[1];
        n->torchvision_init = tv;
        n->out = (struct value_shape){3, oc, oh, ow};
        int64_t ws[4] = {oc, is.c, k[0], k[1]};
        int ti = add_tensor(b, name, "weight", TENSOR_F32, 4, ws, true);
        if (ti < 0)
                return ti;
        m->nodes[v - 1].ti_weight = ti;
        if (bias) {
                ti = add_tensor(b, name, "bias", TENSOR_F32, 1, &oc, true);
                if (ti < 0)
                        return ti;
                m->nodes[v - 1].ti_bias = ti;
        }
        *ret_v = v;
        return 0;
}

static int build_bn(struct builder *b, int in, const char *name, double eps, double momentum, int *ret_v) {
        struct node *n;
        int v = add_node(b, NODE_BN, name, in, &n);
        if (v < 0)
                return v;
        n->eps = (float)eps;
        n->momentum = (float)momentum;
        int64_t c = n->out.c;
        int r;
        struct model *m = b->m;
        if ((r = add_tensor(b, name, "weight", TENSOR_F32, 1, &c, true)) < 0)
                return r;
        m->nodes[v - 1].ti_weight = r;
        if ((r = add_tensor(b, name, "bias", TENSOR_F32, 1, &c, true)) < 0)
                return r;
        m->nodes[v - 1].ti_bias = r;
        if ((r = add_tensor(b, name, "running_mean", TENSOR_F32, 1, &c, false)) < 0)
                return r;
        m->nodes[v - 1].ti_rmean = r;
        if ((r = add_tensor(b, name, "running_var", TENSOR_F32, 1, &c, false)) < 0)
                return r;
        m->nodes[v - 1].ti_rvar = r;
        if ((r = add_tensor(b, name, "num_batches_tracked", TENSOR_I64, 0, NULL, false)) < 0)
                return r;
        m->nodes[v - 1].ti_nbt = r;
        *ret_v = v;
        return 0;
}

static int build_act(struct builder *b, int in, const char *name, enum act_kind act, double slope) {
        struct node *n;
        int v = add_node(b, NODE_ACT, name, in, &n);
        if (v < 0)
                return v;
        n->act = act;
        n->alpha = (float)slope;
        return 0;
}

static int build_linear(struct builder *b, const struct layer_type *lt, struct layer_args *a, int cur) {
        struct model *m = b->m;
        struct value_shape is = cur_shape(b, cur);
        struct node *n;
        int v, r;
        (void)lt;
        if (is.ndim != 1)
                return layer_error(b, NULL,
                                   "'linear' needs flat input [features], got [%lld, %lld, %lld]: add a "
                                   "'flatten' layer",
                                   (long long)is.c, (long long)is.h, (long long)is.w);
        if ((v = add_node(b, NODE_LINEAR, b->lname, cur, &n)) < 0)
                return v;
        n->out = (struct value_shape){1, a->out, 1, 1};
        int64_t ws[2] = {a->out, is.c};
        if ((r = add_tensor(b, b->lname, "weight", TENSOR_F32, 2, ws, true)) < 0)
                return r;
        m->nodes[v - 1].ti_weight = r;
        if (a->bias) {
                if ((r = add_tensor(b, b->lname, "bias", TENSOR_F32, 1, &a->out, true)) < 0)
                        return r;
                m->nodes[v - 1].ti_bias = r;
        }
        return 0;
}

static int build_conv2d(struct builder *b, const struct layer_type *lt, struct layer_args *a, int cur) {
        int v;
        (void)lt;
        return build_conv(b, cur, b->lname, a->out, a->kernel, a->stride, a->padding, a->dilation, a->bias, false, &v);
}

static int build_batchnorm2d(struct builder *b, const struct layer_type *lt, struct layer_args *a, int cur) {
        int v;
        (void)lt;
        return build_bn(b, cur, b->lname, a->eps, a->momentum, &v);
}

static int build_activation(struct builder *b, const struct layer_type *lt, struct layer_args *a, int cur) {
        return build_act(b, cur, b->lname, lt->act, a->slope);
}

/* maxpool2d, avgpool2d: the stride defaults to the kernel size */
static int build_pool(struct builder *b, const struct layer_type *lt, struct layer_args *a, int cur) {
        struct value_shape is = cur_shape(b, cur);
        int64_t *k = a->kernel, *s = a->stride, *p = a->padding;
        struct node *n;
        int v;
        if (s[0] < 0)
                s[0] = k[0], s[1] = k[1];
        if (2 * p[0] > k[0] || 2 * p[1] > k[1])
                return layer_error(b, "padding", "'padding' must be at most half of 'kernel_size'");
        int64_t oh = conv_out(is.h, k[0], s[0], p[0], 1), ow = conv_out(is.w, k[1], s[1], p[1], 1);
        if (oh < 1 || ow < 1)
                return layer_error(b, "kernel_size", "kernel %lldx%lld larger than the padded input %lldx%lld",
                                   (long long)k[0], (long long)k[1], (long long)(is.h + 2 * p[0]),
                                   (long long)(is.w + 2 * p[1]));
        if ((v = add_node(b, (enum node_kind)lt->kind, b->lname, cur, &n)) < 0)
                return v;
        n->kh = k[0], n->kw = k[1], n->sh = s[0], n->sw = s[1], n->ph = p[0], n->pw = p[1];
        n->dh = n->dw = 1;
        n->out = (struct value_shape){3, is.c, oh, ow};
        return 0;
}

static int build_global_avg_pool(struct builder *b, const struct layer_type *lt, struct layer_args *a, int cur) {
        struct value_shape is = cur_shape(b, cur);
        struct node *n;
        int v;
        (void)lt, (void)a;
        if ((v = add_node(b, NODE_GAP, b->lname, cur, &n)) < 0)
                return v;
        n->out = (struct value_shape){3, is.c, 1, 1};
        return 0;
}

static int build_flatten(struct builder *b, const struct layer_type *lt, struct layer_args *a, int cur) {
        struct value_shape is = cur_shape(b, cur);
        struct node *n;
        int v;
        (void)lt, (void)a;
        if (is.ndim == 1)
                return 0; /* already flat: nothing to do */
        if ((v = add_node(b, NODE_FLATTEN, b->lname, cur, &n)) < 0)
                return v;
        n->out = (struct value_shape){1, is.c * is.h * is.w, 1, 1};
        return 0;
}

static int build_dropout(struct builder *b, const struct layer_type *lt, struct layer_args *a, int cur) {
        struct node *n;
        int v;
        (void)lt;
        if ((v = add_node(b, NODE_DROPOUT, b->lname, cur, &n)) < 0)
                return v;
        n->alpha = (float)a->p;
        return 0;
}

/* torchvision's BasicBlock: conv1 bn1 relu conv2 bn2 (+ downsample.0/1) add relu_out */
static int build_basic_block(struct builder *b, const struct layer_type *lt, struct layer_args *a, int cur) {
        struct value_shape is = cur_shape(b, cur);
        const char *name = b->lname;
        int64_t oc = a->out, st = a->stride[0];
        char sub[TENSOR_NAME_MAX];
        int64_t k3[2] = {3, 3}, k1[2] = {1, 1}, s[2] = {st, st}, s1[2] = {1, 1}, p1[2] = {1, 1}, p0[2] = {0, 0},
                d1[2] = {1, 1};
        struct node *n;
        int in = cur, x, r;
        (void)lt;
        snprintf(sub, sizeof(sub), "%s.conv1", name);
        if ((r = build_conv(b, in, sub, oc, k3, s, p1, d1, false, true, &x)) < 0)
                return r;
        snprintf(sub, sizeof(sub), "%s.bn1", name);
        if ((r = build_bn(b, x, sub, 1e-5, 0.1, &x)) < 0)
                return r;
        snprintf(sub, sizeof(sub), "%s.relu", name);
        if ((r = build_act(b, x, sub, ACT_RELU, 0.0)) < 0)
                return r;
        x = b->m->n_nodes;
        snprintf(sub, sizeof(sub), "%s.conv2", name);
        if ((r = build_conv(b, x, sub, oc, k3, s1, p1, d1, false, true, &x)) < 0)
                return r;
        snprintf(sub, sizeof(sub), "%s.bn2", name);
        if ((r = build_bn(b, x, sub, 1e-5, 0.1, &x)) < 0)
                return r;
        int shortcut = in;
        if (st != 1 || oc != is.c) {
                snprintf(sub, sizeof(sub), "%s.downsample.0", name);
                if ((r = build_conv(b, in, sub, oc, k1, s, p0, d1, false, true, &shortcut)) < 0)
                        return r;
                snprintf(sub, sizeof(sub), "%s.downsample.1", name);
                if ((r = build_bn(b, shortcut, sub, 1e-5, 0.1, &shortcut)) < 0)
                        return r;
        }
        snprintf(sub, sizeof(sub), "%s.add", name);
        if ((x = add_node(b, NODE_ADD, sub, x, &n)) < 0)
                return x;
        n->n_in = 2;
        n->in[1] = shortcut;
        snprintf(sub, sizeof(sub), "%s.relu_out", name);
        return build_act(b, x, sub, ACT_RELU, 0.0);
}

static const struct layer_field pool_fields[] = {
        FIELD("kernel_size", FIELD_PAIR, kernel, true, 0, 1, 1024, false),
        FIELD("stride", FIELD_PAIR, stride, false, -1, 1, 1024, false), /* -1: the kernel size */
        FIELD("padding", FIELD_PAIR, padding, false, 0, 0, 512, false),
        FIELDS_END,
};
static const struct layer_field no_fields[] = {FIELDS_END};

/* Every layer type a spec can name (docs/model-spec.md). Adding one: a row here with its builder (and init for a
 * new node kind with parameters), the node kind in nn.h, and the kind's family in each backend. */
static const struct layer_type layer_types[] = {
        {"linear", NODE_LINEAR, false, ACT_RELU,
         (const struct layer_field[]){
                 FIELD("out_features", FIELD_INT, out, true, 0, 1, MODEL_DIM_MAX, false),
                 FIELD("bias", FIELD_BOOL, bias, false, true, 0, 0, false),
                 FIELDS_END,
         },
         build_linear, init_weighted},
        {"conv2d", NODE_CONV, true, ACT_RELU,
         (const struct layer_field[]){
                 FIELD("out_channels", FIELD_INT, out, true, 0, 1, MODEL_DIM_MAX, false),
                 FIELD("kernel_size", FIELD_PAIR, kernel, true, 0, 1, 1024, false),
                 FIELD("stride", FIELD_PAIR, stride, false, 1, 1, 1024, false),
                 FIELD("padding", FIELD_PAIR, padding, false, 0, 0, 1024, false),
                 FIELD("dilation", FIELD_PAIR, dilation, false, 1, 1, 1024, false),
                 FIELD("bias", FIELD_BOOL, bias, false, true, 0, 0, false),
                 FIELDS_END,
         },
         build_conv2d, init_weighted},
        {"batchnorm2d", NODE_BN, true, ACT_RELU,
         (const struct layer_field[]){
                 FIELD("eps", FIELD_REAL, eps, false, 1e-5, 1e-12, 1.0, false),
                 FIELD("momentum", FIELD_REAL, momentum, false, 0.1, 0.0, 1.0, false),
                 FIELDS_END,
         },
         build_batchnorm2d, init_bn},
        {"relu", NODE_ACT, false, ACT_RELU, no_fields, build_activation, NULL},
        {"leaky_relu", NODE_ACT, false, ACT_LEAKY_RELU,
         (const struct layer_field[]){
                 FIELD("negative_slope", FIELD_REAL, slope, false, 0.01, 0.0, 1.0, false),
                 FIELDS_END,
         },
         build_activation, NULL},
        {"gelu", NODE_ACT, false, ACT_GELU, no_fields, build_activation, NULL},
        {"tanh", NODE_ACT, false, ACT_TANH, no_fields, build_activation, NULL},
        {"sigmoid", NODE_ACT, false, ACT_SIGMOID, no_fields, build_activation, NULL},
        {"maxpool2d", NODE_MAXPOOL, true, ACT_RELU, pool_fields, build_pool, NULL},
        {"avgpool2d", NODE_AVGPOOL, true, ACT_RELU, pool_fields, build_pool, NULL},
        {"global_avg_pool", NODE_GAP, true, ACT_RELU, no_fields, build_global_avg_pool, NULL},
        {"flatten", NODE_FLATTEN, false, ACT_RELU, no_fields, build_flatten, NULL},
        {"dropout", NODE_DROPOUT, false, ACT_RELU,
         (const struct layer_field[]){
                 FIELD("p", FIELD_REAL, p, false, 0.5, 0.0, 1.0, true),
                 FIELDS_END,
         },
         build_dropout, NULL},
        {"basic_block", -1, true, ACT_RELU,
         (const struct layer_field[]){
                 FIELD("out_channels", FIELD_INT, out, true, 0, 1, MODEL_DIM_MAX, false),
                 FIELD("stride", FIELD_INT, stride, false, 1, 1, 64, false),
                 FIELDS_END,
         },
         build_basic_block, NULL},
};

static const struct layer_type *layer_type_find(const char *type) {
        for (size_t i = 0; i < ARRAY_SIZE(layer_types); i++)
                if (strcmp(layer_types[i].type, type) == 0)
                        return &layer_types[i];
        return NULL;
}

/* "unknown field" for any key that is not "type", "name" or one of the type's fields */
static int check_fields(struct builder *b, const json_t *o, const struct layer_field *fields) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)o, key, v) {
                bool found = strcmp(key, "type") == 0 || strcmp(key, "name") == 0;
                for (size_t i = 0; !found && fields[i].key; i++)
                        found = strcmp(fields[i].key, key) == 0;
                if (!found)
                        return layer_error(b, key, "unknown field '%s'", key);
        }
        return 0;
}

static int field_parse(struct builder *b, const json_t *lo, const struct layer_field *f, struct layer_args *a) {
        void *dst = (char *)a + f->offset;
        switch (f->type) {
        case FIELD_INT:
                return get_int(b, lo, f->key, f->required, (int64_t)f->def, (int64_t)f->min, (int64_t)f->max, dst);
        case FIELD_PAIR:
                return get_pair(b, lo, f->key, f->required, (int64_t)f->def, (int64_t)f->min, (int64_t)f->max, dst);
        case FIELD_REAL: return get_real(b, lo, f->key, f->def, f->min, f->max, !f->max_open, dst);
        case FIELD_BOOL: return get_bool(b, lo, f->key, f->def != 0.0, dst);
        }
        return -EINVAL;
}

static json_t *field_json(const struct layer_field *f, const struct layer_args *a) {
        const void *src = (const char *)a + f->offset;
        switch (f->type) {
        case FIELD_INT: return json_integer(*(const int64_t *)src);
        case FIELD_PAIR:
                return json_pack("[II]", (json_int_t)((const int64_t *)src)[0], (json_int_t)((const int64_t *)src)[1]);
        case FIELD_REAL: return json_real(*(const double *)src);
        case FIELD_BOOL: return json_boolean(*(const bool *)src);
        }
        return NULL;
}

/* Parse one layer, append its nodes, and append its canonical form to `canon`. */
static int build_layer(struct builder *b, const json_t *lo, int *cur, json_t *canon) {
        struct model *m = b->m;
        char defname[32];
        snprintf(defname, sizeof(defname), "%d", b->layer);
        b->lname = NULL;
        if (!json_is_object(lo))
                return layer_error(b, NULL, "a layer must be an object");
        json_t *jt = json_object_get(lo, "type");
        if (!json_is_string(jt))
                return layer_error(b, "type", "missing 'type'");
        const char *type = json_string_value(jt);
        const char *name = defname;
        json_t *jn = json_object_get(lo, "name");
        if (jn) {
                if (!json_is_string(jn) || json_string_length(jn) < 1 || json_string_length(jn) > LAYER_NAME_MAX ||
                    strlen(json_string_value(jn)) != json_string_length(jn))
                        return layer_error(b, "name", "'name' must be a string of 1 to %d characters", LAYER_NAME_MAX);
                name = json_string_value(jn);
        }
        b->lname = name;
        struct value_shape is = cur_shape(b, *cur);
        json_t *c = json_object();
        if (!c)
                return ft_error_set(b->err, -ENOMEM, NULL, "out of memory");
        json_array_append_new(canon, c);
        json_object_set_new(c, "type", json_string(type));
        json_object_set_new(c, "name", json_string(name));
        const struct layer_type *lt = layer_type_find(type);
        if (!lt)
                return layer_error(b, "type", "unknown layer type '%s'", type);
        struct layer_args a = {0};
        int r = check_fields(b, lo, lt->fields);
        for (size_t i = 0; r == 0 && lt->fields[i].key; i++)
                r = field_parse(b, lo, &lt->fields[i], &a);
        if (r == 0 && lt->image)
                r = need_3d(b, &is, type);
        if (r == 0)
                r = lt->build(b, lt, &a, *cur);
        if (r < 0)
                return r;
        for (size_t i = 0; lt->fields[i].key; i++)
                json_object_set_new(c, lt->fields[i].key, field_json(&lt->fields[i], &a));
        *cur = m->n_nodes;
        return 0;
}

static void model_plans_release(struct model *m) {
        for (int i = 0; i < m->n_plans; i++)
                if (m->plans[i] && m->ctx)
                        m->ctx->ops->plan_free(m->plans[i]);
        m->n_plans = 0;
        m->last_plan = NULL;
}

/* the backend's layout state goes with the context that made it: parameters back to PyTorch layout first */
static int model_params_release(struct model *m, struct ft_error *err) {
        int r = model_sync(m, err);
        if (r < 0)
                return r;
        model_plans_release(m);
        if (m->ctx && m->params)
                m->ctx->ops->params_free(m);
        m->params = NULL;
        return 0;
}

void model_free(struct model *m) {
        if (!m)
                return;
        model_plans_release(m);
        if (m->ctx && m->params)
                m->ctx->ops->params_free(m);
        json_decref(m->spec);
        free(m->nodes);
        free(m->consumers);
        free(m->tensors);
        arena_deinit(&m->arena);
        free(m);
}

/* floats a parameter takes in the parameter and gradient spans: its numel rounded up to 64 bytes */
static size_t span_part(size_t numel) {
        return (numel + MODEL_SPAN_ALIGN - 1) / MODEL_SPAN_ALIGN * MODEL_SPAN_ALIGN;
}

static int build(const json_t *spec, struct model **ret, bool alloc, json_t **ret_canon, struct ft_error *err) {
        struct model *m = calloc(1, sizeof(*m));
        json_t *canon = NULL;
        int r;
        if (!m)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        struct builder b = {.m = m, .err = err};
        if (!json_is_object(spec)) {
                r = ft_error_set(err, -EINVAL, "spec", "the model spec must be a JSON object");
                goto fail;
        }
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)spec, key, val) {
                if (strcmp(key, "input") && strcmp(key, "layers") && strcmp(key, "init")) {
                        r = ft_error_set(err, -EINVAL, key, "unknown field '%s' in the model spec", key);
                        goto fail;
                }
        }
        const char *init = "pytorch";
        json_t *ji = json_object_get(spec, "init");
        if (ji) {
                if (!json_is_string(ji) ||
                    (strcmp(json_string_value(ji), "pytorch") && strcmp(json_string_value(ji), "torchvision"))) {
                        r = ft_error_set(err, -EINVAL, "init", "'init' must be 'pytorch' or 'torchvision'");
                        goto fail;
                }
                init = json_string_value(ji);
        }
        json_t *in = json_object_get(spec, "input");
        if (!json_is_array(in) || (json_array_size(in) != 1 && json_array_size(in) != 3)) {
                r = ft_error_set(err, -EINVAL, "input", "'input' must be [features] or [channels, height, width]");
                goto fail;
        }
        int64_t dims[3] = {1, 1, 1};
        for (size_t i = 0; i < json_array_size(in); i++) {
                json_t *e = json_array_get(in, i);
                if (!json_is_integer(e) || json_integer_value(e) < 1 || json_integer_value(e) > MODEL_DIM_MAX) {
                        r = ft_error_set(err, -EINVAL, "input", "'input' sizes must be integers from 1 to %d",
                                         MODEL_DIM_MAX);
                        goto fail;
                }
                dims[i] = json_integer_value(e);
        }
        if (dims[0] * dims[1] * dims[2] > (int64_t)MODEL_DIM_MAX * 64) {
                r = ft_error_set(err, -EINVAL, "input", "'input' has more than %d values", MODEL_DIM_MAX * 64);
                goto fail;
        }
        m->input = (struct value_shape){(int)json_array_size(in), dims[0], dims[1], dims[2]};
        json_t *layers = json_object_get(spec, "layers");
        if (!json_is_array(layers) || json_array_size(layers) < 1 || json_array_size(layers) > MODEL_LAYERS_MAX) {
                r = ft_error_set(err, -EINVAL, "layers", "'layers' must be an array of 1 to %d layers",
                                 MODEL_LAYERS_MAX);
                goto fail;
        }
        canon = json_object();
        json_t *cl = json_array();
        json_object_set_new(canon, "input", json_deep_copy(in));
        json_object_set_new(canon, "init", json_string(init));
        json_object_set_new(canon, "layers", cl);
        int cur = 0;
        for (size_t i = 0; i < json_array_size(layers); i++) {
                b.layer = (int)i;
                if ((r = build_layer(&b, json_array_get(layers, i), &cur, cl)) < 0)
                        goto fail;
        }
        if (m->n_nodes == 0 || m->nodes[m->n_nodes - 1].out.ndim != 1) {
                r = ft_error_set(err, -EINVAL, "layers",
                                 "the last layer must produce flat outputs [outputs]: end with 'linear' or add "
                                 "'flatten'");
                goto fail;
        }
        if (strcmp(init, "torchvision") != 0)
                for (int i = 0; i < m->n_nodes; i++)
                        m->nodes[i].torchvision_init = false;
        m->n_values = m->n_nodes + 1;
        m->consumers = calloc((size_t)m->n_values, sizeof(int));
        if (!m->consumers) {
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                goto fail;
        }
        for (int i = 0; i < m->n_nodes; i++)
                for (int j = 0; j < m->nodes[i].n_in; j++)
                        m->consumers[m->nodes[i].in[j]]++;
        if (alloc) {
                /* [params][grads][buffers]: parameters in state_dict order, each part 64-byte aligned (oneDNN's
                 * kernels assume it of the buffers they are given), their gradients at the same offsets in the
                 * next span, then the buffers (running statistics, num_batches_tracked) */
                size_t n_span = 0, total = 0;
                for (size_t i = 0; i < m->n_tensors; i++)
                        if (m->tensors[i].is_param)
                                n_span += span_part(m->tensors[i].numel); /* at most ~MODEL_PARAMS_MAX */
                bool fits = arena_size_add(&total, n_span * sizeof(float)) &&
                            arena_size_add(&total, n_span * sizeof(float));
                for (size_t i = 0; fits && i < m->n_tensors; i++)
                        if (!m->tensors[i].is_param)
                                fits = arena_size_add(&total, tensor_nbytes(&m->tensors[i]));
                if (!fits) {
                        r = ft_error_set(err, -ENOMEM, NULL, "model too large");
                        goto fail;
                }
                if ((r = arena_init(&m->arena, total)) < 0) {
                        r = ft_error_set(err, r, NULL, "out of memory for %zu bytes of weights", total);
                        goto fail;
                }
                m->n_span = n_span;
                m->params_span = arena_alloc(&m->arena, n_span * sizeof(float));
                m->grads_span = arena_alloc(&m->arena, n_span * sizeof(float));
                size_t off = 0;
                for (size_t i = 0; i < m->n_tensors; i++) {
                        struct tensor *t = &m->tensors[i];
                        if (!t->is_param) {
                                t->data = arena_alloc(&m->arena, tensor_nbytes(t));
                                continue;
                        }
                        t->data = m->params_span + off;
                        t->grad = m->grads_span + off;
                        off += span_part(t->numel);
                }
                for (int i = 0; i < m->n_nodes; i++) {
                        struct node *n = &m->nodes[i];
                        n->weight = n->ti_weight >= 0 ? &m->tensors[n->ti_weight] : NULL;
                        n->bias = n->ti_bias >= 0 ? &m->tensors[n->ti_bias] : NULL;
                        n->running_mean = n->ti_rmean >= 0 ? &m->tensors[n->ti_rmean] : NULL;
                        n->running_var = n->ti_rvar >= 0 ? &m->tensors[n->ti_rvar] : NULL;
                        n->num_batches_tracked = n->ti_nbt >= 0 ? &m->tensors[n->ti_nbt] : NULL;
                }
        }
        m->spec = canon;
        canon = NULL;
        if (ret_canon)
                *ret_canon = json_incref(m->spec);
        if (ret)
                *ret = m;
        else
                model_free(m);
        return 0;
fail:
        json_decref(canon);
        model_free(m);
        return r;
}

int model_spec_validate(const json_t *spec, json_t **ret_canonical, struct ft_error *err) {
        return build(spec, NULL, false, ret_canonical, err);
}

int model_spec_io(const json_t *spec, int64_t ret_shape[3], int *ret_ndim, size_t *ret_outputs, struct ft_error *err) {
        struct model *m = NULL;
        int r = build(spec, &m, false, NULL, err); /* shapes only: no arena */
        if (r < 0)
                return r;
        *ret_ndim = model_input_shape(m, ret_shape);
        *ret_outputs = model_output_count(m);
        model_free(m);
        return 0;
}

int model_new(const json_t *spec, struct model **ret, struct ft_error *err) {
        struct model *m = NULL;
        int r = build(spec, &m, true, NULL, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_tensors; i++) /* sensible buffers before any init */
                if (strstr(m->tensors[i].name, ".running_var"))
                        for (size_t j = 0; j < m->tensors[i].numel; j++)
                                tensor_f32(&m->tensors[i])[j] = 1.0f;
        *ret = m;
        return 0;
}

const json_t *model_spec(const struct model *m) {
        return m->spec;
}

int model_input_shape(const struct model *m, int64_t shape[3]) {
        shape[0] = m->input.c;
        if (m->input.ndim == 3) {
                shape[1] = m->input.h;
                shape[2] = m->input.w;
        }
        return m->input.ndim;
}

size_t model_input_numel(const struct model *m) {
        return (size_t)value_numel(&m->input);
}

size_t model_output_count(const struct model *m) {
        return (size_t)value_numel(&m->nodes[m->n_nodes - 1].out);
}

double model_forward_flops(const struct model *m) {
        double f = 0.0;
        for (int i = 0; i < m->n_nodes; i++) {
                const struct node *n = &m->nodes[i];
                if (n->kind == NODE_LINEAR || n->kind == NODE_CONV)
                        f += 2.0 * (double)n->weight->numel * (double)n->out.h * (double)n->out.w;
        }
        return f;
}

size_t model_tensor_count(const struct model *m) {
        return m->n_tensors;
}

struct tensor *model_tensor_at(struct model *m, size_t i) {
        return i < m->n_tensors ? &m->tensors[i] : NULL;
}

struct tensor *model_tensor_find(struct model *m, const char *name) {
        for (size_t i = 0; i < m->n_tensors; i++)
                if (strcmp(m->tensors[i].name, name) == 0)
                        return &m->tensors[i];
        return NULL;
}

size_t model_param_numel(const struct model *m) {
        size_t n = 0;
        for (size_t i = 0; i < m->n_tensors; i++)
                if (m->tensors[i].is_param)
                        n += m->tensors[i].numel;
        return n;
}

/* ---- init -------------------------------------------------------------------------------------------- */

bool nn_dropout_keep(uint64_t seed, uint64_t counter, uint64_t i, float p) {
        uint64_t s = seed ^ (counter * 0xD1B54A32D192ED03ull) ^ (i * 0x9E3779B97F4A7C15ull);
        uint64_t z = splitmix64(&s);
        return (double)(z >> 40) * (1.0 / 16777216.0) >= (double)p;
}

/* the initialiser of n's kind, from the layer type table */
static void init_node(struct node *n, uint64_t seed) {
        for (size_t i = 0; i < ARRAY_SIZE(layer_types); i++)
                if (layer_types[i].kind == (int)n->kind && layer_types[i].init) {
                        layer_types[i].init(n, seed);
                        return;
                }
}

void model_init(struct model *m, uint64_t seed) {
        (void)model_sync(m, NULL); /* cannot fail: the reorders exist */
        for (int i = 0; i < m->n_nodes; i++)
                init_node(&m->nodes[i], seed);
        m->rng.seed = seed;
        m->rng.counter = 0;
}

static bool name_has_prefix(const char *name, const char *prefix) {
        size_t n = strlen(prefix);
        return strncmp(name, prefix, n) == 0 && name[n] == '.';
}

int model_init_prefix(struct model *m, const char *prefix, uint64_t seed, struct ft_error *err) {
        int count = 0, r = model_sync(m, err);
        if (r < 0)
                return r;
        for (int i = 0; i < m->n_nodes; i++) {
                struct node *n = &m->nodes[i];
                if (n->weight && name_has_prefix(n->weight->name, prefix)) {
                        init_node(n, seed);
                        count++;
                }
        }
        if (!count)
                return ft_error_set(err, -ENOENT, "prefix", "no layer named '%s'", prefix);
        return 0;
}

/* ---- freezing ---------------------------------------------------------------------------------------- */

static bool grad_nonzero(const struct tensor *t) {
        for (size_t i = 0; i < t->numel; i++)
                if (t->grad[i] != 0.0f)
                        return true;
        return false;
}

int model_freeze(struct model *m, const char *pattern, bool frozen, size_t *ret_count, struct ft_error *err) {
        size_t count = 0;
        bool changed = false;
        for (size_t i = 0; i < m->n_tensors; i++) {
                struct tensor *t = &m->tensors[i];
                if (!t->is_param || fnmatch(pattern, t->name, 0) != 0)
                        continue;
                changed = changed || t->frozen != frozen;
                t->frozen = frozen;
                if (frozen && grad_nonzero(t)) /* reading leaves never-written pages out of the RSS */
                        memset(t->grad, 0, tensor_nbytes(t));
                count++;
        }
        if (!count)
                return ft_error_set(err, -ENOENT, "freeze", "pattern '%s' matches no parameter", pattern);
        /* plans' backwards are built for one freeze state (only the nodes above the lowest trainable layer) */
        if (changed)
                model_plans_release(m);
        if (ret_count)
                *ret_count = count;
        return 0;
}

void model_set_frozen_bn_eval(struct model *m, bool on) {
        m->frozen_bn_eval = on;
}

void model_set_bn_sync(struct model *m, const struct model_bn_sync *sync) {
        m->bn_sync = sync;
}

bool nn_node_trainable(const struct model *m, const struct node *n) {
        return nn_param_grad(m, n->weight) || nn_param_grad(m, n->bias);
}

void nn_requires_grad(const struct model *m, bool *out) {
        out[0] = m->input_grad;
        for (int i = 0; i < m->n_nodes; i++) {
                const struct node *n = &m->nodes[i];
                bool r = nn_node_trainable(m, n);
                for (int j = 0; j < n->n_in; j++)
                        r = r || out[n->in[j]];
                out[i + 1] = r;
        }
}

/* ---- execution --------------------------------------------------------------------------------------- */

int model_prepare(struct model *m, struct compute_ctx *ctx, int max_batch, struct ft_error *err) {
        if (!ctx)
                return ft_error_set(err, -EINVAL, "ctx", "no compute context");
        if (max_batch < 1 || max_batch > MODEL_BATCH_MAX)
                return ft_error_set(err, -EINVAL, "batch_size", "'batch_size' must be from 1 to %d", MODEL_BATCH_MAX);
        if (m->ctx != ctx) {
                int r = model_params_release(m, err);
                if (r < 0)
                        return r;
        }
        m->ctx = ctx;
        m->max_batch = max_batch;
        return 0;
}

static int plan_get(struct model *m, int batch, struct backend_plan **ret, struct ft_error *err) {
        for (int i = 0; i < m->n_plans; i++)
                if (m->plan_batch[i] == batch) {
                        m->plan_used[i] = ++m->plan_clock;
                        *ret = m->plans[i];
                        return 0;
                }
        int slot = m->n_plans;
        if (slot == MODEL_PLANS_MAX) {
                slot = 0;
                for (int i = 1; i < m->n_plans; i++)
                        if (m->plan_used[i] < m->plan_used[slot])
                                slot = i;
                if (m->plans[slot] == m->last_plan)
                        m->last_plan = NULL;
                m->ctx->ops->plan_free(m->plans[slot]);
                m->plans[slot] = NULL;
                m->n_plans--;
                m->plans[slot] = m->plans[m->n_plans];
                m->plan_batch[slot] = m->plan_batch[m->n_plans];
                m->plan_used[slot] = m->plan_used[m->n_plans];
                slot = m->n_plans;
        }
        struct backend_plan *p;
        int r = m->ctx->ops->plan_new(m, m->ctx, batch, &p, err);
        if (r < 0)
                return r;
        m->plans[slot] = p;
        m->plan_batch[slot] = batch;
        m->plan_used[slot] = ++m->plan_clock;
        m->n_plans++;
        *ret = p;
        return 0;
}

int model_forward(struct model *m, const float *x, int batch, bool training, const float **ret_out,
                  struct ft_error *err) {
        if (!m->ctx)
                return ft_error_set(err, -EINVAL, NULL, "the model is not prepared: call model_prepare");
        if (batch < 1 || batch > m->max_batch)
                return ft_error_set(err, -EINVAL, "batch_size", "batch size %d is not from 1 to %d", batch,
                                    m->max_batch);
        if (!x)
                return ft_error_set(err, -EINVAL, "input", "no input");
        if (training && m->inference)
                return ft_error_set(err, -EINVAL, NULL, "the model is in inference mode: no training forward");
        struct backend_plan *p;
        int r = plan_get(m, batch, &p, err);
        if (r < 0)
                return r;
        m->last_plan = NULL;
        m->input_grad_ready = false;
        r = m->ctx->ops->forward(m, p, x, training, ret_out, err);
        if (r < 0)
                return r;
        m->last_plan = p;
        m->last_training = training;
        return 0;
}

int model_backward(struct model *m, const float *d_out, struct ft_error *err) {
        if (!m->last_plan || (!m->last_training && !m->input_grad))
                return ft_error_set(err, -EINVAL, NULL, "backward needs a training forward first");
        m->input_grad_ready = false;
        int r = m->ctx->ops->backward(m, m->last_plan, d_out, err);
        m->input_grad_ready = r == 0 && m->input_grad;
        return r;
}

void model_set_inference(struct model *m, bool on) {
        if (m->inference == on)
                return;
        model_plans_release(m);
        m->inference = on;
        if (on)
                m->input_grad = false;
}

void model_set_input_grad(struct model *m, bool on) {
        if (m->input_grad == on)
                return;
        model_plans_release(m);
        m->input_grad = on;
        m->input_grad_ready = false;
        if (on)
                m->inference = false;
}

bool model_is_input_grad(const struct model *m) {
        return m->input_grad;
}

int model_input_grad(struct model *m, const float **ret, struct ft_error *err) {
        if (!m->input_grad || !m->input_grad_ready || !m->last_plan)
                return ft_error_set(err, -EINVAL, NULL,
                                    "no input gradient: model_set_input_grad, then a forward and a backward");
        if (!m->ctx->ops->input_grad)
                return ft_error_set(err, -EOPNOTSUPP, NULL, "the %s backend computes no input gradient",
                                    m->ctx->ops->name);
        return m->ctx->ops->input_grad(m, m->last_plan, ret, err);
}

bool model_is_inference(const struct model *m) {
        return m->inference;
}

int model_plan(struct model *m, int batch, bool backward, struct ft_error *err) {
        if (backward && m->inference)
                return ft_error_set(err, -EINVAL, NULL, "the model is in inference mode: no backward");
        if (!m->ctx)
                return ft_error_set(err, -EINVAL, NULL, "the model is not prepared: call model_prepare");
        if (batch < 1 || batch > m->max_batch)
                return ft_error_set(err, -EINVAL, "batch_size", "batch size %d is not from 1 to %d", batch,
                                    m->max_batch);
        struct backend_plan *p;
        int r = plan_get(m, batch, &p, err);
        if (r < 0 || !backward)
                return r;
        return m->ctx->ops->plan_backward(m, p, err);
}

int model_kernels(struct model *m, int batch, const struct model_kernel **ret, size_t *ret_n, struct ft_error *err) {
        for (int i = 0; m->ctx && i < m->n_plans; i++)
                if (m->plan_batch[i] == batch) {
                        *ret_n = m->ctx->ops->kernels(m->plans[i], ret);
                        return 0;
                }
        return ft_error_set(err, -ENOENT, "batch_size", "no forward ran at batch size %d", batch);
}

bool model_kernel_is_reference(const struct model_kernel *k) {
        return strncmp(k->impl, "ref", 3) == 0 || strstr(k->impl, ":ref") != NULL || strstr(k->impl, "_ref") != NULL;
}

static json_t *kernel_json(const struct model_kernel *k) {
        return json_pack("{s:s s:s s:s s:s s:s}", "layer", k->layer, "primitive", k->primitive, "pass", k->pass, "impl",
                         k->impl, "formats", k->formats);
}

json_t *model_kernels_report(struct model *m, int batch, bool all) {
        const struct model_kernel *k;
        size_t n;
        if (model_kernels(m, batch, &k, &n, NULL) < 0)
                return NULL;
        struct compute_runtime_info info;
        compute_runtime_info(&info);
        json_t *impls = json_object(), *ref = json_array(), *list = all ? json_array() : NULL;
        json_int_t checked = 0, reorders = 0;
        for (size_t i = 0; impls && ref && i < n; i++) {
                if (list)
                        json_array_append_new(list, kernel_json(&k[i]));
                if (strcmp(k[i].primitive, "reorder") == 0) {
                        reorders++;
                        continue;
                }
                checked++;
                char key[160];
                snprintf(key, sizeof(key), "%s%s%s %s", k[i].primitive, k[i].pass[0] ? " " : "", k[i].pass, k[i].impl);
                json_t *c = json_object_get(impls, key);
                json_object_set_new(impls, key, json_integer(c ? json_integer_value(c) + 1 : 1));
                if (model_kernel_is_reference(&k[i]))
                        json_array_append_new(ref, kernel_json(&k[i]));
        }
        json_t *rep =
                json_pack("{s:s s:I s:I s:o s:o}", "isa", info.onednn_isa, "primitives", checked, "reorders", reorders,
                          "implementations", impls ? impls : json_null(), "reference", ref ? ref : json_null());
        if (rep && list)
                json_object_set_new(rep, "kernels", list);
        else
                json_decref(list);
        return rep;
}

int model_sync(struct model *m, struct ft_error *err) {
        if (!m->params_native)
                return 0;
        return m->ctx->ops->params_plain(m, err);
}

int model_follow(struct model *m, struct tensor *t, float *buf, struct ft_error *err) {
        int r = model_sync(m, err), n = 0;
        if (r < 0)
                return r;
        while (n < TENSOR_FOLLOW_MAX && t->follow[n])
                n++;
        if (n >= TENSOR_FOLLOW_MAX - 1)
                return ft_error_set(err, -ENOSPC, NULL, "tensor '%s': too many arrays follow it", t->name);
        t->follow[n] = buf;
        return 0;
}

void model_unfollow(struct tensor *t, float *buf) {
        int n = 0; /* the others keep their layout: they stay consistent with the weight's */
        while (n < TENSOR_FOLLOW_MAX && t->follow[n] && t->follow[n] != buf)
                n++;
        for (; n + 1 < TENSOR_FOLLOW_MAX && t->follow[n]; n++)
                t->follow[n] = t->follow[n + 1];
        if (n < TENSOR_FOLLOW_MAX)
                t->follow[n] = NULL;
}

void model_zero_grad(struct model *m) {
        if (m->n_span)
                memset(m->grads_span, 0, m->n_span * sizeof(float));
}

void model_params(struct model *m, float **ret, size_t *ret_n) {
        *ret = m->params_span;
        *ret_n = m->n_span;
}

void model_grads(struct model *m, float **ret, size_t *ret_n) {
        *ret = m->grads_span;
        *ret_n = m->n_span;
}

void model_span_pack(const struct model *m, float *span) {
        size_t packed = 0, off = 0; /* packed <= off: moving each part down never overwrites one not yet moved */
        for (size_t i = 0; i < m->n_tensors; i++) {
                const struct tensor *t = &m->tensors[i];
                if (!t->is_param)
                        continue;
                memmove(span + packed, span + off, t->numel * sizeof(float));
                packed += t->numel;
                off += span_part(t->numel);
        }
}

void model_span_unpack(const struct model *m, float *span) {
        size_t packed = model_param_numel(m), off = m->n_span;
        for (size_t i = m->n_tensors; i-- > 0;) { /* last part first: each moves up into space already free */
                const struct tensor *t = &m->tensors[i];
                if (!t->is_param)
                        continue;
                packed -= t->numel;
                off -= span_part(t->numel);
                memmove(span + off, span + packed, t->numel * sizeof(float));
                memset(span + off + t->numel, 0, (span_part(t->numel) - t->numel) * sizeof(float));
        }
}

void model_rng_get(const struct model *m, struct model_rng_state *ret) {
        *ret = m->rng;
}

void model_rng_set(struct model *m, const struct model_rng_state *state) {
        m->rng = *state;
}
