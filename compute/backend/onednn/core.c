/* core.c - the oneDNN backend's generic part: contexts, plans, the forward and backward drivers, diff merging,
 * memory and primitive tracking, reorders between formats, the weights' layouts between steps, and the record of
 * every kernel a plan runs. Per node it calls the node's layer family through the layer_ops table below.
 *
 * One plan per (model, batch size): every primitive, memory and buffer is created when the plan is made (forward)
 * or on its first backward, and reused for every step after. Activations stay in the formats oneDNN picks
 * (format_tag_any: blocked nChw16c on AVX-512) from layer to layer; a reorder is inserted only where a layer
 * wants another format than its producer wrote. Weights live in the model's arena, between steps in the format
 * their forward primitive reads (param_md; model_sync puts them back in PyTorch layout).
 *
 * Not for: any one layer's primitives (the family files), spec parsing or shapes (model.c), losses, optimizers. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "compute/backend/onednn/onednn.h"

/* the layer family of each node kind */
static const struct layer_ops *const layer_ops[] = {
        [NODE_LINEAR] = &onednn_linear_ops, [NODE_CONV] = &onednn_conv_ops,       [NODE_BN] = &onednn_batchnorm_ops,
        [NODE_ACT] = &onednn_eltwise_ops,   [NODE_MAXPOOL] = &onednn_pool_ops,    [NODE_AVGPOOL] = &onednn_pool_ops,
        [NODE_GAP] = &onednn_pool_ops,      [NODE_FLATTEN] = &onednn_flatten_ops, [NODE_DROPOUT] = &onednn_dropout_ops,
        [NODE_ADD] = &onednn_add_ops,
};
_Static_assert(sizeof(layer_ops) / sizeof(layer_ops[0]) == NODE_KINDS, "a layer family for every node kind");

static const struct layer_ops *ops_of(const struct node *n) {
        return layer_ops[n->kind];
}

/* ---- contexts ---------------------------------------------------------------------------------------------- */

struct onednn_ctx {
        dnnl_engine_t eng;
        dnnl_stream_t st;
};

static int onednn_ctx_new(struct compute_ctx *ctx, void **ret, struct ft_error *err) {
        (void)ctx;
        struct onednn_ctx *c = calloc(1, sizeof(*c));
        if (!c)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        if (dnnl_engine_create(&c->eng, dnnl_cpu, 0) != dnnl_success) {
                free(c);
                return ft_error_set(err, -EIO, NULL, "onednn: cannot create the cpu engine");
        }
        if (dnnl_stream_create(&c->st, c->eng, dnnl_stream_default_flags) != dnnl_success) {
                dnnl_engine_destroy(c->eng);
                free(c);
                return ft_error_set(err, -EIO, NULL, "onednn: cannot create a stream");
        }
        *ret = c;
        return 0;
}

static void onednn_ctx_free(void *backend) {
        struct onednn_ctx *c = backend;
        if (!c)
                return;
        dnnl_stream_destroy(c->st);
        dnnl_engine_destroy(c->eng);
        free(c);
}

static struct onednn_ctx *ctx_of(const struct compute_ctx *ctx) {
        return ctx->backend;
}

/* ---- tracking ---------------------------------------------------------------------------------------------- */

static int track(void **arr_p, size_t *n, size_t *cap, void *obj, struct ft_error *err) {
        void ***arr = (void ***)arr_p;
        if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 64;
                void **a = realloc(*arr, c * sizeof(void *));
                if (!a)
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                *arr = a;
                *cap = c;
        }
        (*arr)[(*n)++] = obj;
        return 0;
}

/* A memory format as oneDNN's verbose mode writes it: dimensions from outermost to innermost, a capital letter
 * for a blocked dimension, then the inner blocks ("abcd", "aBcd8b", "ABcd8b8a"). */
static void md_format(const dnnl_memory_desc_t *md, char *buf, size_t len) {
        if (md->format_kind == dnnl_format_kind_wino) {
                snprintf(buf, len, "wino");
                return;
        }
        if (md->format_kind != dnnl_blocked || md->ndims < 1 || md->ndims > DNNL_MAX_NDIMS) {
                snprintf(buf, len, "%s", dnnl_fmt_kind2str(md->format_kind));
                return;
        }
        const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
        int order[DNNL_MAX_NDIMS], n = md->ndims;
        bool blocked[DNNL_MAX_NDIMS] = {false};
        for (int i = 0; i < b->inner_nblks; i++)
                if (b->inner_idxs[i] >= 0 && b->inner_idxs[i] < n)
                        blocked[b->inner_idxs[i]] = true;
        for (int i = 0; i < n; i++)
                order[i] = i;
        for (int i = 1; i < n; i++) /* outer strides, largest first; ties keep the logical order */
                for (int j = i; j > 0 && b->strides[order[j]] > b->strides[order[j - 1]]; j--) {
                        int t = order[j];
                        order[j] = order[j - 1];
                        order[j - 1] = t;
                }
        size_t k = 0;
        for (int i = 0; i < n && k + 1 < len; i++)
                buf[k++] = (char)((blocked[order[i]] ? 'A' : 'a') + order[i]);
        buf[k] = '\0';
        for (int i = 0; i < b->inner_nblks && k + 1 < len; i++) {
                int w = snprintf(buf + k, len - k, "%lld%c", (long long)b->inner_blks[i], 'a' + (int)b->inner_idxs[i]);
                if (w < 0 || (size_t)w >= len - k)
                        break;
                k += (size_t)w;
        }
}

