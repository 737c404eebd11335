#!/usr/bin/env bash
# test_api_explain.sh - saliency over HTTP and on the CLI: train a small CNN (normalized input) and an image MLP
# (flatten + linear layers over 1x28x28) on a Fashion-MNIST subset, then POST /v1/models/{id}/explain one test
# image: integrated gradients and gradient x input, a 28x28 map for the predicted class (the one predict answers),
# a target by name or index, the zeros and black baselines, integrated gradients' completeness, and the 4xx
# answers (a tabular model, a model without weights, bad target, steps, image). `finetuned explain` on the
# downloaded weights answers the same map as the API.
# Not for: the numbers against PyTorch (tests/unit/test_compute_explain.c).
. "$(dirname "$0")/lib.sh"

FMNIST=/usr/share/datasets/fashion-mnist
J=(-H 'Content-Type: application/json')
subset() { # subset N SRC OUT: the first N images and labels of an IDX pair, gzip'd
        local n=$1 src=$2 out=$3 hex
        hex=$(printf '%08x' "$n" | sed 's/../\\x&/g')
        { printf "\\x00\\x00\\x08\\x03$hex\\x00\\x00\\x00\\x1c\\x00\\x00\\x00\\x1c"
          gunzip -c "$FMNIST/$src-images-idx3-ubyte.gz" | tail -c +17 | head -c $((n * 784)); } | gzip >"$out-images.gz"
        { printf "\\x00\\x00\\x08\\x01$hex"
          gunzip -c "$FMNIST/$src-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$n"; } | gzip >"$out-labels.gz"
}
train_model() { # train_model MODEL_ID EXTRA_SPEC -> sets RESULT
        local job
        http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$1\", \"training_file\": \"$train\", $2
                \"hyperparameters\": {\"epochs\": 2, \"batch_size\": 32, \"learning_rate\": 0.005, \"optimizer\": \"adam\"}, \"seed\": 3}"
        job=$(echo "$BODY" | jq -r .id)
        timeout 300 curl -s -N "$BASE/v1/jobs/$job/events?stream=true" >/dev/null
        http GET "/v1/jobs/$job"
        RESULT=$(echo "$BODY" | jq -r .result_model)
        [ "$(echo "$BODY" | jq -r .state)" = succeeded ]
}

subset 300 train "$TMP/train"
start_daemon "$TMP/state" --threads 1; ok $? "daemon starts"
http POST '/v1/datasets?name=fmnist-300' -F images=@"$TMP/train-images.gz" -F labels=@"$TMP/train-labels.gz"
train=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "Fashion-MNIST subset uploaded"

http POST /v1/models "${J[@]}" -d '{"name": "cnn", "preset": "cnn", "config": {"in_channels": 1, "input_size": [28, 28], "channels": [4, 8], "hidden": 16, "outputs": 10}}'
cnn0=$(echo "$BODY" | jq -r .id)
train_model "$cnn0" '"preprocess": {"normalize": {"mean": [0.5], "std": [0.5]}},'; ok $? "cnn trained (normalize mean 0.5 std 0.5)"
cnn=$RESULT
http POST /v1/models "${J[@]}" -d '{"name": "image-mlp", "spec": {"input": [1, 28, 28], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 32}, {"type": "relu"}, {"type": "linear", "out_features": 10}]}}'
mlp0=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "image MLP registered ($mlp0)"
train_model "$mlp0" ''; ok $? "image MLP trained"
mlp=$RESULT

# the 5th training image, pixels 0..255
img=$(gunzip -c "$TMP/train-images.gz" | tail -c +$((17 + 4 * 784)) | head -c 784 | od -An -v -tu1 | tr -s ' \n' ' ' |
      awk '{ out = "[[" $1; for (k = 2; k <= NF; k++) out = out "," $k; print out "]]" }')
echo "{\"images\": $img}" >"$TMP/req.json"

for m in cnn mlp; do
        id=${!m}
        http POST "/v1/models/$id/predict" "${J[@]}" -d @"$TMP/req.json"
        pred=$(echo "$BODY" | jq -r '.predictions[0].label')
        http POST "/v1/models/$id/explain" "${J[@]}" -d @"$TMP/req.json"
        echo "$BODY" >"$TMP/$m-ig.json"
        [ "$STATUS" = 200 ] && echo "$BODY" | jq -e --arg p "$pred" '.object == "explanation" and .method == "integrated_gradients"
                and .steps == 32 and .baseline == "zeros" and .input_shape == [1,28,28] and (.map | length) == 28
                and all(.map[]; length == 28) and .target.label == $p and .prediction.label == $p
                and .target.probability > 0 and .min <= .max' >/dev/null
        ok $? "$m: integrated gradients: a 28x28 map for the predicted class $pred ($(echo "$BODY" | jq -c '{target: .target.label, min, max}'))"
        echo "$BODY" | jq -e '([.map[][]] | add) as $s | ($s - .completeness.sum | fabs) <= 1e-3 * ([.map[][] | fabs] | add) + 1e-6
                and (.completeness.error | fabs) <= 0.1 * (.completeness.score_difference | fabs) + 0.05' >/dev/null
        ok $? "$m: the map adds up to the attributions' sum, and to s(x) - s(0) within 10% ($(echo "$BODY" | jq -c .completeness))"
        http POST "/v1/models/$id/explain" "${J[@]}" -d "{\"images\": $img, \"method\": \"gradient_x_input\"}"
        [ "$STATUS" = 200 ] && echo "$BODY" | jq -e '.method == "gradient_x_input" and .steps == 1 and .baseline == null
                and (.map | length) == 28' >/dev/null
        ok $? "$m: gradient x input answers its map"
