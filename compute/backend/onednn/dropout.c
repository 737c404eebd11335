/* dropout.c - the oneDNN backend's dropout (training only): our own loop with a counter-based mask
 * (nn_dropout_keep over the model's (seed, counter), so a checkpoint resumes the same masks), the mask kept for
 * backward. Eval and p = 0 copy.
 *
 * Not for: the generator itself (model.c). */
#include <stdlib.h>
#include <string.h>

#include "compute/backend/onednn/onednn.h"

struct dropout {
        uint8_t *mask; /* per element of the output buffer: kept */
        float scale; /* 1 / (1 - p) */
        bool on; /* the last forward dropped (training with p > 0) */
};

static void dropout_state_free(void *state) {
        free(((struct dropout *)state)->mask);
}

static int dropout_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct dropout *d = p->nodes[ni].state;
        struct bvalue *in = &p->vals[n->in[0]], *out = &p->vals[ni + 1];
        int r;
        if ((r = onednn_conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
            (r = onednn_value_init(p, out, &in->md, n->name, err)) < 0)
                return r;
        d->mask = malloc(out->nfloats ? out->nfloats : 1);
        if (!d->mask)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        d->scale = n->alpha < 1.0f ? 1.0f / (1.0f - n->alpha) : 0.0f;
        return 0;
}

static int dropout_forward(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct dropout *d = p->nodes[ni].state;
        const char *name = n->name;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        const float *x = onednn_mem_ptr(p->nodes[ni].in[0].mem);
        float *y = onednn_mem_ptr(p->vals[ni + 1].mem);
        size_t cnt = p->vals[ni + 1].nfloats;
        d->on = training && n->alpha > 0.0f;
        if (!d->on) {
                memcpy(y, x, cnt * sizeof(float));
                return 0;
        }
        uint64_t seed = m->rng.seed, counter = m->rng.counter++;
        float p_ = n->alpha, scale = d->scale;
        uint8_t *mask = d->mask;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < cnt; i++) {
                mask[i] = nn_dropout_keep(seed, counter, i, p_);
                y[i] = mask[i] ? x[i] * scale : 0.0f;
        }
        return 0;
}

static int dropout_backward(struct model *m, struct backend_plan *p, int ni, const bool need[2], struct ft_error *err) {
        const struct dropout *d = p->nodes[ni].state;
        const char *name = m->nodes[ni].name;
        if (!need[0])
                return 0;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        const float *dy = onednn_mem_ptr(p->vals[ni + 1].dmem);
        float *dx = onednn_mem_ptr(p->nodes[ni].in[0].dmem);
        size_t cnt = p->vals[ni + 1].nfloats;
        if (!d->on) {
                memcpy(dx, dy, cnt * sizeof(float));
                return 0;
        }
        const uint8_t *mask = d->mask;
        float scale = d->scale;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < cnt; i++)
                dx[i] = mask[i] ? dy[i] * scale : 0.0f;
        return 0;
}

const struct layer_ops onednn_dropout_ops = {
        .state_size = sizeof(struct dropout),
        .fwd_init = dropout_fwd_init,
        .forward = dropout_forward,
        .backward = dropout_backward,
        .state_free = dropout_state_free,
};