static const char *prop_name(dnnl_prop_kind_t prop) {
        switch (prop) {
        case dnnl_forward_training: return "forward_training";
        case dnnl_forward_inference: return "forward_inference";
        case dnnl_backward_data: return "backward_data";
        case dnnl_backward_weights: return "backward_weights";
        case dnnl_backward: return "backward";
        default: return "";
        }
}

/* Record what a new primitive runs: its kind, pass, oneDNN implementation and formats. An entry that cannot be
 * recorded (out of memory) is left out; the kernel list is a report, never needed to run. */
void onednn_kernel_record(struct backend_plan *p, const char *layer, const_dnnl_primitive_desc_t pd,
                          const char *prim_override, const char *pass_override) {
        if (p->n_kernels == p->cap_kernels) {
                size_t c = p->cap_kernels ? p->cap_kernels * 2 : 64;
                struct model_kernel *k = realloc(p->kernels, c * sizeof(*k));
                if (!k)
                        return;
                p->kernels = k;
                p->cap_kernels = c;
        }
        struct model_kernel *k = &p->kernels[p->n_kernels++];
        memset(k, 0, sizeof(*k));
        snprintf(k->layer, sizeof(k->layer), "%s", layer);
        if (!pd) { /* our own loops over dnnl_sgemm (the per-tap GEMMs) */
                snprintf(k->primitive, sizeof(k->primitive), "%s", prim_override);
                snprintf(k->pass, sizeof(k->pass), "%s", pass_override);
                snprintf(k->impl, sizeof(k->impl), "per_tap:dnnl_sgemm");
                snprintf(k->formats, sizeof(k->formats), "src:acdb wei:cdba dst:acdb");
                return;
        }
        dnnl_primitive_kind_t kind = dnnl_undefined_primitive;
        dnnl_prop_kind_t prop = dnnl_prop_kind_undef;
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &kind);
        dnnl_primitive_desc_query(pd, dnnl_query_prop_kind, 0, &prop);
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        snprintf(k->primitive, sizeof(k->primitive), "%s", dnnl_prim_kind2str(kind));
        snprintf(k->pass, sizeof(k->pass), "%s", prop_name(prop));
        snprintf(k->impl, sizeof(k->impl), "%s", impl ? impl : "unknown");
        static const struct {
                dnnl_query_t q;
                const char *tag;
        } mds[] = {{dnnl_query_src_md, "src"},     {dnnl_query_diff_src_md, "diff_src"},
                   {dnnl_query_weights_md, "wei"}, {dnnl_query_diff_weights_md, "diff_wei"},
                   {dnnl_query_dst_md, "dst"},     {dnnl_query_diff_dst_md, "diff_dst"}};
        size_t len = 0;
        for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
                const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, mds[i].q, 0);
                if (!md || md->ndims == 0)
                        continue;
                char f[48];
                md_format(md, f, sizeof(f));
                int w = snprintf(k->formats + len, sizeof(k->formats) - len, "%s%s:%s", len ? " " : "", mds[i].tag, f);
                if (w < 0 || (size_t)w >= sizeof(k->formats) - len)
                        break;
                len += (size_t)w;
        }
}

int onednn_mem_new(struct backend_plan *p, const dnnl_memory_desc_t *md, void *handle, dnnl_memory_t *ret,
                   const char *name, struct ft_error *err) {
        dnnl_memory_t m;
        CHK(dnnl_memory_create(&m, md, p->eng, handle), "memory_create");
        int r = track((void **)&p->mems, &p->n_mems, &p->cap_mems, m, err);
        if (r < 0) {
                dnnl_memory_destroy(m);
                return r;
        }
        *ret = m;
        return 0;
}

int onednn_prim_new(struct backend_plan *p, dnnl_primitive_desc_t pd, dnnl_primitive_t *ret, const char *name,
                    struct ft_error *err) {
        dnnl_primitive_t prim;
        CHK(dnnl_primitive_create(&prim, pd), "primitive_create");
        int r = track((void **)&p->prims, &p->n_prims, &p->cap_prims, prim, err);
        if (r < 0) {
                dnnl_primitive_destroy(prim);
                return r;
        }
        onednn_kernel_record(p, name, pd, NULL, NULL);
        *ret = prim;
        return 0;
}

