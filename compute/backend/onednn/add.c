/* add.c - the oneDNN backend's residual add (a basic_block's shortcut): binary add forward; backward hands the
 * output's diff to both inputs (core.c sums it into values that have other consumers).
 *
 * Not for: the block's topology (model.c). */
#include <string.h>

#include "compute/backend/onednn/onednn.h"

struct add {
        dnnl_primitive_desc_t fwd_pd;
        dnnl_primitive_t fwd;
};

static int add_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct add *a = p->nodes[ni].state;
        struct bvalue *in = &p->vals[n->in[0]];
        const char *name = n->name;
        dnnl_binary_desc_t bd;
        int r;
        if ((r = onednn_conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
            (r = onednn_conform_init(p, m, ni, 1, &in->md, err)) < 0)
                return r;
        CHK(dnnl_binary_desc_init(&bd, dnnl_binary_add, &in->md, &in->md, &in->md), "binary_desc_init");
        if ((r = onednn_pd_new(p, &bd, NULL, &a->fwd_pd, "binary add", name, err)) < 0 ||
            (r = onednn_prim_new(p, a->fwd_pd, &a->fwd, name, err)) < 0 ||
            (r = onednn_value_init(p, &p->vals[ni + 1], &in->md, name, err)) < 0)
                return r;
        return 0;
}

static int add_forward(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err) {
        const struct add *a = p->nodes[ni].state;
        const struct bnode *bn = &p->nodes[ni];
        (void)training;
        dnnl_exec_arg_t args[3] = {
                {DNNL_ARG_SRC, bn->in[0].mem}, {DNNL_ARG_DST, p->vals[ni + 1].mem}, {DNNL_ARG_SRC_1, bn->in[1].mem}};
        return onednn_run(p, a->fwd, 3, args, m->nodes[ni].name, err);
}

static int add_backward(struct model *m, struct backend_plan *p, int ni, const bool need[2], struct ft_error *err) {
        const struct bnode *bn = &p->nodes[ni];
        const char *name = m->nodes[ni].name;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        const struct bvalue *out = &p->vals[ni + 1];
        size_t bytes = out->nfloats * sizeof(float);
        for (int j = 0; j < 2; j++)
                if (need[j])
                        memcpy(onednn_mem_ptr(bn->in[j].dmem), onednn_mem_ptr(out->dmem), bytes);
        return 0;
}

const struct layer_ops onednn_add_ops = {
        .state_size = sizeof(struct add),
        .fwd_init = add_fwd_init,
        .forward = add_forward,
        .backward = add_backward,
};
