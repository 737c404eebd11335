/* explain.h - saliency for one input of a classifier: which input values drove the score of a class. Two methods,
 * both from the engine's own backward pass through the input (model.h model_set_input_grad: the first layer's
 * backward data, which training never runs):
 *   gradient x input      a_i = x_i * d s_c / d x_i at x;
 *   integrated gradients  a_i = (x_i - b_i) * (1/m) sum_{k=1..m} d s_c / d x_i at b + (k/m)(x - b)
 *                         (Sundararajan et al. 2017, the right Riemann sum with m steps), whose attributions add up
 *                         to about s_c(x) - s_c(b) (completeness: explain_result.delta says how far off).
 * s_c is the model's output for class c before softmax (its logit), computed as predict computes it: evaluation
 * forward (BatchNorm's running statistics, no dropout). x and the baseline b are in the model's input space, after
 * preprocessing (scaling, resize, normalization): the caller preprocesses.
 *
 * Not for: loading models or images, preprocessing (the API's explain handler and the CLI do that), drawing maps
 * (the dashboard). */
#pragma once

#include <stddef.h>

#include "common/common.h"
#include "compute/context.h"
#include "compute/model.h"

#define EXPLAIN_STEPS_MAX 256 /* integrated gradients: at most this many steps (a forward and backward each) */
#define EXPLAIN_STEPS_DEFAULT 32
#define EXPLAIN_BATCH 8 /* interpolation points per forward and backward: bounds the plan's memory */
#define EXPLAIN_INPUT_MAX ((size_t)3 * 512 * 512) /* input values of a model explain takes */

enum explain_method {
        EXPLAIN_GRADIENT_X_INPUT,
        EXPLAIN_INTEGRATED_GRADIENTS,
};

struct explain_options {
        enum explain_method method;
        long long target; /* the class to explain; -1: the predicted one (the largest output at x) */
        int steps; /* integrated gradients: m, 1..EXPLAIN_STEPS_MAX (0: EXPLAIN_STEPS_DEFAULT) */
        const float *baseline; /* integrated gradients: model_input_numel floats; NULL: all zeros */
};

struct explain_result {
        size_t target; /* the class explained */
        size_t predicted; /* the largest output at x */
        size_t n; /* model_input_numel */
        size_t outputs; /* model_output_count */
        float *attribution; /* n floats: per input value (NCHW), malloc'd */
        float *output; /* outputs floats: the model's output at x, malloc'd */
        double score; /* s_c(x) */
        double baseline_score; /* s_c(b) (integrated gradients; gradient x input: s_c(0)) */
        double sum; /* the attributions' sum */
        double delta; /* sum - (score - baseline_score): integrated gradients' completeness error */
        int steps; /* m (integrated gradients), 1 for gradient x input */
};

/* Explain x (model_input_numel floats) with m: puts m in input-gradient mode (model_set_input_grad, which releases
 * its plans) and prepares it on ctx for batches up to EXPLAIN_BATCH. m must be a classifier's model (any input
 * shape: the caller decides what a map of it means). -EINVAL with err->param "target", "steps" or "model" (a model
 * over EXPLAIN_INPUT_MAX input values); -ERANGE with "input" for a non-finite output or gradient; on success *ret is
 * filled (release it with explain_result_deinit); on failure it is untouched. */
int explain_run(struct model *m, struct compute_ctx *ctx, const float *x, const struct explain_options *opt,
                struct explain_result *ret, struct ft_error *err);
void explain_result_deinit(struct explain_result *r);