int onednn_pd_new(struct backend_plan *p, const void *desc, const_dnnl_primitive_desc_t hint,
                  dnnl_primitive_desc_t *ret, const char *what, const char *name, struct ft_error *err) {
        dnnl_primitive_desc_t pd;
        CHK(dnnl_primitive_desc_create(&pd, desc, NULL, p->eng, hint), what);
        int r = track((void **)&p->pds, &p->n_pds, &p->cap_pds, pd, err);
        if (r < 0) {
                dnnl_primitive_desc_destroy(pd);
                return r;
        }
        *ret = pd;
        return 0;
}

int onednn_pd_try(struct backend_plan *p, const void *desc, const_dnnl_primitive_desc_t hint,
                  dnnl_primitive_desc_t *ret, const char *what, const char *name, struct ft_error *err) {
        dnnl_primitive_desc_t pd;
        dnnl_status_t s = dnnl_primitive_desc_create(&pd, desc, NULL, p->eng, hint);
        *ret = NULL;
        if (s == dnnl_unimplemented)
                return 0;
        CHK(s, what);
        int r = track((void **)&p->pds, &p->n_pds, &p->cap_pds, pd, err);
        if (r < 0) {
                dnnl_primitive_desc_destroy(pd);
                return r;
        }
        *ret = pd;
        return 0;
}

/* a reorder primitive from src to dst, not tracked by any plan */
static int reorder_prim(dnnl_engine_t eng, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                        dnnl_primitive_t *ret, const char *name, struct ft_error *err) {
        dnnl_primitive_desc_t pd;
        CHK(dnnl_reorder_primitive_desc_create(&pd, src, eng, dst, eng, NULL), "reorder");
        dnnl_status_t s = dnnl_primitive_create(ret, pd);
        dnnl_primitive_desc_destroy(pd);
        CHK(s, "primitive_create");
        return 0;
}

int onednn_reorder_new(struct backend_plan *p, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                       dnnl_primitive_t *ret, const char *name, struct ft_error *err) {
        int r = reorder_prim(p->eng, src, dst, ret, name, err);
        const_dnnl_primitive_desc_t pd;
        if (r == 0 && dnnl_primitive_get_primitive_desc(*ret, &pd) == dnnl_success)
                onednn_kernel_record(p, name, pd, NULL, NULL);
        if (r < 0 || (r = track((void **)&p->prims, &p->n_prims, &p->cap_prims, *ret, err)) == 0)
                return r;
        dnnl_primitive_destroy(*ret);
        return r;
}

int onednn_run(struct backend_plan *p, dnnl_primitive_t prim, int n, const dnnl_exec_arg_t *args, const char *name,
               struct ft_error *err) {
        CHK(dnnl_primitive_execute(prim, p->st, n, args), "execute");
        return 0;
}

int onednn_run_reorder(struct backend_plan *p, dnnl_primitive_t prim, dnnl_memory_t src, dnnl_memory_t dst,
                       const char *name, struct ft_error *err) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
        return onednn_run(p, prim, 2, a, name, err);
}

int onednn_value_init(struct backend_plan *p, struct bvalue *v, const dnnl_memory_desc_t *md, const char *name,
                      struct ft_error *err) {
        v->md = *md;
        v->nfloats = dnnl_memory_desc_get_size(md) / sizeof(float);
        v->pooled = true;
        return onednn_mem_new(p, md, DNNL_MEMORY_NONE, &v->mem, name, err);
}

int onednn_conform_init(struct backend_plan *p, struct model *m, int ni, int j, const dnnl_memory_desc_t *md,
                        struct ft_error *err) {
        struct bnode *bn = &p->nodes[ni];
        struct bvalue *v = &p->vals[m->nodes[ni].in[j]];
        const char *name = m->nodes[ni].name;
        struct conform *c = &bn->in[j];
        c->md = *md;
        if (dnnl_memory_desc_equal(md, &v->md)) {
                c->needed = false;
                c->mem = v->mem;
                return 0;
        }
        c->needed = true;
        int r;
        if ((r = onednn_mem_new(p, md, DNNL_MEMORY_ALLOCATE, &c->mem, name, err)) < 0 ||
            (r = onednn_reorder_new(p, &v->md, md, &c->fwd, name, err)) < 0)
                return r;
        return 0;
}

/* ---- parameter layouts --------------------------------------------------------------------------------- */

/* Where a weight lives between steps. The first plan made for a model decides, per weight, the format its forward
 * primitive reads (when that format holds exactly numel floats: no padding) and forward moves the weight, its
 * gradient and its followers (optimizer state, the gradient accumulator) there in place; model_sync moves them
 * back. Every plan reads and writes the weight in that one format, so a step needs no reorder from PyTorch layout
 * and back, only where a primitive (another batch size, backward data) wants yet another format. A weight's
 * gradient stays inside the model's gradient span (model_grads), only permuted within its own part. */
