/* backend_onednn.c - the CPU backend: executes a model's layer graph with oneDNN 2.6 primitives.
 *
 * One plan per (model, batch size): every primitive, memory and buffer is created when the plan is made (forward)
 * or on its first backward, and reused for every step after. Activations stay in the formats oneDNN picks
 * (format_tag_any: blocked nChw16c on AVX-512) from layer to layer; a reorder is inserted only where a layer
 * wants another format than its producer wrote. Weights live in the model's arena, between steps in the format
 * their forward primitive reads (param_md; model_sync puts them back in PyTorch layout). 3x3 stride-1 convolutions run
 * oneDNN's Winograd kernels where they measured faster (conv_alg), the others direct. BatchNorm running statistics are
 * updated here exactly as PyTorch does (oneDNN only returns the batch statistics).
 *
 * Not for: spec parsing or shapes (model.c), losses, optimizers. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "compute/nn.h"

struct conform { /* converts a producer's format to the format a layer reads */
        bool needed;
        dnnl_memory_desc_t md;
        dnnl_memory_t mem, dmem;
        dnnl_primitive_t fwd, bwd;
};

struct wview { /* a parameter in the format a primitive wants */
        dnnl_memory_desc_t md;
        dnnl_memory_t user; /* plain, over tensor data (or grad) */
        dnnl_memory_t mem; /* == user when the format is plain */
        dnnl_primitive_t reorder;
};

struct bvalue {
        dnnl_memory_desc_t md;
        dnnl_memory_t mem, dmem;
        size_t nfloats; /* floats in the buffer, padding included */
        bool written; /* its diff has been written during this backward */
};

/* one (output position, input position, kernel tap) triple of a convolution run as per-tap GEMMs */
struct tg_pair {
        int o, s, t;
};

struct bnode {
        struct conform in[2];
        dnnl_memory_t din_scratch[2]; /* diff target when the producer has several consumers or a conform */
        struct conform bw_src, bw_ddst; /* conv: backward weights reads another format than forward left */
        dnnl_primitive_desc_t fwd_pd, fwd_g_pd;
        dnnl_primitive_t fwd, fwd_g; /* fwd_g: batchnorm with global (running) statistics */
        dnnl_primitive_t bwd_data, bwd_weights, bwd_g;
        struct wview w_fwd, w_bwd, dw;
        dnnl_memory_t bias, dbias, dbias_scratch, dw_scratch;
        dnnl_memory_t ws, mean, var, rmean, rvar;
        dnnl_memory_t flat_view, flat_dview; /* flatten: the output buffer seen as nchw */
        uint8_t *mask; /* dropout */
        float dropout_scale;
        bool used_global; /* bn: the last forward used running statistics */
        bool fused_relu; /* bn: the relu after it is fused in (oneDNN fuse_norm_relu, with a workspace) */
        bool alias; /* relu fused into the batchnorm before it: its value is the batchnorm's, no work */
        dnnl_memory_t ws_g; /* bn: the workspace of the running-statistics variant */
        bool dropout_on;
        struct tg_pair *tg; /* conv as per-tap GEMMs (tg_eligible): its (output, input, tap) triples */
        int n_tg;
        float *tg_pack; /* backward weights: the pairs of one tap stacked along K */
};

struct backend_plan {
        int batch;
        dnnl_engine_t eng;
        dnnl_stream_t st;
        struct bvalue *vals;
        struct bnode *nodes;
        int n_nodes;
        dnnl_memory_t x_mem;
        dnnl_memory_t out_mem, dout_mem; /* plain [batch, outputs] */
        dnnl_primitive_t out_reorder, dout_reorder;
        float *out;
        bool bwd_ready;
        bool *rg;
        /* everything to release */
        dnnl_memory_t *mems;
        size_t n_mems, cap_mems;
        dnnl_primitive_t *prims;
        size_t n_prims, cap_prims;
        dnnl_primitive_desc_t *pds;
        size_t n_pds, cap_pds;
        /* what runs: one entry per primitive created (model_kernels) */
        struct model_kernel *kernels;
        size_t n_kernels, cap_kernels;
};

#define CHK(call, what)                                                                                                \
        do {                                                                                                           \
                dnnl_status_t s_ = (call);                                                                             \
                if (s_ != dnnl_success)                                                                                \
                        return ft_error_set(err, -EIO, NULL, "onednn: %s for layer \"%s\" failed: %s", what, name,     \
                                            dnnl_status2str(s_));                                                      \
        } while (0)

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
static void kernel_record(struct backend_plan *p, const char *layer, const_dnnl_primitive_desc_t pd,
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

static int mem_new(struct backend_plan *p, const dnnl_memory_desc_t *md, void *handle, dnnl_memory_t *ret,
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

static int prim_new(struct backend_plan *p, dnnl_primitive_desc_t pd, dnnl_primitive_t *ret, const char *name,
                    struct ft_error *err) {
        dnnl_primitive_t prim;
        CHK(dnnl_primitive_create(&prim, pd), "primitive_create");
        int r = track((void **)&p->prims, &p->n_prims, &p->cap_prims, prim, err);
        if (r < 0) {
                dnnl_primitive_destroy(prim);
                return r;
        }
        kernel_record(p, name, pd, NULL, NULL);
        *ret = prim;
        return 0;
}

static int pd_new(struct backend_plan *p, const void *desc, const_dnnl_primitive_desc_t hint,
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

static int reorder_new(struct backend_plan *p, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                       dnnl_primitive_t *ret, const char *name, struct ft_error *err) {
        int r = reorder_prim(p->eng, src, dst, ret, name, err);
        const_dnnl_primitive_desc_t pd;
        if (r == 0 && dnnl_primitive_get_primitive_desc(*ret, &pd) == dnnl_success)
                kernel_record(p, name, pd, NULL, NULL);
        if (r < 0 || (r = track((void **)&p->prims, &p->n_prims, &p->cap_prims, *ret, err)) == 0)
                return r;
        dnnl_primitive_destroy(*ret);
        return r;
}

static int run(struct backend_plan *p, dnnl_primitive_t prim, int n, const dnnl_exec_arg_t *args, const char *name,
               struct ft_error *err) {
        CHK(dnnl_primitive_execute(prim, p->st, n, args), "execute");
        return 0;
}

static int run_reorder(struct backend_plan *p, dnnl_primitive_t prim, dnnl_memory_t src, dnnl_memory_t dst,
                       const char *name, struct ft_error *err) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
        return run(p, prim, 2, a, name, err);
}

/* The buffer of a memory this plan created (with a buffer): cannot fail for those. */
static void *mem_ptr(dnnl_memory_t m) {
        void *h = NULL;
        dnnl_memory_get_data_handle(m, &h);
        return h;
}

static const dnnl_memory_desc_t *q_md(const_dnnl_primitive_desc_t pd, dnnl_query_t q) {
        return dnnl_primitive_desc_query_md(pd, q, 0);
}

static dnnl_status_t plain_md(dnnl_memory_desc_t *md, int batch, const struct value_shape *s) {
        if (s->ndim == 1) {
                dnnl_dims_t d = {batch, s->c};
                return dnnl_memory_desc_init_by_tag(md, 2, d, dnnl_f32, dnnl_nc);
        }
        dnnl_dims_t d = {batch, s->c, s->h, s->w};
        return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nchw);
}

static dnnl_status_t any_md(dnnl_memory_desc_t *md, int batch, const struct value_shape *s) {
        if (s->ndim == 1) {
                dnnl_dims_t d = {batch, s->c};
                return dnnl_memory_desc_init_by_tag(md, 2, d, dnnl_f32, dnnl_format_tag_any);
        }
        dnnl_dims_t d = {batch, s->c, s->h, s->w};
        return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_format_tag_any);
}

static dnnl_status_t tensor_md(dnnl_memory_desc_t *md, const struct tensor *t) {
        dnnl_dims_t d;
        for (int i = 0; i < t->ndim; i++)
                d[i] = t->shape[i];
        dnnl_format_tag_t tag = t->ndim == 1 ? dnnl_x : t->ndim == 2 ? dnnl_oi : dnnl_oihw;
        return dnnl_memory_desc_init_by_tag(md, t->ndim, d, dnnl_f32, tag);
}

