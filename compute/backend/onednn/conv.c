/* conv.c - the oneDNN backend's convolutions (nn.Conv2d): forward, backward data and backward weights, side by
 * side, with the choices that make them fast: Winograd where it measured faster (conv_alg), small-output
 * convolutions as per-tap GEMMs (tg_*), and backward weights choosing its own formats where the forward's leave it
 * only a reference kernel (conv_bwd_weights_formats). The weight, bias and their views are weighted.c's.
 *
 * Not for: spec fields or init (model.c), the weights' layouts between steps (core.c). */
#include <stdlib.h>
#include <string.h>

#include "compute/backend/onednn/onednn.h"

/* one (output position, input position, kernel tap) triple of a convolution run as per-tap GEMMs */
struct tg_pair {
        int o, s, t;
};

struct conv {
        struct weighted w; /* first: the weighted.c part */
        struct tg_pair *tg; /* conv as per-tap GEMMs (tg_eligible): its (output, input, tap) triples */
        int n_tg;
        float *tg_pack; /* backward weights: the pairs of one tap stacked along K */
};

static void conv_state_free(void *state) {
        struct conv *c = state;
        free(c->tg);
        free(c->tg_pack);
}

static void conv_dims(const struct node *n, dnnl_dims_t s, dnnl_dims_t d, dnnl_dims_t pl, dnnl_dims_t pr) {
        s[0] = n->sh, s[1] = n->sw;
        d[0] = n->dh - 1, d[1] = n->dw - 1;
        pl[0] = pr[0] = n->ph;
        pl[1] = pr[1] = n->pw;
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
        const struct value_shape *is = node_in_shape(m, n);
        bool wino = n->kh == 3 && n->kw == 3 && n->sh == 1 && n->sw == 1 && n->dh == 1 && n->dw == 1 &&
                    n->out.h >= min_out && n->out.w >= min_out && is->c % 16 == 0 && n->out.c % 16 == 0;
        return wino ? dnnl_convolution_winograd : dnnl_convolution_direct;
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
        return n->out.h * n->out.w <= TG_POSITIONS_MAX && n->kh * n->kw > 1 && node_in_shape(m, n)->c >= 16;
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
        const struct node *n = &m->nodes[ni];
        struct conv *c = p->nodes[ni].state;
        const struct value_shape *is = node_in_shape(m, n);
        const char *name = n->name;
        dnnl_memory_desc_t smd, dmd, wmd;
        int r;
        CHK(nhwc_md(&smd, p->batch, is), "memory_desc_init");
        CHK(nhwc_md(&dmd, p->batch, &n->out), "memory_desc_init");
        CHK(hwio_md(&wmd, n->weight), "memory_desc_init");
        c->tg = malloc((size_t)(n->out.h * n->out.w * n->kh * n->kw) * sizeof(*c->tg));
        if (!c->tg)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        for (int64_t oh = 0; oh < n->out.h; oh++)
                for (int64_t ow = 0; ow < n->out.w; ow++)
                        for (int64_t kh = 0; kh < n->kh; kh++)
                                for (int64_t kw = 0; kw < n->kw; kw++) {
                                        int64_t ih = oh * n->sh - n->ph + kh * n->dh;
                                        int64_t iw = ow * n->sw - n->pw + kw * n->dw;
                                        if (ih < 0 || ih >= is->h || iw < 0 || iw >= is->w)
                                                continue;
                                        c->tg[c->n_tg++] =
                                                (struct tg_pair){(int)(oh * n->out.w + ow), (int)(ih * is->w + iw),
                                                                 (int)(kh * n->kw + kw)};
                                }
        if ((r = onednn_conform_init(p, m, ni, 0, &smd, err)) < 0 ||
            (r = onednn_wview_init(p, m, &c->w.w_fwd, n->weight, n->weight->data, &wmd, false, name, err)) < 0 ||
            (r = onednn_value_init(p, &p->vals[ni + 1], &dmd, name, err)) < 0)
                return r;
        onednn_kernel_record(p, name, NULL, "convolution", p->inference ? "forward_inference" : "forward_training");
        return 0;
}

static int tg_bwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct conv *c = p->nodes[ni].state;
        const struct value_shape *is = node_in_shape(m, n);
        const char *name = n->name;
        /* backward weights stacks at most one pair per output position for a tap; backward data needs [ci, B] */
        c->tg_pack =
                malloc((size_t)(n->out.h * n->out.w) * (size_t)p->batch * (size_t)(is->c + n->out.c) * sizeof(float));
        if (!c->tg_pack)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        onednn_kernel_record(p, name, NULL, "convolution", "backward_data");
        onednn_kernel_record(p, name, NULL, "convolution", "backward_weights");
        return onednn_wview_init(p, m, &c->w.dw, n->weight, n->weight->grad, &c->w.w_fwd.md, true, name, err);
}