struct bparam {
        bool decided;
        bool permuted; /* md differs from PyTorch layout */
        bool moved; /* the arrays are in md now */
        dnnl_memory_desc_t md;
        dnnl_memory_t plain, native; /* over a caller's array: handles set per move */
        dnnl_primitive_t to_native, to_plain;
};

struct backend_params {
        size_t n;
        struct bparam *t;
        float *scratch;
        size_t scratch_n;
};

static void onednn_params_free(struct model *m) {
        struct backend_params *bp = m->params;
        if (!bp)
                return;
        for (size_t i = 0; i < bp->n; i++) {
                struct bparam *b = &bp->t[i];
                dnnl_primitive_destroy(b->to_native);
                dnnl_primitive_destroy(b->to_plain);
                dnnl_memory_destroy(b->plain);
                dnnl_memory_destroy(b->native);
        }
        free(bp->t);
        free(bp->scratch);
        free(bp);
        m->params = NULL;
}

/* The format weight t lives in between steps; want: the format the deciding primitive reads (NULL: PyTorch's). */
static int param_md(struct backend_plan *p, struct model *m, const struct tensor *t, const dnnl_memory_desc_t *want,
                    dnnl_memory_desc_t *ret, struct ft_error *err) {
        const char *name = t->name;
        if (!m->params) {
                struct backend_params *bp = calloc(1, sizeof(*bp));
                if (bp)
                        bp->t = calloc(m->n_tensors ? m->n_tensors : 1, sizeof(*bp->t));
                if (!bp || !bp->t) {
                        free(bp);
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                }
                bp->n = m->n_tensors;
                m->params = bp;
        }
        struct backend_params *bp = m->params;
        struct bparam *b = &bp->t[t - m->tensors];
        if (!b->decided) {
                CHK(onednn_md_tensor(&b->md, t), "memory_desc_init");
                if (want && t->dtype == TENSOR_F32 && !dnnl_memory_desc_equal(want, &b->md) &&
                    dnnl_memory_desc_get_size(want) == tensor_nbytes(t)) {
                        if (bp->scratch_n < t->numel) {
                                float *s = realloc(bp->scratch, t->numel * sizeof(float));
                                if (!s)
                                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                                bp->scratch = s;
                                bp->scratch_n = t->numel;
                        }
                        dnnl_status_t s = dnnl_memory_create(&b->plain, &b->md, p->eng, DNNL_MEMORY_NONE);
                        if (s == dnnl_success)
                                s = dnnl_memory_create(&b->native, want, p->eng, DNNL_MEMORY_NONE);
                        int r = s == dnnl_success ? 0
                                                  : ft_error_set(err, -EIO, NULL, "onednn: memory_create for '%s': %s",
                                                                 name, dnnl_status2str(s));
                        if (r == 0 && (r = reorder_prim(p->eng, &b->md, want, &b->to_native, name, err)) == 0)
                                r = reorder_prim(p->eng, want, &b->md, &b->to_plain, name, err);
                        if (r < 0) { /* undecided: the next plan tries again from scratch */
                                dnnl_primitive_destroy(b->to_native);
                                dnnl_memory_destroy(b->plain);
                                dnnl_memory_destroy(b->native);
                                *b = (struct bparam){0};
                                return r;
                        }
                        b->md = *want;
                        b->permuted = true;
                }
                b->decided = true;
        }
        *ret = b->md;
        return 0;
}

/* Move every decided weight with its gradient and followers into its format (to_native) or back. */
static int params_move(struct model *m, bool to_native, struct ft_error *err) {
        struct backend_params *bp = m->params;
        const char *name = "parameters";
        dnnl_stream_t st = ctx_of(m->ctx)->st;
        for (size_t i = 0; bp && i < bp->n; i++) {
                struct bparam *b = &bp->t[i];
                if (!b->permuted || b->moved == to_native)
                        continue;
                struct tensor *t = &m->tensors[i];
                float *arrays[2 + TENSOR_FOLLOW_MAX] = {t->data, t->grad};
                int n = 2;
                for (int k = 0; k < TENSOR_FOLLOW_MAX && t->follow[k]; k++)
                        arrays[n++] = t->follow[k];
                dnnl_memory_t from = to_native ? b->plain : b->native, to = to_native ? b->native : b->plain;
                for (int k = 0; k < n; k++) {
                        if (!arrays[k])
                                continue;
                        CHK(dnnl_memory_set_data_handle(from, arrays[k]), "set_data_handle");
                        CHK(dnnl_memory_set_data_handle(to, bp->scratch), "set_data_handle");
                        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
                        CHK(dnnl_primitive_execute(to_native ? b->to_native : b->to_plain, st, 2, a), "execute");
                        CHK(dnnl_stream_wait(st), "stream_wait");
                        memcpy(arrays[k], bp->scratch, tensor_nbytes(t));
                }
                b->moved = to_native;
        }
        m->params_native = to_native;
        return 0;
}