/* the value v's memory (its diff comes with the plan's first backward: eval-only plans never have one) */
static int value_init(struct backend_plan *p, struct bvalue *v, const dnnl_memory_desc_t *md, const char *name,
                      struct ft_error *err) {
        v->md = *md;
        v->nfloats = dnnl_memory_desc_get_size(md) / sizeof(float);
        return mem_new(p, md, DNNL_MEMORY_ALLOCATE, &v->mem, name, err);
}

/* make input j of node n read format md */
static int conform_init(struct backend_plan *p, struct model *m, int ni, int j, const dnnl_memory_desc_t *md,
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
        if ((r = mem_new(p, md, DNNL_MEMORY_ALLOCATE, &c->mem, name, err)) < 0 ||
            (r = reorder_new(p, &v->md, md, &c->fwd, name, err)) < 0)
                return r;
        return 0;
}

/* ---- parameter layouts --------------------------------------------------------------------------------- */

/* Where a weight lives between steps. The first plan made for a model decides, per weight, the format its forward
 * primitive reads (when that format holds exactly numel floats: no padding) and forward moves the weight, its
 * gradient and its followers (optimizer state, the gradient accumulator) there in place; model_sync moves them
 * back. Every plan reads and writes the weight in that one format, so a step needs no reorder from PyTorch layout
 * and back, only where a primitive (another batch size, backward data) wants yet another format. */
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
                CHK(tensor_md(&b->md, t), "memory_desc_init");
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
                        int r = s == dnnl_success
                                        ? 0
                                        : ft_error_set(err, -EIO, NULL, "onednn: memory_create for \"%s\": %s", name,
                                                       dnnl_status2str(s));
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
        dnnl_stream_t st = m->ctx->stream;
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

/* A view of parameter t (its data or grad, in the format param_md decided) in the format a primitive wants, with
 * the reorder between them when they differ (to_user: from the view to the parameter). */
static int wview_init(struct backend_plan *p, struct model *m, struct wview *w, const struct tensor *t, void *data,
                      const dnnl_memory_desc_t *want, bool to_user, const char *name, struct ft_error *err) {
        dnnl_memory_desc_t umd;
        int r = param_md(p, m, t, want, &umd, err);
        if (r < 0 || (r = mem_new(p, &umd, data, &w->user, name, err)) < 0)
                return r;
        w->md = *want;
        if (dnnl_memory_desc_equal(&umd, want)) {
                w->mem = w->user;
                w->reorder = NULL;
                return 0;
        }
        if ((r = mem_new(p, want, DNNL_MEMORY_ALLOCATE, &w->mem, name, err)) < 0)
                return r;
        return to_user ? reorder_new(p, want, &umd, &w->reorder, name, err)
                       : reorder_new(p, &umd, want, &w->reorder, name, err);
}

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

static void conv_dims(const struct node *n, dnnl_dims_t s, dnnl_dims_t d, dnnl_dims_t pl, dnnl_dims_t pr) {
        s[0] = n->sh, s[1] = n->sw;
        d[0] = n->dh - 1, d[1] = n->dw - 1;
        pl[0] = pr[0] = n->ph;
        pl[1] = pr[1] = n->pw;
}

/* The shape of a node's first input: the model input or the output of an earlier node. */
static const struct value_shape *in_shape(const struct model *m, const struct node *n) {
        return n->in[0] == 0 ? &m->input : &m->nodes[n->in[0] - 1].out;
}

/* Kernel, strides, paddings and algorithm of a pooling node (global average pooling: one window). */
static dnnl_alg_kind_t pool_dims(const struct model *m, const struct node *n, dnnl_dims_t k, dnnl_dims_t s,
                                 dnnl_dims_t pl, dnnl_dims_t pr) {
        if (n->kind == NODE_GAP) {
                const struct value_shape *is = in_shape(m, n);
                k[0] = s[0] = is->h, k[1] = s[1] = is->w;
                pl[0] = pl[1] = pr[0] = pr[1] = 0;
                return dnnl_pooling_avg_exclude_padding;
        }
        k[0] = n->kh, k[1] = n->kw, s[0] = n->sh, s[1] = n->sw;
        pl[0] = pr[0] = n->ph, pl[1] = pr[1] = n->pw;
        return n->kind == NODE_MAXPOOL ? dnnl_pooling_max : dnnl_pooling_avg_include_padding;
}

/* Winograd (oneDNN's jit_wino_4x3, F(4x4, 3x3)) for 3x3, stride-1, undilated convolutions whose channels are
 * multiples of 16: forward and backward data when the output is at least 8x8, backward weights from 4x4. Measured
 * per convolution on ResNet-18 shapes at batch 32 (docs/performance.md; direct -> Winograd, ms): forward 2.38 ->
 * 1.31 at 8x8 and 2.42 -> 2.14 at 4x4, backward data 2.31 -> 1.43 at 8x8 but 1.64 -> 2.35 at 4x4, backward weights
 * 2.57 -> 1.04 at 8x8 and 2.90 -> 1.17 at 4x4; at 2x2 all three are 1.5-3x slower (its 4x4 tiles are mostly
 * padding). With fewer than 16 input channels its source format leaves backward weights only oneDNN's reference
 * implementation. Its float32 error stays within the PyTorch fixtures' tolerances (tests/unit/test_compute_torch.c).
 * min_out: 8 for forward and backward data, 4 for backward weights. */
static dnnl_alg_kind_t conv_alg(const struct model *m, const struct node *n, int64_t min_out) {
        const struct value_shape *is = in_shape(m, n);
        bool wino = n->kh == 3 && n->kw == 3 && n->sh == 1 && n->sw == 1 && n->dh == 1 && n->dw == 1 &&
                    n->out.h >= min_out && n->out.w >= min_out && is->c % 16 == 0 && n->out.c % 16 == 0;
        return wino ? dnnl_convolution_winograd : dnnl_convolution_direct;
}

/* Create a primitive descriptor for desc, or leave *ret NULL when oneDNN has no implementation for it. */
static int pd_try(struct backend_plan *p, const void *desc, const_dnnl_primitive_desc_t hint,
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

/* ---- small-output convolutions as per-tap GEMMs ------------------------------------------------------ */

/* A convolution whose output has at most 4 positions (ResNet's last stage at 64x64 inputs: 2x2) runs as GEMMs,
 * one per (output position, input position, kernel tap) that overlap: activations in NHWC, so the batch rows of
 * one position are a strided matrix [batch, channels], and weights as HWIO, so each tap is a contiguous
 * [in channels, out channels] matrix. That multiplies only the taps that
 * land inside the input, where oneDNN 2.6's direct kernels reach ~50% (forward) and ~27% (backward weights) of the
 * sgemm peak on these shapes and Winograd is slower still (its 4x4 tiles are mostly padding). Measured on
 * ResNet-18's 512-channel 2x2 convolutions at batch 32, 2 threads (docs/performance.md). */
#define TG_POSITIONS_MAX 4

static bool tg_eligible(const struct model *m, const struct node *n) {
        return n->kind == NODE_CONV && n->out.h * n->out.w <= TG_POSITIONS_MAX && n->kh * n->kw > 1 &&
               in_shape(m, n)->c >= 16;
}

static dnnl_status_t nhwc_md(dnnl_memory_desc_t *md, int batch, const struct value_shape *s) {
        dnnl_dims_t d = {batch, s->c, s->h, s->w};
        return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nhwc);
}

/* weights [out, in, kh, kw] stored tap-major, HWIO: [tap][in][out] */
static dnnl_status_t hwio_md(dnnl_memory_desc_t *md, const struct tensor *w) {
        dnnl_dims_t d = {w->shape[0], w->shape[1], w->shape[2], w->shape[3]};
        return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_hwio);
}

