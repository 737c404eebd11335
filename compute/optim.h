/* optim.h - optimizers with torch.optim's exact semantics: gradient descent, SGD, momentum, Nesterov, Adam,
 * AdamW. Per-tensor learning-rate multipliers (tensor.lr_mult, parameter groups); frozen parameters skipped.
 *
 * Not for: schedules (the caller passes the lr for each step) or gradient computation (model.h).
 *
 * Update rules (g = grad, p = param, lr_t = lr * tensor.lr_mult, one step counter t starting at 1):
 *   gd, sgd:   g += wd * p; p -= lr_t * g           (gd is sgd without momentum; the trainer feeds full batches)
 *   momentum:  g += wd * p; b = t==1 ? g : mu*b + (1-dampening)*g; p -= lr_t * b
 *   nesterov:  as momentum, then p -= lr_t * (g + mu*b)            (dampening must be 0, as torch requires)
 *   adam:      g += wd * p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 *              p -= lr_t * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)          (eps outside the square root)
 *   adamw:     p *= 1 - lr_t*wd; then adam without the L2 term
 * Optimizer state is exposed as named tensors so checkpoints can save and restore it:
 *   "<param>.momentum_buffer" (momentum, nesterov), "<param>.exp_avg", "<param>.exp_avg_sq" (adam, adamw),
 *   and "step" (I64 scalar, the number of steps taken). Frozen parameters have state too (unused). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"
#include "compute/context.h"
#include "compute/model.h"
#include "compute/tensor.h"

enum optim_kind {
        OPTIM_GD,
        OPTIM_SGD,
        OPTIM_MOMENTUM,
        OPTIM_NESTEROV,
        OPTIM_ADAM,
        OPTIM_ADAMW,
};

struct optim_config {
        enum optim_kind kind;
        float momentum; /* momentum, nesterov: [0.9] */
        float dampening; /* momentum: [0] */
        float beta1, beta2; /* adam, adamw: [0.9, 0.999] */
        float eps; /* adam, adamw: [1e-8] */
        float weight_decay; /* L2 for gd/sgd/momentum/nesterov/adam, decoupled for adamw: [0, adamw 0.01] */
};

/* Defaults for kind (torch's defaults, above). */
void optim_config_default(enum optim_kind kind, struct optim_config *ret);
/* "gd" | "sgd" | "momentum" | "nesterov" | "adam" | "adamw" -> kind; -EINVAL for anything else. */
int optim_kind_from_string(const char *name, enum optim_kind *ret_kind);
const char *optim_kind_name(enum optim_kind kind);

struct optim;

/* An optimizer over m's parameters (it keeps a pointer to m: free the optimizer first). Checks the config
 * (-EINVAL naming the field: negative momentum, betas outside [0,1), eps <= 0, nesterov with dampening...).
 * State starts at zero, step 0. */
int optim_new(struct model *m, const struct optim_config *cfg, struct optim **ret, struct ft_error *err);
void optim_free(struct optim *o); /* NULL is a no-op; before model_free of its model (its state follows the weights) */

/* One update of every non-frozen parameter from its grad, with learning rate lr (> 0, finite; the schedule's
 * value for this step). ctx (may be NULL: then single-threaded) gives the thread count. */
int optim_step(struct optim *o, struct compute_ctx *ctx, float lr, struct ft_error *err);

/* State tensors, in a stable order: "step" first, then per parameter in state_dict order. */
size_t optim_state_count(const struct optim *o);
struct tensor *optim_state_at(struct optim *o, size_t i);
struct tensor *optim_state_find(struct optim *o, const char *name); /* NULL when absent */
