/* optim.c - gradient descent, SGD, momentum, Nesterov, Adam and AdamW with torch.optim's exact update rules
 * (see optim.h), over a model's parameters; state as named tensors in the optimizer's own arena.
 * Not for: learning-rate schedules (the caller passes lr) or gradient computation. */
#include "compute/optim.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "compute/nn.h"

struct optim {
        struct model *m;
        struct optim_config cfg;
        struct arena arena;
        size_t n_state;
        struct tensor *state; /* [0] = step, then per parameter its buffers */
        size_t n_params;
        struct tensor **params; /* model parameters in state_dict order */
        struct tensor **buf1; /* momentum_buffer or exp_avg, per parameter (NULL for sgd/gd) */
        struct tensor **buf2; /* exp_avg_sq */
};

static const char *kind_names[] = {
        [OPTIM_GD] = "gd",     [OPTIM_SGD] = "sgd",     [OPTIM_MOMENTUM] = "momentum", [OPTIM_NESTEROV] = "nesterov",
        [OPTIM_ADAM] = "adam", [OPTIM_ADAMW] = "adamw",
};

const char *optim_kind_name(enum optim_kind kind) {
        return (size_t)kind < ARRAY_SIZE(kind_names) ? kind_names[kind] : "unknown";
}

int optim_kind_from_string(const char *name, enum optim_kind *ret_kind) {
        for (size_t i = 0; i < ARRAY_SIZE(kind_names); i++)
                if (strcmp(name, kind_names[i]) == 0) {
                        *ret_kind = (enum optim_kind)i;
                        return 0;
                }
        return -EINVAL;
}

void optim_config_default(enum optim_kind kind, struct optim_config *ret) {
        memset(ret, 0, sizeof(*ret));
        ret->kind = kind;
        ret->momentum = (kind == OPTIM_MOMENTUM || kind == OPTIM_NESTEROV) ? 0.9f : 0.0f;
        ret->beta1 = 0.9f;
        ret->beta2 = 0.999f;
        ret->eps = 1e-8f;
        ret->weight_decay = kind == OPTIM_ADAMW ? 0.01f : 0.0f;
}

void optim_free(struct optim *o) {
        if (!o)
                return;
        for (size_t i = 0; o->params && i < o->n_params; i++) {
                if (o->buf1[i])
                        model_unfollow(o->params[i], tensor_f32(o->buf1[i]));
                if (o->buf2[i])
                        model_unfollow(o->params[i], tensor_f32(o->buf2[i]));
        }
        arena_deinit(&o->arena);
        free(o->state);
        free(o->params);
        free(o->buf1);
        free(o->buf2);
        free(o);
}

static bool okf(float v, float lo, float hi, bool hi_incl) {
        return isfinite(v) && v >= lo && (hi_incl ? v <= hi : v < hi);
}