static int tg_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        struct node *n = &m->nodes[ni];
        struct bnode *bn = &p->nodes[ni];
        const struct value_shape *is = in_shape(m, n);
        const char *name = n->name;
        dnnl_memory_desc_t smd, dmd, wmd;
        int r;
        CHK(nhwc_md(&smd, p->batch, is), "memory_desc_init");
        CHK(nhwc_md(&dmd, p->batch, &n->out), "memory_desc_init");
        CHK(hwio_md(&wmd, n->weight), "memory_desc_init");
        bn->tg = malloc((size_t)(n->out.h * n->out.w * n->kh * n->kw) * sizeof(*bn->tg));
        if (!bn->tg)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        for (int64_t oh = 0; oh < n->out.h; oh++)
                for (int64_t ow = 0; ow < n->out.w; ow++)
                        for (int64_t kh = 0; kh < n->kh; kh++)
                                for (int64_t kw = 0; kw < n->kw; kw++) {
                                        int64_t ih = oh * n->sh - n->ph + kh * n->dh;
                                        int64_t iw = ow * n->sw - n->pw + kw * n->dw;
                                        if (ih < 0 || ih >= is->h || iw < 0 || iw >= is->w)
                                                continue;
                                        bn->tg[bn->n_tg++] =
                                                (struct tg_pair){(int)(oh * n->out.w + ow), (int)(ih * is->w + iw),
                                                                 (int)(kh * n->kw + kw)};
                                }
        if ((r = conform_init(p, m, ni, 0, &smd, err)) < 0 ||
            (r = wview_init(p, m, &bn->w_fwd, n->weight, n->weight->data, &wmd, false, name, err)) < 0 ||
            (r = value_init(p, &p->vals[ni + 1], &dmd, name, err)) < 0)
                return r;
        kernel_record(p, name, NULL, "convolution", "forward_training");
        return 0;
}

static int tg_bwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        struct node *n = &m->nodes[ni];
        struct bnode *bn = &p->nodes[ni];
        const struct value_shape *is = in_shape(m, n);
        const char *name = n->name;
        /* backward weights stacks at most one pair per output position for a tap; backward data needs [ci, B] */
        bn->tg_pack =
                malloc((size_t)(n->out.h * n->out.w) * (size_t)p->batch * (size_t)(is->c + n->out.c) * sizeof(float));
        if (!bn->tg_pack)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        kernel_record(p, name, NULL, "convolution", "backward_data");
        kernel_record(p, name, NULL, "convolution", "backward_weights");
        return wview_init(p, m, &bn->dw, n->weight, n->weight->grad, &bn->w_fwd.md, true, name, err);
}

/* the sizes the per-tap GEMMs index with: batch, channels in and out, input and output positions */
struct tg_dims {
        int64_t batch, ci, co, ip, op;
};

static struct tg_dims tg_dims(const struct model *m, const struct backend_plan *p, const struct node *n) {
        const struct value_shape *is = in_shape(m, n);
        return (struct tg_dims){p->batch, is->c, n->out.c, is->h * is->w, n->out.h * n->out.w};
}

#define SGEMM(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc)                                                           \
        CHK(dnnl_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc), "sgemm")

/* y[b][o][:] = bias + sum over the node's triples of x[b][s][:] . W[t] */
static int tg_forward(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct bnode *bn = &p->nodes[ni];
        const char *name = n->name;
        const struct tg_dims d = tg_dims(m, p, n);
        int64_t B = d.batch, ci = d.ci, co = d.co, ip = d.ip, op = d.op;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        const float *x = mem_ptr(bn->in[0].mem), *w = mem_ptr(bn->w_fwd.mem);
        const float *bias = n->bias ? tensor_f32(n->bias) : NULL;
        float *y = mem_ptr(p->vals[ni + 1].mem);
        for (int64_t r = 0; r < B * op; r++)
                for (int64_t c = 0; c < co; c++)
                        y[r * co + c] = bias ? bias[c] : 0.0f;
        for (int i = 0; i < bn->n_tg; i++) {
                const struct tg_pair *q = &bn->tg[i];
                SGEMM('N', 'N', B, co, ci, x + q->s * ci, ip * ci, w + q->t * ci * co, co, 1.0f, y + q->o * co,
                      op * co);
        }
        return 0;
}

/* dx[b][s][:] = sum over the triples of dy[b][o][:] . W[t]^T, computed transposed (dx_s^T = W[t] . dy_o^T, into
 * the pack buffer) so that W[t] is read in its HWIO layout: a GEMM with a transposed [channels, channels] operand
 * ran at a third of the peak, and a second, HWOI copy of the weights cost more than the transpose below. */
static int tg_backward_data(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct bnode *bn = &p->nodes[ni];
        const char *name = n->name;
        const struct tg_dims d = tg_dims(m, p, n);
        int64_t B = d.batch, ci = d.ci, co = d.co, ip = d.ip, op = d.op;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        const float *dy = mem_ptr(p->vals[ni + 1].dmem), *w = mem_ptr(bn->w_fwd.mem);
        float *dx = mem_ptr(bn->in[0].dmem), *ct = bn->tg_pack;
        for (int64_t s = 0; s < ip; s++) {
                float beta = 0.0f;
                for (int i = 0; i < bn->n_tg; i++) {
                        const struct tg_pair *q = &bn->tg[i];
                        if (q->s != s)
                                continue;
                        SGEMM('N', 'T', ci, B, co, w + q->t * ci * co, co, dy + q->o * co, op * co, beta, ct, B);
                        beta = 1.0f;
                }
                if (beta == 0.0f) {
                        for (int64_t b = 0; b < B; b++)
                                memset(dx + (b * ip + s) * ci, 0, (size_t)ci * sizeof(float));
                        continue;
                }
                for (int64_t b = 0; b < B; b++)
                        for (int64_t c = 0; c < ci; c++)
                                dx[(b * ip + s) * ci + c] = ct[c * B + b];
        }
        return 0;
}

/* dW[t] = sum over the tap's (o, s) pairs of x[:][s][:]^T . dy[:][o][:], the pairs stacked along K in one GEMM;
 * dbias = dy summed over batch and positions */
static int tg_backward_weights(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct bnode *bn = &p->nodes[ni];
        const char *name = n->name;
        const struct tg_dims d = tg_dims(m, p, n);
        int64_t B = d.batch, ci = d.ci, co = d.co, ip = d.ip, op = d.op;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        const float *x = mem_ptr(bn->in[0].mem), *dy = mem_ptr(p->vals[ni + 1].dmem);
        if (!n->weight->frozen) {
                float *dw = mem_ptr(bn->dw.mem);
                for (int t = 0; t < n->kh * n->kw; t++) {
                        const struct tg_pair *pairs[TG_POSITIONS_MAX]; /* this tap's: one per output position */
                        int k = 0;
                        for (int i = 0; i < bn->n_tg && k < TG_POSITIONS_MAX; i++)
                                if (bn->tg[i].t == t)
                                        pairs[k++] = &bn->tg[i];
                        float *dwt = dw + t * ci * co;
                        if (k == 0) {
                                memset(dwt, 0, (size_t)(ci * co) * sizeof(float));
                        } else if (k == 1) { /* straight from the activations, no packing */
                                SGEMM('T', 'N', ci, co, B, x + pairs[0]->s * ci, ip * ci, dy + pairs[0]->o * co,
                                      op * co, 0.0f, dwt, co);
                        } else {
                                float *a = bn->tg_pack, *b = a + (size_t)k * (size_t)B * (size_t)ci;
                                for (int j = 0; j < k; j++)
                                        for (int64_t r = 0; r < B; r++) {
                                                memcpy(a + (j * B + r) * ci, x + (r * ip + pairs[j]->s) * ci,
                                                       (size_t)ci * sizeof(float));
                                                memcpy(b + (j * B + r) * co, dy + (r * op + pairs[j]->o) * co,
                                                       (size_t)co * sizeof(float));
                                        }
                                SGEMM('T', 'N', ci, co, k * B, a, ci, b, co, 0.0f, dwt, co);
                        }
                }
        }
        if (n->bias && !n->bias->frozen) {
                float *db = n->bias->grad;
                memset(db, 0, (size_t)co * sizeof(float));
                for (int64_t r = 0; r < B * op; r++)
                        for (int64_t c = 0; c < co; c++)
                                db[c] += dy[r * co + c];
        }
        return 0;
}

/* ---- plan: forward ----------------------------------------------------------------------------------- */

