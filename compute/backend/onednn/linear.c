/* linear.c - the oneDNN backend's linear layers (nn.Linear): inner product forward, backward data and backward
 * weights (with the bias), over the shared weighted-layer plumbing (weighted.c).
 *
 * Not for: spec fields or init (model.c), the weights' layouts between steps (core.c). */
#include "compute/backend/onednn/onednn.h"

static int linear_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct weighted *w = p->nodes[ni].state;
        const char *name = n->name;
        dnnl_memory_desc_t smd, wmd, bmd, *bp, omd;
        int r;
        CHK(onednn_md_any(&smd, p->batch, node_in_shape(m, n)), "memory_desc_init");
        CHK(onednn_md_any(&omd, p->batch, &n->out), "memory_desc_init");
        if ((r = onednn_weighted_mds(n, &wmd, &bmd, &bp, err)) < 0)
                return r;
        dnnl_inner_product_desc_t id;
        CHK(dnnl_inner_product_forward_desc_init(&id, onednn_fwd_prop(p), &smd, &wmd, bp, &omd),
            "inner_product_forward_desc_init");
        if ((r = onednn_pd_new(p, &id, NULL, &w->fwd_pd, "inner product forward", name, err)) < 0)
                return r;
        return onednn_weighted_fwd_finish(m, p, ni, w, err);
}

static int linear_forward(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err) {
        (void)training;
        return onednn_weighted_forward(m, p, ni, p->nodes[ni].state, err);
}

static int linear_bwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct weighted *w = p->nodes[ni].state;
        const dnnl_memory_desc_t *smd = &p->nodes[ni].in[0].md, *dmd = &p->vals[ni + 1].md;
        const char *name = n->name;
        dnnl_memory_desc_t wmd, bmd, *bp;
        dnnl_primitive_desc_t dpd = NULL, wpd;
        dnnl_inner_product_desc_t id;
        int r;
        if ((r = onednn_weighted_mds(n, &wmd, &bmd, &bp, err)) < 0)
                return r;
        if (p->rg[n->in[0]]) { /* the model input and frozen stems need no diff */
                CHK(dnnl_inner_product_backward_data_desc_init(&id, smd, &wmd, dmd),
                    "inner_product_backward_data_desc_init");
                if ((r = onednn_pd_new(p, &id, w->fwd_pd, &dpd, "inner product backward data", name, err)) < 0)
                        return r;
        }
        wpd = NULL; /* input-gradient mode computes no parameter gradient */
        if (!m->input_grad) {
                CHK(dnnl_inner_product_backward_weights_desc_init(&id, smd, &wmd, bp, dmd),
                    "inner_product_backward_weights_desc_init");
                if ((r = onednn_pd_new(p, &id, w->fwd_pd, &wpd, "inner product backward weights", name, err)) < 0)
                        return r;
        }
        return onednn_weighted_bwd_finish(m, p, ni, w, dpd, wpd, bp, err);
}

static int linear_backward(struct model *m, struct backend_plan *p, int ni, const bool need[2], struct ft_error *err) {
        return onednn_weighted_backward(m, p, ni, p->nodes[ni].state, need, err);
}

const struct layer_ops onednn_linear_ops = {
        .state_size = sizeof(struct weighted),
        .fwd_init = linear_fwd_init,
        .forward = linear_forward,
        .bwd_init = linear_bwd_init,
        .backward = linear_backward,
};
