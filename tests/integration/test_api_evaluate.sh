#!/usr/bin/env bash
# test_api_evaluate.sh - evaluation, predictions jobs and calibration against the real daemon: a job with
# calibration.temperature_scaling reports ECE and its 15-bin reliability diagram before and after; predict
# answers softmax(logits / T); POST /v1/models/{id}/evaluate answers the job's metrics plus log loss, ROC-AUC,
# curves and calibration, and its accuracy, log loss and ECE equal a reference computed here (awk) from the
# predictions; POST /v1/models/{id}/predictions is a job (kind predictions) with progress whose predictions.csv
# has a row per data row, with and without a target column; the 4xx of each. The numbers themselves are checked
# against scikit-learn in the unit test (test_metrics_curves).
. "$(dirname "$0")/lib.sh"

J=(-H 'Content-Type: application/json')
envelope() {
        [ "$STATUS" = "$1" ] && [ "$(echo "$BODY" | jq -r .error.code)" = "$2" ] &&
                { [ $# -lt 3 ] || [ "$(echo "$BODY" | jq -r .error.param)" = "$3" ]; }
}
wait_state() {
        local job=$1 i s; shift
        for i in $(seq 1 600); do
                s=$(curl -s "$BASE/v1/jobs/$job" | jq -r .state)
                for want in "$@"; do [ "$s" = "$want" ] && return 0; done
                sleep 0.1
        done
        diag "job $job stuck in $s"
        return 1
}

# 300 rows, 3 overlapping classes (deterministic), so probabilities are not all ~1
awk 'BEGIN { print "x1,x2,species"; s = 11;
        for (i = 0; i < 300; i++) { c = i % 3; s = (s * 1103515245 + 12345) % 2147483648; a = s / 2147483648;
                s = (s * 1103515245 + 12345) % 2147483648; b = s / 2147483648;
                printf "%.4f,%.4f,%s\n", c * 0.8 + a * 1.6, (c == 1) * 1.2 + b * 1.6, (c == 0 ? "setosa" : c == 1 ? "versicolor" : "virginica") } }' >"$TMP/data.csv"
cut -d, -f1,2 "$TMP/data.csv" >"$TMP/features.csv"
grep -v virginica "$TMP/data.csv" >"$TMP/two.csv"
sed 's/setosa/rosa/' "$TMP/data.csv" >"$TMP/unknown.csv"

start_daemon "$TMP/state" --workers 1 --threads 1; ok $? "daemon starts"
up() { http POST "/v1/datasets?name=$1" --data-binary @"$TMP/$1.csv"; echo "$BODY" | jq -r .id; }
ds=$(up data); feat=$(up features); two=$(up two); unk=$(up unknown)
[ "${ds#ds_}" != "$ds" ] && [ "${feat#ds_}" != "$feat" ]; ok $? "datasets uploaded ($ds, features only: $feat)"
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 2, "hidden": [16], "outputs": 3}}'
base=$(echo "$BODY" | jq -r .id)

# ---- a job with temperature scaling ----------------------------------------------------------
spec='{"model": "'$base'", "training_file": "'$ds'", "validation_split": 0.3,
       "task": {"type": "classification", "target": "species"},
       "hyperparameters": {"epochs": 12, "batch_size": 16, "learning_rate": 0.05},
       "calibration": {"temperature_scaling": true}, "seed": 3}'
http POST /v1/jobs "${J[@]}" -d "$spec"
job=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.kind == "fine_tune" and .spec.calibration.temperature_scaling == true' >/dev/null
ok $? "a job with calibration.temperature_scaling is queued ($job)"
wait_state "$job" succeeded failed; http GET "/v1/jobs/$job"
mdl=$(echo "$BODY" | jq -r .result_model)
cal=$(echo "$BODY" | jq -c .metrics.metrics.calibration)
echo "$cal" | jq -e '.bins == 15 and (.reliability | length) == 15 and .ece >= 0 and .ece <= 1 and
        ([.reliability[].count] | add) == .samples and .reliability[0].lower == 0 and .reliability[14].upper == 1 and
        .temperature_scaling.temperature > 0 and .temperature_scaling.nll_after <= .temperature_scaling.nll_before and
        (.temperature_scaling.reliability | length) == 15' >/dev/null