static int node_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        struct node *n = &m->nodes[ni];
        struct bnode *bn = &p->nodes[ni];
        struct bvalue *in = &p->vals[n->in[0]], *out = &p->vals[ni + 1];
        const char *name = n->name;
        int B = p->batch, r;
        dnnl_memory_desc_t omd;
        CHK(any_md(&omd, B, &n->out), "memory_desc_init");

        switch (n->kind) {
        case NODE_LINEAR:
        case NODE_CONV: {
                if (tg_eligible(m, n))
                        return tg_fwd_init(m, p, ni, err);
                dnnl_memory_desc_t smd, wmd, bmd, *bp = NULL;
                const struct value_shape *is = in_shape(m, n);
                CHK(any_md(&smd, B, is), "memory_desc_init");
                dnnl_dims_t wd;
                for (int i = 0; i < n->weight->ndim; i++)
                        wd[i] = n->weight->shape[i];
                CHK(dnnl_memory_desc_init_by_tag(&wmd, n->weight->ndim, wd, dnnl_f32, dnnl_format_tag_any),
                    "memory_desc_init");
                if (n->bias) {
                        CHK(tensor_md(&bmd, n->bias), "memory_desc_init");
                        bp = &bmd;
                }
                if (n->kind == NODE_CONV) {
                        dnnl_convolution_desc_t cd;
                        dnnl_dims_t s, d, pl, pr;
                        conv_dims(n, s, d, pl, pr);
                        CHK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training, conv_alg(m, n, 8),
                                                                       &smd, &wmd, bp, &omd, s, d, pl, pr),
                            "convolution_forward_desc_init");
                        if ((r = pd_try(p, &cd, NULL, &bn->fwd_pd, "convolution forward", name, err)) < 0)
                                return r;
                        if (!bn->fwd_pd) { /* no Winograd for this shape on this CPU */
                                CHK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training,
                                                                               dnnl_convolution_direct, &smd, &wmd, bp,
                                                                               &omd, s, d, pl, pr),
                                    "convolution_forward_desc_init");
                                if ((r = pd_new(p, &cd, NULL, &bn->fwd_pd, "convolution forward", name, err)) < 0)
                                        return r;
                        }
                } else {
                        dnnl_inner_product_desc_t id;
                        CHK(dnnl_inner_product_forward_desc_init(&id, dnnl_forward_training, &smd, &wmd, bp, &omd),
                            "inner_product_forward_desc_init");
                        if ((r = pd_new(p, &id, NULL, &bn->fwd_pd, "inner product forward", name, err)) < 0)
                                return r;
                }
                if ((r = prim_new(p, bn->fwd_pd, &bn->fwd, name, err)) < 0 ||
                    (r = conform_init(p, m, ni, 0, q_md(bn->fwd_pd, dnnl_query_src_md), err)) < 0 ||
                    (r = wview_init(p, m, &bn->w_fwd, n->weight, n->weight->data,
                                    q_md(bn->fwd_pd, dnnl_query_weights_md), false, name, err)) < 0 ||
                    (r = value_init(p, out, q_md(bn->fwd_pd, dnnl_query_dst_md), name, err)) < 0)
                        return r;
                if (n->bias && (r = mem_new(p, &bmd, n->bias->data, &bn->bias, name, err)) < 0)
                        return r;
                return 0;
        }
        case NODE_BN: {
                dnnl_batch_normalization_desc_t bd;
                unsigned flags = dnnl_use_scale | dnnl_use_shift;
                /* fuse a relu that is this batchnorm's only consumer (the value before it is then never read) */
                const struct node *nx = ni + 1 < m->n_nodes ? &m->nodes[ni + 1] : NULL;
                bn->fused_relu = nx && m->consumers[ni + 1] == 1 && nx->kind == NODE_ACT && nx->act == ACT_RELU &&
                                 nx->alpha == 0.0f && nx->in[0] == ni + 1;
                if (bn->fused_relu)
                        flags |= dnnl_fuse_norm_relu;
                CHK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &in->md, n->eps, flags),
                    "batch_normalization_forward_desc_init");
                if ((r = pd_new(p, &bd, NULL, &bn->fwd_pd, "batch normalization forward", name, err)) < 0 ||
                    (r = prim_new(p, bn->fwd_pd, &bn->fwd, name, err)) < 0)
                        return r;
                CHK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &in->md, n->eps,
                                                               flags | dnnl_use_global_stats),
                    "batch_normalization_forward_desc_init");
                if ((r = pd_new(p, &bd, NULL, &bn->fwd_g_pd, "batch normalization forward", name, err)) < 0 ||
                    (r = prim_new(p, bn->fwd_g_pd, &bn->fwd_g, name, err)) < 0)
                        return r;
                dnnl_memory_desc_t cmd;
                CHK(tensor_md(&cmd, n->weight), "memory_desc_init");
                if ((r = conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
                    (r = value_init(p, out, q_md(bn->fwd_pd, dnnl_query_dst_md), name, err)) < 0 ||
                    (r = mem_new(p, &cmd, n->weight->data, &bn->w_fwd.user, name, err)) < 0 ||
                    (r = mem_new(p, &cmd, n->bias->data, &bn->bias, name, err)) < 0 ||
                    (r = mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &bn->mean, name, err)) < 0 ||
                    (r = mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &bn->var, name, err)) < 0 ||
                    (r = mem_new(p, &cmd, n->running_mean->data, &bn->rmean, name, err)) < 0 ||
                    (r = mem_new(p, &cmd, n->running_var->data, &bn->rvar, name, err)) < 0)
                        return r;
                if (bn->fused_relu && ((r = mem_new(p, q_md(bn->fwd_pd, dnnl_query_workspace_md), DNNL_MEMORY_ALLOCATE,
                                                    &bn->ws, name, err)) < 0 ||
                                       (r = mem_new(p, q_md(bn->fwd_g_pd, dnnl_query_workspace_md),
                                                    DNNL_MEMORY_ALLOCATE, &bn->ws_g, name, err)) < 0))
                        return r;
                return 0;
        }
        case NODE_ACT: {
                dnnl_eltwise_desc_t ed;
                if (ni > 0 && p->nodes[ni - 1].fused_relu) {
                        bn->alias = true; /* the batchnorm before wrote relu(bn(x)) into its own value */
                        out->md = in->md;
                        out->mem = in->mem;
                        out->nfloats = in->nfloats;
                        return conform_init(p, m, ni, 0, &in->md, err);
                }
                CHK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_training, act_alg(n->act), &in->md, n->alpha, 0.f),
                    "eltwise_forward_desc_init");
                if ((r = pd_new(p, &ed, NULL, &bn->fwd_pd, "eltwise forward", name, err)) < 0 ||
                    (r = prim_new(p, bn->fwd_pd, &bn->fwd, name, err)) < 0 ||
                    (r = conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
                    (r = value_init(p, out, q_md(bn->fwd_pd, dnnl_query_dst_md), name, err)) < 0)
                        return r;
                return 0;
        }
        case NODE_MAXPOOL:
        case NODE_AVGPOOL:
        case NODE_GAP: {
                dnnl_pooling_desc_t pdsc;
                dnnl_dims_t k, s, pl, pr;
                dnnl_alg_kind_t alg = pool_dims(m, n, k, s, pl, pr);
                CHK(dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_training, alg, &in->md, &omd, s, k, pl, pr),
                    "pooling_forward_desc_init");
                if ((r = pd_new(p, &pdsc, NULL, &bn->fwd_pd, "pooling forward", name, err)) < 0 ||
                    (r = prim_new(p, bn->fwd_pd, &bn->fwd, name, err)) < 0 ||
                    (r = conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
                    (r = value_init(p, out, q_md(bn->fwd_pd, dnnl_query_dst_md), name, err)) < 0)
                        return r;
                const dnnl_memory_desc_t *wsmd = q_md(bn->fwd_pd, dnnl_query_workspace_md);
                if (wsmd && wsmd->ndims > 0 && (r = mem_new(p, wsmd, DNNL_MEMORY_ALLOCATE, &bn->ws, name, err)) < 0)
                        return r;
                return 0;
        }
        case NODE_FLATTEN: {
                dnnl_memory_desc_t pmd, nchw;
                CHK(plain_md(&pmd, B, &n->out), "memory_desc_init");
                const struct value_shape *is = in_shape(m, n);
                CHK(plain_md(&nchw, B, is), "memory_desc_init");
                if ((r = conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
                    (r = value_init(p, out, &pmd, name, err)) < 0 ||
                    (r = mem_new(p, &nchw, mem_ptr(out->mem), &bn->flat_view, name, err)) < 0 ||
                    (r = reorder_new(p, &in->md, &nchw, &bn->fwd, name, err)) < 0)
                        return r;
                return 0;
        }
        case NODE_DROPOUT: {
                if ((r = conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
                    (r = value_init(p, out, &in->md, name, err)) < 0)
                        return r;
                bn->mask = malloc(out->nfloats ? out->nfloats : 1);
                if (!bn->mask)
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                bn->dropout_scale = n->alpha < 1.0f ? 1.0f / (1.0f - n->alpha) : 0.0f;
                return 0;
        }
        case NODE_ADD: {
                dnnl_binary_desc_t bd;
                if ((r = conform_init(p, m, ni, 0, &in->md, err)) < 0 ||
                    (r = conform_init(p, m, ni, 1, &in->md, err)) < 0)
                        return r;
                CHK(dnnl_binary_desc_init(&bd, dnnl_binary_add, &in->md, &in->md, &in->md), "binary_desc_init");
                if ((r = pd_new(p, &bd, NULL, &bn->fwd_pd, "binary add", name, err)) < 0 ||
                    (r = prim_new(p, bn->fwd_pd, &bn->fwd, name, err)) < 0 ||
                    (r = value_init(p, out, &in->md, name, err)) < 0)
                        return r;
                return 0;
        }
        }
        return ft_error_set(err, -EINVAL, NULL, "layer \"%s\": unknown kind", name);
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
                        free(p->nodes[i].mask);
                        free(p->nodes[i].tg);
                        free(p->nodes[i].tg_pack);
                }
        free(p->prims);
        free(p->pds);
        free(p->mems);
        free(p->kernels);
        free(p->nodes);
        free(p->vals);
        free(p->rg);
        free(p);
}

