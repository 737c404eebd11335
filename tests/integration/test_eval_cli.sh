#!/usr/bin/env bash
# test_eval_cli.sh - `finetuned evaluate` and `finetuned predict` on a model that `finetuned train` saved with a
# fitted temperature: the metrics JSON (ROC-AUC, curves, 15-bin calibration at that temperature), the
# predictions CSV with and without the target column, agreement between the two, and usage errors.
. "$(dirname "$0")/lib.sh"

awk 'BEGIN { print "x1,x2,label"; s = 5;
        for (i = 0; i < 240; i++) { c = i % 3; s = (s * 1103515245 + 12345) % 2147483648; a = s / 2147483648;
                s = (s * 1103515245 + 12345) % 2147483648; b = s / 2147483648;
                printf "%.4f,%.4f,c%d\n", c * 0.9 + a * 1.5, (c == 2) * 1.1 + b * 1.5, c } }' >"$TMP/d.csv"
cut -d, -f1,2 "$TMP/d.csv" >"$TMP/f.csv"
cat >"$TMP/job.json" <<JSON
{"model": "mlp", "training_file": "d.csv", "validation_split": 0.25, "hyperparameters": {"epochs": 8, "learning_rate": 0.05},
 "calibration": {"temperature_scaling": true}, "seed": 4}
JSON
"$FINETUNED" train "$TMP/job.json" --out "$TMP/out" --threads 1 >"$TMP/events" 2>/dev/null; ok $? "finetuned train with temperature scaling"
T=$(tail -n1 "$TMP/events" | jq .metrics.calibration.temperature_scaling.temperature)
[ -n "$T" ] && [ "$T" != null ]; ok $? "the final metrics report the fitted temperature ($T)"

"$FINETUNED" evaluate "$TMP/out/model.safetensors" "$TMP/d.csv" --threads 1 --curve-points 20 >"$TMP/m.json"; ok $? "finetuned evaluate"
jq -e --argjson T "$T" '.samples == 240 and .roc_auc.macro > 0.5 and (.curves.roc | length) == 3 and
        (.curves.precision_recall[1].recall | length) <= 20 and .calibration.bins == 15 and
        (.calibration.temperature - $T | fabs) < 1e-6 and .calibration.uncalibrated.ece >= 0' "$TMP/m.json" >/dev/null
ok $? "metrics: ROC-AUC $(jq .roc_auc.macro "$TMP/m.json"), curves of at most 20 points, calibration at T"
"$FINETUNED" predict "$TMP/out/model.safetensors" "$TMP/d.csv" --threads 1 >"$TMP/p.csv"; ok $? "finetuned predict to stdout"
[ "$(head -n1 "$TMP/p.csv")" = "row,label,prediction,p_c0,p_c1,p_c2" ] && [ "$(wc -l <"$TMP/p.csv")" = 241 ]; ok $? "a header and 240 rows"
acc=$(awk -F, 'NR > 1 { n++; c += ($2 == $3) } END { printf "%.6f", c / n }' "$TMP/p.csv")
awk -v a="$acc" -v b="$(jq .accuracy "$TMP/m.json")" 'BEGIN { d = a - b; exit !(d < 1e-6 && d > -1e-6) }'
ok $? "the CSV's accuracy ($acc) is evaluate's"
"$FINETUNED" predict "$TMP/out/model.safetensors" "$TMP/f.csv" -o "$TMP/p2.csv"; ok $? "finetuned predict -o on features only"
cmp -s <(cut -d, -f1,3- "$TMP/p.csv" | tail -n +2) <(tail -n +2 "$TMP/p2.csv"); ok $? "the same predictions without the label column"
"$FINETUNED" evaluate "$TMP/out/model.safetensors" "$TMP/f.csv" 2>"$TMP/err"; [ $? = 1 ] && grep -q "no target column" "$TMP/err"
ok $? "evaluate without labels exits 1 saying so"
"$FINETUNED" evaluate "$TMP/out/model.safetensors" 2>/dev/null; [ $? = 2 ]; ok $? "a missing argument exits 2"
"$FINETUNED" evaluate --curve-points 1 "$TMP/out/model.safetensors" "$TMP/d.csv" 2>/dev/null; [ $? = 2 ]; ok $? "--curve-points 1 exits 2"
"$FINETUNED" predict "$TMP/d.csv" "$TMP/d.csv" 2>/dev/null; [ $? = 1 ]; ok $? "a CSV as the model exits 1"

# the PyTorch fixture: the CLI answers scikit-learn's numbers too (tools/gen_eval_fixtures.py)
FIX="$(dirname "$0")/../fixtures/eval"
"$FINETUNED" evaluate "$FIX/mlp3.safetensors" "$FIX/mlp3.csv" --threads 1 --curve-points 100000 >"$TMP/fix.json"
jq -e --slurpfile w "$FIX/mlp3_expected.json" '$w[0] as $w | def near($a; $b; $t): (($a - $b) | fabs) <= $t * ([($b | fabs), 1e-6] | max);
        .accuracy == $w.accuracy and .confusion_matrix.matrix == $w.confusion and near(.log_loss; $w.log_loss; 1e-5) and
        near(.roc_auc.macro; $w.macro_roc_auc; 1e-12) and .curves.roc[0].fpr == $w.roc_ant.fpr and
        near(.calibration.ece; $w.ece; 1e-5)' "$TMP/fix.json" >/dev/null
ok $? "finetuned evaluate on the PyTorch fixture equals scikit-learn (ROC-AUC $(jq .roc_auc.macro "$TMP/fix.json"))"
done_testing
