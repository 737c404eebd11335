#!/usr/bin/env bash
# test_api_fmnist.sh - images end to end, kept small for CI: upload a
# Fashion-MNIST subset (400 training images, 150 test images) as IDX pairs,
# register the cnn preset, pretrain it, fine-tune the result with its
# convolutions frozen on a separate validation set, and predict a few test
# images through the API (the preprocessing stored with the model applied).
. "$(dirname "$0")/lib.sh"

FMNIST=/usr/share/datasets/fashion-mnist
J=(-H 'Content-Type: application/json')
# subset SRC_PREFIX N OUT_PREFIX: the first N images and labels of an IDX pair, gzip'd
subset() {
        local n=$1 src=$2 out=$3 hex
        hex=$(printf '%08x' "$n" | sed 's/../\\x&/g')
        { printf "\\x00\\x00\\x08\\x03$hex\\x00\\x00\\x00\\x1c\\x00\\x00\\x00\\x1c"
          gunzip -c "$FMNIST/$src-images-idx3-ubyte.gz" | tail -c +17 | head -c $((n * 784)); } | gzip >"$out-images.gz"
        { printf "\\x00\\x00\\x08\\x01$hex"
          gunzip -c "$FMNIST/$src-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$n"; } | gzip >"$out-labels.gz"
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

subset 400 train "$TMP/train"
subset 150 t10k "$TMP/test"
start_daemon "$TMP/state" --threads 1; ok $? "daemon starts (one compute thread: predictable on a busy CI machine)"

http POST '/v1/datasets?name=fmnist-train-400' -F images=@"$TMP/train-images.gz" -F labels=@"$TMP/train-labels.gz"
train=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.schema.rows == 400 and .schema.image_shape == [1,28,28] and .schema.num_classes == 10' >/dev/null
ok $? "Fashion-MNIST training subset uploaded: 400 x 1x28x28, 10 classes"
http POST '/v1/datasets?name=fmnist-test-150' -F images=@"$TMP/test-images.gz" -F labels=@"$TMP/test-labels.gz"
test=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "test subset uploaded"

http POST /v1/models "${J[@]}" -d '{"name": "small-cnn", "preset": "cnn", "config": {"in_channels": 1, "input_size": [28, 28], "channels": [8, 16], "hidden": 32, "outputs": 10}}'
cnn=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.spec.input == [1,28,28]' >/dev/null; ok $? "cnn preset registered ($cnn)"

http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$cnn\", \"training_file\": \"$train\", \"validation_file\": \"$test\",
        \"hyperparameters\": {\"epochs\": 2, \"batch_size\": 32, \"learning_rate\": 0.005, \"optimizer\": \"adam\"}, \"seed\": 3}"
pre=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "pretraining job queued"
timeout 120 curl -s -N "$BASE/v1/jobs/$pre/events?stream=true" >"$TMP/sse"
[ "$(grep -c '^event: epoch' "$TMP/sse")" = 2 ] && grep '^data:' "$TMP/sse" | tail -n1 | grep -q succeeded; ok $? "2 epoch events streamed, then succeeded"
http GET "/v1/jobs/$pre"
acc=$(echo "$BODY" | jq .metrics.metrics.accuracy); base=$(echo "$BODY" | jq -r .result_model)
echo "$acc" | awk '{ exit !($1 > 0.3) }'; ok $? "test accuracy after pretraining $acc (chance is 0.1)"

http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$base\", \"training_file\": \"$train\", \"validation_file\": \"$test\",
        \"hyperparameters\": {\"epochs\": 1, \"batch_size\": 32, \"learning_rate\": 0.001, \"optimizer\": \"adam\"},
        \"strategy\": {\"type\": \"partial\", \"freeze\": [\"0.*\", \"3.*\"]}, \"seed\": 4}"
ft=$(echo "$BODY" | jq -r .id)
wait_state "$ft" succeeded failed
http GET "/v1/jobs/$ft"
tuned=$(echo "$BODY" | jq -r .result_model)
[ "$(echo "$BODY" | jq -r .state)" = succeeded ]; ok $? "fine-tune with the convolutions frozen succeeds ($(echo "$BODY" | jq -c '{accuracy: .metrics.metrics.accuracy}'))"
curl -s -o "$TMP/pre.st" "$BASE/v1/models/$base/weights"; curl -s -o "$TMP/ft.st" "$BASE/v1/models/$tuned/weights"
hl() { od -An -tu8 -N8 "$1" | tr -d ' '; }
off() { head -c $((8 + $(hl "$1"))) "$1" | tail -c "$(hl "$1")" | jq -r ".\"$2\".data_offsets | \"\\(.[0]) \\(.[1])\""; }
bytes() { local a b; read -r a b <<<"$(off "$1" "$2")"; tail -c +$((9 + $(hl "$1") + a)) "$1" | head -c $((b - a)) | sha256sum; }
[ "$(bytes "$TMP/pre.st" 0.weight)" = "$(bytes "$TMP/ft.st" 0.weight)" ] && [ "$(bytes "$TMP/pre.st" 7.weight)" != "$(bytes "$TMP/ft.st" 7.weight)" ]
ok $? "frozen conv 0.weight unchanged, head 7.weight trained"

# predict the first 3 test images (pixels 0..255 straight from the IDX file)
pixels=$(gunzip -c "$TMP/test-images.gz" | tail -c +17 | head -c $((3 * 784)) | od -An -v -tu1 | tr -s ' \n' ' ' |
         awk '{ out = "["; for (i = 0; i < 3; i++) { if (i) out = out ","; out = out "[" $(i * 784 + 1);
                for (k = 2; k <= 784; k++) out = out "," $(i * 784 + k); out = out "]" } print out "]" }')