static int plan_new(struct model *m, struct compute_ctx *ctx, int batch, struct backend_plan **ret,
                    struct ft_error *err) {
        struct backend_plan *p = calloc(1, sizeof(*p));
        int r;
        const char *name = "input";
        if (!p)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        p->batch = batch;
        p->eng = ctx->engine;
        p->st = ctx->stream;
        p->n_nodes = m->n_nodes;
        p->vals = calloc((size_t)m->n_values, sizeof(*p->vals));
        p->nodes = calloc((size_t)m->n_nodes, sizeof(*p->nodes));
        p->rg = calloc((size_t)m->n_values, sizeof(bool));
        if (!p->vals || !p->nodes || !p->rg) {
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                goto fail;
        }
        dnnl_memory_desc_t md;
        if (plain_md(&md, batch, &m->input) != dnnl_success) {
                r = ft_error_set(err, -EIO, NULL, "onednn: cannot describe the input");
                goto fail;
        }
        p->vals[0].md = md;
        if ((r = mem_new(p, &md, DNNL_MEMORY_NONE, &p->vals[0].mem, name, err)) < 0)
                goto fail;
        p->x_mem = p->vals[0].mem;
        for (int i = 0; i < m->n_nodes; i++)
                if ((r = node_fwd_init(m, p, i, err)) < 0)
                        goto fail;
        struct bvalue *last = &p->vals[m->n_nodes];
        if (plain_md(&md, batch, &m->nodes[m->n_nodes - 1].out) != dnnl_success) {
                r = ft_error_set(err, -EIO, NULL, "onednn: cannot describe the output");
                goto fail;
        }
        if (dnnl_memory_desc_equal(&md, &last->md)) {
                p->out_mem = last->mem;
        } else {
                name = "output";
                if ((r = mem_new(p, &md, DNNL_MEMORY_ALLOCATE, &p->out_mem, name, err)) < 0 ||
                    (r = reorder_new(p, &last->md, &md, &p->out_reorder, name, err)) < 0)
                        goto fail;
        }
        p->out = mem_ptr(p->out_mem);
        *ret = p;
        return 0;
fail:
        plan_free(p);
        return r;
}

/* ---- forward ----------------------------------------------------------------------------------------- */

static void bn_update_running(struct node *n, struct bnode *bn, int batch) {
        float *mean = mem_ptr(bn->mean), *var = mem_ptr(bn->var);
        float *rm = tensor_f32(n->running_mean), *rv = tensor_f32(n->running_var);
        double cnt = (double)batch * (double)n->out.h * (double)n->out.w;
        double unbias = cnt / (cnt - 1.0);
        float mom = n->momentum;
        for (int64_t c = 0; c < n->out.c; c++) {
                rm[c] = (1.0f - mom) * rm[c] + mom * mean[c];
                rv[c] = (1.0f - mom) * rv[c] + mom * (float)(var[c] * unbias);
        }
        tensor_i64(n->num_batches_tracked)[0] += 1;
}

static int node_forward(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err) {
        struct node *n = &m->nodes[ni];
        struct bnode *bn = &p->nodes[ni];
        struct bvalue *out = &p->vals[ni + 1];
        const char *name = n->name;
        int r;
        for (int j = 0; j < n->n_in; j++)
                if (bn->in[j].needed &&
                    (r = run_reorder(p, bn->in[j].fwd, p->vals[n->in[j]].mem, bn->in[j].mem, name, err)) < 0)
                        return r;
        dnnl_memory_t src = bn->in[0].mem;
        switch (n->kind) {
        case NODE_LINEAR:
        case NODE_CONV: {
                if (bn->w_fwd.reorder &&
                    (r = run_reorder(p, bn->w_fwd.reorder, bn->w_fwd.user, bn->w_fwd.mem, name, err)) < 0)
                        return r;
                if (bn->tg)
                        return tg_forward(m, p, ni, err);
                dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, src},
                                        {DNNL_ARG_WEIGHTS, bn->w_fwd.mem},
                                        {DNNL_ARG_DST, out->mem},
                                        {DNNL_ARG_BIAS, bn->bias}};
                return run(p, bn->fwd, n->bias ? 4 : 3, a, name, err);
        }
        case NODE_BN: {
                bool global = !training || (m->frozen_bn_eval && !nn_node_trainable(n));
                bn->used_global = global;
                if (!global) {
                        double cnt = (double)p->batch * (double)n->out.h * (double)n->out.w;
                        if (cnt < 2)
                                return ft_error_set(err, -EINVAL, "batch_size",
                                                    "layer \"%s\": batch normalization in training needs more than one "
                                                    "value per channel (batch size 1 with a 1x1 input)",
                                                    name);
                }
                dnnl_memory_t mean = global ? bn->rmean : bn->mean, var = global ? bn->rvar : bn->var;
                dnnl_exec_arg_t a[7] = {{DNNL_ARG_SRC, src},
                                        {DNNL_ARG_DST, out->mem},
                                        {DNNL_ARG_SCALE, bn->w_fwd.user},
                                        {DNNL_ARG_SHIFT, bn->bias},
                                        {DNNL_ARG_MEAN, mean},
                                        {DNNL_ARG_VARIANCE, var},
                                        {DNNL_ARG_WORKSPACE, global ? bn->ws_g : bn->ws}};
                r = run(p, global ? bn->fwd_g : bn->fwd, bn->fused_relu ? 7 : 6, a, name, err);
                if (r < 0)
                        return r;
                if (global)
                        return 0;
                CHK(dnnl_stream_wait(p->st), "stream_wait");
                bn_update_running(n, bn, p->batch);
                return 0;
        }
        case NODE_ACT:
        case NODE_ADD:
        case NODE_MAXPOOL:
        case NODE_AVGPOOL:
        case NODE_GAP: {
                if (bn->alias)
                        return 0;
                dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, src},
                                        {DNNL_ARG_DST, out->mem},
                                        {DNNL_ARG_SRC_1, bn->in[1].mem},
                                        {DNNL_ARG_WORKSPACE, bn->ws}};
                if (n->kind == NODE_ADD)
                        return run(p, bn->fwd, 3, a, name, err);
                if (bn->ws) {
                        a[2] = a[3];
                        return run(p, bn->fwd, 3, a, name, err);
                }
                return run(p, bn->fwd, 2, a, name, err);
        }
        case NODE_FLATTEN: return run_reorder(p, bn->fwd, src, bn->flat_view, name, err);
        case NODE_DROPOUT: {
                CHK(dnnl_stream_wait(p->st), "stream_wait");
                const float *x = mem_ptr(src);
                float *y = mem_ptr(out->mem);
                size_t cnt = out->nfloats;
                bn->dropout_on = training && n->alpha > 0.0f;
                if (!bn->dropout_on) {
                        memcpy(y, x, cnt * sizeof(float));
                        return 0;
                }
                uint64_t seed = m->rng.seed, counter = m->rng.counter++;
                float p_ = n->alpha, scale = bn->dropout_scale;
                uint8_t *mask = bn->mask;
#pragma omp parallel for schedule(static)
                for (size_t i = 0; i < cnt; i++) {
                        mask[i] = nn_dropout_keep(seed, counter, i, p_);
                        y[i] = mask[i] ? x[i] * scale : 0.0f;
                }
                return 0;
        }
        }
        return 0;
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
        if (p->out_reorder && (r = run_reorder(p, p->out_reorder, p->vals[m->n_nodes].mem, p->out_mem, name, err)) < 0)
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
        if (n->in[j] == 0) { /* nobody wants the input's diff; batchnorm computes it anyway: give it a scratch */
                if (n->kind == NODE_BN)
                        return mem_new(p, &bn->in[j].md, DNNL_MEMORY_ALLOCATE, &bn->in[j].dmem, name, err);
                return 0;
        }
        if (!bn->in[j].needed && m->consumers[n->in[j]] == 1) {
                bn->in[j].dmem = v->dmem;
                return 0;
        }
        if ((r = mem_new(p, &bn->in[j].md, DNNL_MEMORY_ALLOCATE, &bn->in[j].dmem, name, err)) < 0)
                return r;
        if (bn->in[j].needed) {
                if ((r = mem_new(p, &v->md, DNNL_MEMORY_ALLOCATE, &bn->din_scratch[j], name, err)) < 0 ||
                    (r = reorder_new(p, &bn->in[j].md, &v->md, &bn->in[j].bwd, name, err)) < 0)
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
                if ((r = run_reorder(p, bn->in[j].bwd, src, dst, name, err)) < 0)
                        return r;
                if (!v->written) {
                        v->written = true;
                        return 0;
                }
                src = dst;
        }
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        float *d = mem_ptr(v->dmem);
        const float *s = mem_ptr(src);
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

