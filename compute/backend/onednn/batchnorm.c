/* batchnorm.c - the oneDNN backend's batch normalization (nn.BatchNorm2d): forward with batch statistics and with
 * the running ones (eval, or frozen with train_batchnorm off), backward, the running statistics updated exactly as
 * PyTorch does (oneDNN only returns the batch's), and a following ReLU fused in (fuse_norm_relu). With
 * model_set_bn_sync (SyncBatchNorm), the batch statistics and the backward's sums are allreduced over the replicas.
 *
 * Not for: spec fields or init (model.c). */

#include <math.h>
#include <stdlib.h>

#include "compute/backend/onednn/onednn.h"

struct batchnorm {
        dnnl_primitive_desc_t fwd_pd, fwd_g_pd;
        dnnl_primitive_t fwd, fwd_g; /* fwd_g: with global (running) statistics */
        dnnl_primitive_t bwd, bwd_g;
        dnnl_memory_t weight, bias, dweight, dbias, dweight_scratch, dbias_scratch; /* scratches: frozen */
        dnnl_memory_t ws, ws_g; /* fused relu: its workspace, per variant */
        dnnl_memory_t mean, var, rmean, rvar;
        bool used_global; /* the last forward used running statistics */
        bool fused_relu; /* the relu after it is fused in (oneDNN fuse_norm_relu, with a workspace) */
        /* SyncBatchNorm (made at the first synced forward): the last forward normalized with the replicas' global
         * mean and var (in mean, var; its ws_g) of count_global values, count_local of them this replica's */
        bool synced;
        double count_local, count_global;
        dnnl_primitive_t aff, add; /* x -> scale x + shift per channel; diff_src += that */
        dnnl_memory_t aff_scale, aff_shift, aff_mean, aff_var, corr;
};

static int bn_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct batchnorm *b = p->nodes[ni].state;
        struct bvalue *in = &p->vals[n->in[0]], *out = &p->vals[ni + 1];
        const char *name = n->name;
        dnnl_batch_normalization_desc_t bd;
        unsigned flags = dnnl_use_scale | dnnl_use_shift;
        int r;
        /* fuse a relu that is this batchnorm's only consumer (the value before it is then never read) */
        const struct node *nx = ni + 1 < m->n_nodes ? &m->nodes[ni + 1] : NULL;
        b->fused_relu = nx && m->consumers[ni + 1] == 1 && nx->kind == NODE_ACT && nx->act == ACT_RELU &&
                        nx->alpha == 0.0f && nx->in[0] == ni + 1;
        if (b->fused_relu) {
                flags |= dnnl_fuse_norm_relu;
                p->nodes[ni + 1].absorbed = true;
        }
        /* inference plans run only the running-statistics variant (model_forward refuses training there) */
        if (!p->inference) {
                CHK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &in->md, n->eps, flags),
                    "batch_normalization_forward_desc_init");
                if ((r = onednn_pd_new(p, &bd, NULL, &b->fwd_pd, "batch normalization forward", name, err)) < 0 ||
                    (r = onednn_prim_new(p, b->fwd_pd, &b->fwd, name, err)) < 0)
                        return r;
        }
        CHK(dnnl_batch_normalization_forward_desc_init(&bd, onednn_fwd_prop(p), &in->md, n->eps,
                                                       flags | dnnl_use_global_stats),
            "batch_normalization_forward_desc_init");
        if ((r = onednn_pd_new(p, &bd, NULL, &b->fwd_g_pd, "batch normalization forward", name, err)) < 0 ||
            (r = onednn_prim_new(p, b->fwd_g_pd, &b->fwd_g, name, err)) < 0)
                return r;
        dnnl_memory_desc_t cmd;
        CHK(onednn_md_tensor(&cmd, n->weight), "memory_desc_init");
        if ((r = onednn_conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
            (r = onednn_value_init(p, out, onednn_q_md(b->fwd_g_pd, dnnl_query_dst_md), name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, n->weight->data, &b->weight, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, n->bias->data, &b->bias, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &b->mean, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &b->var, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, n->running_mean->data, &b->rmean, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, n->running_var->data, &b->rvar, name, err)) < 0)
                return r;
        if (b->fused_relu && !p->inference &&
            ((r = onednn_mem_new(p, onednn_q_md(b->fwd_pd, dnnl_query_workspace_md), DNNL_MEMORY_ALLOCATE, &b->ws, name,
                                 err)) < 0 ||
             (r = onednn_mem_new(p, onednn_q_md(b->fwd_g_pd, dnnl_query_workspace_md), DNNL_MEMORY_ALLOCATE, &b->ws_g,
                                 name, err)) < 0))
                return r;
        return 0;
}