static int onednn_params_plain(struct model *m, struct ft_error *err) {
        return params_move(m, false, err);
}

int onednn_wview_init(struct backend_plan *p, struct model *m, struct wview *w, const struct tensor *t, void *data,
                      const dnnl_memory_desc_t *want, bool to_user, const char *name, struct ft_error *err) {
        dnnl_memory_desc_t umd;
        int r = param_md(p, m, t, want, &umd, err);
        if (r < 0 || (r = onednn_mem_new(p, &umd, data, &w->user, name, err)) < 0)
                return r;
        w->md = *want;
        if (dnnl_memory_desc_equal(&umd, want)) {
                w->mem = w->user;
                w->reorder = NULL;
                return 0;
        }
        if ((r = onednn_mem_new(p, want, DNNL_MEMORY_ALLOCATE, &w->mem, name, err)) < 0)
                return r;
        return to_user ? onednn_reorder_new(p, want, &umd, &w->reorder, name, err)
                       : onednn_reorder_new(p, &umd, want, &w->reorder, name, err);
}

/* ---- plan: forward ----------------------------------------------------------------------------------- */

static int node_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct layer_ops *ops = ops_of(n);
        struct bnode *bn = &p->nodes[ni];
        bn->ops = ops;
        bn->state = calloc(1, ops->state_size ? ops->state_size : 1);
        if (!bn->state)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        if (bn->absorbed) { /* the node before wrote this node's result into its own value */
                struct bvalue *in = &p->vals[n->in[0]], *out = &p->vals[ni + 1];
                out->md = in->md;
                out->mem = in->mem;
                out->nfloats = in->nfloats;
                return onednn_conform_init(p, m, ni, 0, &in->md, err);
        }
        return ops->fwd_init(m, p, ni, err);
}

static void plan_free(struct backend_plan *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_prims; i++)
                dnnl_primitive_destroy(p->prims[i]);
        for (size_t i = 0; i < p->n_pds; i++)
                dnnl_primitive_desc_destroy(p->pds[i]);
        for (size_t i = 0; i < p->n_mems; i++)
                dnnl_memory_destroy(p->mems[i]);
        if (p->nodes)
                for (int i = 0; i < p->n_nodes; i++) {
                        const struct layer_ops *ops = p->nodes[i].ops;
                        if (p->nodes[i].state && ops->state_free)
                                ops->state_free(p->nodes[i].state);
                        free(p->nodes[i].state);
                }
        for (size_t i = 0; i < p->n_bufs; i++)
                free(p->bufs[i]);
        free(p->bufs);
        free(p->prims);
        free(p->pds);
        free(p->mems);
        free(p->kernels);
        free(p->nodes);
        free(p->vals);
        free(p->rg);
        free(p);
}

/* A plan's value buffers, by liveness: a value takes a buffer when its node runs and gives it back after its last
 * reader ran (a value an absorbed node shares lives as long as the longest of the two), so a forward holds a few
 * activations at a time instead of all of them. Best fit from the free buffers, else the largest free one grown,
 * else a new one; the sizes are settled first, then allocated. The last value lives to the end. A batchnorm or
 * eltwise whose input nobody else reads writes over it. In a training plan a value the backward reads (one that
 * needs a gradient, or the input of a node that does) keeps its buffer for good; only the values below the lowest
 * trainable layer (partial fine-tuning's frozen stem: p->rg, the freeze state the plan was made for) are reused. */