/* A convolution's backward data (weights=false) or backward weights primitive descriptor, with the algorithm
 * conv_alg picks, or direct when oneDNN has no implementation of that algorithm for it. */
static int conv_bwd_pd(struct backend_plan *p, const struct model *m, const struct node *n, const struct bnode *bn,
                       bool weights, const dnnl_memory_desc_t *smd, const dnnl_memory_desc_t *wmd,
                       const dnnl_memory_desc_t *bmd, const dnnl_memory_desc_t *dmd, dnnl_primitive_desc_t *ret,
                       struct ft_error *err) {
        const char *name = n->name, *what = weights ? "convolution backward weights" : "convolution backward data";
        dnnl_alg_kind_t algs[2] = {conv_alg(m, n, weights ? 4 : 8), dnnl_convolution_direct};
        dnnl_convolution_desc_t cd;
        dnnl_dims_t s, d, pl, pr;
        int r;
        conv_dims(n, s, d, pl, pr);
        for (int i = 0; i < 2; i++) {
                if (weights)
                        CHK(dnnl_dilated_convolution_backward_weights_desc_init(&cd, algs[i], smd, wmd, bmd, dmd, s, d,
                                                                                pl, pr),
                            "convolution_backward_weights_desc_init");
                else
                        CHK(dnnl_dilated_convolution_backward_data_desc_init(&cd, algs[i], smd, wmd, dmd, s, d, pl, pr),
                            "convolution_backward_data_desc_init");
                if (i == 1)
                        return pd_new(p, &cd, bn->fwd_pd, ret, what, name, err);
                if ((r = pd_try(p, &cd, bn->fwd_pd, ret, what, name, err)) < 0 || *ret)
                        return r;
        }
        return 0;
}

static bool pd_is_reference(const_dnnl_primitive_desc_t pd) {
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        struct model_kernel k = {0};
        snprintf(k.impl, sizeof(k.impl), "%s", impl ? impl : "");
        return model_kernel_is_reference(&k);
}

/* Backward weights reads the forward's source and the output's diff in the formats forward chose, and for some
 * shapes oneDNN has only its reference implementation there: AVX2's jit kernel reads a plain (nchw) source only
 * with exactly 3 channels, so a 1-channel first convolution fell to ref:any (20x slower than the whole rest of
 * the step). Then let backward weights choose its source format, and if need be its diff_dst format too, and
 * convert to them before it runs (bw_src, bw_ddst: a copy of the activations, cheap next to a reference kernel). */
static int conv_bwd_weights_formats(struct backend_plan *p, struct model *m, int ni, const dnnl_memory_desc_t *wmd,
                                    const dnnl_memory_desc_t *bmd, dnnl_primitive_desc_t *wpd, struct ft_error *err) {
        struct node *n = &m->nodes[ni];
        struct bnode *bn = &p->nodes[ni];
        struct bvalue *out = &p->vals[ni + 1];
        const char *name = n->name;
        int r;
        if (!pd_is_reference(*wpd))
                return 0;
        dnnl_memory_desc_t sany, dany;
        CHK(any_md(&sany, p->batch, in_shape(m, n)), "memory_desc_init");
        CHK(any_md(&dany, p->batch, &n->out), "memory_desc_init");
        for (int t = 0; t < 2; t++) {
                dnnl_primitive_desc_t alt;
                if ((r = conv_bwd_pd(p, m, n, bn, true, &sany, wmd, bmd, t ? &dany : &out->md, &alt, err)) < 0)
                        return r;
                if (!pd_is_reference(alt)) {
                        *wpd = alt;
                        break;
                }
        }
        struct {
                struct conform *c;
                const dnnl_memory_desc_t *have, *want;
        } cv[2] = {{&bn->bw_src, &bn->in[0].md, q_md(*wpd, dnnl_query_src_md)},
                   {&bn->bw_ddst, &out->md, q_md(*wpd, dnnl_query_diff_dst_md)}};
        for (int i = 0; i < 2; i++) {
                struct conform *c = cv[i].c;
                c->needed = !dnnl_memory_desc_equal(cv[i].have, cv[i].want);
                if (!c->needed)
                        continue;
                c->md = *cv[i].want;
                if ((r = mem_new(p, &c->md, DNNL_MEMORY_ALLOCATE, &c->mem, name, err)) < 0 ||
                    (r = reorder_new(p, cv[i].have, &c->md, &c->fwd, name, err)) < 0)
                        return r;
        }
        return 0;
}