/* running_mean and running_var as torch updates them: momentum, the unbiased batch variance */
static void bn_update_running(const struct node *n, const struct batchnorm *b, double cnt) {
        const float *mean = onednn_mem_ptr(b->mean), *var = onednn_mem_ptr(b->var);
        float *rm = tensor_f32(n->running_mean), *rv = tensor_f32(n->running_var);
        double unbias = cnt / (cnt - 1.0);
        float mom = n->momentum;
        for (int64_t c = 0; c < n->out.c; c++) {
                rm[c] = (1.0f - mom) * rm[c] + mom * mean[c];
                rv[c] = (1.0f - mom) * rv[c] + mom * (float)(var[c] * unbias);
        }
        tensor_i64(n->num_batches_tracked)[0] += 1;
}

/* SyncBatchNorm's primitives, made once: an affine map per channel (a batch normalization with global statistics
 * mean 0 and var 1 - eps, so that it is scale x + shift) into corr, and diff_src += corr. */
static int bn_sync_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct batchnorm *b = p->nodes[ni].state;
        const struct bvalue *in = &p->vals[n->in[0]];
        const char *name = n->name;
        dnnl_batch_normalization_desc_t bd;
        dnnl_binary_desc_t ad;
        dnnl_primitive_desc_t aff_pd, add_pd;
        dnnl_memory_desc_t cmd;
        int r;
        CHK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_inference, &in->md, n->eps,
                                                       dnnl_use_scale | dnnl_use_shift | dnnl_use_global_stats),
            "batch_normalization_forward_desc_init");
        if ((r = onednn_pd_new(p, &bd, NULL, &aff_pd, "batch normalization forward", name, err)) < 0 ||
            (r = onednn_prim_new(p, aff_pd, &b->aff, name, err)) < 0)
                return r;
        const dnnl_memory_desc_t *corr_md = onednn_q_md(aff_pd, dnnl_query_dst_md);
        CHK(dnnl_binary_desc_init(&ad, dnnl_binary_add, &in->md, corr_md, &in->md), "binary_desc_init");
        if ((r = onednn_pd_new(p, &ad, NULL, &add_pd, "binary add", name, err)) < 0 ||
            (r = onednn_prim_new(p, add_pd, &b->add, name, err)) < 0)
                return r;
        CHK(onednn_md_tensor(&cmd, n->weight), "memory_desc_init");
        if ((r = onednn_mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &b->aff_scale, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &b->aff_shift, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &b->aff_mean, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &b->aff_var, name, err)) < 0 ||
            (r = onednn_mem_new(p, corr_md, DNNL_MEMORY_ALLOCATE, &b->corr, name, err)) < 0)
                return r;
        float *mean = onednn_mem_ptr(b->aff_mean), *var = onednn_mem_ptr(b->aff_var);
        for (int64_t c = 0; c < n->out.c; c++) {
                mean[c] = 0.0f;
                var[c] = 1.0f - n->eps;
        }
        return 0;
}

/* After the local training forward (this replica's mean and var in b->mean, b->var): the global mean from the
 * replicas' sums of count x mean, then the global (biased) var from their sums of count x (var + (mean - global
 * mean)^2) (Chan's parallel variance, which keeps the precision of each replica's var when the mean is large), the
 * forward again with those, and the running statistics updated with the global batch's, as SyncBatchNorm does. */
static int bn_sync_forward(struct model *m, struct backend_plan *p, int ni, double cnt, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct batchnorm *b = p->nodes[ni].state;
        const char *name = n->name;
        size_t C = (size_t)n->out.c;
        float *mean = onednn_mem_ptr(b->mean), *var = onednn_mem_ptr(b->var);
        int r;
        if (!b->aff && (r = bn_sync_init(m, p, ni, err)) < 0)
                return r;
        double *s = malloc((2 * C + 1) * sizeof(*s));
        if (!s)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        for (size_t c = 0; c < C; c++)
                s[c] = cnt * (double)mean[c];
        s[C] = cnt;
        r = m->bn_sync->allreduce_f64(m->bn_sync->userdata, s, C + 1, err);
        double total = s[C];
        for (size_t c = 0; r == 0 && c < C; c++) {
                s[c] /= total;
                double d = (double)mean[c] - s[c];
                s[C + 1 + c] = cnt * ((double)var[c] + d * d);
        }
        if (r == 0)
                r = m->bn_sync->allreduce_f64(m->bn_sync->userdata, s + C + 1, C, err);
        if (r < 0) {
                free(s);
                return r;
        }
        for (size_t c = 0; c < C; c++) {
                mean[c] = (float)s[c];
                var[c] = (float)(s[C + 1 + c] / total);
        }
        free(s);
        b->synced = true;
        b->used_global = false;
        b->count_local = cnt;
        b->count_global = total;
        dnnl_exec_arg_t a[7] = {{DNNL_ARG_SRC, p->nodes[ni].in[0].mem},
                                {DNNL_ARG_DST, p->vals[ni + 1].mem},
                                {DNNL_ARG_SCALE, b->weight},
                                {DNNL_ARG_SHIFT, b->bias},
                                {DNNL_ARG_MEAN, b->mean},
                                {DNNL_ARG_VARIANCE, b->var},
                                {DNNL_ARG_WORKSPACE, b->ws_g}};
        if ((r = onednn_run(p, b->fwd_g, b->fused_relu ? 7 : 6, a, name, err)) < 0)
                return r;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        bn_update_running(n, b, total);
        return 0;
}