ok $? "final metrics: ECE $(echo "$cal" | jq .ece) -> $(echo "$cal" | jq .temperature_scaling.ece) at T = $(echo "$cal" | jq .temperature_scaling.temperature), 15 bins, NLL not worse"
T=$(echo "$cal" | jq .temperature_scaling.temperature)
http POST /v1/jobs "${J[@]}" -d '{"model": "'$base'", "training_file": "'$ds'", "validation_split": 0, "calibration": {"temperature_scaling": true}}'
envelope 400 invalid_request calibration.temperature_scaling; ok $? "temperature scaling without validation data -> 400"
http POST /v1/jobs "${J[@]}" -d '{"model": "'$base'", "training_file": "'$ds'", "calibration": {"temperature": 2}}'
envelope 400 invalid_request calibration.temperature; ok $? "an unknown calibration field -> 400"

# ---- predict applies the temperature ---------------------------------------------------------
http POST "/v1/models/$mdl/predict" "${J[@]}" -d '{"rows": [[0.5, 0.5], [2.0, 1.5]], "return": ["probabilities", "logits"]}'
echo "$BODY" | jq -e --argjson T "$T" '[.predictions[] | (.logits | to_entries | map(.value / $T)) as $z |
        ($z | max) as $m | ($z | map(. - $m | exp) | add) as $s |
        [(.probabilities | to_entries | map(.value)), ($z | map((. - $m | exp) / $s))] |
        transpose | map(.[0] - .[1] | fabs) | max] | max < 1e-9' >/dev/null
ok $? "predict answers softmax(logits / T)"

# ---- evaluate -----------------------------------------------------------------------------------
http POST "/v1/models/$mdl/evaluate" "${J[@]}" -d '{"dataset": "'$ds'", "curve_points": 50}'
echo "$BODY" >"$TMP/eval.json"
[ "$STATUS" = 200 ] && jq -e '.object == "evaluation" and .samples == 300 and .task == "classification" and
        .metrics.accuracy > 0.5 and .metrics.log_loss > 0 and .metrics.loss == .metrics.log_loss and
        .metrics.roc_auc.macro > 0.5 and (.metrics.roc_auc.per_class | length) == 3 and
        (.metrics.curves.roc | length) == 3 and (.metrics.curves.roc[0].fpr | length) <= 50 and
        .metrics.curves.roc[0].fpr[0] == 0 and .metrics.curves.roc[0].tpr[-1] == 1 and
        .metrics.curves.precision_recall[0].precision[-1] == 1 and .metrics.calibration.bins == 15 and
        .metrics.calibration.temperature > 0 and .metrics.calibration.uncalibrated.ece >= 0 and
        (.metrics.confusion_matrix.labels == ["setosa", "versicolor", "virginica"])' "$TMP/eval.json" >/dev/null
ok $? "evaluate: accuracy $(jq .metrics.accuracy "$TMP/eval.json"), log loss $(jq .metrics.log_loss "$TMP/eval.json"), macro ROC-AUC $(jq .metrics.roc_auc.macro "$TMP/eval.json"), curves thinned to 50 points, ECE $(jq .metrics.calibration.ece "$TMP/eval.json")"
http POST "/v1/models/$mdl/evaluate" "${J[@]}" -d '{"dataset": "'$two'"}'
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e '.samples == 200 and .metrics.roc_auc.per_class[2].roc_auc == null and .metrics.curves.roc[2] == null' >/dev/null
ok $? "evaluate on data without one class: its ROC-AUC and curves are null"
http POST "/v1/models/$mdl/evaluate" "${J[@]}" -d '{"dataset": "'$feat'"}'
envelope 400 invalid_request dataset; ok $? "evaluate on data without labels -> 400 param dataset"
http POST "/v1/models/$mdl/evaluate" "${J[@]}" -d '{"dataset": "'$unk'"}'
envelope 400 invalid_request dataset && echo "$BODY" | jq -r .error.message | grep -q rosa; ok $? "a class the model does not know -> 400 naming it"
http POST "/v1/models/$mdl/evaluate" "${J[@]}" -d '{"dataset": "ds_000000000000000000000000"}'
envelope 400 invalid_request dataset; ok $? "an unknown dataset -> 400 param dataset"
http POST "/v1/models/$base/evaluate" "${J[@]}" -d '{"dataset": "'$ds'"}'
envelope 409 conflict; ok $? "a model without weights -> 409"
http POST "/v1/models/$mdl/evaluate" "${J[@]}" -d '{"dataset": "'$ds'", "curve_points": 1}'
envelope 400 invalid_request curve_points; ok $? "curve_points 1 -> 400"
http POST "/v1/models/$mdl/evaluate" "${J[@]}" -d '{"dataset": "'$ds'", "bins": 10}'
envelope 400 invalid_request bins; ok $? "an unknown field -> 400"

