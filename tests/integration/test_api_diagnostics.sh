#!/usr/bin/env bash
# test_api_diagnostics.sh - per-example diagnostics on the real daemon: a CSV whose every 10th row has its label
# moved to the next class (with a blank line and a dropped row, so data rows and file lines differ) trains on the
# daemon; GET /v1/jobs/{id}/diagnostics finds most flipped rows among its suspected label errors, by CSV line;
# /examples sorts, filters by class pair and pages with limits; artifacts/examples.csv is the same bytes
# `finetuned train` writes for the same job; regression jobs and bad arguments get the error envelope.
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

# 900 rows, 3 classes around well-separated centres; every 10th data row's label is the next class. The flipped
# rows' file lines go to flipped.txt. Line 2 is blank (skipped) and one row has a missing value (dropped).
awk -v flips="$TMP/flipped.txt" 'BEGIN { print "x1,x2,x3,kind"; print ""; line = 2; s = 5;
        for (i = 0; i < 900; i++) { c = i % 3;
                s = (s * 1103515245 + 12345) % 2147483648; a = s / 2147483648 - 0.5;
                s = (s * 1103515245 + 12345) % 2147483648; b = s / 2147483648 - 0.5;
                s = (s * 1103515245 + 12345) % 2147483648; d = s / 2147483648 - 0.5;
                l = c; if (i % 10 == 0) { l = (c + 1) % 3; line_f = line + 1; print line_f > flips }
                name = (l == 0 ? "alpha" : l == 1 ? "beta" : "gamma")
                line++; printf "%.4f,%.4f,%.4f,%s\n", (c == 0) * 4 + a, (c == 1) * 4 + b, (c == 2) * 4 + d, name
                if (i == 450) { line++; print "1.0,,0.5,alpha" } } }' >"$TMP/flip.csv"
n_flipped=$(wc -l <"$TMP/flipped.txt")
sed -n "$(head -n1 "$TMP/flipped.txt")p" "$TMP/flip.csv" | grep -q ',beta$'; ok $? "the CSV: $n_flipped flipped rows, by line"

start_daemon "$TMP/state" --workers 1 --threads 1; ok $? "daemon starts"
http POST '/v1/datasets?name=flip' --data-binary @"$TMP/flip.csv"
ds=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "upload flip.csv -> $ds"
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 3, "hidden": [16], "outputs": 3}}'
mdl=$(echo "$BODY" | jq -r .id)
common='"task": {"type": "classification", "target": "kind"}, "validation_split": 0.3, "preprocess": {"dropna": true},
        "hyperparameters": {"epochs": 5, "batch_size": 16, "learning_rate": 0.01}, "seed": 3'
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$mdl\", \"training_file\": \"$ds\", $common}"
job=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "job $job"
http GET "/v1/jobs/$job/diagnostics"
envelope 409 conflict id || [ "$STATUS" = 200 ]; ok $? "diagnostics of an unfinished job: 409 (or done already)"
wait_state "$job" succeeded failed; http GET "/v1/jobs/$job"; [ "$(echo "$BODY" | jq -r .state)" = succeeded ]
ok $? "job succeeds ($(echo "$BODY" | jq -c .error))"

http GET "/v1/jobs/$job/diagnostics"
echo "$BODY" >"$TMP/diag.json"
[ "$STATUS" = 200 ] && jq -e --arg j "$job" '.object == "diagnostics" and .job == $j and .split == "validation"
        and .examples_count == 270 and (.thresholds | keys) == ["alpha", "beta", "gamma"]
        and (.top_loss | length) == 20 and (.suspected | length) == ([.suspected_label_errors, 20] | min)
        and (.examples == null) and (.rule | test("confident learning"))' "$TMP/diag.json" >/dev/null
ok $? "GET diagnostics: 270 validation examples, thresholds per class, top lists, the rule"

# every suspect, by line: how many are flipped rows, and how many flipped validation rows were found
http GET "/v1/jobs/$job/examples?limit=1000"
echo "$BODY" | jq -r '.data[] | .line' | sort -n >"$TMP/val_lines.txt"
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq '.data | length')" = 270 ] && [ "$(echo "$BODY" | jq .has_more)" = false ]
ok $? "GET examples?limit=1000: all 270 in one page"
# the line of an example is where its row is: the label in the file is the example's label
echo "$BODY" | jq -r '.data[] | "\(.line) \(.label)"' | head -n 40 | while read -r l lab; do
        [ "$(sed -n "${l}p" "$TMP/flip.csv" | cut -d, -f4)" = "$lab" ] || exit 1