/* SyncBatchNorm's backward. The global-statistics backward (with the global mean and var) gives
 * gamma rstd dy and this replica's sums of dy and dy xhat; the replicas' sums of those (weighted by each one's share
 * of the global batch, as the gradients are) make the mean terms:
 *   dx = gamma rstd (dy - sum(dy) / N - xhat sum(dy xhat) / N)
 * in this replica's mean-loss scale (the trainer weights it by the share afterwards), added as an affine map of x. */
static int bn_sync_backward(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct batchnorm *b = p->nodes[ni].state;
        const struct bnode *bn = &p->nodes[ni];
        const char *name = n->name;
        size_t C = (size_t)n->out.c;
        bool wt = !n->weight->frozen, bt = !n->bias->frozen;
        dnnl_memory_t dw = wt ? b->dweight : b->dweight_scratch, db = bt ? b->dbias : b->dbias_scratch;
        dnnl_exec_arg_t a[10] = {{DNNL_ARG_SRC, bn->in[0].mem},
                                 {DNNL_ARG_DIFF_DST, p->vals[ni + 1].dmem},
                                 {DNNL_ARG_SCALE, b->weight},
                                 {DNNL_ARG_SHIFT, b->bias},
                                 {DNNL_ARG_MEAN, b->mean},
                                 {DNNL_ARG_VARIANCE, b->var},
                                 {DNNL_ARG_DIFF_SRC, bn->in[0].dmem},
                                 {DNNL_ARG_DIFF_SCALE, dw},
                                 {DNNL_ARG_DIFF_SHIFT, db},
                                 {DNNL_ARG_WORKSPACE, b->ws_g}};
        int r = onednn_run(p, b->bwd_g, b->fused_relu ? 10 : 9, a, name, err);
        if (r < 0)
                return r;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        const float *dg = onednn_mem_ptr(dw), *dbeta = onednn_mem_ptr(db), *mean = onednn_mem_ptr(b->mean),
                    *var = onednn_mem_ptr(b->var), *gamma = tensor_f32(n->weight);
        double share = b->count_local / b->count_global;
        double *s = malloc(2 * C * sizeof(*s));
        if (!s)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        for (size_t c = 0; c < C; c++) {
                s[c] = share * (double)dg[c];
                s[C + c] = share * (double)dbeta[c];
        }
        r = m->bn_sync->allreduce_f64(m->bn_sync->userdata, s, 2 * C, err);
        if (r < 0) {
                free(s);
                return r;
        }
        float *scale = onednn_mem_ptr(b->aff_scale), *shift = onednn_mem_ptr(b->aff_shift);
        for (size_t c = 0; c < C; c++) {
                /* the global sums in this replica's scale, over the global count: sum / share / N = sum / local */
                double g_mean = s[c] / b->count_local, b_mean = s[C + c] / b->count_local;
                double rstd = 1.0 / sqrt((double)var[c] + (double)n->eps);
                double k = (double)gamma[c] * rstd;
                scale[c] = (float)(-k * rstd * g_mean);
                shift[c] = (float)(-k * b_mean + k * rstd * (double)mean[c] * g_mean);
        }
        free(s);
        dnnl_exec_arg_t f[6] = {{DNNL_ARG_SRC, bn->in[0].mem},  {DNNL_ARG_DST, b->corr},
                                {DNNL_ARG_SCALE, b->aff_scale}, {DNNL_ARG_SHIFT, b->aff_shift},
                                {DNNL_ARG_MEAN, b->aff_mean},   {DNNL_ARG_VARIANCE, b->aff_var}};
        dnnl_exec_arg_t d[3] = {
                {DNNL_ARG_SRC_0, bn->in[0].dmem}, {DNNL_ARG_SRC_1, b->corr}, {DNNL_ARG_DST, bn->in[0].dmem}};
        if ((r = onednn_run(p, b->aff, 6, f, name, err)) < 0 || (r = onednn_run(p, b->add, 3, d, name, err)) < 0)
                return r;
        return 0;
}

