/* diagnostics.h - per-example diagnostics of a classification model on the examples it was evaluated on (the
 * validation data, or the training data when there is none): for each example its place in the dataset, its
 * given label, the prediction, the probability of each, the loss; the highest-loss examples, the most confident
 * mistakes and the suspected label errors, found as confident learning finds them (Northcutt, Jiang and Chuang,
 * "Confident Learning", 2021):
 *
 *   t_j        = the mean of p(j | x) over the examples whose given label is j (the class's self-confidence);
 *   an example with given label i is a suspected label error when, among the classes j whose p(j | x) >= t_j,
 *   the most probable is not i (that class is its "suggested" label); suspects are ranked by p(i | x), lowest
 *   first.
 *
 * compute/train computes the report from the final evaluation's logits; compute/job writes it into metrics.json
 * ("diagnostics") and examples.csv; the API pages through it.
 *
 * Not for: running the model (compute/train), regression (no labels to doubt), files other than the two above.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Above either, no diagnostics are kept (the final metrics are unaffected): the logits of the evaluation and the
 * metrics.json that carries every example stay bounded. */
#define DIAG_EXAMPLES_MAX ((size_t)200000)
#define DIAG_LOGITS_MAX ((size_t)1 << 26)
/* Entries in each of the summary's lists (top losses, confident mistakes, suspected label errors). */
#define DIAG_TOP 20

struct diag_example {
        size_t index; /* the row's 0-based position in its dataset: the IDX image index, the CSV data row */
        size_t line; /* CSV: the 1-based line the row starts on (the header is line 1); 0 for IDX */
        int32_t label, pred; /* given and predicted class */
        float p_label, p_pred; /* softmax probability of each */
        float loss; /* -log p_label (cross-entropy without label smoothing or class weights) */
        bool suspected; /* a suspected label error (the rule above) */
        int32_t suggested; /* when suspected: the class confident learning assigns; else -1 */
};

struct diag_report {
        size_t n, n_classes;
        struct diag_example *ex; /* n, in evaluation order (the dataset order of the evaluated split) */
        double *threshold; /* n_classes: t_j; NaN for a class no example is labelled with */
        size_t n_mistakes, n_suspected;
        bool on_validation; /* evaluated on validation data (else the training data) */
};

/* From the logits [n, n_classes] of the evaluated examples, their given labels [n] (0 <= label < n_classes), and
 * where each is in its dataset: index[n] and lines[n] (lines NULL for IDX: line 0). Fills *ret (release with
 * diag_report_deinit). -EINVAL for a label out of range or a size of 0; -ENOMEM. */
int diag_compute(const float *logits, const int32_t *labels, const size_t *index, const size_t *lines, size_t n,
                 size_t n_classes, struct diag_report *ret, struct ft_error *err);
void diag_report_deinit(struct diag_report *r);
void diag_report_free(struct diag_report *r);

/* Example positions (into r->ex) sorted by loss, highest first, of at most max entries; ties by position. Mistakes
 * only (pred != label) by p_pred, highest first; suspects only by p_label, lowest first. *ret_n is the count.
 * The array is malloc'd. */
enum diag_order {
        DIAG_BY_LOSS,
        DIAG_CONFIDENT_MISTAKES,
        DIAG_SUSPECTED,
};
int diag_rank(const struct diag_report *r, enum diag_order order, size_t max, size_t **ret, size_t *ret_n);

/* One example as JSON: {"index", "line" (null for IDX), "label", "predicted", "p_label", "p_predicted", "loss",
 * "correct", "suspected", "suggested" (null unless suspected)}; class names from names (n_classes of them). */
json_t *diag_example_json(const struct diag_example *e, char *const *names);
/* The "diagnostics" object of metrics.json: {"split", "examples_count", "mistakes", "suspected_label_errors",
 * "rule", "thresholds": {class: t}, "top_loss": [...], "confident_mistakes": [...], "suspected": [...]} with
 * DIAG_TOP examples in each list and, when all is set, "examples": every example in order. NULL on OOM. */
json_t *diag_report_json(const struct diag_report *r, char *const *names, bool all);
/* The examples as CSV (RFC 4180, a header line "index,line,label,predicted,p_label,p_predicted,loss,correct,
 * suspected,suggested"), from the "examples" array of a diagnostics object (what metrics.json holds: the CLI
 * and the API, which serves it from the stored file, write the same bytes), into a malloc'd NUL-terminated
 * buffer. -EINVAL when the object has no examples. */
int diag_csv_from_json(const json_t *diagnostics, char **ret, size_t *ret_len, struct ft_error *err);
/* examples.csv at path (atomically, 0644). */
int diag_csv_write(const char *path, const struct diag_report *r, char *const *names, struct ft_error *err);