done
ok $? "each example's line holds a row with its label"
val_flipped=$(comm -12 <(sort "$TMP/flipped.txt") <(sort "$TMP/val_lines.txt") | wc -l)
http GET "/v1/jobs/$job/examples?order=suspected&limit=1000"
echo "$BODY" | jq -r '.data[] | .line' | sort -n >"$TMP/suspect_lines.txt"
n_susp=$(wc -l <"$TMP/suspect_lines.txt")
found=$(comm -12 <(sort "$TMP/flipped.txt") <(sort "$TMP/suspect_lines.txt") | wc -l)
diag "flipped validation rows $val_flipped, suspected $n_susp, of them flipped $found"
[ "$val_flipped" -gt 10 ] && [ $((found * 10)) -ge $((val_flipped * 7)) ] && [ $((found * 10)) -ge $((n_susp * 9)) ]
ok $? "suspected label errors: $found of $val_flipped flipped rows found (>= 70%), $found of $n_susp suspects flipped (>= 90%)"
echo "$BODY" | jq -e '([.data[] | .suspected and .suggested != null] | all)
        and ([.data[] | .p_label] | . == sort)' >/dev/null
ok $? "order=suspected: suspects only, with a suggestion, by p_label ascending"

http GET "/v1/jobs/$job/examples?order=loss&limit=5"
echo "$BODY" | jq -e '(.data | length) == 5 and .has_more and .next_after == 4 and ([.data[] | .position] == [0,1,2,3,4])
        and ([.data[] | .loss] | . == (sort | reverse))' >/dev/null
ok $? "order=loss: highest first, positions, next_after"
first=$(echo "$BODY" | jq -c '.data[4]')
http GET "/v1/jobs/$job/examples?order=loss&limit=5&after=3"
[ "$(echo "$BODY" | jq -c '.data[0]')" = "$first" ]; ok $? "after=3 continues at position 4"
# paging through everything in index order gives every example once
pos=-1; n=0
while :; do
        http GET "/v1/jobs/$job/examples?limit=64$( [ $pos -ge 0 ] && echo "&after=$pos")"
        n=$((n + $(echo "$BODY" | jq '.data | length')))
        [ "$(echo "$BODY" | jq .has_more)" = true ] || break
        pos=$(echo "$BODY" | jq .next_after)
done
[ "$n" = 270 ]; ok $? "paging by 64 visits all $n examples"
http GET "/v1/jobs/$job/examples?label=beta&predicted=alpha&limit=1000"
echo "$BODY" | jq -e '([.data[] | .label == "beta" and .predicted == "alpha" and (.correct | not)] | all)
        and .total == (.data | length)' >/dev/null
ok $? "label=beta&predicted=alpha: one confusion-matrix cell ($(echo "$BODY" | jq .total) examples)"
http GET "/v1/jobs/$job"
cell=$(echo "$BODY" | jq '.metrics.metrics.confusion_matrix as $c | ($c.labels | index("beta")) as $i
        | ($c.labels | index("alpha")) as $j | $c.matrix[$i][$j]')
http GET "/v1/jobs/$job/examples?label=beta&predicted=alpha&limit=1000"
[ "$(echo "$BODY" | jq .total)" = "$cell" ]; ok $? "... as many as the confusion matrix's cell ($cell)"
http GET "/v1/jobs/$job/examples?order=confident_mistakes&limit=1000"
echo "$BODY" | jq -e '([.data[] | .correct | not] | all) and ([.data[] | .p_predicted] | . == (sort | reverse))' >/dev/null
ok $? "order=confident_mistakes: mistakes by p_predicted, highest first"

http GET "/v1/jobs/$job/examples?limit=1001"; envelope 400 invalid_request limit; ok $? "limit=1001 -> 400"
http GET "/v1/jobs/$job/examples?limit=0"; envelope 400 invalid_request limit; ok $? "limit=0 -> 400"
http GET "/v1/jobs/$job/examples?order=random"; envelope 400 invalid_request order; ok $? "order=random -> 400"
http GET "/v1/jobs/$job/examples?colour=red"; envelope 400 invalid_request colour; ok $? "an unknown argument -> 400"
http GET "/v1/jobs/job_doesnotexist/examples"; envelope 404 not_found; ok $? "an unknown job -> 404"

curl -s -D "$TMP/h" -o "$TMP/d-examples.csv" "$BASE/v1/jobs/$job/artifacts/examples.csv"
grep -qi '^content-type: text/csv' "$TMP/h" && [ "$(head -n1 "$TMP/d-examples.csv" | tr -d '\r')" = \
        "index,line,label,predicted,p_label,p_predicted,loss,correct,suspected,suggested" ] &&
        [ "$(wc -l <"$TMP/d-examples.csv")" = 271 ]
ok $? "artifacts/examples.csv: text/csv, a header and 270 rows"

# finetuned train: the same job from the file gives the same examples.csv
mkdir -p "$TMP/cli" && cp "$TMP/flip.csv" "$TMP/cli/"
echo "{\"model\": {\"preset\": \"mlp\", \"options\": {\"hidden\": [16]}}, \"training_file\": \"flip.csv\", $common}" \
        >"$TMP/cli/job.json"
"$FINETUNED" train "$TMP/cli/job.json" --out "$TMP/cli/out" --threads 1 >/dev/null 2>"$TMP/err"
ok $? "finetuned train: the same job ($(head -c 200 "$TMP/err"))"
cmp "$TMP/cli/out/examples.csv" "$TMP/d-examples.csv" >&2; ok $? "finetuned train writes the same examples.csv"
jq -e '.diagnostics.examples | length == 270' "$TMP/cli/out/metrics.json" >/dev/null
ok $? "its metrics.json carries the diagnostics with every example"

# regression: no diagnostics
awk 'BEGIN { print "x,y"; for (i = 0; i < 60; i++) printf "%d,%d\n", i, 2 * i }' >"$TMP/reg.csv"
http POST '/v1/datasets?name=reg' --data-binary @"$TMP/reg.csv"; rds=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 1, "hidden": [4], "outputs": 1}}'
rmdl=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$rmdl\", \"training_file\": \"$rds\", \"task\": {\"type\": \"regression\"},
        \"hyperparameters\": {\"epochs\": 1}}"