/* the sizes the per-tap GEMMs index with: batch, channels in and out, input and output positions */
struct tg_dims {
        int64_t batch, ci, co, ip, op;
};

static struct tg_dims tg_dims(const struct model *m, const struct backend_plan *p, const struct node *n) {
        const struct value_shape *is = node_in_shape(m, n);
        return (struct tg_dims){p->batch, is->c, n->out.c, is->h * is->w, n->out.h * n->out.w};
}

#define SGEMM(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc)                                                           \
        CHK(dnnl_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc), "sgemm")

/* y[b][o][:] = bias + sum over the node's triples of x[b][s][:] . W[t] */
static int tg_forward(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct conv *c = p->nodes[ni].state;
        const char *name = n->name;
        const struct tg_dims d = tg_dims(m, p, n);
        int64_t B = d.batch, ci = d.ci, co = d.co, ip = d.ip, op = d.op;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        const float *x = onednn_mem_ptr(p->nodes[ni].in[0].mem), *w = onednn_mem_ptr(c->w.w_fwd.mem);
        const float *bias = n->bias ? tensor_f32(n->bias) : NULL;
        float *y = onednn_mem_ptr(p->vals[ni + 1].mem);
        for (int64_t r = 0; r < B * op; r++)
                for (int64_t k = 0; k < co; k++)
                        y[r * co + k] = bias ? bias[k] : 0.0f;
        for (int i = 0; i < c->n_tg; i++) {
                const struct tg_pair *q = &c->tg[i];
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
        const struct conv *c = p->nodes[ni].state;
        const char *name = n->name;
        const struct tg_dims d = tg_dims(m, p, n);
        int64_t B = d.batch, ci = d.ci, co = d.co, ip = d.ip, op = d.op;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        const float *dy = onednn_mem_ptr(p->vals[ni + 1].dmem), *w = onednn_mem_ptr(c->w.w_fwd.mem);
        float *dx = onednn_mem_ptr(p->nodes[ni].in[0].dmem), *ct = c->tg_pack;
        for (int64_t s = 0; s < ip; s++) {
                float beta = 0.0f;
                for (int i = 0; i < c->n_tg; i++) {
                        const struct tg_pair *q = &c->tg[i];
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
                        for (int64_t k = 0; k < ci; k++)
                                dx[(b * ip + s) * ci + k] = ct[k * B + b];
        }
        return 0;
}

/* dW[t] = sum over the tap's (o, s) pairs of x[:][s][:]^T . dy[:][o][:], the pairs stacked along K in one GEMM;
 * dbias = dy summed over batch and positions */
static int tg_backward_weights(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        const struct conv *c = p->nodes[ni].state;
        const char *name = n->name;
        const struct tg_dims d = tg_dims(m, p, n);
        int64_t B = d.batch, ci = d.ci, co = d.co, ip = d.ip, op = d.op;
        CHK(dnnl_stream_wait(p->st), "stream_wait");
        const float *x = onednn_mem_ptr(p->nodes[ni].in[0].mem), *dy = onednn_mem_ptr(p->vals[ni + 1].dmem);
        if (nn_param_grad(m, n->weight)) {
                float *dw = onednn_mem_ptr(c->w.dw.mem);
                for (int t = 0; t < n->kh * n->kw; t++) {
                        const struct tg_pair *pairs[TG_POSITIONS_MAX]; /* this tap's: one per output position */
                        int k = 0;
                        for (int i = 0; i < c->n_tg && k < TG_POSITIONS_MAX; i++)
                                if (c->tg[i].t == t)
                                        pairs[k++] = &c->tg[i];
                        float *dwt = dw + t * ci * co;
                        if (k == 0) {
                                memset(dwt, 0, (size_t)(ci * co) * sizeof(float));
                        } else if (k == 1) { /* straight from the activations, no packing */
                                SGEMM('T', 'N', ci, co, B, x + pairs[0]->s * ci, ip * ci, dy + pairs[0]->o * co,
                                      op * co, 0.0f, dwt, co);
                        } else {
                                float *a = c->tg_pack, *b = a + (size_t)k * (size_t)B * (size_t)ci;
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
        if (nn_param_grad(m, n->bias)) {
                float *db = n->bias->grad;
                memset(db, 0, (size_t)co * sizeof(float));
                for (int64_t r = 0; r < B * op; r++)
                        for (int64_t k = 0; k < co; k++)
                                db[k] += dy[r * co + k];
        }
        return 0;
}

/* ---- forward ------------------------------------------------------------------------------------------- */

static int conv_fwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct conv *c = p->nodes[ni].state;
        const char *name = n->name;
        if (tg_eligible(m, n))
                return tg_fwd_init(m, p, ni, err);
        dnnl_memory_desc_t smd, wmd, bmd, *bp, omd;
        int r;
        CHK(onednn_md_any(&smd, p->batch, node_in_shape(m, n)), "memory_desc_init");
        CHK(onednn_md_any(&omd, p->batch, &n->out), "memory_desc_init");
        if ((r = onednn_weighted_mds(n, &wmd, &bmd, &bp, err)) < 0)
                return r;
        dnnl_convolution_desc_t cd;
        dnnl_dims_t s, d, pl, pr;
        conv_dims(n, s, d, pl, pr);
        dnnl_alg_kind_t alg = conv_alg(m, n, 8);
        CHK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training, alg, &smd, &wmd, bp, &omd, s, d, pl,
                                                       pr),
            "convolution_forward_desc_init");
        if ((r = onednn_pd_try(p, &cd, NULL, &c->w.fwd_pd, "convolution forward", name, err)) < 0)
                return r;
        if (!c->w.fwd_pd) { /* no Winograd for this shape on this CPU */
                alg = dnnl_convolution_direct;
                CHK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training, alg, &smd, &wmd, bp, &omd, s,
                                                               d, pl, pr),
                    "convolution_forward_desc_init");
                if ((r = onednn_pd_new(p, &cd, NULL, &c->w.fwd_pd, "convolution forward", name, err)) < 0)
                        return r;
        }
        if (p->inference) {
                /* Inference with the formats training picks: left to choose, oneDNN 2.6's inference kernels
                 * (brgconv on AVX-512) take nhwc while batchnorm, pooling and Winograd keep nChw16c, and the
                 * reorders between them cost more than the convolutions (ONEDNN_VERBOSE, ResNet-18 224). */
                dnnl_primitive_desc_t ipd;
                CHK(dnnl_dilated_convolution_forward_desc_init(
                            &cd, dnnl_forward_inference, alg, onednn_q_md(c->w.fwd_pd, dnnl_query_src_md),
                            onednn_q_md(c->w.fwd_pd, dnnl_query_weights_md), bp,
                            onednn_q_md(c->w.fwd_pd, dnnl_query_dst_md), s, d, pl, pr),
                    "convolution_forward_desc_init");
                if ((r = onednn_pd_try(p, &cd, NULL, &ipd, "convolution forward", name, err)) < 0)
                        return r;
                if (ipd)
                        c->w.fwd_pd = ipd;
        }
        return onednn_weighted_fwd_finish(m, p, ni, &c->w, err);
}