# ---- predictions jobs ---------------------------------------------------------------------------
http POST "/v1/models/$mdl/predictions" "${J[@]}" -H 'Idempotency-Key: pred-1' -d '{"dataset": "'$ds'"}'
pj=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.kind == "predictions" and .spec.kind == "predictions" and .spec.dataset == "'$ds'" and .state == "queued"' >/dev/null
ok $? "POST predictions -> 201 a predictions job ($pj)"
http POST "/v1/models/$mdl/predictions" "${J[@]}" -H 'Idempotency-Key: pred-1' -d '{"dataset": "'$ds'"}'
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq -r .id)" = "$pj" ]; ok $? "the same Idempotency-Key -> the same job"
wait_state "$pj" succeeded failed; http GET "/v1/jobs/$pj"
echo "$BODY" | jq -e '.state == "succeeded" and .progress.rows_done == 300 and .progress.fraction == 1 and
        .metrics.rows == 300 and .metrics.labelled == true and .result_model == null' >/dev/null
ok $? "the job succeeds with progress 300/300 rows"
acc_job=$(echo "$BODY" | jq .metrics.metrics.accuracy)
curl -s -f "$BASE/v1/jobs/$pj/artifacts/predictions.csv" -o "$TMP/pred.csv"; ok $? "predictions.csv downloads"
[ "$(head -n1 "$TMP/pred.csv")" = "row,label,prediction,p_setosa,p_versicolor,p_virginica" ] && [ "$(wc -l <"$TMP/pred.csv")" = 301 ]
ok $? "predictions.csv: a header and 300 rows"
# the reference computation: accuracy, log loss and the 15-bin ECE from the CSV's probabilities
ref=$(awk -F, 'NR > 1 { n++; p[1] = $4; p[2] = $5; p[3] = $6; t = ($2 == "setosa" ? 1 : $2 == "versicolor" ? 2 : 3);
                best = 1; for (c = 2; c <= 3; c++) if (p[c] > p[best]) best = c; correct += (best == t);
                q = p[t]; if (q < 1e-15) q = 1e-15; ll -= log(q); conf = p[best];
                b = 0; while (b < 14 && conf > (b + 1) / 15) b++; cnt[b]++; cs[b] += conf; ok[b] += (best == t) }
        END { for (b = 0; b < 15; b++) if (cnt[b]) { d = ok[b] / cnt[b] - cs[b] / cnt[b]; ece += cnt[b] / n * (d < 0 ? -d : d) }
                printf "%.6f %.6f %.6f\n", correct / n, ll / n, ece }' "$TMP/pred.csv")