static int bn_forward(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct batchnorm *b = p->nodes[ni].state;
        const char *name = n->name;
        bool global = !training || (m->frozen_bn_eval && !nn_node_trainable(m, n));
        int r;
        b->used_global = global;
        b->synced = false;
        if (!global) {
                double cnt = (double)p->batch * (double)n->out.h * (double)n->out.w;
                if (cnt < 2)
                        return ft_error_set(err, -EINVAL, "batch_size",
                                            "layer '%s': batch normalization in training needs more than one "
                                            "value per channel (batch size 1 with a 1x1 input)",
                                            name);
        }
        dnnl_exec_arg_t a[7] = {{DNNL_ARG_SRC, p->nodes[ni].in[0].mem},
                                {DNNL_ARG_DST, p->vals[ni + 1].mem},
                                {DNNL_ARG_SCALE, b->weight},
                                {DNNL_ARG_SHIFT, b->bias},
                                {DNNL_ARG_MEAN, global ? b->rmean : b->mean},
                                {DNNL_ARG_VARIANCE, global ? b->rvar : b->var},
                                {DNNL_ARG_WORKSPACE, global ? b->ws_g : b->ws}};
        if ((r = onednn_run(p, global ? b->fwd_g : b->fwd, b->fused_relu && !p->inference ? 7 : 6, a, name, err)) < 0)
                return r;
        if (global)
                return 0;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        double cnt = (double)p->batch * (double)n->out.h * (double)n->out.w;
        if (m->bn_sync)
                return bn_sync_forward(m, p, ni, cnt, err);
        bn_update_running(n, b, cnt);
        return 0;
}

static int bn_bwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct batchnorm *b = p->nodes[ni].state;
        const struct bvalue *in = &p->vals[n->in[0]];
        const char *name = n->name;
        dnnl_batch_normalization_desc_t bd;
        unsigned flags = dnnl_use_scale | dnnl_use_shift | (b->fused_relu ? dnnl_fuse_norm_relu : 0u);
        dnnl_primitive_desc_t pd;
        int r;
        CHK(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &in->md, &in->md, n->eps, flags),
            "batch_normalization_backward_desc_init");
        if ((r = onednn_pd_new(p, &bd, b->fwd_pd, &pd, "batch normalization backward", name, err)) < 0 ||
            (r = onednn_prim_new(p, pd, &b->bwd, name, err)) < 0)
                return r;
        CHK(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &in->md, &in->md, n->eps,
                                                        flags | dnnl_use_global_stats),
            "batch_normalization_backward_desc_init");
        if ((r = onednn_pd_new(p, &bd, b->fwd_g_pd, &pd, "batch normalization backward", name, err)) < 0 ||
            (r = onednn_prim_new(p, pd, &b->bwd_g, name, err)) < 0)
                return r;
        dnnl_memory_desc_t cmd;
        CHK(onednn_md_tensor(&cmd, n->weight), "memory_desc_init");
        if ((r = onednn_mem_new(p, &cmd, n->weight->grad, &b->dweight, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, n->bias->grad, &b->dbias, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &b->dweight_scratch, name, err)) < 0 ||
            (r = onednn_mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &b->dbias_scratch, name, err)) < 0)
                return r;
        return 0;
}

/* always writes the input's diff (onednn_batchnorm_ops.diff_src_always): in[0].dmem is a scratch when unneeded */
static int bn_backward(struct model *m, struct backend_plan *p, int ni, const bool need[2], struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct batchnorm *b = p->nodes[ni].state;
        const struct bnode *bn = &p->nodes[ni];
        const char *name = n->name;
        bool wt = nn_param_grad(m, n->weight), bt = nn_param_grad(m, n->bias), g = b->used_global;
        (void)need;
        if (b->synced)
                return bn_sync_backward(m, p, ni, err);
        dnnl_exec_arg_t a[10] = {{DNNL_ARG_SRC, bn->in[0].mem},
                                 {DNNL_ARG_DIFF_DST, p->vals[ni + 1].dmem},
                                 {DNNL_ARG_SCALE, b->weight},
                                 {DNNL_ARG_SHIFT, b->bias},
                                 {DNNL_ARG_MEAN, g ? b->rmean : b->mean},
                                 {DNNL_ARG_VARIANCE, g ? b->rvar : b->var},
                                 {DNNL_ARG_DIFF_SRC, bn->in[0].dmem},
                                 {DNNL_ARG_DIFF_SCALE, wt ? b->dweight : b->dweight_scratch},
                                 {DNNL_ARG_DIFF_SHIFT, bt ? b->dbias : b->dbias_scratch},
                                 {DNNL_ARG_WORKSPACE, g ? b->ws_g : b->ws}};
        return onednn_run(p, g ? b->bwd_g : b->bwd, b->fused_relu ? 10 : 9, a, name, err);
}

const struct layer_ops onednn_batchnorm_ops = {
        .state_size = sizeof(struct batchnorm),
        .diff_src_always = true,
        .fwd_init = bn_fwd_init,
        .forward = bn_forward,
        .bwd_init = bn_bwd_init,
        .backward = bn_backward,
};