static int conv_forward(struct model *m, struct backend_plan *p, int ni, bool training, struct ft_error *err) {
        struct conv *c = p->nodes[ni].state;
        const char *name = m->nodes[ni].name;
        int r;
        (void)training;
        if (!c->tg)
                return onednn_weighted_forward(m, p, ni, &c->w, err);
        if (c->w.w_fwd.reorder &&
            (r = onednn_run_reorder(p, c->w.w_fwd.reorder, c->w.w_fwd.user, c->w.w_fwd.mem, name, err)) < 0)
                return r;
        return tg_forward(m, p, ni, err);
}

/* ---- backward ------------------------------------------------------------------------------------------ */

/* A convolution's backward data (weights=false) or backward weights primitive descriptor, with the algorithm
 * conv_alg picks, or direct when oneDNN has no implementation of that algorithm for it. */
static int conv_bwd_pd(struct backend_plan *p, const struct model *m, const struct node *n, const struct conv *c,
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
                        return onednn_pd_new(p, &cd, c->w.fwd_pd, ret, what, name, err);
                if ((r = onednn_pd_try(p, &cd, c->w.fwd_pd, ret, what, name, err)) < 0 || *ret)
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
        const struct node *n = &m->nodes[ni];
        struct conv *c = p->nodes[ni].state;
        struct bvalue *out = &p->vals[ni + 1];
        const char *name = n->name;
        int r;
        if (!pd_is_reference(*wpd))
                return 0;
        dnnl_memory_desc_t sany, dany;
        CHK(onednn_md_any(&sany, p->batch, node_in_shape(m, n)), "memory_desc_init");
        CHK(onednn_md_any(&dany, p->batch, &n->out), "memory_desc_init");
        for (int t = 0; t < 2; t++) {
                dnnl_primitive_desc_t alt;
                if ((r = conv_bwd_pd(p, m, n, c, true, &sany, wmd, bmd, t ? &dany : &out->md, &alt, err)) < 0)
                        return r;
                if (!pd_is_reference(alt)) {
                        *wpd = alt;
                        break;
                }
        }
        struct {
                struct conform *c;
                const dnnl_memory_desc_t *have, *want;
        } cv[2] = {{&c->w.bw_src, &p->nodes[ni].in[0].md, onednn_q_md(*wpd, dnnl_query_src_md)},
                   {&c->w.bw_ddst, &out->md, onednn_q_md(*wpd, dnnl_query_diff_dst_md)}};
        for (int i = 0; i < 2; i++) {
                struct conform *cf = cv[i].c;
                cf->needed = !dnnl_memory_desc_equal(cv[i].have, cv[i].want);
                if (!cf->needed)
                        continue;
                cf->md = *cv[i].want;
                if ((r = onednn_mem_new(p, &cf->md, DNNL_MEMORY_ALLOCATE, &cf->mem, name, err)) < 0 ||
                    (r = onednn_reorder_new(p, cv[i].have, &cf->md, &cf->fwd, name, err)) < 0)
                        return r;
        }
        return 0;
}