rjob=$(echo "$BODY" | jq -r .id); wait_state "$rjob" succeeded failed
http GET "/v1/jobs/$rjob/diagnostics"; envelope 404 not_found id; ok $? "a regression job has no diagnostics: 404"
http GET "/v1/jobs/$rjob/artifacts/examples.csv"; envelope 404 not_found; ok $? "... nor examples.csv"

# ---- imbalanced data and class_weights at submit ----------------------------------------------------------
awk 'BEGIN { print "x,cls"; for (i = 0; i < 220; i++) printf "%d,%s\n", i, (i % 22 == 0 ? "rare" : "common") }' \
        >"$TMP/imb.csv"
http POST '/v1/datasets?name=imb' --data-binary @"$TMP/imb.csv"; ids=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 1, "hidden": [4], "outputs": 2}}'
imdl=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$imdl\", \"training_file\": \"$ids\", \"hyperparameters\": {\"epochs\": 1,
        \"class_weights\": {\"rare\": 5, \"unicorn\": 2}}}"
envelope 400 invalid_request hyperparameters.class_weights; ok $? "class_weights naming a class the data lacks -> 400"
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$imdl\", \"training_file\": \"$ids\", \"hyperparameters\": {\"epochs\": 1}}"
ijob=$(echo "$BODY" | jq -r .id)
http GET "/v1/jobs/$ijob/events"
echo "$BODY" | jq -e '[.data[] | select(.type == "warning")] | length == 1 and .[0].data.code == "class_imbalance"
        and .[0].data.epoch == 0 and (.[0].data.message | test("smallest class .rare. has 10 rows"))' >/dev/null
ok $? "10 'rare' rows against 210: a class_imbalance warning event at submit"
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$imdl\", \"training_file\": \"$ids\", \"hyperparameters\": {\"epochs\": 1,
        \"class_weights\": \"balanced\"}}"
bjob=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.spec.hyperparameters.class_weights == "balanced"' >/dev/null
ok $? "class_weights balanced is accepted and echoed"
mkdir -p "$TMP/icli" && cp "$TMP/imb.csv" "$TMP/icli/"
echo '{"model": "mlp", "training_file": "imb.csv", "hyperparameters": {"epochs": 1}}' >"$TMP/icli/job.json"
"$FINETUNED" train "$TMP/icli/job.json" --out "$TMP/icli/out" --threads 1 >"$TMP/icli/events.ndjson" 2>"$TMP/icli/err"
jq -s -e '[.[] | select(.type == "warning")] | length == 1 and .[0].code == "class_imbalance" and .[0].epoch == 0' \
        "$TMP/icli/events.ndjson" >/dev/null && [ ! -s "$TMP/icli/err" ]
