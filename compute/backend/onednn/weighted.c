/* weighted.c - what the layers with a weight and an optional bias share (linear.c: inner product, conv.c:
 * convolution): the weight seen through its views (forward, backward data, gradient), the bias, the primitives
 * and how forward and backward run them. A family makes its own primitive descriptors and calls these.
 *
 * Not for: choosing algorithms or descriptors (the families), the weights' layouts between steps (core.c). */
#include "compute/backend/onednn/onednn.h"

int onednn_weighted_mds(const struct node *n, dnnl_memory_desc_t *wmd, dnnl_memory_desc_t *bmd,
                        dnnl_memory_desc_t **ret_bmd, struct ft_error *err) {
        const char *name = n->name;
        dnnl_dims_t wd;
        for (int i = 0; i < n->weight->ndim; i++)
                wd[i] = n->weight->shape[i];
        CHK(dnnl_memory_desc_init_by_tag(wmd, n->weight->ndim, wd, dnnl_f32, dnnl_format_tag_any), "memory_desc_init");
        *ret_bmd = NULL;
        if (n->bias) {
                CHK(onednn_md_tensor(bmd, n->bias), "memory_desc_init");
                *ret_bmd = bmd;
        }
        return 0;
}

int onednn_weighted_fwd_finish(struct model *m, struct backend_plan *p, int ni, struct weighted *w,
                               struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const char *name = n->name;
        int r;
        if ((r = onednn_prim_new(p, w->fwd_pd, &w->fwd, name, err)) < 0 ||
            (r = onednn_conform_init(p, m, ni, 0, onednn_q_md(w->fwd_pd, dnnl_query_src_md), err)) < 0 ||
            (r = onednn_wview_init(p, m, &w->w_fwd, n->weight, n->weight->data,
                                   onednn_q_md(w->fwd_pd, dnnl_query_weights_md), false, name, err)) < 0 ||
            (r = onednn_value_init(p, &p->vals[ni + 1], onednn_q_md(w->fwd_pd, dnnl_query_dst_md), name, err)) < 0)
                return r;
        if (n->bias) {
                dnnl_memory_desc_t bmd;
                CHK(onednn_md_tensor(&bmd, n->bias), "memory_desc_init");
                if ((r = onednn_mem_new(p, &bmd, n->bias->data, &w->bias, name, err)) < 0)
                        return r;
        }
        return 0;
}

int onednn_weighted_forward(struct model *m, struct backend_plan *p, int ni, struct weighted *w, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const char *name = n->name;
        int r;
        if (w->w_fwd.reorder &&
            (r = onednn_run_reorder(p, w->w_fwd.reorder, w->w_fwd.user, w->w_fwd.mem, name, err)) < 0)
                return r;
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, p->nodes[ni].in[0].mem},
                                {DNNL_ARG_WEIGHTS, w->w_fwd.mem},
                                {DNNL_ARG_DST, p->vals[ni + 1].mem},
                                {DNNL_ARG_BIAS, w->bias}};
        return onednn_run(p, w->fwd, n->bias ? 4 : 3, a, name, err);
}