static int values_assign(struct model *m, struct backend_plan *p, struct ft_error *err) {
        int nv = m->n_values, r = 0;
        int *root = calloc((size_t)nv, sizeof(int)), *last = calloc((size_t)nv, sizeof(int));
        int *buf_of = calloc((size_t)nv, sizeof(int));
        size_t *size = calloc((size_t)nv, sizeof(size_t));
        bool *busy = calloc((size_t)nv, sizeof(bool)), *owns = calloc((size_t)nv, sizeof(bool));
        size_t nb = 0;
        if (!root || !last || !buf_of || !size || !busy || !owns) {
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                goto done;
        }
        for (int v = 0; v < nv; v++) {
                root[v] = v > 0 && p->nodes[v - 1].absorbed ? root[m->nodes[v - 1].in[0]] : v;
                last[v] = v;
                buf_of[v] = -1;
        }
        for (int i = 0; i < m->n_nodes; i++)
                for (int j = 0; j < m->nodes[i].n_in; j++) {
                        int rv = root[m->nodes[i].in[j]];
                        if (last[rv] < i + 1)
                                last[rv] = i + 1;
                }
        for (int v = 0; v < nv; v++)
                if (root[v] != v && last[root[v]] < last[v])
                        last[root[v]] = last[v];
        last[root[nv - 1]] = nv; /* the output: read after the last node */
        if (!p->inference) /* what backward reads lives to the end (nv + 1: never released) */
                for (int i = 0; i < m->n_nodes; i++) {
                        if (!p->rg[i + 1])
                                continue;
                        last[root[i + 1]] = nv + 1;
                        for (int j = 0; j < m->nodes[i].n_in; j++)
                                last[root[m->nodes[i].in[j]]] = nv + 1;
                }
        for (int v = 1; v < nv; v++) { /* node v - 1 writes value v, then its inputs may be released */
                const struct node *n = &m->nodes[v - 1];
                int in = n->in[0];
                /* batchnorm and eltwise run in place (oneDNN allows dst == src) over an input read by nothing else */
                if (root[v] == v && p->vals[v].pooled && (n->kind == NODE_BN || n->kind == NODE_ACT) && n->n_in == 1 &&
                    in > 0 && root[in] == in && owns[in] && last[in] == v && !p->nodes[v - 1].in[0].needed &&
                    p->vals[in].nfloats == p->vals[v].nfloats) {
                        buf_of[v] = buf_of[in];
                        owns[in] = false;
                        owns[v] = true;
                        continue;
                }
                if (root[v] == v && p->vals[v].pooled) {
                        size_t need = (p->vals[v].nfloats * sizeof(float) + 63) / 64 * 64;
                        int fit = -1, big = -1;
                        for (size_t b = 0; b < nb; b++) {
                                if (busy[b])
                                        continue;
                                if (size[b] >= need && (fit < 0 || size[b] < size[fit]))
                                        fit = (int)b;
                                if (big < 0 || size[b] > size[big])
                                        big = (int)b;
                        }
                        int b = fit >= 0 ? fit : big >= 0 ? big : (int)nb++;
                        if (size[b] < need)
                                size[b] = need;
                        busy[b] = true;
                        buf_of[v] = b;
                        owns[v] = true;
                }
                for (int u = 1; u <= v; u++)
                        if (owns[u] && last[u] == v) {
                                busy[buf_of[u]] = false;
                                owns[u] = false;
                        }
        }
        p->bufs = calloc(nb ? nb : 1, sizeof(void *));
        if (!p->bufs) {
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                goto done;
        }
        for (size_t b = 0; b < nb; b++) {
                p->bufs[b] = aligned_alloc(64, size[b] ? size[b] : 64);
                if (!p->bufs[b]) {
                        r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                        goto done;
                }
                p->n_bufs++;
        }
        for (int v = 1; v < nv; v++) {
                if (buf_of[root[v]] < 0 || !p->vals[v].mem)
                        continue;
                if (dnnl_memory_set_data_handle(p->vals[v].mem, p->bufs[buf_of[root[v]]]) != dnnl_success) {
                        r = ft_error_set(err, -EIO, NULL, "onednn: set_data_handle for value %d failed", v);
                        goto done;
                }
        }
done:
        free(root);
        free(last);
        free(buf_of);
        free(size);
        free(busy);
        free(owns);
        return r;
}

static int plan_new(struct model *m, struct compute_ctx *ctx, int batch, struct backend_plan **ret,
                    struct ft_error *err) {
        struct backend_plan *p = calloc(1, sizeof(*p));
        int r;
        const char *name = "input";
        if (!p)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        p->batch = batch;
        p->inference = m->inference;
        p->eng = ctx_of(ctx)->eng;
        p->st = ctx_of(ctx)->st;
        p->n_nodes = m->n_nodes;
        p->vals = calloc((size_t)m->n_values, sizeof(*p->vals));
        p->nodes = calloc((size_t)m->n_nodes, sizeof(*p->nodes));
        p->rg = calloc((size_t)m->n_values, sizeof(bool));
        if (!p->vals || !p->nodes || !p->rg) {
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                goto fail;
        }
        dnnl_memory_desc_t md;
        if (onednn_md_plain(&md, batch, &m->input) != dnnl_success) {
                r = ft_error_set(err, -EIO, NULL, "onednn: cannot describe the input");
                goto fail;
        }
        p->vals[0].md = md;
        if ((r = onednn_mem_new(p, &md, DNNL_MEMORY_NONE, &p->vals[0].mem, name, err)) < 0)
                goto fail;
        p->x_mem = p->vals[0].mem;
        nn_requires_grad(m, p->rg); /* the freeze state this plan is for (model_freeze releases plans) */
        for (int i = 0; i < m->n_nodes; i++)
                if ((r = node_fwd_init(m, p, i, err)) < 0)
                        goto fail;
        if ((r = values_assign(m, p, err)) < 0)
                goto fail;
        struct bvalue *last = &p->vals[m->n_nodes];
        if (onednn_md_plain(&md, batch, &m->nodes[m->n_nodes - 1].out) != dnnl_success) {
                r = ft_error_set(err, -EIO, NULL, "onednn: cannot describe the output");
                goto fail;
        }
        if (dnnl_memory_desc_equal(&md, &last->md)) {
                p->out_mem = last->mem;
        } else {
                name = "output";
                if ((r = onednn_mem_new(p, &md, DNNL_MEMORY_ALLOCATE, &p->out_mem, name, err)) < 0 ||
                    (r = onednn_reorder_new(p, &last->md, &md, &p->out_reorder, name, err)) < 0)
                        goto fail;
        }
        p->out = onednn_mem_ptr(p->out_mem);
        *ret = p;
        return 0;
fail:
        plan_free(p);
        return r;
}

