/* test_diagnostics.c - per-example diagnostics (compute/diagnostics.h): probabilities, losses and confident
 * learning's thresholds and suspects on hand-computed logits; the CSV; and a real training run on Gaussian blobs
 * with 10% of the labels flipped, whose suspected label errors must find most of the flipped validation rows.
 * Not for: the API that serves the report (tests/integration/test_api_diagnostics.sh). */
#include <math.h>

#include "compute/diagnostics.h"
#include "tests/tap.h"
#include "tests/unit/train_fixture.h"

static void by_hand(void) {
        /* 4 examples, 2 classes; logits chosen so p(1) = 0.5, 0.8807971, 0.1192029, 0.9525741 */
        const float z[] = {0, 0, 0, 2, 2, 0, 0, 3};
        const int32_t y[] = {0, 1, 1, 0};
        const size_t idx[] = {7, 3, 9, 1};
        const size_t lines[] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
        char *names[] = {"cat", "dog, big"};
        struct diag_report r;
        struct ft_error err = {0};
        int rc = diag_compute(z, y, idx, lines, 4, 2, &r, &err);
        if (!ok(rc == 0, "computes (%s)", err.message))
                return;
        ok(r.ex[0].index == 7 && r.ex[0].line == 9 && r.ex[3].line == 3, "index and CSV line of each example");
        ok(fabsf(r.ex[1].p_label - 0.8807971f) < 1e-6f && fabsf(r.ex[1].loss - 0.126928f) < 1e-5f,
           "p(label) and loss -log p (%.6f %.6f)", (double)r.ex[1].p_label, (double)r.ex[1].loss);
        ok(r.ex[2].pred == 0 && fabsf(r.ex[2].p_pred - 0.8807971f) < 1e-6f, "prediction and its probability");
        /* t_0 = mean p(0) over examples labelled 0 = (0.5 + 0.0474259) / 2; t_1 = (0.8807971 + 0.1192029) / 2 */
        ok(fabs(r.threshold[0] - 0.273713) < 1e-5 && fabs(r.threshold[1] - 0.5) < 1e-6,
           "per-class thresholds are the mean self-confidence (%.6f %.6f)", r.threshold[0], r.threshold[1]);
        /* ex 0: p = (.5, .5), both above their thresholds: the most probable (the first of a tie) is its label */
        /* ex 2: labelled 1, p(0) = .88 >= t_0: suspected, suggested 0; ex 3: labelled 0, p(1) = .95: suspected */
        ok(!r.ex[0].suspected && !r.ex[1].suspected && r.ex[2].suspected && r.ex[2].suggested == 0 &&
                   r.ex[3].suspected && r.ex[3].suggested == 1,
           "suspects follow the confident joint's off-diagonal");
        is_int((int)r.n_suspected, 2, "two suspects");
        is_int((int)r.n_mistakes, 2, "two mistakes");
        size_t *pos, n;
        ok(diag_rank(&r, DIAG_BY_LOSS, 2, &pos, &n) == 0 && n == 2 && pos[0] == 3 && pos[1] == 2,
           "top losses, highest first");
        free(pos);
        ok(diag_rank(&r, DIAG_SUSPECTED, 10, &pos, &n) == 0 && n == 2 && pos[0] == 3,
           "suspects by p(label), lowest first");
        free(pos);
        json_t *doc = diag_report_json(&r, names, true);
        char *csv = NULL;
        size_t len = 0;
        ok(doc && diag_csv_from_json(doc, &csv, &len, &err) == 0, "CSV from the report");
        const char *want = "index,line,label,predicted,p_label,p_predicted,loss,correct,suspected,suggested\r\n"
                           "7,9,cat,cat,0.5,0.5,0.693147,true,false,\r\n"
                           "3,5,\"dog, big\",\"dog, big\",0.880797,0.880797,0.126928,true,false,\r\n";
        ok(csv && strncmp(csv, want, strlen(want)) == 0, "CSV rows, quoted where needed");
        ok(json_integer_value(json_object_get(doc, "suspected_label_errors")) == 2 &&
                   json_array_size(json_object_get(doc, "examples")) == 4 &&
                   json_is_null(json_object_get(json_array_get(json_object_get(doc, "examples"), 0), "suggested")),
           "JSON summary and examples");
        free(csv);
        json_decref(doc);
        const int32_t bad[] = {0, 2, 1, 0};
        is_int(diag_compute(z, bad, idx, NULL, 4, 2, &r, &err), -EINVAL, "a label out of range is refused");
        diag_report_deinit(&r);
}