got=$(jq -r '"\(.metrics.accuracy) \(.metrics.log_loss) \(.metrics.calibration.ece)"' "$TMP/eval.json")
awk -v r="$ref" -v g="$got" 'BEGIN { split(r, a, " "); split(g, b, " "); for (i = 1; i <= 3; i++) { d = a[i] - b[i]; if (d < 0) d = -d; if (d > 2e-6) exit 1 } }'
ok $? "evaluate's accuracy, log loss and ECE ($got) equal the reference from predictions.csv ($ref)"
awk -v a="$acc_job" -v b="$(jq .metrics.accuracy "$TMP/eval.json")" 'BEGIN { d = a - b; exit !(a != "" && d < 1e-9 && d > -1e-9) }'
ok $? "the job's metrics equal evaluate's (accuracy $acc_job)"
curl -s -f "$BASE/v1/jobs/$pj/artifacts/metrics.json" | jq -e '(.curves.roc | length) == 3 and .calibration.bins == 15' >/dev/null
ok $? "its metrics.json has the curves"
# the first rows' probabilities equal predict's
rows=$(sed -n '2,4p' "$TMP/data.csv" | awk -F, '{ printf "%s[%s,%s]", (NR > 1 ? "," : ""), $1, $2 }')
http POST "/v1/models/$mdl/predict" "${J[@]}" -d "{\"rows\": [$rows]}"
want=$(echo "$BODY" | jq -r '.predictions[] | [.label, .probabilities.setosa, .probabilities.versicolor, .probabilities.virginica] | @csv' | tr -d '"')
have=$(sed -n '2,4p' "$TMP/pred.csv" | cut -d, -f3-)
[ -n "$have" ] && awk -v w="$want" -v h="$have" 'BEGIN { nw = split(w, a, /[,\n]/); if (nw != 12 || split(h, b, /[,\n]/) != 12) exit 1; for (i = 1; i <= nw; i++)
        if (i % 4 == 1) { if (a[i] != b[i]) exit 1 } else { d = a[i] - b[i]; if (d < 0) d = -d; if (d > 1e-8) exit 1 } }'
ok $? "predictions.csv rows equal POST /predict's labels and probabilities"

http POST "/v1/models/$mdl/predictions" "${J[@]}" -d '{"dataset": "'$feat'"}'
pj2=$(echo "$BODY" | jq -r .id); wait_state "$pj2" succeeded failed
curl -s "$BASE/v1/jobs/$pj2/artifacts/predictions.csv" -o "$TMP/pred2.csv"
[ "$(head -n1 "$TMP/pred2.csv")" = "row,prediction,p_setosa,p_versicolor,p_virginica" ] && [ "$(wc -l <"$TMP/pred2.csv")" = 301 ] &&
        cmp -s <(cut -d, -f1,3- "$TMP/pred.csv" | tail -n +2) <(tail -n +2 "$TMP/pred2.csv") &&
        [ "$(curl -s "$BASE/v1/jobs/$pj2" | jq .metrics.labelled)" = false ]
ok $? "a dataset of features only: the same predictions without a label column, no metrics"
http GET "/v1/jobs/$job/artifacts/predictions.csv"
envelope 404 not_found name; ok $? "a fine-tuning job has no predictions.csv -> 404"
http GET "/v1/jobs/$pj/artifacts/model.safetensors"
envelope 404 not_found name; ok $? "a predictions job has no model.safetensors -> 404"
http POST "/v1/models/$mdl/predictions" "${J[@]}" -d '{"dataset": "ds_000000000000000000000000"}'
envelope 400 invalid_request dataset; ok $? "predictions of an unknown dataset -> 400"
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 5, "hidden": [4], "outputs": 3}}'
five=$(echo "$BODY" | jq -r .id)
http POST "/v1/models/$base/predictions" "${J[@]}" -d '{"dataset": "'$ds'"}'
envelope 409 conflict; ok $? "predictions of a model without weights -> 409"
http POST "/v1/models/$mdl/predictions" "${J[@]}" -d '{"data": "'$ds'"}'
envelope 400 invalid_request data; ok $? "an unknown field -> 400"
http DELETE "/v1/jobs/$pj2"
[ "$STATUS" = 200 ] && [ ! -e "$TMP/state/jobs/$pj2" ]; ok $? "deleting a predictions job removes its CSV"
http GET "/v1/jobs?limit=100"
[ "$(echo "$BODY" | jq '[.data[] | select(.kind == "predictions")] | length')" = 1 ]; ok $? "the job list says each job's kind"