/* ---- forward ----------------------------------------------------------------------------------------- */

static int node_forward(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct bnode *bn = &p->nodes[ni];
        const char *name = n->name;
        int r;
        for (int j = 0; j < n->n_in; j++)
                if (bn->in[j].needed &&
                    (r = onednn_run_reorder(p, bn->in[j].fwd, p->vals[n->in[j]].mem, bn->in[j].mem, name, err)) < 0)
                        return r;
        if (bn->absorbed)
                return 0;
        return ops_of(n)->forward(m, p, ni, training, err);
}

static int onednn_forward(struct model *m, struct backend_plan *p, const float *x, bool training, const float **ret_out,
                          struct ft_error *err) {
        int r;
        const char *name = "input";
        if (!m->params_native && (r = params_move(m, true, err)) < 0)
                return r;
        CHK(dnnl_memory_set_data_handle(p->x_mem, (void *)x), "set_data_handle");
        for (int i = 0; i < m->n_nodes; i++)
                if ((r = node_forward(m, p, i, training, err)) < 0)
                        return r;
        name = "output";
        if (p->out_reorder &&
            (r = onednn_run_reorder(p, p->out_reorder, p->vals[m->n_nodes].mem, p->out_mem, name, err)) < 0)
                return r;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        *ret_out = p->out;
        return 0;
}

/* ---- backward ---------------------------------------------------------------------------------------- */

/* diff target for input j of node ni: the producer's diff directly when this is its only consumer and no
 * format conversion is needed; a scratch buffer otherwise (merged by din_merge) */
static int din_init(struct model *m, struct backend_plan *p, int ni, int j, struct ft_error *err) {
        struct node *n = &m->nodes[ni];
        struct bnode *bn = &p->nodes[ni];
        struct bvalue *v = &p->vals[n->in[j]];
        const char *name = n->name;
        int r;
        if (!p->rg[n->in[j]]) { /* nobody wants this input's diff (the model input, a frozen stem's values); some
                                 * primitives compute it anyway: a scratch */
                if (ops_of(n)->diff_src_always)
                        return onednn_mem_new(p, &bn->in[j].md, DNNL_MEMORY_ALLOCATE, &bn->in[j].dmem, name, err);
                return 0;
        }
        if (!bn->in[j].needed && m->consumers[n->in[j]] == 1) {
                bn->in[j].dmem = v->dmem;
                return 0;
        }
        if ((r = onednn_mem_new(p, &bn->in[j].md, DNNL_MEMORY_ALLOCATE, &bn->in[j].dmem, name, err)) < 0)
                return r;
        if (bn->in[j].needed) {
                if ((r = onednn_mem_new(p, &v->md, DNNL_MEMORY_ALLOCATE, &bn->din_scratch[j], name, err)) < 0 ||
                    (r = onednn_reorder_new(p, &bn->in[j].md, &v->md, &bn->in[j].bwd, name, err)) < 0)
                        return r;
        }
        return 0;
}

static int din_merge(struct model *m, struct backend_plan *p, int ni, int j, struct ft_error *err) {
        struct node *n = &m->nodes[ni];
        struct bnode *bn = &p->nodes[ni];
        struct bvalue *v = &p->vals[n->in[j]];
        const char *name = n->name;
        int r;
        if (bn->in[j].dmem == v->dmem) {
                v->written = true;
                return 0;
        }
        dnnl_memory_t src = bn->in[j].dmem;
        if (bn->in[j].needed) {
                dnnl_memory_t dst = v->written ? bn->din_scratch[j] : v->dmem;
                if ((r = onednn_run_reorder(p, bn->in[j].bwd, src, dst, name, err)) < 0)
                        return r;
                if (!v->written) {
                        v->written = true;
                        return 0;
                }
                src = dst;
        }
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        float *d = onednn_mem_ptr(v->dmem);
        const float *s = onednn_mem_ptr(src);
        size_t cnt = v->nfloats;
        if (!v->written)
                memcpy(d, s, cnt * sizeof(float));
        else {
#pragma omp parallel for schedule(static)
                for (size_t i = 0; i < cnt; i++)
                        d[i] += s[i];
        }
        v->written = true;
        return 0;
}

static int node_bwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct layer_ops *ops = ops_of(n);
        int r;
        for (int j = 0; j < n->n_in; j++)
                if ((r = din_init(m, p, ni, j, err)) < 0)
                        return r;
        if (p->nodes[ni].absorbed || !ops->bwd_init)
                return 0;
        return ops->bwd_init(m, p, ni, err);
}