static int node_bwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        struct node *n = &m->nodes[ni];
        struct bnode *bn = &p->nodes[ni];
        struct bvalue *in = &p->vals[n->in[0]], *out = &p->vals[ni + 1];
        const char *name = n->name;
        int r;
        for (int j = 0; j < n->n_in; j++)
                if ((r = din_init(m, p, ni, j, err)) < 0)
                        return r;
        switch (n->kind) {
        case NODE_LINEAR:
        case NODE_CONV: {
                if (bn->tg)
                        return tg_bwd_init(m, p, ni, err);
                dnnl_memory_desc_t wmd, bmd, *bp = NULL;
                dnnl_dims_t wd;
                for (int i = 0; i < n->weight->ndim; i++)
                        wd[i] = n->weight->shape[i];
                CHK(dnnl_memory_desc_init_by_tag(&wmd, n->weight->ndim, wd, dnnl_f32, dnnl_format_tag_any),
                    "memory_desc_init");
                if (n->bias) {
                        CHK(tensor_md(&bmd, n->bias), "memory_desc_init");
                        bp = &bmd;
                }
                const dnnl_memory_desc_t *smd = &bn->in[0].md;
                dnnl_primitive_desc_t dpd = NULL, wpd;
                if (n->kind == NODE_CONV) {
                        if (n->in[0] != 0 &&
                            (r = conv_bwd_pd(p, m, n, bn, false, smd, &wmd, bp, &out->md, &dpd, err)) < 0)
                                return r;
                        if ((r = conv_bwd_pd(p, m, n, bn, true, smd, &wmd, bp, &out->md, &wpd, err)) < 0 ||
                            (r = conv_bwd_weights_formats(p, m, ni, &wmd, bp, &wpd, err)) < 0)
                                return r;
                } else {
                        dnnl_inner_product_desc_t id;
                        if (n->in[0] != 0) {
                                CHK(dnnl_inner_product_backward_data_desc_init(&id, smd, &wmd, &out->md),
                                    "inner_product_backward_data_desc_init");
                                if ((r = pd_new(p, &id, bn->fwd_pd, &dpd, "inner product backward data", name, err)) <
                                    0)
                                        return r;
                        }
                        CHK(dnnl_inner_product_backward_weights_desc_init(&id, smd, &wmd, bp, &out->md),
                            "inner_product_backward_weights_desc_init");
                        if ((r = pd_new(p, &id, bn->fwd_pd, &wpd, "inner product backward weights", name, err)) < 0)
                                return r;
                }
                if (dpd) {
                        const dnnl_memory_desc_t *dsmd = q_md(dpd, dnnl_query_diff_src_md);
                        if (!dnnl_memory_desc_equal(dsmd, smd))
                                return ft_error_set(err, -EIO, NULL,
                                                    "onednn: layer \"%s\": backward data picked another format", name);
                        if ((r = prim_new(p, dpd, &bn->bwd_data, name, err)) < 0)
                                return r;
                        const dnnl_memory_desc_t *bwmd = q_md(dpd, dnnl_query_weights_md);
                        if (dnnl_memory_desc_equal(bwmd, &bn->w_fwd.md))
                                bn->w_bwd = bn->w_fwd;
                        else { /* from the forward's blocked copy (block to block is much cheaper than from plain) */
                                bn->w_bwd.md = *bwmd;
                                bn->w_bwd.user = bn->w_fwd.mem;
                                if ((r = mem_new(p, bwmd, DNNL_MEMORY_ALLOCATE, &bn->w_bwd.mem, name, err)) < 0 ||
                                    (r = reorder_new(p, &bn->w_fwd.md, bwmd, &bn->w_bwd.reorder, name, err)) < 0)
                                        return r;
                        }
                }
                if ((r = prim_new(p, wpd, &bn->bwd_weights, name, err)) < 0 ||
                    (r = wview_init(p, m, &bn->dw, n->weight, n->weight->grad, q_md(wpd, dnnl_query_diff_weights_md),
                                    true, name, err)) < 0 ||
                    (r = mem_new(p, &bn->dw.md, DNNL_MEMORY_ALLOCATE, &bn->dw_scratch, name, err)) < 0)
                        return r;
                if (n->bias && ((r = mem_new(p, &bmd, n->bias->grad, &bn->dbias, name, err)) < 0 ||
                                (r = mem_new(p, &bmd, DNNL_MEMORY_ALLOCATE, &bn->dbias_scratch, name, err)) < 0))
                        return r;
                return 0;
        }
        case NODE_BN: {
                dnnl_batch_normalization_desc_t bd;
                unsigned flags = dnnl_use_scale | dnnl_use_shift | (bn->fused_relu ? dnnl_fuse_norm_relu : 0u);
                dnnl_primitive_desc_t pd;
                CHK(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &in->md, &in->md, n->eps, flags),
                    "batch_normalization_backward_desc_init");
                if ((r = pd_new(p, &bd, bn->fwd_pd, &pd, "batch normalization backward", name, err)) < 0 ||
                    (r = prim_new(p, pd, &bn->bwd_data, name, err)) < 0)
                        return r;
                CHK(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &in->md, &in->md, n->eps,
                                                                flags | dnnl_use_global_stats),
                    "batch_normalization_backward_desc_init");
                if ((r = pd_new(p, &bd, bn->fwd_g_pd, &pd, "batch normalization backward", name, err)) < 0 ||
                    (r = prim_new(p, pd, &bn->bwd_g, name, err)) < 0)
                        return r;
                dnnl_memory_desc_t cmd;
                CHK(tensor_md(&cmd, n->weight), "memory_desc_init");
                if ((r = mem_new(p, &cmd, n->weight->grad, &bn->dw.user, name, err)) < 0 ||
                    (r = mem_new(p, &cmd, n->bias->grad, &bn->dbias, name, err)) < 0 ||
                    (r = mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &bn->dw_scratch, name, err)) < 0 ||
                    (r = mem_new(p, &cmd, DNNL_MEMORY_ALLOCATE, &bn->dbias_scratch, name, err)) < 0)
                        return r;
                return 0;
        }
        case NODE_ACT: {
                dnnl_eltwise_desc_t ed;
                dnnl_primitive_desc_t pd;
                if (bn->alias)
                        return 0;
                CHK(dnnl_eltwise_backward_desc_init(&ed, act_alg(n->act), &in->md, &in->md, n->alpha, 0.f),
                    "eltwise_backward_desc_init");
                if ((r = pd_new(p, &ed, bn->fwd_pd, &pd, "eltwise backward", name, err)) < 0 ||
                    (r = prim_new(p, pd, &bn->bwd_data, name, err)) < 0)
                        return r;
                return 0;
        }
        case NODE_MAXPOOL:
        case NODE_AVGPOOL:
        case NODE_GAP: {
                dnnl_pooling_desc_t pdsc;
                dnnl_primitive_desc_t pd;
                dnnl_dims_t k, s, pl, pr;
                dnnl_alg_kind_t alg = pool_dims(m, n, k, s, pl, pr);
                CHK(dnnl_pooling_backward_desc_init(&pdsc, alg, &in->md, &out->md, s, k, pl, pr),
                    "pooling_backward_desc_init");
                if ((r = pd_new(p, &pdsc, bn->fwd_pd, &pd, "pooling backward", name, err)) < 0 ||
                    (r = prim_new(p, pd, &bn->bwd_data, name, err)) < 0)
                        return r;
                return 0;
        }
        case NODE_FLATTEN: {
                dnnl_memory_desc_t nchw;
                const struct value_shape *is = in_shape(m, n);
                CHK(plain_md(&nchw, p->batch, is), "memory_desc_init");
                if ((r = mem_new(p, &nchw, mem_ptr(out->dmem), &bn->flat_dview, name, err)) < 0)
                        return r;
                return reorder_new(p, &nchw, &in->md, &bn->bwd_data, name, err);
        }
        case NODE_DROPOUT:
        case NODE_ADD: return 0;
        }
        return 0;
}

