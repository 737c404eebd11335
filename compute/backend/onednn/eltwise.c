/* eltwise.c - the oneDNN backend's activations (relu, leaky_relu, gelu (erf), tanh, sigmoid): eltwise forward
 * and backward. A relu that a batchnorm fuses never reaches this file (bnode.absorbed: batchnorm.c).
 *
 * Not for: spec fields (model.c). */
#include "compute/backend/onednn/onednn.h"

struct eltwise {
        dnnl_primitive_desc_t fwd_pd;
        dnnl_primitive_t fwd, bwd;
};

static dnnl_alg_kind_t act_alg(enum act_kind a) {
        switch (a) {
        case ACT_RELU:
        case ACT_LEAKY_RELU: return dnnl_eltwise_relu;
        case ACT_GELU: return dnnl_eltwise_gelu_erf;
        case ACT_TANH: return dnnl_eltwise_tanh;
        case ACT_SIGMOID: return dnnl_eltwise_logistic;
        }
        return dnnl_eltwise_relu;
}

static int eltwise_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct eltwise *e = p->nodes[ni].state;
        struct bvalue *in = &p->vals[n->in[0]];
        const char *name = n->name;
        dnnl_eltwise_desc_t ed;
        int r;
        CHK(dnnl_eltwise_forward_desc_init(&ed, onednn_fwd_prop(p), act_alg(n->act), &in->md, n->alpha, 0.f),
            "eltwise_forward_desc_init");
        if ((r = onednn_pd_new(p, &ed, NULL, &e->fwd_pd, "eltwise forward", name, err)) < 0 ||
            (r = onednn_prim_new(p, e->fwd_pd, &e->fwd, name, err)) < 0 ||
            (r = onednn_conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
            (r = onednn_value_init(p, &p->vals[ni + 1], onednn_q_md(e->fwd_pd, dnnl_query_dst_md), name, err)) < 0)
                return r;
        return 0;
}

static int eltwise_forward(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err) {
        const struct eltwise *e = p->nodes[ni].state;
        (void)training;
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_SRC, p->nodes[ni].in[0].mem}, {DNNL_ARG_DST, p->vals[ni + 1].mem}};
        return onednn_run(p, e->fwd, 2, a, m->nodes[ni].name, err);
}

static int eltwise_bwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct eltwise *e = p->nodes[ni].state;
        const struct bvalue *in = &p->vals[n->in[0]];
        const char *name = n->name;
        dnnl_eltwise_desc_t ed;
        dnnl_primitive_desc_t pd;
        int r;
        CHK(dnnl_eltwise_backward_desc_init(&ed, act_alg(n->act), &in->md, &in->md, n->alpha, 0.f),
            "eltwise_backward_desc_init");
        if ((r = onednn_pd_new(p, &ed, e->fwd_pd, &pd, "eltwise backward", name, err)) < 0 ||
            (r = onednn_prim_new(p, pd, &e->bwd, name, err)) < 0)
                return r;
        return 0;
}

static int eltwise_backward(struct model *m, struct backend_plan *p, int ni, const bool need[2], struct ft_error *err) {
        const struct eltwise *e = p->nodes[ni].state;
        const struct bnode *bn = &p->nodes[ni];
        if (!need[0])
                return 0;
        dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, p->vals[ni + 1].dmem},
                                {DNNL_ARG_DIFF_SRC, bn->in[0].dmem},
                                {DNNL_ARG_SRC, bn->in[0].mem}};
        return onednn_run(p, e->bwd, 3, a, m->nodes[ni].name, err);
}

const struct layer_ops onednn_eltwise_ops = {
        .state_size = sizeof(struct eltwise),
        .fwd_init = eltwise_fwd_init,
        .forward = eltwise_forward,
        .bwd_init = eltwise_bwd_init,
        .backward = eltwise_backward,
};