/* Backward data in the formats forward chose has, for some shapes, only oneDNN's reference implementation: on
 * AVX-512 the CNN with channels [8, 16] (an 8-channel plain source) ran its second convolution's backward data with
 * ref:any. Then let it choose its diff_src format, and if need be its diff_dst format too; weighted.c converts
 * (bd_ddst, bd_dsrc) around it. */
static int conv_bwd_data_formats(struct backend_plan *p, struct model *m, int ni, const dnnl_memory_desc_t *wmd,
                                 dnnl_primitive_desc_t *dpd, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct conv *c = p->nodes[ni].state;
        const char *name = n->name;
        int r;
        if (!*dpd || !pd_is_reference(*dpd))
                return 0;
        dnnl_memory_desc_t sany, dany;
        CHK(onednn_md_any(&sany, p->batch, node_in_shape(m, n)), "memory_desc_init");
        CHK(onednn_md_any(&dany, p->batch, &n->out), "memory_desc_init");
        for (int t = 0; t < 2; t++) {
                dnnl_primitive_desc_t alt;
                if ((r = conv_bwd_pd(p, m, n, c, false, &sany, wmd, NULL, t ? &dany : &p->vals[ni + 1].md, &alt, err)) <
                    0)
                        return r;
                if (!pd_is_reference(alt)) {
                        *dpd = alt;
                        break;
                }
        }
        return 0;
}

static int conv_bwd_init(struct model *m, struct backend_plan *p, int ni, struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct conv *c = p->nodes[ni].state;
        if (c->tg)
                return tg_bwd_init(m, p, ni, err);
        const dnnl_memory_desc_t *smd = &p->nodes[ni].in[0].md, *dmd = &p->vals[ni + 1].md;
        dnnl_memory_desc_t wmd, bmd, *bp;
        dnnl_primitive_desc_t dpd = NULL, wpd = NULL;
        int r;
        if ((r = onednn_weighted_mds(n, &wmd, &bmd, &bp, err)) < 0)
                return r;
        if (p->rg[n->in[0]] && ((r = conv_bwd_pd(p, m, n, c, false, smd, &wmd, bp, dmd, &dpd, err)) < 0 ||
                                (r = conv_bwd_data_formats(p, m, ni, &wmd, &dpd, err)) < 0))
                return r;
        /* input-gradient mode computes no parameter gradient: no backward weights */
        if (!m->input_grad && ((r = conv_bwd_pd(p, m, n, c, true, smd, &wmd, bp, dmd, &wpd, err)) < 0 ||
                               (r = conv_bwd_weights_formats(p, m, ni, &wmd, bp, &wpd, err)) < 0))
                return r;
        return onednn_weighted_bwd_finish(m, p, ni, &c->w, dpd, wpd, bp, err);
}

static int conv_backward(struct model *m, struct backend_plan *p, int ni, const bool need[2], struct ft_error *err) {
        const struct node *n = &m->nodes[ni];
        struct conv *c = p->nodes[ni].state;
        const char *name = n->name;
        int r;
        if (!c->tg)
                return onednn_weighted_backward(m, p, ni, &c->w, need, err);
        if (need[0] && (r = tg_backward_data(m, p, ni, err)) < 0)
                return r;
        if (nn_node_trainable(m, n) && (r = tg_backward_weights(m, p, ni, err)) < 0)
                return r;
        if (nn_param_grad(m, n->weight) && c->w.dw.reorder &&
            (r = onednn_run_reorder(p, c->w.dw.reorder, c->w.dw.mem, c->w.dw.user, name, err)) < 0)
                return r;
        return 0;
}

const struct layer_ops onednn_conv_ops = {
        .state_size = sizeof(struct conv),
        .fwd_init = conv_fwd_init,
        .forward = conv_forward,
        .bwd_init = conv_bwd_init,
        .backward = conv_backward,
        .state_free = conv_state_free,
};