ok $? "finetuned train prints the same class_imbalance warning event (stderr stays empty off a terminal)"
wait_state "$ijob" succeeded failed; wait_state "$bjob" succeeded failed
http GET "/v1/jobs/$bjob"; [ "$(echo "$BODY" | jq -r .state)" = succeeded ]; ok $? "... and trains"

# ---- training-health guards on the daemon ----------------------------------------------------------------------
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$mdl\", \"training_file\": \"$ds\", $(echo "$common" | sed 's/"learning_rate": 0.01/"learning_rate": 1e-7/; s/"epochs": 5/"epochs": 7/')}"
gjob=$(echo "$BODY" | jq -r .id); wait_state "$gjob" succeeded failed
http GET "/v1/jobs/$gjob/events?limit=1000"
echo "$BODY" | jq -e '[.data[] | select(.type == "warning") | .data] | length == 1 and .[0].code == "loss_not_decreasing"
        and .[0].epoch == 6' >/dev/null
ok $? "learning_rate 1e-7: a 'loss_not_decreasing' warning event at epoch 6"
http GET "/v1/jobs/$job/events?limit=1000"
[ "$(echo "$BODY" | jq '[.data[] | select(.type == "warning")] | length')" = 0 ]; ok $? "the healthy job: no warning"
awk 'BEGIN { print "a,b,y"; for (i = 0; i < 40; i++) printf "%s,%s,%d\n", (i % 2 ? "3e38" : "-3e38"), "3e38", i % 2 }' >"$TMP/big.csv"
http POST '/v1/datasets?name=big' --data-binary @"$TMP/big.csv"; bds=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 2, "hidden": [8], "outputs": 2}}'
bmdl=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$bmdl\", \"training_file\": \"$bds\", \"preprocess\": {\"standardize\": false},
        \"hyperparameters\": {\"epochs\": 2}}"
njob=$(echo "$BODY" | jq -r .id); wait_state "$njob" succeeded failed
http GET "/v1/jobs/$njob"
echo "$BODY" | jq -e '.state == "failed" and (.error.message | test("epoch 1 batch 1"))' >/dev/null
ok $? "features of 3e38: the job fails at once: $(echo "$BODY" | jq -r .error.message | head -c 160)"
http GET "/v1/jobs/$njob/events?limit=1000"
echo "$BODY" | jq -e '[.data[] | select(.type == "warning") | .data] | length == 1 and .[0].code == "nonfinite"
        and .[0].batch == 1' >/dev/null
ok $? "... with a 'nonfinite' warning event naming batch 1"

# ---- images by index (the dashboard's grid) ------------------------------------------------------------------
printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02\x00\x01\x02\x03\xfc\xfd\xfe\xff' >"$TMP/t-images-idx3-ubyte"
printf '\x00\x00\x08\x01\x00\x00\x00\x02\x07\x03' >"$TMP/t-labels-idx1-ubyte"
http POST '/v1/datasets?name=tiny' -F images=@"$TMP/t-images-idx3-ubyte" -F labels=@"$TMP/t-labels-idx1-ubyte"
tds=$(echo "$BODY" | jq -r .id)
http GET "/v1/datasets/$tds/images?indices=1,0"
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e '.channels == 1 and .height == 2 and .width == 2
        and [.images[] | {index, label: .label, pixels}] == [{"index": 1, "label": "3", "pixels": "/P3+/w=="},
                                                     {"index": 0, "label": "7", "pixels": "AAECAw=="}]' >/dev/null
ok $? "GET images?indices=1,0: each image's bytes (base64) and label, in the order asked"
http GET "/v1/datasets/$tds/images?indices=2"; envelope 400 invalid_request indices; ok $? "an index past the end -> 400"
http GET "/v1/datasets/$tds/images?indices=1,x"; envelope 400 invalid_request indices; ok $? "a malformed list -> 400"
http GET "/v1/datasets/$tds/images"; envelope 400 invalid_request indices; ok $? "no indices -> 400"
http GET "/v1/datasets/$tds/images?indices=$(seq -s, 0 100 | sed 's/[0-9]*/0/g')"
envelope 400 invalid_request indices; ok $? "101 indices -> 400"
http GET "/v1/datasets/$tds/images?indices=$(printf '0%.0s,' $(seq 1 99))0"
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq '.images | length')" = 100 ]; ok $? "100 indices -> 200"
http GET "/v1/datasets/$ds/images?indices=0"; envelope 400 invalid_request id; ok $? "a CSV dataset has no images -> 400"

stop_daemon; ok $? "daemon stops"
done_testing
