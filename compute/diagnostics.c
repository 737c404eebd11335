/* diagnostics.c - per-example diagnostics and confident learning's suspected label errors (see diagnostics.h).
 *
 * Not for: running the model, storing or serving the report.
 */
#include "compute/diagnostics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"

void diag_report_deinit(struct diag_report *r) {
        if (!r)
                return;
        free(r->ex);
        free(r->threshold);
        memset(r, 0, sizeof(*r));
}

void diag_report_free(struct diag_report *r) {
        diag_report_deinit(r);
        free(r);
}

/* softmax of one row into p (max-subtracted, in double) */
static void softmax_row(const float *z, size_t k, double *p) {
        double mx = z[0], sum = 0;
        for (size_t c = 1; c < k; c++)
                if (z[c] > mx)
                        mx = z[c];
        for (size_t c = 0; c < k; c++) {
                p[c] = exp((double)z[c] - mx);
                sum += p[c];
        }
        for (size_t c = 0; c < k; c++)
                p[c] /= sum;
}

int diag_compute(const float *logits, const int32_t *labels, const size_t *index, const size_t *lines, size_t n,
                 size_t n_classes, struct diag_report *ret, struct ft_error *err) {
        if (n == 0 || n_classes < 2)
                return ft_error_set(err, -EINVAL, NULL, "diagnostics need examples and two or more classes");
        for (size_t i = 0; i < n; i++)
                if (labels[i] < 0 || (size_t)labels[i] >= n_classes)
                        return ft_error_set(err, -EINVAL, NULL, "label %d of example %zu is out of range",
                                            (int)labels[i], i);
        struct diag_report r = {.n = n, .n_classes = n_classes};
        double *p = malloc(n_classes * sizeof(double));
        size_t *count = calloc(n_classes, sizeof(size_t));
        r.ex = calloc(n, sizeof(*r.ex));
        r.threshold = calloc(n_classes, sizeof(double));
        if (!p || !count || !r.ex || !r.threshold) {
                free(p);
                free(count);
                diag_report_deinit(&r);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        /* pass 1: per-example probabilities and loss, and each class's self-confidence */
        for (size_t i = 0; i < n; i++) {
                const float *z = logits + i * n_classes;
                struct diag_example *e = &r.ex[i];
                softmax_row(z, n_classes, p);
                int32_t best = 0;
                for (size_t c = 1; c < n_classes; c++)
                        if (z[c] > z[best])
                                best = (int32_t)c;
                double mx = z[best], lse = 0;
                for (size_t c = 0; c < n_classes; c++)
                        lse += exp((double)z[c] - mx);
                lse = mx + log(lse);
                e->index = index ? index[i] : i;
                e->line = lines ? lines[e->index] : 0;
                e->label = labels[i];
                e->pred = best;
                e->p_label = (float)p[labels[i]];
                e->p_pred = (float)p[best];
                e->loss = (float)(lse - (double)z[labels[i]]);
                e->suggested = -1;
                if (best != labels[i])
                        r.n_mistakes++;
                r.threshold[labels[i]] += p[labels[i]];
                count[labels[i]]++;
        }
        for (size_t c = 0; c < n_classes; c++)
                r.threshold[c] = count[c] ? r.threshold[c] / (double)count[c] : NAN;
        /* pass 2: the confident joint's off-diagonal */
        for (size_t i = 0; i < n; i++) {
                struct diag_example *e = &r.ex[i];
                softmax_row(logits + i * n_classes, n_classes, p);
                int32_t j = -1;
                for (size_t c = 0; c < n_classes; c++)
                        if (count[c] && p[c] >= r.threshold[c] && (j < 0 || p[c] > p[j]))
                                j = (int32_t)c;
                if (j >= 0 && j != e->label) {
                        e->suspected = true;
                        e->suggested = j;
                        r.n_suspected++;
                }
        }
        free(p);
        free(count);
        *ret = r;
        return 0;
}

/* qsort has no context argument in C17: the report and order of the one sort running on this thread (workers
 * may rank concurrently) */
static _Thread_local const struct diag_report *sort_report;
static _Thread_local enum diag_order sort_order;

static int cmp_pos(const void *a, const void *b) {
        size_t i = *(const size_t *)a, j = *(const size_t *)b;
        const struct diag_example *x = &sort_report->ex[i], *y = &sort_report->ex[j];
        float kx, ky;
        switch (sort_order) {
        case DIAG_BY_LOSS: kx = -x->loss, ky = -y->loss; break;
        case DIAG_CONFIDENT_MISTAKES: kx = -x->p_pred, ky = -y->p_pred; break;
        default: kx = x->p_label, ky = y->p_label; break;
        }
        if (kx != ky)
                return kx < ky ? -1 : 1;
        return i < j ? -1 : i > j;
}

int diag_rank(const struct diag_report *r, enum diag_order order, size_t max, size_t **ret, size_t *ret_n) {
        size_t *pos = malloc((r->n ? r->n : 1) * sizeof(size_t)), n = 0;
        if (!pos)
                return -ENOMEM;
        for (size_t i = 0; i < r->n; i++) {
                const struct diag_example *e = &r->ex[i];
                if ((order == DIAG_CONFIDENT_MISTAKES && e->pred == e->label) ||
                    (order == DIAG_SUSPECTED && !e->suspected))
                        continue;
                pos[n++] = i;
        }
        sort_report = r;
        sort_order = order;
        qsort(pos, n, sizeof(size_t), cmp_pos);
        *ret = pos;
        *ret_n = FT_MIN(n, max);
        return 0;
}

static double round6(double v) {
        return round(v * 1e6) / 1e6;
}

json_t *diag_example_json(const struct diag_example *e, char *const *names) {
        return json_pack("{s:I,s:o,s:s,s:s,s:f,s:f,s:f,s:b,s:b,s:o}", "index", (json_int_t)e->index, "line",
                         e->line ? json_integer((json_int_t)e->line) : json_null(), "label", names[e->label],
                         "predicted", names[e->pred], "p_label", round6(e->p_label), "p_predicted", round6(e->p_pred),
                         "loss", round6(e->loss), "correct", e->pred == e->label, "suspected", e->suspected,
                         "suggested", e->suspected ? json_string(names[e->suggested]) : json_null());
}

static json_t *ranked(const struct diag_report *r, char *const *names, enum diag_order order) {
        size_t *pos, n;
        json_t *a = json_array();
        if (!a || diag_rank(r, order, DIAG_TOP, &pos, &n) < 0) {
                json_decref(a);
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, diag_example_json(&r->ex[pos[i]], names));
        free(pos);
        return a;
}

json_t *diag_report_json(const struct diag_report *r, char *const *names, bool all) {
        json_t *th = json_object();
        for (size_t c = 0; th && c < r->n_classes; c++)
                json_object_set_new(th, names[c],
                                    isnan(r->threshold[c]) ? json_null() : json_real(round6(r->threshold[c])));
        json_t *doc =
                json_pack("{s:s,s:I,s:I,s:I,s:s,s:o,s:o*,s:o*,s:o*}", "split",
                          r->on_validation ? "validation" : "training", "examples_count", (json_int_t)r->n, "mistakes",
                          (json_int_t)r->n_mistakes, "suspected_label_errors", (json_int_t)r->n_suspected, "rule",
                          "confident learning: t_j is the mean probability of class j over the examples labelled j; an "
                          "example labelled i is suspected when the most probable class j with p(j) >= t_j is not i",
                          "thresholds", th, "top_loss", ranked(r, names, DIAG_BY_LOSS), "confident_mistakes",
                          ranked(r, names, DIAG_CONFIDENT_MISTAKES), "suspected", ranked(r, names, DIAG_SUSPECTED));
        if (!doc || !all)
                return doc;
        json_t *ex = json_array();
        if (!ex || json_object_set_new(doc, "examples", ex) < 0) {
                json_decref(doc);
                return NULL;
        }
        for (size_t i = 0; i < r->n; i++)
                if (json_array_append_new(ex, diag_example_json(&r->ex[i], names)) < 0) {
                        json_decref(doc);
                        return NULL;
                }
        return doc;
}

/* ---- CSV ------------------------------------------------------------------------------------------------- */

struct buf {
        char *p;
        size_t n, cap;
        bool oom;
};

static void buf_add(struct buf *b, const char *s, size_t len) {
        if (b->oom)
                return;
        if (b->n + len + 1 > b->cap) {
                size_t cap = FT_MAX(b->cap * 2, b->n + len + 1 + 4096);
                char *p = realloc(b->p, cap);
                if (!p) {
                        b->oom = true;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->n, s, len);
        b->n += len;
        b->p[b->n] = '\0';
}

static void buf_str(struct buf *b, const char *s) {
        buf_add(b, s, strlen(s));
}

/* a field, quoted (RFC 4180) when it holds a delimiter, a quote or a line break, or starts with a character a
 * spreadsheet would read as a formula */
static void buf_field(struct buf *b, const char *s) {
        if (!strpbrk(s, ",\"\r\n") && !strchr("=+-@", s[0] ? s[0] : 'x')) {
                buf_str(b, s);
                return;
        }
        buf_add(b, "\"", 1);
        for (const char *q = s; *q; q++)
                buf_add(b, *q == '"' ? "\"\"" : q, *q == '"' ? 2 : 1);
        buf_add(b, "\"", 1);
}

static void buf_num(struct buf *b, const json_t *v) {
        char tmp[64];
        if (json_is_integer(v))
                snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
                snprintf(tmp, sizeof(tmp), "%.6g", json_real_value(v));
        else
                tmp[0] = '\0';
        buf_str(b, tmp);
}

int diag_csv_from_json(const json_t *diagnostics, char **ret, size_t *ret_len, struct ft_error *err) {
        const json_t *ex = json_object_get(diagnostics, "examples");
        if (!json_is_array(ex))
                return ft_error_set(err, -EINVAL, NULL, "the diagnostics have no examples");
        struct buf b = {0};
        buf_str(&b, "index,line,label,predicted,p_label,p_predicted,loss,correct,suspected,suggested\r\n");
        size_t i;
        const json_t *e;
        json_array_foreach(ex, i, e) {
                const char *label = json_string_value(json_object_get(e, "label"));
                const char *pred = json_string_value(json_object_get(e, "predicted"));
                const char *sugg = json_string_value(json_object_get(e, "suggested"));
                buf_num(&b, json_object_get(e, "index"));
                buf_add(&b, ",", 1);
                buf_num(&b, json_object_get(e, "line"));
                buf_add(&b, ",", 1);
                buf_field(&b, label ? label : "");
                buf_add(&b, ",", 1);
                buf_field(&b, pred ? pred : "");
                buf_add(&b, ",", 1);
                buf_num(&b, json_object_get(e, "p_label"));
                buf_add(&b, ",", 1);
                buf_num(&b, json_object_get(e, "p_predicted"));
                buf_add(&b, ",", 1);
                buf_num(&b, json_object_get(e, "loss"));
                buf_str(&b, json_is_true(json_object_get(e, "correct")) ? ",true," : ",false,");
                buf_str(&b, json_is_true(json_object_get(e, "suspected")) ? "true," : "false,");
                buf_field(&b, sugg ? sugg : "");
                buf_add(&b, "\r\n", 2);
        }
        if (b.oom) {
                free(b.p);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        *ret = b.p;
        *ret_len = b.n;
        return 0;
}

int diag_csv_write(const char *path, const struct diag_report *r, char *const *names, struct ft_error *err) {
        json_t *doc = diag_report_json(r, names, true);
        char *csv = NULL;
        size_t len = 0;
        int rc = doc ? diag_csv_from_json(doc, &csv, &len, err) : ft_error_set(err, -ENOMEM, NULL, "out of memory");
        json_decref(doc);
        if (rc < 0)
                return rc;
        rc = fileio_write_atomic(path, csv, len, 0644, err);
        free(csv);
        return rc;
}