static int node_backward(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct layer_ops *ops = ops_of(n);
        bool need[2] = {p->rg[n->in[0]], n->n_in > 1 && p->rg[n->in[1]]};
        int r;
        /* absorbed: the node before applies this node's backward (the relu mask) with its own */
        if (!p->nodes[ni].absorbed && ops->backward && (r = ops->backward(m, p, ni, need, err)) < 0)
                return r;
        for (int j = 0; j < 2; j++)
                if (need[j] && (r = din_merge(m, p, ni, j, err)) < 0)
                        return r;
        return 0;
}

/* The backward's primitives and diff buffers of plan p (on its first backward, or ahead of it for model_plan). */
static int onednn_plan_backward(struct model *m, struct backend_plan *p, struct ft_error *err) {
        const char *name = "output";
        int r;
        if (p->bwd_ready)
                return 0;
        if (p->inference)
                return ft_error_set(err, -EINVAL, NULL, "the model is in inference mode: no backward");
        /* Only what the current freeze state needs: diffs of values that require a gradient, backward primitives of
         * the nodes above the lowest trainable layer (model_freeze releases the plans when that state changes). */
        nn_requires_grad(m, p->rg);
        for (int v = 0; v < m->n_values; v++) { /* v = 0, the model input: in input-gradient mode only */
                if (p->vals[v].dmem || !p->rg[v])
                        continue;
                if (v > 0 && p->nodes[v - 1].absorbed)
                        p->vals[v].dmem = p->vals[m->nodes[v - 1].in[0]].dmem;
                else if ((r = onednn_mem_new(p, &p->vals[v].md, DNNL_MEMORY_ALLOCATE, &p->vals[v].dmem, name, err)) < 0)
                        return r;
        }
        dnnl_memory_desc_t md;
        CHK(onednn_md_plain(&md, p->batch, &m->nodes[m->n_nodes - 1].out), "memory_desc_init");
        struct bvalue *last = &p->vals[m->n_nodes];
        if (dnnl_memory_desc_equal(&md, &last->md))
                p->dout_mem = last->dmem;
        else if ((r = onednn_mem_new(p, &md, DNNL_MEMORY_ALLOCATE, &p->dout_mem, name, err)) < 0 ||
                 (r = onednn_reorder_new(p, &md, &last->md, &p->dout_reorder, name, err)) < 0)
                return r;
        for (int i = 0; i < m->n_nodes; i++)
                if (p->rg[i + 1] && (r = node_bwd_init(m, p, i, err)) < 0)
                        return r;
        p->bwd_ready = true;
        return 0;
}

static int onednn_backward(struct model *m, struct backend_plan *p, const float *d_out, struct ft_error *err) {
        int r;
        const char *name = "output";
        if (!m->params_native && (r = params_move(m, true, err)) < 0)
                return r;
        if (!p->bwd_ready && (r = onednn_plan_backward(m, p, err)) < 0)
                return r;
        for (int v = 0; v < m->n_values; v++)
                p->vals[v].written = false;
        if (!p->rg[m->n_nodes])
                return 0; /* everything frozen */
        size_t outn = (size_t)p->batch * model_output_count(m);
        memcpy(onednn_mem_ptr(p->dout_mem), d_out, outn * sizeof(float));
        if (p->dout_reorder &&
            (r = onednn_run_reorder(p, p->dout_reorder, p->dout_mem, p->vals[m->n_nodes].dmem, name, err)) < 0)
                return r;
        for (int i = m->n_nodes - 1; i >= 0; i--) {
                if (!p->rg[i + 1])
                        continue;
                if ((r = node_backward(m, p, i, err)) < 0)
                        return r;
        }
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        return 0;
}

/* the model input's gradient of the last backward: value 0's diff, plain [batch, input numel] like the input */
static int onednn_input_grad(struct model *m, struct backend_plan *p, const float **ret, struct ft_error *err) {
        (void)m;
        if (!p->rg[0] || !p->vals[0].dmem)
                return ft_error_set(err, -EINVAL, NULL, "the plan computes no input gradient");
        *ret = onednn_mem_ptr(p->vals[0].dmem);
        return 0;
}

static size_t onednn_kernels(const struct backend_plan *p, const struct model_kernel **ret) {
        *ret = p->kernels;
        return p->n_kernels;
}

const struct backend_ops backend_onednn_ops = {
        .name = "onednn",
        .ctx_new = onednn_ctx_new,
        .ctx_free = onednn_ctx_free,
        .kernels = onednn_kernels,
        .plan_backward = onednn_plan_backward,
        .plan_new = plan_new,
        .plan_free = plan_free,
        .forward = onednn_forward,
        .backward = onednn_backward,
        .input_grad = onednn_input_grad,
        .params_plain = onednn_params_plain,
        .params_free = onednn_params_free,
};
