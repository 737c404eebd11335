/* flatten.c - the oneDNN backend's flatten ([N, C, H, W] -> [N, C*H*W], PyTorch's order): a reorder from the
 * producer's (maybe blocked) format into the output buffer seen as nchw, and back for the diff.
 *
 * Not for: already flat inputs (model.c adds no node for those). */
#include "compute/backend/onednn/onednn.h"

struct flatten {
        dnnl_primitive_t fwd, bwd;
        dnnl_memory_t view, dview; /* the output (and its diff) buffer seen as nchw */
};

static int flatten_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct flatten *f = p->nodes[ni].state;
        struct bvalue *in = &p->vals[n->in[0]], *out = &p->vals[ni + 1];
        const char *name = n->name;
        dnnl_memory_desc_t pmd, nchw;
        int r;
        CHK(onednn_md_plain(&pmd, p->batch, &n->out), "memory_desc_init");
        CHK(onednn_md_plain(&nchw, p->batch, node_in_shape(m, n)), "memory_desc_init");
        if ((r = onednn_conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
            (r = onednn_value_init(p, out, &pmd, name, err)) < 0 ||
            (r = onednn_mem_new(p, &nchw, DNNL_MEMORY_NONE, &f->view, name, err)) < 0 ||
            (r = onednn_reorder_new(p, &in->md, &nchw, &f->fwd, name, err)) < 0)
                return r;
        return 0;
}

static int flatten_forward(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err) {
        const struct flatten *f = p->nodes[ni].state;
        const char *name = m->nodes[ni].name;
        (void)training;
        /* the output's buffer is known only once the plan is complete (inference plans pool them) */
        CHK(dnnl_memory_set_data_handle(f->view, onednn_mem_ptr(p->vals[ni + 1].mem)), "set_data_handle");
        return onednn_run_reorder(p, f->fwd, p->nodes[ni].in[0].mem, f->view, m->nodes[ni].name, err);
}

static int flatten_bwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct flatten *f = p->nodes[ni].state;
        const char *name = n->name;
        dnnl_memory_desc_t nchw;
        int r;
        CHK(onednn_md_plain(&nchw, p->batch, node_in_shape(m, n)), "memory_desc_init");
        if ((r = onednn_mem_new(p, &nchw, onednn_mem_ptr(p->vals[ni + 1].dmem), &f->dview, name, err)) < 0)
                return r;
        return onednn_reorder_new(p, &nchw, &p->vals[n->in[0]].md, &f->bwd, name, err);
}

static int flatten_backward(struct model *m, struct backend_plan *p, int ni, const bool need[2], struct ft_error *err) {
        const struct flatten *f = p->nodes[ni].state;
        if (!need[0])
                return 0;
        return onednn_run_reorder(p, f->bwd, f->dview, p->nodes[ni].in[0].dmem, m->nodes[ni].name, err);
}

const struct layer_ops onednn_flatten_ops = {
        .state_size = sizeof(struct flatten),
        .fwd_init = flatten_fwd_init,
        .forward = flatten_forward,
        .bwd_init = flatten_bwd_init,
        .backward = flatten_backward,
};