static int node_backward(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        struct node *n = &m->nodes[ni];
        struct bnode *bn = &p->nodes[ni];
        struct bvalue *out = &p->vals[ni + 1];
        const char *name = n->name;
        bool need0 = p->rg[n->in[0]], need1 = n->n_in > 1 && p->rg[n->in[1]];
        dnnl_memory_t src = bn->in[0].mem, dsrc = bn->in[0].dmem;
        int r;
        switch (n->kind) {
        case NODE_LINEAR:
        case NODE_CONV: {
                if (bn->tg) {
                        if (need0 && (r = tg_backward_data(m, p, ni, err)) < 0)
                                return r;
                        if (nn_node_trainable(n) && (r = tg_backward_weights(m, p, ni, err)) < 0)
                                return r;
                        if (!n->weight->frozen && bn->dw.reorder &&
                            (r = run_reorder(p, bn->dw.reorder, bn->dw.mem, bn->dw.user, name, err)) < 0)
                                return r;
                        break;
                }
                if (need0) {
                        if (bn->w_bwd.reorder && bn->w_bwd.reorder != bn->w_fwd.reorder &&
                            (r = run_reorder(p, bn->w_bwd.reorder, bn->w_bwd.user, bn->w_bwd.mem, name, err)) < 0)
                                return r;
                        dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, out->dmem},
                                                {DNNL_ARG_WEIGHTS, bn->w_bwd.mem},
                                                {DNNL_ARG_DIFF_SRC, dsrc}};
                        if ((r = run(p, bn->bwd_data, 3, a, name, err)) < 0)
                                return r;
                }
                if (nn_node_trainable(n)) {
                        bool wt = !n->weight->frozen;
                        dnnl_memory_t dw = wt ? bn->dw.mem : bn->dw_scratch;
                        if (!wt && bn->dw.mem == bn->dw.user)
                                dw = bn->dw_scratch;
                        dnnl_memory_t wsrc = src, wddst = out->dmem;
                        if (bn->bw_src.needed) {
                                if ((r = run_reorder(p, bn->bw_src.fwd, src, bn->bw_src.mem, name, err)) < 0)
                                        return r;
                                wsrc = bn->bw_src.mem;
                        }
                        if (bn->bw_ddst.needed) {
                                if ((r = run_reorder(p, bn->bw_ddst.fwd, out->dmem, bn->bw_ddst.mem, name, err)) < 0)
                                        return r;
                                wddst = bn->bw_ddst.mem;
                        }
                        dnnl_exec_arg_t a[4] = {
                                {DNNL_ARG_SRC, wsrc},
                                {DNNL_ARG_DIFF_DST, wddst},
                                {DNNL_ARG_DIFF_WEIGHTS, dw},
                                {DNNL_ARG_DIFF_BIAS, n->bias && !n->bias->frozen ? bn->dbias : bn->dbias_scratch}};
                        if ((r = run(p, bn->bwd_weights, n->bias ? 4 : 3, a, name, err)) < 0)
                                return r;
                        if (wt && bn->dw.reorder &&
                            (r = run_reorder(p, bn->dw.reorder, bn->dw.mem, bn->dw.user, name, err)) < 0)
                                return r;
                }
                break;
        }
        case NODE_BN: {
                bool wt = !n->weight->frozen, bt = !n->bias->frozen;
                dnnl_memory_t mean = bn->used_global ? bn->rmean : bn->mean;
                dnnl_memory_t var = bn->used_global ? bn->rvar : bn->var;
                dnnl_exec_arg_t a[8] = {{DNNL_ARG_SRC, src},
                                        {DNNL_ARG_DIFF_DST, out->dmem},
                                        {DNNL_ARG_SCALE, bn->w_fwd.user},
                                        {DNNL_ARG_SHIFT, bn->bias},
                                        {DNNL_ARG_MEAN, mean},
                                        {DNNL_ARG_VARIANCE, var},
                                        {DNNL_ARG_DIFF_SRC, dsrc},
                                        {DNNL_ARG_DIFF_SCALE, wt ? bn->dw.user : bn->dw_scratch}};
                dnnl_exec_arg_t all[10];
                memcpy(all, a, sizeof(a));
                all[8] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SHIFT, bt ? bn->dbias : bn->dbias_scratch};
                all[9] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, bn->used_global ? bn->ws_g : bn->ws};
                if ((r = run(p, bn->used_global ? bn->bwd_g : bn->bwd_data, bn->fused_relu ? 10 : 9, all, name, err)) <
                    0)
                        return r;
                break;
        }
        case NODE_ACT:
        case NODE_MAXPOOL:
        case NODE_AVGPOOL:
        case NODE_GAP: {
                if (!need0 || bn->alias) /* alias: the batchnorm below applies the relu mask */
                        break;
                dnnl_exec_arg_t a[3] = {
                        {DNNL_ARG_DIFF_DST, out->dmem},
                        {DNNL_ARG_DIFF_SRC, dsrc},
                        {n->kind == NODE_ACT ? DNNL_ARG_SRC : DNNL_ARG_WORKSPACE, n->kind == NODE_ACT ? src : bn->ws}};
                if ((r = run(p, bn->bwd_data, n->kind == NODE_ACT || bn->ws ? 3 : 2, a, name, err)) < 0)
                        return r;
                break;
        }
        case NODE_FLATTEN:
                if (need0 && (r = run_reorder(p, bn->bwd_data, bn->flat_dview, dsrc, name, err)) < 0)
                        return r;
                break;
        case NODE_DROPOUT: {
                if (!need0)
                        break;
                CHK(dnnl_stream_wait(p->st), "stream_wait");
                const float *dy = mem_ptr(out->dmem);
                float *dx = mem_ptr(dsrc);
                size_t cnt = out->nfloats;
                if (!bn->dropout_on) {
                        memcpy(dx, dy, cnt * sizeof(float));
                        break;
                }
                const uint8_t *mask = bn->mask;
                float scale = bn->dropout_scale;
#pragma omp parallel for schedule(static)
                for (size_t i = 0; i < cnt; i++)
                        dx[i] = mask[i] ? dy[i] * scale : 0.0f;
                break;
        }
        case NODE_ADD: {
                CHK(dnnl_stream_wait(p->st), "stream_wait");
                size_t bytes = out->nfloats * sizeof(float);
                if (need0)
                        memcpy(mem_ptr(dsrc), mem_ptr(out->dmem), bytes);
                if (need1)
                        memcpy(mem_ptr(bn->in[1].dmem), mem_ptr(out->dmem), bytes);
                break;
        }
        }
        if (need0 && (r = din_merge(m, p, ni, 0, err)) < 0)
                return r;
        if (need1 && (r = din_merge(m, p, ni, 1, err)) < 0)
                return r;
        return 0;
}

/* The backward's primitives and diff buffers of plan p (on its first backward, or ahead of it for model_plan). */
static int onednn_plan_backward(struct model *m, struct backend_plan *p, struct ft_error *err) {
        const char *name = "output";
        int r;
        if (p->bwd_ready)
                return 0;
        for (int v = 1; v < m->n_values; v++) {
                if (p->vals[v].dmem)
                        continue;
                if (p->nodes[v - 1].alias)
                        p->vals[v].dmem = p->vals[m->nodes[v - 1].in[0]].dmem;
                else if ((r = mem_new(p, &p->vals[v].md, DNNL_MEMORY_ALLOCATE, &p->vals[v].dmem, name, err)) < 0)
                        return r;
        }
        dnnl_memory_desc_t md;
        CHK(plain_md(&md, p->batch, &m->nodes[m->n_nodes - 1].out), "memory_desc_init");
        struct bvalue *last = &p->vals[m->n_nodes];
        if (dnnl_memory_desc_equal(&md, &last->md))
                p->dout_mem = last->dmem;
        else if ((r = mem_new(p, &md, DNNL_MEMORY_ALLOCATE, &p->dout_mem, name, err)) < 0 ||
                 (r = reorder_new(p, &md, &last->md, &p->dout_reorder, name, err)) < 0)
                return r;
        for (int i = 0; i < m->n_nodes; i++)
                if ((r = node_bwd_init(m, p, i, err)) < 0)
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
        nn_requires_grad(m, p->rg);
        for (int v = 0; v < m->n_values; v++)
                p->vals[v].written = false;
        if (!p->rg[m->n_nodes])
                return 0; /* everything frozen */
        size_t outn = (size_t)p->batch * model_output_count(m);
        memcpy(mem_ptr(p->dout_mem), d_out, outn * sizeof(float));
        if (p->dout_reorder &&
            (r = run_reorder(p, p->dout_reorder, p->dout_mem, p->vals[m->n_nodes].dmem, name, err)) < 0)
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

static size_t onednn_kernels(const struct backend_plan *p, const struct model_kernel **ret) {
        *ret = p->kernels;
        return p->n_kernels;
}

const struct backend_ops backend_onednn_ops = {
        .name = "onednn",
        .kernels = onednn_kernels,
        .plan_backward = onednn_plan_backward,
        .plan_new = plan_new,
        .plan_free = plan_free,
        .forward = onednn_forward,
        .backward = onednn_backward,
        .params_plain = onednn_params_plain,
        .params_free = onednn_params_free,
};