# ---- equal to scikit-learn: a PyTorch model and scikit-learn's numbers (tools/gen_eval_fixtures.py) ------
FIX="$(dirname "$0")/../fixtures/eval"
http POST /v1/models -F weights=@"$FIX/mlp3.safetensors" -F name=mlp3 -F "spec=$(jq -c .spec "$FIX/mlp3_expected.json")"
fm=$(echo "$BODY" | jq -r .id)
http POST "/v1/datasets?name=mlp3" --data-binary @"$FIX/mlp3.csv"; fd=$(echo "$BODY" | jq -r .id)
http POST "/v1/models/$fm/evaluate" "${J[@]}" -d '{"dataset": "'$fd'", "curve_points": 100000}'
echo "$BODY" >"$TMP/fix.json"
# close: |a - b| <= tol * max(|b|, 1e-6), elementwise over arrays
close='def close($a; $b; $t): if ($a | type) == "array" then ($a | length) == ($b | length) and
        ([range($a | length)] | all(. as $i | close($a[$i]; $b[$i]; $t))) else (($a - $b) | fabs) <= $t * ([($b | fabs), 1e-6] | max) end;'
jq -e --slurpfile w "$FIX/mlp3_expected.json" "$close"' $w[0] as $w | .metrics as $m |
        $m.accuracy == $w.accuracy and close($m.macro_avg.f1; $w.macro_f1; 1e-12) and $m.confusion_matrix.matrix == $w.confusion and
        ($m.confusion_matrix.labels == ["ant", "bee", "cat"])' "$TMP/fix.json" >/dev/null
ok $? "fixture: accuracy, macro F1 and confusion matrix equal scikit-learn's (accuracy $(jq .metrics.accuracy "$TMP/fix.json"))"
jq -e --slurpfile w "$FIX/mlp3_expected.json" "$close"' $w[0] as $w | .metrics as $m |
        close($m.log_loss; $w.log_loss; 1e-5) and close($m.roc_auc.macro; $w.macro_roc_auc; 1e-12) and
        close([$m.roc_auc.per_class[].roc_auc]; $w.roc_auc; 1e-12) and
        close([$m.roc_auc.per_class[].average_precision]; $w.average_precision; 1e-12)' "$TMP/fix.json" >/dev/null
ok $? "fixture: log loss, one-vs-rest ROC-AUC (macro and per class) and average precision equal scikit-learn's"
jq -e --slurpfile w "$FIX/mlp3_expected.json" "$close"' $w[0] as $w | .metrics.curves as $c |
        close($c.roc[0].fpr; $w.roc_ant.fpr; 1e-12) and close($c.roc[0].tpr; $w.roc_ant.tpr; 1e-12) and
        close($c.roc[0].thresholds; $w.roc_ant.thresholds; 1e-5) and
        close($c.precision_recall[1].precision; $w.pr_bee.precision; 1e-12) and close($c.precision_recall[1].recall; $w.pr_bee.recall; 1e-12)' \
        "$TMP/fix.json" >/dev/null
ok $? "fixture: the ROC curve of 'ant' and the precision-recall curve of 'bee' equal roc_curve's and precision_recall_curve's"
jq -e --slurpfile w "$FIX/mlp3_expected.json" "$close"' $w[0] as $w | close(.metrics.calibration.ece; $w.ece; 1e-5) and
        close(.metrics.calibration.mce; $w.mce; 1e-5)' "$TMP/fix.json" >/dev/null
ok $? "fixture: ECE $(jq .metrics.calibration.ece "$TMP/fix.json") and MCE equal the reference computation"

# ---- a running predictions job is cancelled within a batch -------------------------------------
# a wide model over 300,000 rows: minutes of work on one thread, so it is surely running when cancelled
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 2, "hidden": [2048, 2048], "outputs": 3}}'
wide=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d '{"model": "'$wide'", "training_file": "'$ds'", "validation_split": 0.2,
        "hyperparameters": {"epochs": 1, "batch_size": 64}, "seed": 1}'