int optim_new(struct model *m, const struct optim_config *cfg, struct optim **ret, struct ft_error *err) {
        const struct optim_config *c = cfg;
        if ((size_t)c->kind >= ARRAY_SIZE(kind_names))
                return ft_error_set(err, -EINVAL, "optimizer", "unknown optimizer");
        if (!okf(c->weight_decay, 0.0f, 1e6f, true))
                return ft_error_set(err, -EINVAL, "weight_decay", "'weight_decay' must be a finite number >= 0");
        if ((c->kind == OPTIM_MOMENTUM || c->kind == OPTIM_NESTEROV) &&
            (!okf(c->momentum, 0.0f, 1.0f, true) || !okf(c->dampening, 0.0f, 1.0f, true)))
                return ft_error_set(err, -EINVAL, "momentum", "'momentum' and 'dampening' must be from 0 to 1");
        if (c->kind == OPTIM_NESTEROV && (c->momentum <= 0.0f || c->dampening != 0.0f))
                return ft_error_set(err, -EINVAL, "momentum", "nesterov needs a momentum > 0 and zero dampening");
        if ((c->kind == OPTIM_ADAM || c->kind == OPTIM_ADAMW) &&
            (!okf(c->beta1, 0.0f, 1.0f, false) || !okf(c->beta2, 0.0f, 1.0f, false)))
                return ft_error_set(err, -EINVAL, "betas", "'betas' must be from 0 to 1 (exclusive)");
        if ((c->kind == OPTIM_ADAM || c->kind == OPTIM_ADAMW) && !(c->eps > 0.0f && isfinite(c->eps)))
                return ft_error_set(err, -EINVAL, "eps", "'eps' must be a finite number > 0");
        struct optim *o = calloc(1, sizeof(*o));
        if (!o)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        o->m = m;
        o->cfg = *c;
        int nbuf = (c->kind == OPTIM_MOMENTUM || c->kind == OPTIM_NESTEROV) ? 1
                   : (c->kind == OPTIM_ADAM || c->kind == OPTIM_ADAMW)      ? 2
                                                                            : 0;
        size_t nt = model_tensor_count(m);
        for (size_t i = 0; i < nt; i++)
                if (model_tensor_at(m, i)->is_param)
                        o->n_params++;
        o->params = calloc(o->n_params + 1, sizeof(*o->params));
        o->buf1 = calloc(o->n_params + 1, sizeof(*o->buf1));
        o->buf2 = calloc(o->n_params + 1, sizeof(*o->buf2));
        o->state = calloc(1 + o->n_params * (size_t)nbuf, sizeof(*o->state));
        if (!o->params || !o->buf1 || !o->buf2 || !o->state)
                goto nomem;
        size_t total = 0, k = 0;
        arena_size_add(&total, 8);
        for (size_t i = 0; i < nt; i++) {
                struct tensor *t = model_tensor_at(m, i);
                if (!t->is_param)
                        continue;
                o->params[k++] = t;
                for (int b = 0; b < nbuf; b++)
                        if (!arena_size_add(&total, tensor_nbytes(t)))
                                goto nomem;
        }
        if (arena_init(&o->arena, total) < 0)
                goto nomem;
        struct tensor *st = &o->state[o->n_state++];
        snprintf(st->name, sizeof(st->name), "step");
        st->dtype = TENSOR_I64;
        st->ndim = 0;
        st->numel = 1;
        for (int d = 0; d < TENSOR_NDIM_MAX; d++)
                st->shape[d] = 1;
        st->lr_mult = 1.0f;
        st->data = arena_alloc(&o->arena, 8);
        static const char *suffix[2][2] = {{"momentum_buffer", NULL}, {"exp_avg", "exp_avg_sq"}};
        for (size_t i = 0; i < o->n_params; i++) {
                struct tensor *p = o->params[i];
                for (int b = 0; b < nbuf; b++) {
                        struct tensor *t = &o->state[o->n_state++];
                        *t = *p;
                        snprintf(t->name, sizeof(t->name), "%.100s.%s", p->name, suffix[nbuf - 1][b]);
                        t->dtype = TENSOR_F32;
                        t->grad = NULL;
                        t->is_param = false;
                        t->frozen = false;
                        t->lr_mult = 1.0f;
                        t->data = arena_alloc(&o->arena, tensor_nbytes(p));
                        if (b == 0)
                                o->buf1[i] = t;
                        else
                                o->buf2[i] = t;
                        int r = model_follow(m, p, tensor_f32(t), err);
                        if (r < 0) {
                                optim_free(o);
                                return r;
                        }
                }
        }
        *ret = o;
        return 0;
nomem:
        optim_free(o);
        return ft_error_set(err, -ENOMEM, NULL, "out of memory for the optimizer state");
}

size_t optim_state_count(const struct optim *o) {
        return o->n_state;
}

struct tensor *optim_state_at(struct optim *o, size_t i) {
        return i < o->n_state ? &o->state[i] : NULL;
}

struct tensor *optim_state_find(struct optim *o, const char *name) {
        for (size_t i = 0; i < o->n_state; i++)
                if (strcmp(o->state[i].name, name) == 0)
                        return &o->state[i];
        return NULL;
}