int onednn_weighted_bwd_finish(struct model *m, struct backend_plan *p, int ni, struct weighted *w,
                               dnnl_primitive_desc_t dpd, dnnl_primitive_desc_t wpd, const dnnl_memory_desc_t *bmd,
                               struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const char *name = n->name;
        int r;
        if (dpd) {
                /* backward data may read and write other formats than forward's (conv_bwd_data_formats) */
                struct {
                        struct conform *c;
                        const dnnl_memory_desc_t *ours, *prim;
                        bool to_ours;
                } cv[2] = {{&w->bd_ddst, &p->vals[ni + 1].md, onednn_q_md(dpd, dnnl_query_diff_dst_md), false},
                           {&w->bd_dsrc, &p->nodes[ni].in[0].md, onednn_q_md(dpd, dnnl_query_diff_src_md), true}};
                for (int i = 0; i < 2; i++) {
                        struct conform *cf = cv[i].c;
                        cf->needed = !dnnl_memory_desc_equal(cv[i].ours, cv[i].prim);
                        if (!cf->needed)
                                continue;
                        cf->md = *cv[i].prim;
                        if ((r = onednn_mem_new(p, &cf->md, DNNL_MEMORY_ALLOCATE, &cf->mem, name, err)) < 0 ||
                            (r = cv[i].to_ours ? onednn_reorder_new(p, &cf->md, cv[i].ours, &cf->fwd, name, err)
                                               : onednn_reorder_new(p, cv[i].ours, &cf->md, &cf->fwd, name, err)) < 0)
                                return r;
                }
                if ((r = onednn_prim_new(p, dpd, &w->bwd_data, name, err)) < 0)
                        return r;
                const dnnl_memory_desc_t *bwmd = onednn_q_md(dpd, dnnl_query_weights_md);
                if (dnnl_memory_desc_equal(bwmd, &w->w_fwd.md))
                        w->w_bwd = w->w_fwd;
                else { /* from the forward's blocked copy (block to block is much cheaper than from plain) */
                        w->w_bwd.md = *bwmd;
                        w->w_bwd.user = w->w_fwd.mem;
                        if ((r = onednn_mem_new(p, bwmd, DNNL_MEMORY_ALLOCATE, &w->w_bwd.mem, name, err)) < 0 ||
                            (r = onednn_reorder_new(p, &w->w_fwd.md, bwmd, &w->w_bwd.reorder, name, err)) < 0)
                                return r;
                }
        }
        if (!wpd) /* input-gradient mode: no parameter gradients, no backward weights */
                return 0;
        if ((r = onednn_prim_new(p, wpd, &w->bwd_weights, name, err)) < 0 ||
            (r = onednn_wview_init(p, m, &w->dw, n->weight, n->weight->grad,
                                   onednn_q_md(wpd, dnnl_query_diff_weights_md), true, name, err)) < 0 ||
            (r = onednn_mem_new(p, &w->dw.md, DNNL_MEMORY_ALLOCATE, &w->dw_scratch, name, err)) < 0)
                return r;
        if (n->bias && ((r = onednn_mem_new(p, bmd, n->bias->grad, &w->dbias, name, err)) < 0 ||
                        (r = onednn_mem_new(p, bmd, DNNL_MEMORY_ALLOCATE, &w->dbias_scratch, name, err)) < 0))
                return r;
        return 0;
}

int onednn_weighted_backward(struct model *m, struct backend_plan *p, int ni, struct weighted *w, const bool need[2],
                             struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct bnode *bn = &p->nodes[ni];
        const struct bvalue *out = &p->vals[ni + 1];
        const char *name = n->name;
        dnnl_memory_t src = bn->in[0].mem;
        int r;
        if (need[0]) {
                if (w->w_bwd.reorder && w->w_bwd.reorder != w->w_fwd.reorder &&
                    (r = onednn_run_reorder(p, w->w_bwd.reorder, w->w_bwd.user, w->w_bwd.mem, name, err)) < 0)
                        return r;
                dnnl_memory_t ddst = out->dmem;
                if (w->bd_ddst.needed) {
                        if ((r = onednn_run_reorder(p, w->bd_ddst.fwd, out->dmem, w->bd_ddst.mem, name, err)) < 0)
                                return r;
                        ddst = w->bd_ddst.mem;
                }
                dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, ddst},
                                        {DNNL_ARG_WEIGHTS, w->w_bwd.mem},
                                        {DNNL_ARG_DIFF_SRC, w->bd_dsrc.needed ? w->bd_dsrc.mem : bn->in[0].dmem}};
                if ((r = onednn_run(p, w->bwd_data, 3, a, name, err)) < 0)
                        return r;
                if (w->bd_dsrc.needed &&
                    (r = onednn_run_reorder(p, w->bd_dsrc.fwd, w->bd_dsrc.mem, bn->in[0].dmem, name, err)) < 0)
                        return r;
        }
        if (!nn_node_trainable(m, n))
                return 0;
        bool wt = nn_param_grad(
                m, n->weight); /* a frozen weight's gradient is never written: its diff goes to a scratch */
        dnnl_memory_t wsrc = src, wddst = out->dmem;
        if (w->bw_src.needed) {
                if ((r = onednn_run_reorder(p, w->bw_src.fwd, src, w->bw_src.mem, name, err)) < 0)
                        return r;
                wsrc = w->bw_src.mem;
        }
        if (w->bw_ddst.needed) {
                if ((r = onednn_run_reorder(p, w->bw_ddst.fwd, out->dmem, w->bw_ddst.mem, name, err)) < 0)
                        return r;
                wddst = w->bw_ddst.mem;
        }
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, wsrc},
                                {DNNL_ARG_DIFF_DST, wddst},
                                {DNNL_ARG_DIFF_WEIGHTS, wt ? w->dw.mem : w->dw_scratch},
                                {DNNL_ARG_DIFF_BIAS, nn_param_grad(m, n->bias) ? w->dbias : w->dbias_scratch}};
        if ((r = onednn_run(p, w->bwd_weights, n->bias ? 4 : 3, a, name, err)) < 0)
                return r;
        if (wt && w->dw.reorder && (r = onednn_run_reorder(p, w->dw.reorder, w->dw.mem, w->dw.user, name, err)) < 0)
                return r;
        return 0;
}