wj=$(echo "$BODY" | jq -r .id); wait_state "$wj" succeeded failed
wm=$(curl -s "$BASE/v1/jobs/$wj" | jq -r .result_model)
awk 'BEGIN { print "x1,x2"; for (i = 0; i < 300000; i++) printf "%.3f,%.3f\n", (i % 97) / 40, (i % 89) / 40 }' >"$TMP/many.csv"
http POST "/v1/datasets?name=many" --data-binary @"$TMP/many.csv"; many=$(echo "$BODY" | jq -r .id)
http POST "/v1/models/$wm/predictions" "${J[@]}" -d '{"dataset": "'$many'"}'
cj=$(echo "$BODY" | jq -r .id)
for i in $(seq 1 600); do [ "$(curl -s "$BASE/v1/jobs/$cj" | jq -r '.progress.rows_done // 0')" -gt 0 ] && break; sleep 0.1; done
http GET "/v1/jobs/$cj"
echo "$BODY" | jq -e '.state == "running" and .progress.rows == 300000 and .progress.rows_done < 300000' >/dev/null
ok $? "a predictions job over 300,000 rows reports live progress ($(echo "$BODY" | jq -c .progress))"
http POST "/v1/jobs/$cj/cancel"
wait_state "$cj" cancelled succeeded failed && [ "$(curl -s "$BASE/v1/jobs/$cj" | jq -r .state)" = cancelled ] &&
        [ ! -e "$TMP/state/jobs/$cj/predictions.csv" ]
ok $? "cancel stops it within a batch: cancelled, no predictions.csv"
http GET "/v1/jobs/$cj/artifacts/predictions.csv"
envelope 409 conflict; ok $? "a cancelled job's predictions.csv -> 409"

# ---- regression: MSE/MAE/R² as for jobs, row,target,prediction ---------------------------------
awk 'BEGIN { print "a,b,y"; s = 9; for (i = 0; i < 200; i++) { s = (s * 1103515245 + 12345) % 2147483648; a = s / 2147483648;
        s = (s * 1103515245 + 12345) % 2147483648; b = s / 2147483648; printf "%.4f,%.4f,%.4f\n", a, b, 2 * a - b + 0.1 * (i % 3) } }' >"$TMP/reg.csv"
http POST "/v1/datasets?name=reg" --data-binary @"$TMP/reg.csv"; reg=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d '{"model": "'$base'", "training_file": "'$reg'", "task": {"type": "regression"},
        "hyperparameters": {"epochs": 5, "batch_size": 16, "learning_rate": 0.01}, "seed": 2}'
rj=$(echo "$BODY" | jq -r .id); wait_state "$rj" succeeded failed
rm=$(curl -s "$BASE/v1/jobs/$rj" | jq -r .result_model)
http POST "/v1/models/$rm/evaluate" "${J[@]}" -d '{"dataset": "'$reg'"}'
echo "$BODY" >"$TMP/reval.json"
[ "$STATUS" = 200 ] && jq -e '.task == "regression" and .samples == 200 and (.metrics | has("mse") and has("rmse") and has("mae") and has("r2")) and
        (.metrics | has("roc_auc") | not)' "$TMP/reval.json" >/dev/null
ok $? "evaluate a regression model: mse $(jq .metrics.mse "$TMP/reval.json"), r2 $(jq .metrics.r2 "$TMP/reval.json")"
http POST "/v1/models/$rm/predictions" "${J[@]}" -d '{"dataset": "'$reg'"}'
rp=$(echo "$BODY" | jq -r .id); wait_state "$rp" succeeded failed
curl -s "$BASE/v1/jobs/$rp/artifacts/predictions.csv" -o "$TMP/rpred.csv"
mse=$(awk -F, 'NR > 1 { d = $2 - $3; s += d * d; n++ } END { printf "%.9g", s / n }' "$TMP/rpred.csv")
[ "$(head -n1 "$TMP/rpred.csv")" = "row,target,prediction" ] && [ "$(wc -l <"$TMP/rpred.csv")" = 201 ] &&
        awk -v a="$mse" -v b="$(jq .metrics.mse "$TMP/reval.json")" 'BEGIN { d = (a - b) / b; exit !(d < 1e-5 && d > -1e-5) }'
ok $? "its predictions.csv: row,target,prediction; the MSE from it ($mse) is evaluate's"

stop_daemon; ok $? "daemon stops cleanly"
done_testing