/* The update kernels: compiled with full optimisation even in debug (and sanitizer) builds, since they touch
 * every parameter at every step. */
#if defined(__clang__)
#define KERNEL
#else
#define KERNEL __attribute__((optimize("O3", "no-math-errno")))
#endif

KERNEL static void kernel_sgd(float *restrict p, const float *restrict g, long n, float lr, float wd, int nth) {
#pragma omp parallel for simd num_threads(nth) schedule(static)
        for (long j = 0; j < n; j++)
                p[j] -= lr * (g[j] + wd * p[j]);
}

KERNEL static void kernel_momentum(float *restrict p, const float *restrict g, float *restrict b, long n, float lr,
                                   float wd, float mu, float damp, bool nesterov, bool first, int nth) {
#pragma omp parallel for simd num_threads(nth) schedule(static)
        for (long j = 0; j < n; j++) {
                float gj = g[j] + wd * p[j];
                float bj = first ? gj : mu * b[j] + (1.0f - damp) * gj;
                b[j] = bj;
                p[j] -= lr * (nesterov ? gj + mu * bj : bj);
        }
}

KERNEL static void kernel_adam(float *restrict p, const float *restrict g, float *restrict m1, float *restrict m2,
                               long n, bool decoupled, float step_size, float bc2_sqrt, float decay, float wd, float b1,
                               float b2, float eps, int nth) {
#pragma omp parallel for simd num_threads(nth) schedule(static)
        for (long j = 0; j < n; j++) {
                float pj = p[j], gj = g[j];
                if (decoupled)
                        pj *= decay;
                else
                        gj += wd * pj;
                float mj = b1 * m1[j] + (1.0f - b1) * gj;
                float vj = b2 * m2[j] + (1.0f - b2) * gj * gj;
                m1[j] = mj;
                m2[j] = vj;
                p[j] = pj - step_size * (mj / (sqrtf(vj) / bc2_sqrt + eps));
        }
}

int optim_step(struct optim *o, struct compute_ctx *ctx, float lr, struct ft_error *err) {
        if (!(lr >= 0.0f) || !isfinite(lr))
                return ft_error_set(err, -EINVAL, "learning_rate", "'learning_rate' must be a finite number >= 0");
        int64_t step = ++*tensor_i64(&o->state[0]);
        const struct optim_config *c = &o->cfg;
        int threads = ctx ? compute_ctx_threads(ctx) : 1;
        float wd = c->weight_decay, mu = c->momentum, damp = c->dampening, b1 = c->beta1, b2 = c->beta2, eps = c->eps;
        /* torch computes the bias corrections in Python floats (double) */
        double bc1 = 1.0 - pow((double)b1, (double)step), bc2 = 1.0 - pow((double)b2, (double)step);
        double bc2_sqrt = sqrt(bc2);
        for (size_t i = 0; i < o->n_params; i++) {
                struct tensor *t = o->params[i];
                if (t->frozen)
                        continue;
                float *p = tensor_f32(t);
                const float *g = t->grad;
                float lrt = lr * t->lr_mult;
                long n = (long)t->numel;
                int nth = n < 16384 ? 1 : threads;
                switch (c->kind) {
                case OPTIM_GD:
                case OPTIM_SGD: kernel_sgd(p, g, n, lrt, wd, nth); break;
                case OPTIM_MOMENTUM:
                case OPTIM_NESTEROV:
                        kernel_momentum(p, g, tensor_f32(o->buf1[i]), n, lrt, wd, mu, damp, c->kind == OPTIM_NESTEROV,
                                        step == 1, nth);
                        break;
                case OPTIM_ADAM:
                case OPTIM_ADAMW:
                        kernel_adam(p, g, tensor_f32(o->buf1[i]), tensor_f32(o->buf2[i]), n, c->kind == OPTIM_ADAMW,
                                    (float)(lrt / bc1), (float)bc2_sqrt, 1.0f - lrt * wd, wd, b1, b2, eps, nth);
                        break;
                }
        }
        return 0;
}
