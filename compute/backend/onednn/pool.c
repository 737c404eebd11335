/* pool.c - the oneDNN backend's pooling: max (with its workspace of argmax positions), average (padding counted,
 * PyTorch's default) and global average (one window over the whole input), forward and backward.
 *
 * Not for: spec fields or output shapes (model.c). */
#include "compute/backend/onednn/onednn.h"

struct pool {
        dnnl_primitive_desc_t fwd_pd;
        dnnl_primitive_t fwd, bwd;
        dnnl_memory_t ws; /* max pooling in training: where each maximum came from */
};

/* Kernel, strides, paddings and algorithm of a pooling node (global average pooling: one window). */
static dnnl_alg_kind_t pool_dims(const struct model *m, const struct node *n, dnnl_dims_t k, dnnl_dims_t s,
                                 dnnl_dims_t pl, dnnl_dims_t pr) {
        if (n->kind == NODE_GAP) {
                const struct value_shape *is = node_in_shape(m, n);
                k[0] = s[0] = is->h, k[1] = s[1] = is->w;
                pl[0] = pl[1] = pr[0] = pr[1] = 0;
                return dnnl_pooling_avg_exclude_padding;
        }
        k[0] = n->kh, k[1] = n->kw, s[0] = n->sh, s[1] = n->sw;
        pl[0] = pr[0] = n->ph, pl[1] = pr[1] = n->pw;
        return n->kind == NODE_MAXPOOL ? dnnl_pooling_max : dnnl_pooling_avg_include_padding;
}

static int pool_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct pool *po = p->nodes[ni].state;
        struct bvalue *in = &p->vals[n->in[0]];
        const char *name = n->name;
        dnnl_memory_desc_t omd;
        dnnl_pooling_desc_t pdsc;
        dnnl_dims_t k, s, pl, pr;
        int r;
        CHK(onednn_md_any(&omd, p->batch, &n->out), "memory_desc_init");
        dnnl_alg_kind_t alg = pool_dims(m, n, k, s, pl, pr);
        CHK(dnnl_pooling_forward_desc_init(&pdsc, onednn_fwd_prop(p), alg, &in->md, &omd, s, k, pl, pr),
            "pooling_forward_desc_init");
        if ((r = onednn_pd_new(p, &pdsc, NULL, &po->fwd_pd, "pooling forward", name, err)) < 0 ||
            (r = onednn_prim_new(p, po->fwd_pd, &po->fwd, name, err)) < 0 ||
            (r = onednn_conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
            (r = onednn_value_init(p, &p->vals[ni + 1], onednn_q_md(po->fwd_pd, dnnl_query_dst_md), name, err)) < 0)
                return r;
        const dnnl_memory_desc_t *wsmd = onednn_q_md(po->fwd_pd, dnnl_query_workspace_md);
        if (wsmd && wsmd->ndims > 0 && (r = onednn_mem_new(p, wsmd, DNNL_MEMORY_ALLOCATE, &po->ws, name, err)) < 0)
                return r;
        return 0;
}

static int pool_forward(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err) {
        const struct pool *po = p->nodes[ni].state;
        (void)training;
        dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, p->nodes[ni].in[0].mem},
                                {DNNL_ARG_DST, p->vals[ni + 1].mem},
                                {DNNL_ARG_WORKSPACE, po->ws}};
        return onednn_run(p, po->fwd, po->ws ? 3 : 2, a, m->nodes[ni].name, err);
}

static int pool_bwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct pool *po = p->nodes[ni].state;
        const char *name = n->name;
        dnnl_pooling_desc_t pdsc;
        dnnl_primitive_desc_t pd;
        dnnl_dims_t k, s, pl, pr;
        int r;
        dnnl_alg_kind_t alg = pool_dims(m, n, k, s, pl, pr);
        CHK(dnnl_pooling_backward_desc_init(&pdsc, alg, &p->vals[n->in[0]].md, &p->vals[ni + 1].md, s, k, pl, pr),
            "pooling_backward_desc_init");
        if ((r = onednn_pd_new(p, &pdsc, po->fwd_pd, &pd, "pooling backward", name, err)) < 0 ||
            (r = onednn_prim_new(p, pd, &po->bwd, name, err)) < 0)
                return r;
        return 0;
}

static int pool_backward(struct model *m, struct backend_plan *p, int ni, const bool need[2], struct ft_error *err) {
        const struct pool *po = p->nodes[ni].state;
        if (!need[0])
                return 0;
        dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, p->vals[ni + 1].dmem},
                                {DNNL_ARG_DIFF_SRC, p->nodes[ni].in[0].dmem},
                                {DNNL_ARG_WORKSPACE, po->ws}};
        return onednn_run(p, po->bwd, po->ws ? 3 : 2, a, m->nodes[ni].name, err);
}

const struct layer_ops onednn_pool_ops = {
        .state_size = sizeof(struct pool),
        .fwd_init = pool_fwd_init,
        .forward = pool_forward,
        .bwd_init = pool_bwd_init,
        .backward = pool_backward,
};
