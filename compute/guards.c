/* guards.c - training-health guards (see guards.h): the nonfinite checks of a step, and the epoch rules over the
 * history.
 *
 * Not for: deciding what a warning does (the callbacks), early stopping.
 */
#include "compute/guards.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/tensor.h"

static uint64_t fnv1a(const void *p, size_t n) {
        const uint8_t *b = p;
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < n; i++) {
                h ^= b[i];
                h *= 1099511628211ull;
        }
        return h;
}

int guards_init(struct guards *g, const struct jobspec *spec, struct model *m, struct ft_error *err) {
        memset(g, 0, sizeof(*g));
        g->spec = spec;
        if (!spec->guards.frozen)
                return 0;
        size_t n = model_tensor_count(m);
        for (size_t i = 0; i < n; i++) {
                struct tensor *t = model_tensor_at(m, i);
                g->n_frozen += t->is_param && t->frozen;
        }
        if (!g->n_frozen)
                return 0;
        int r = model_sync(m, err);
        if (r < 0)
                return r;
        g->frozen_idx = calloc(g->n_frozen, sizeof(size_t));
        g->frozen_hash = calloc(g->n_frozen, sizeof(uint64_t));
        g->frozen_warned = calloc(g->n_frozen, sizeof(bool));
        if (!g->frozen_idx || !g->frozen_hash || !g->frozen_warned) {
                guards_deinit(g);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        for (size_t i = 0, k = 0; i < n; i++) {
                struct tensor *t = model_tensor_at(m, i);
                if (!t->is_param || !t->frozen)
                        continue;
                g->frozen_idx[k] = i;
                g->frozen_hash[k] = fnv1a(t->data, tensor_nbytes(t));
                k++;
        }
        return 0;
}

void guards_deinit(struct guards *g) {
        if (!g)
                return;
        free(g->frozen_idx);
        free(g->frozen_hash);
        free(g->frozen_warned);
        memset(g, 0, sizeof(*g));
}

/* ---- a step ------------------------------------------------------------------------------------------------ */

static bool floats_finite(const float *v, size_t n) {
        float z = 0; /* x * 0 is 0 for every finite x and NaN for NaN and Inf: one branch-free pass */
        for (size_t k = 0; k < n; k++)
                z += v[k] * 0.0f;
        return z == 0;
}

static void fill_warning(struct train_warning *w, const char *tensor, unsigned epoch, size_t batch,
                         const struct ft_error *err) {
        if (!w)
                return;
        *w = (struct train_warning){
                .code = "nonfinite",
                .epoch = epoch,
                .message = err->message,
                .tensor = tensor,
                .batch = batch,
        };
}

int guards_loss_nonfinite(struct model *m, float loss, unsigned epoch, size_t batch, uint64_t step,
                          struct train_warning *ret_warning, struct ft_error *err) {
        const char *bad = NULL;
        for (size_t i = 0; i < model_tensor_count(m) && !bad; i++) {
                struct tensor *t = model_tensor_at(m, i);
                if (t->dtype == TENSOR_F32 && !floats_finite(t->data, t->numel))
                        bad = t->name;
        }
        const char *v = isnan(loss) ? "NaN" : loss > 0 ? "Inf" : "-Inf";
        if (bad)
                ft_error_set(err, -EDOM, "hyperparameters.learning_rate",
                             "the training loss became %s at epoch %u batch %zu (step %llu); the first non-finite "
                             "tensor is '%s': lower 'hyperparameters.learning_rate' or set "
                             "'hyperparameters.max_grad_norm'",
                             v, epoch, batch, (unsigned long long)step, bad);
        else
                ft_error_set(err, -EDOM, "hyperparameters.learning_rate",
                             "the training loss became %s at epoch %u batch %zu (step %llu) with every weight "
                             "finite: the model's output went bad first; check the data for huge values, lower "
                             "'hyperparameters.learning_rate' or set 'hyperparameters.max_grad_norm'",
                             v, epoch, batch, (unsigned long long)step);
        fill_warning(ret_warning, bad, epoch, batch, err);
        return -EDOM;
}

int guards_gradients(struct model *m, unsigned epoch, size_t batch, uint64_t step, struct train_warning *ret_warning,
                     struct ft_error *err) {
        float *g;
        size_t n;
        model_grads(m, &g, &n);
        if (floats_finite(g, n))
                return 0;
        /* the backward pass runs from the head down: the last tensor in state_dict order with a bad gradient is the
         * first that went bad */
        const struct tensor *bad = NULL;
        for (size_t i = model_tensor_count(m); i-- > 0 && !bad;) {
                struct tensor *t = model_tensor_at(m, i);
                if (t->is_param && t->grad && !floats_finite(t->grad, t->numel))
                        bad = t;
        }
        const char *name = bad ? bad->name : "?";
        ft_error_set(err, -EDOM, "hyperparameters.learning_rate",
                     "the gradient of '%s' became non-finite at epoch %u batch %zu (step %llu), the first tensor the "
                     "backward pass made NaN or Inf: lower 'hyperparameters.learning_rate' or set "
                     "'hyperparameters.max_grad_norm'",
                     name, epoch, batch, (unsigned long long)step);
        fill_warning(ret_warning, bad ? bad->name : NULL, epoch, batch, err);
        return -EDOM;
}

/* ---- the epoch rules ---------------------------------------------------------------------------------------- */

/* h[0..e] are the epochs so far; each rule says whether it holds at epoch e with its threshold(s). */
struct rule_args {
        unsigned epochs;
        double x;
};
typedef bool (*rule_fn)(const struct train_epoch *h, size_t e, const struct rule_args *a);

static bool plateau_at(const struct train_epoch *h, size_t e, const struct rule_args *a) {
        if (a->epochs == 0 || e < a->epochs)
                return false;
        double best = h[0].train_loss, win = INFINITY;
        for (size_t k = 1; k <= e - a->epochs; k++)
                best = fmin(best, h[k].train_loss);
        for (size_t k = e - a->epochs + 1; k <= e; k++)
                win = fmin(win, h[k].train_loss);
        return win >= best - a->x * fabs(best);
}

static bool overfit_at(const struct train_epoch *h, size_t e, const struct rule_args *a) {
        if (a->epochs == 0 || e < a->epochs)
                return false;
        for (size_t k = e - a->epochs + 1; k <= e; k++)
                if (!h[k].validated || !h[k - 1].validated || !(h[k].val_loss > h[k - 1].val_loss) ||
                    !(h[k].train_loss < h[k - 1].train_loss))
                        return false;
        return true;
}

static bool diverging_at(const struct train_epoch *h, size_t e, const struct rule_args *a) {
        if (a->x <= 0 || e < 1)
                return false;
        double lo = h[0].train_loss;
        for (size_t k = 1; k < e; k++)
                lo = fmin(lo, h[k].train_loss);
        return h[e].train_loss > h[0].train_loss && h[e].train_loss > a->x * lo;
}

/* the rule holds at e and at no epoch before: it warns once */
static bool first_at(rule_fn rule, const struct train_epoch *h, size_t e, const struct rule_args *a) {
        if (!rule(h, e, a))
                return false;
        for (size_t k = 0; k < e; k++)
                if (rule(h, k, a))
                        return false;
        return true;
}

int guards_epoch(struct guards *g, struct model *m, const struct train_epoch *h, size_t n,
                 int (*emit)(void *userdata, const struct train_warning *w), void *userdata, struct ft_error *err) {
        if (n == 0)
                return 0;
        const __typeof__(g->spec->guards) *gs = &g->spec->guards;
        size_t e = n - 1;
        char msg[512];
        struct train_warning w = {.epoch = h[e].epoch, .message = msg};
        int r;
#define EMIT()                                                                                                         \
        do {                                                                                                           \
                if (emit && (r = emit(userdata, &w)) < 0)                                                              \
                        return ft_error_set(err, r, NULL, "event callback failed");                                    \
        } while (0)

        if (first_at(plateau_at, h, e, &(struct rule_args){gs->plateau_epochs, gs->plateau_min_delta})) {
                double best = h[0].train_loss;
                unsigned best_epoch = h[0].epoch;
                for (size_t k = 1; k <= e - gs->plateau_epochs; k++)
                        if (h[k].train_loss < best)
                                best = h[k].train_loss, best_epoch = h[k].epoch;
                snprintf(msg, sizeof(msg),
                         "the training loss has not fallen below %g (epoch %u) by %g%% for %u epochs: raise "
                         "'hyperparameters.learning_rate', check the labels, or stop (guards.plateau_epochs)",
                         best, best_epoch, gs->plateau_min_delta * 100, gs->plateau_epochs);
                w.code = "loss_not_decreasing";
                EMIT();
        }
        if (first_at(overfit_at, h, e, &(struct rule_args){gs->overfit_epochs, 0})) {
                size_t b = 0;
                for (size_t k = 1; k <= e; k++)
                        if (h[k].validated && h[k].val_loss < h[b].val_loss)
                                b = k;
                snprintf(msg, sizeof(msg),
                         "overfitting: the validation loss rose and the training loss fell for %u epochs in a row; "
                         "the lowest validation loss was %g at epoch %u, which early stopping on val_loss would keep "
                         "(guards.overfit_epochs)",
                         gs->overfit_epochs, h[b].val_loss, h[b].epoch);
                w.code = "overfitting";
                w.best_epoch = h[b].epoch;
                EMIT();
                w.best_epoch = 0;
        }
        if (first_at(diverging_at, h, e, &(struct rule_args){0, gs->divergence_factor})) {
                double lo = h[0].train_loss;
                for (size_t k = 1; k < e; k++)
                        lo = fmin(lo, h[k].train_loss);
                snprintf(msg, sizeof(msg),
                         "the training loss is diverging: %g at epoch %u, above the first epoch's %g and %g times its "
                         "lowest %g: lower 'hyperparameters.learning_rate' (guards.divergence_factor)",
                         h[e].train_loss, h[e].epoch, h[0].train_loss, gs->divergence_factor, lo);
                w.code = "diverging";
                EMIT();
        }
        if (g->n_frozen) {
                if ((r = model_sync(m, err)) < 0)
                        return r;
                for (size_t k = 0; k < g->n_frozen; k++) {
                        struct tensor *t = model_tensor_at(m, g->frozen_idx[k]);
                        if (g->frozen_warned[k] || fnv1a(t->data, tensor_nbytes(t)) == g->frozen_hash[k])
                                continue;
                        g->frozen_warned[k] = true;
                        snprintf(msg, sizeof(msg),
                                 "the frozen parameter '%s' changed by epoch %u: something updated a tensor "
                                 "'strategy' freezes (guards.frozen)",
                                 t->name, h[e].epoch);
                        w.code = "frozen_tensor_changed";
                        w.tensor = t->name;
                        EMIT();
                        w.tensor = NULL;
                }
        }
#undef EMIT
        return 0;
}