/* Blobs the model separates well, with every 10th row's label moved to the next class. */
static void flipped_labels(struct compute_ctx *ctx) {
        const size_t n = 2000, f = 8, k = 4;
        struct dataset *ds = blobs_new(n, f, k, 3.0, 42);
        bool *flipped = calloc(n, sizeof(bool));
        for (size_t i = 0; i < n; i += 10) {
                ds->class_counts[ds->labels[i]]--;
                ds->labels[i] = (ds->labels[i] + 1) % (int32_t)k;
                ds->class_counts[ds->labels[i]]++;
                flipped[i] = true;
        }
        struct model *m = mlp_new(f, 32, k, 0);
        model_init(m, 3);
        struct jobspec spec;
        parse_job("{\"model\": \"mlp\", \"training_file\": \"x\", \"validation_split\": 0.3, \"seed\": 1,"
                  " \"hyperparameters\": {\"epochs\": 5, \"batch_size\": 32, \"learning_rate\": 0.01}}",
                  &spec);
        struct train_result res;
        struct ft_error err = {0};
        int rc = train_run(&spec, m, ctx, ds, NULL, NULL, NULL, &res, &err);
        if (!ok(rc == 0, "flipped: trains (%s)", err.message))
                goto out;
        const struct diag_report *d = res.diagnostics;
        if (!ok(d != NULL && d->on_validation, "a classification run has diagnostics on the validation split"))
                goto out_res;
        size_t n_flipped = 0, found = 0;
        for (size_t i = 0; i < d->n; i++) {
                n_flipped += flipped[d->ex[i].index];
                found += flipped[d->ex[i].index] && d->ex[i].suspected;
        }
        double recall = (double)found / (double)n_flipped, precision = (double)found / (double)d->n_suspected;
        diag("flipped: %zu validation examples, %zu flipped, %zu suspected, %zu of the flipped found: recall %.3f, "
             "precision %.3f, accuracy %.3f",
             d->n, n_flipped, d->n_suspected, found, recall, precision, res.final.cls.accuracy);
        for (size_t i = 0; i < d->n && getenv("DIAG_DEBUG"); i++)
                if (flipped[d->ex[i].index] && !d->ex[i].suspected)
                        diag("missed: label %d pred %d p_pred %.3f p_label %.3f t_pred %.3f", d->ex[i].label,
                             d->ex[i].pred, (double)d->ex[i].p_pred, (double)d->ex[i].p_label,
                             d->threshold[d->ex[i].pred]);
        ok(n_flipped >= 50, "the validation split holds flipped rows (%zu)", n_flipped);
        ok(recall >= 0.7, "suspected label errors find most flipped rows (recall %.3f >= 0.7)", recall);
        ok(precision >= 0.9, "and nearly every suspect is a flipped row (precision %.3f >= 0.9)", precision);
        /* the loss ranking: of the n_flipped highest-loss examples, how many are flipped */
        size_t *pos, n_top, top_flipped = 0;
        if (diag_rank(d, DIAG_BY_LOSS, n_flipped, &pos, &n_top) == 0) {
                for (size_t i = 0; i < n_top; i++)
                        top_flipped += flipped[d->ex[pos[i]].index];
                free(pos);
        }
        diag("flipped: %zu of the %zu highest-loss examples are flipped rows", top_flipped, n_top);
        ok((double)top_flipped >= 0.8 * (double)n_flipped, "the highest losses are mostly flipped rows (%zu of %zu)",
           top_flipped, n_flipped);
        bool restores = true;
        for (size_t i = 0; i < d->n; i++)
                if (d->ex[i].suspected && flipped[d->ex[i].index] &&
                    d->ex[i].suggested != (d->ex[i].label + (int32_t)k - 1) % (int32_t)k)
                        restores = false;
        ok(restores, "every flipped row found suggests its original label");
        json_t *doc = job_metrics_json(&res, true);
        const json_t *dj = json_object_get(doc, "diagnostics");
        ok(json_array_size(json_object_get(dj, "examples")) == d->n &&
                   json_array_size(json_object_get(dj, "top_loss")) == DIAG_TOP,
           "metrics.json carries the diagnostics with every example");
        json_decref(doc);
        json_t *brief = job_metrics_json(&res, false);
        ok(!json_object_get(brief, "diagnostics"), "the job's brief metrics leave them out");
        json_decref(brief);
out_res:
        train_result_deinit(&res);
out:
        jobspec_deinit(&spec);
        model_free(m);
        table_free(ds);
        free(flipped);
}

int main(void) {
        struct compute_ctx *ctx = NULL;
        struct ft_error err = {0};
        by_hand();
        if (!ok(compute_ctx_new(1, &ctx, &err) == 0, "context (%s)", err.message))
                return tap_done();
        flipped_labels(ctx);
        compute_ctx_free(ctx);
        return tap_done();
}