done

# a target by name and by index: the same explanation; another class gives another map
http POST "/v1/models/$cnn/explain" "${J[@]}" -d "{\"images\": $img, \"target\": \"3\", \"steps\": 8}"
a=$(echo "$BODY" | jq -c .map); ta=$(echo "$BODY" | jq -r .target.label)
http POST "/v1/models/$cnn/explain" "${J[@]}" -d "{\"images\": $img, \"target\": 3, \"steps\": 8}"
[ "$STATUS" = 200 ] && [ "$ta" = 3 ] && [ "$(echo "$BODY" | jq -c .map)" = "$a" ]; ok $? "target \"3\" and target 3 give the same map"
[ "$(jq -c .map "$TMP/cnn-ig.json")" != "$a" ] || [ "$(jq -r .target.label "$TMP/cnn-ig.json")" = 3 ]; ok $? "another target, another map"
# the black baseline under normalize(0.5, 0.5) is -1 per pixel, not 0: another map
http POST "/v1/models/$cnn/explain" "${J[@]}" -d "{\"images\": $img, \"baseline\": \"black\"}"
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq -r .baseline)" = black ] && [ "$(echo "$BODY" | jq -c .map)" != "$(jq -c .map "$TMP/cnn-ig.json")" ]
ok $? "baseline black differs from zeros under a normalization ($(echo "$BODY" | jq -c .completeness))"
# the same request twice: the same answer (nothing carried over between requests)
http POST "/v1/models/$cnn/explain" "${J[@]}" -d @"$TMP/req.json"
[ "$(echo "$BODY" | jq -c .map)" = "$(jq -c .map "$TMP/cnn-ig.json")" ]; ok $? "the same request, the same map"

# refusals: the error envelope, param naming the field
refuse() { # refuse MODEL BODY STATUS PARAM DESCRIPTION
        http POST "/v1/models/$1/explain" "${J[@]}" -d "$2"
        [ "$STATUS" = "$3" ] && echo "$BODY" | jq -e --arg p "$4" '.error.code and .error.message and .error.param == $p' >/dev/null
        ok $? "$5 -> $3 ($4): $(echo "$BODY" | jq -r .error.message)"
}
printf 'x1,x2,label\n' >"$TMP/t.csv"; for i in $(seq 1 20); do printf '0.%s,1,a\n1.%s,0,b\n' "$i" "$i" >>"$TMP/t.csv"; done
http POST '/v1/datasets?name=table' --data-binary @"$TMP/t.csv"; tab_ds=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 2, "hidden": [8], "outputs": 2}}'
tab0=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$tab0\", \"training_file\": \"$tab_ds\", \"hyperparameters\": {\"epochs\": 1}}"
tjob=$(echo "$BODY" | jq -r .id); timeout 120 curl -s -N "$BASE/v1/jobs/$tjob/events?stream=true" >/dev/null
tab=$(curl -s "$BASE/v1/jobs/$tjob" | jq -r .result_model)
refuse "$tab" '{"images": [[1, 2]]}' 400 id "a tabular model"
refuse "$cnn0" "{\"images\": $img}" 409 id "a model without weights"
refuse "$cnn" "{\"images\": $img, \"target\": \"sneaker-ish\"}" 400 target "an unknown class name"
refuse "$cnn" "{\"images\": $img, \"target\": 10}" 400 target "class index 10 of 10"
refuse "$cnn" "{\"images\": $img, \"target\": [1]}" 400 target "a target that is neither name nor index"
refuse "$cnn" "{\"images\": $img, \"steps\": 0}" 400 steps "0 steps"
refuse "$cnn" "{\"images\": $img, \"steps\": 257}" 400 steps "257 steps (at most 256)"
refuse "$cnn" "{\"images\": $img, \"method\": \"lime\"}" 400 method "an unknown method"
refuse "$cnn" "{\"images\": [[1, 2, 3]]}" 400 'images[0]' "an image of the wrong size"
refuse "$cnn" '{"images": [[300]], "image_shape": [1, 1, 1]}' 400 'images[0]' "a pixel outside 0..255"
refuse "$cnn" "{\"images\": [${img:1:-1}, ${img:1:-1}]}" 400 images "two images"
refuse "$cnn" '{"images": [[0]], "image_shape": [3, 1024, 1025]}' 400 image_shape "an image over the size limit"
refuse "$cnn" '{"rows": [[1, 2]]}' 400 rows "feature rows"
refuse mdl_nothere "{\"images\": $img}" 404 id "an unknown model"
curl -s -o "$TMP/cnn.safetensors" "$BASE/v1/models/$cnn/weights"
stop_daemon; ok $? "clean stop"

# the CLI: the same request on the downloaded weights, the same map
"$FINETUNED" explain "$TMP/cnn.safetensors" "$TMP/req.json" >"$TMP/cli.json"; rc=$?
[ $rc -eq 0 ] && [ "$(jq -c .map "$TMP/cli.json")" = "$(jq -c .map "$TMP/cnn-ig.json")" ] &&
        [ "$(jq -r .target.label "$TMP/cli.json")" = "$(jq -r .target.label "$TMP/cnn-ig.json")" ]
ok $? "finetuned explain: the API's map from the downloaded weights"
"$FINETUNED" explain "$TMP/cnn.safetensors" - <<<"{\"images\": $img, \"steps\": 999}" >/dev/null 2>"$TMP/cli.err"; rc=$?
[ $rc -eq 1 ] && grep -q "steps" "$TMP/cli.err"; ok $? "finetuned explain: a bad request exits 1 naming the field: $(cat "$TMP/cli.err")"
done_testing