http POST "/v1/models/$tuned/predict" "${J[@]}" -d "{\"images\": $pixels}"
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e '(.predictions | length) == 3 and all(.predictions[]; (.probabilities | length) == 10 and (.probabilities | add) > 0.999)' >/dev/null
ok $? "predict 3 images -> labels $(echo "$BODY" | jq -c '[.predictions[].label]') (true: $(gunzip -c "$TMP/test-labels.gz" | tail -c +9 | head -c 3 | od -An -tu1 | tr -s ' '))"
http POST "/v1/models/$tuned/predict" "${J[@]}" -d '{"images": [[300]]}'
[ "$STATUS" = 400 ]; ok $? "a bad image -> 400: $(echo "$BODY" | jq -r .error.message)"

# evaluate the test subset, and predict it as a job (issue 18): the same accuracy as the job's final metrics
http POST "/v1/models/$tuned/evaluate" "${J[@]}" -d "{\"dataset\": \"$test\", \"curve_points\": 10}"
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e --argjson acc "$(curl -s "$BASE/v1/jobs/$ft" | jq .metrics.metrics.accuracy)" \
        '.samples == 150 and ((.metrics.accuracy - $acc) | fabs) < 1e-9 and (.metrics.roc_auc.per_class | length) == 10 and .metrics.calibration.bins == 15' >/dev/null
ok $? "evaluate on the 150 test images: accuracy equals the job's, ROC-AUC $(echo "$BODY" | jq .metrics.roc_auc.macro), ECE $(echo "$BODY" | jq .metrics.calibration.ece)"
http POST "/v1/models/$tuned/predictions" "${J[@]}" -d "{\"dataset\": \"$test\"}"
pj=$(echo "$BODY" | jq -r .id); wait_state "$pj" succeeded failed
curl -s "$BASE/v1/jobs/$pj/artifacts/predictions.csv" -o "$TMP/pred.csv"
[ "$(wc -l <"$TMP/pred.csv")" = 151 ] && head -n1 "$TMP/pred.csv" | grep -q '^row,label,prediction,p_0,p_1,' &&
        [ "$(awk -F, 'NR > 1 && NR <= 4 { printf "%s ", $3 }' "$TMP/pred.csv")" = "$(curl -s "${J[@]}" -d "{\"images\": $pixels}" "$BASE/v1/models/$tuned/predict" | jq -r '[.predictions[].label] | join(" ")') " ]
ok $? "a predictions job over the test images: 150 rows, the first three labelled as predict labels them"
stop_daemon; ok $? "clean stop"
done_testing
