#!/usr/bin/env bash
# test_api_jobs.sh - the whole flow against the real daemon: upload a CSV,
# register a model, create a job, stream its events over SSE as they happen,
# read metrics, download the model, predict, chain a second fine-tune from the
# result; then job validation (400 with param), idempotent retries (same body
# -> the original job, different body -> 422), 409 for resources in use and
# finished jobs, cancel (queued and running), delete (finished only), the queue cap (429 +
# Retry-After), state filters, pagination, events after=N and Last-Event-ID.
. "$(dirname "$0")/lib.sh"

J=(-H 'Content-Type: application/json')
envelope() {
        [ "$STATUS" = "$1" ] && [ "$(echo "$BODY" | jq -r .error.code)" = "$2" ] &&
                { [ $# -lt 3 ] || [ "$(echo "$BODY" | jq -r .error.param)" = "$3" ]; }
}
# wait_state JOB STATE...: poll until the job is in one of the states (20 s at most).
wait_state() {
        local job=$1 i s; shift
        for i in $(seq 1 200); do
                s=$(curl -s "$BASE/v1/jobs/$job" | jq -r .state)
                for want in "$@"; do [ "$s" = "$want" ] && return 0; done
                sleep 0.1
        done
        diag "job $job stuck in $s"
        return 1
}

# 150 rows, 3 separable classes (deterministic)
awk 'BEGIN { print "x1,x2,species"; s = 7;
        for (i = 0; i < 150; i++) { c = i % 3; s = (s * 1103515245 + 12345) % 2147483648; a = s / 2147483648;
                s = (s * 1103515245 + 12345) % 2147483648; b = s / 2147483648;
                printf "%.3f,%.3f,%s\n", c * 2 + a, (c == 1) * 3 + b, (c == 0 ? "setosa" : c == 1 ? "versicolor" : "virginica") } }' >"$TMP/iris.csv"
# a bigger one for jobs that must still be running when we act on them
awk 'BEGIN { print "a,b,c,d,label"; s = 3;
        for (i = 0; i < 4000; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, i % 7 / 7, (v > 0.5) } }' >"$TMP/big.csv"

start_daemon "$TMP/state" --workers 1 --threads 1 --max-queued-jobs 3; ok $? "daemon starts (1 worker, at most 3 queued jobs)"

http POST '/v1/datasets?name=iris' --data-binary @"$TMP/iris.csv"
ds=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "upload iris.csv -> $ds"
http POST /v1/models "${J[@]}" -d '{"name": "tiny-mlp", "preset": "mlp", "config": {"inputs": 2, "hidden": [16], "outputs": 3}}'
mdl=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.source == "preset" and .has_weights == false and (.spec.layers | length) == 3' >/dev/null
ok $? "model from the mlp preset -> $mdl"
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"hidden": "wide"}}'
envelope 400 invalid_request config.hidden; ok $? "bad preset config -> 400 param config.hidden"
http POST /v1/models "${J[@]}" -d '{"spec": {"input": [4], "layers": [{"type": "conv3d"}]}}'
envelope 400 invalid_request && echo "$BODY" | jq -r .error.param | grep -q '^spec'; ok $? "bad spec -> 400 param $(echo "$BODY" | jq -r .error.param)"
http GET "/v1/models/$mdl/weights"
envelope 404 not_found; ok $? "weights of an untrained preset -> 404"

spec() { # spec MODEL DATASET EPOCHS [extra JSON members]
        echo "{\"model\": \"$1\", \"training_file\": \"$2\", \"task\": {\"type\": \"classification\", \"target\": \"${TARGET:-species}\"},
              \"hyperparameters\": {\"epochs\": $3, \"batch_size\": 16, \"learning_rate\": 0.05},
              \"checkpoint\": {\"every_epochs\": 1}, \"seed\": 1${4:+, $4}}"
}

# ---- the whole flow -------------------------------------------------------------------------
http POST /v1/jobs "${J[@]}" -d "$(spec "$mdl" "$ds" 3)"
job=$(echo "$BODY" | jq -r .id)
loc=$(curl -s -o /dev/null -D - "${J[@]}" -d '{}' "$BASE/v1/jobs" | tr -d '\r' | sed -n 's/^Location: //Ip')
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.state == "queued" and .spec.hyperparameters.epochs == 3 and .spec.hyperparameters.optimizer' >/dev/null
ok $? "POST /v1/jobs -> 201 queued, the spec echoed with its defaults ($job)"
timeout 60 curl -s -N "$BASE/v1/jobs/$job/events?stream=true" >"$TMP/sse"; rc=$?
[ $rc -eq 0 ]; ok $? "the SSE stream ends by itself after the terminal event"
grep -q '^event: epoch' "$TMP/sse" && [ "$(grep -c '^event: epoch' "$TMP/sse")" = 3 ]; ok $? "3 epoch events streamed"
[ "$(grep '^data:' "$TMP/sse" | tail -n1)" = 'data: {"state":"succeeded","attempt":1}' ]; ok $? "the last event is status succeeded"
ids=$(grep '^id: ' "$TMP/sse" | cut -d' ' -f2 | tr '\n' ' '); n=$(echo $ids | wc -w)
[ "$ids" = "$(seq 1 "$n" | tr '\n' ' ')" ]; ok $? "event ids are 1..$n without gaps"
grep '^data: {"type":"epoch"' "$TMP/sse" | head -n1 | sed 's/^data: //' | jq -e '.train_loss > 0 and (.val_accuracy != null) and .lr > 0 and .samples_per_sec > 0' >/dev/null
ok $? "an epoch event has train_loss, val_accuracy, lr, samples_per_sec"
http GET "/v1/jobs/$job"
result=$(echo "$BODY" | jq -r .result_model)
echo "$BODY" | jq -e '.state == "succeeded" and .attempt == 1 and .metrics.metrics.accuracy > 0.8 and .error == null and (.result_model | startswith("mdl_")) and .finished_at >= .started_at' >/dev/null
ok $? "GET job: succeeded with metrics (accuracy $(echo "$BODY" | jq .metrics.metrics.accuracy)) and a result model"
# best: the highest val_accuracy of the streamed epochs, at the first epoch that reached it; the list says the same
want=$(grep '^data: {"type":"epoch"' "$TMP/sse" | sed 's/^data: //' | jq -sc 'max_by(.val_accuracy) as $m |
        {metric: "val_accuracy", mode: "max", value: $m.val_accuracy, epoch: (map(select(.val_accuracy == $m.val_accuracy)) | .[0].epoch)}')
[ "$(echo "$BODY" | jq -c .best)" = "$want" ] && [ "$(curl -s "$BASE/v1/jobs?limit=100" | jq -c ".data[] | select(.id == \"$job\") | .best")" = "$want" ]
ok $? "GET job and the list: best $want, from its epoch events"
http GET "/v1/jobs/$job/artifacts/metrics.json"
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e '.metrics.confusion_matrix' >/dev/null; ok $? "artifacts/metrics.json"
code=$(curl -s -o "$TMP/model.safetensors" -w '%{http_code}' "$BASE/v1/jobs/$job/artifacts/model.safetensors")
hlen=$(od -An -tu8 -N8 "$TMP/model.safetensors" | tr -d ' ')
[ "$code" = 200 ] && head -c $((8 + hlen)) "$TMP/model.safetensors" | tail -c "$hlen" | jq -e '."0.weight".shape == [16,2] and ."2.weight".shape == [3,16] and .__metadata__."finetuned.classes"' >/dev/null
ok $? "artifacts/model.safetensors is safetensors with state_dict names (0.weight [16,2], 2.weight [3,16])"
curl -s -o "$TMP/w2" "$BASE/v1/models/$result/weights"
cmp -s "$TMP/model.safetensors" "$TMP/w2"; ok $? "GET /v1/models/{result}/weights is the same file"
SPEC16='{"input":[2],"layers":[{"type":"linear","out_features":16},{"type":"relu"},{"type":"linear","out_features":3}]}'
http POST /v1/models -F weights=@"$TMP/model.safetensors" -F "spec=$SPEC16" -F name=reuploaded
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.source == "upload" and .has_weights and .name == "reuploaded"' >/dev/null
ok $? "upload safetensors weights with their spec -> 201 source upload"
http POST /v1/models -F weights=@"$TMP/model.safetensors" -F "spec=${SPEC16/16/8}"
envelope 400 invalid_request weights && echo "$BODY" | grep -q "0.weight"; ok $? "weights that do not fit the spec -> 400 param weights: $(echo "$BODY" | jq -r .error.message)"
http POST /v1/models -F weights=@"$TMP/iris.csv" -F preset=mlp
envelope 400 invalid_request weights; ok $? "a CSV as weights -> 400 param weights: $(echo "$BODY" | jq -r .error.message)"
http POST /v1/models -F weights=@"$TMP/model.safetensors" -F preset=gpt
envelope 400 invalid_request preset; ok $? "multipart with a bad preset -> 400 param preset"
http GET "/v1/jobs/$job/artifacts/model.pt"
envelope 404 not_found name; ok $? "unknown artifact -> 404"
http GET "/v1/jobs/$job/checkpoints"
[ "$(echo "$BODY" | jq '.data | length')" = 3 ] && echo "$BODY" | jq -e '[.data[].epoch] == [1,2,3]' >/dev/null; ok $? "3 checkpoints, epochs 1..3"
http POST "/v1/models/$result/predict" "${J[@]}" -d '{"rows": [[0.5, 0.5], [2.5, 3.5], [4.5, 0.2]]}'
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq -r '[.predictions[].label] | join(",")')" = setosa,versicolor,virginica ] &&
        echo "$BODY" | jq -e '[.predictions[] | (.probabilities | add)] | all(. > 0.999 and . < 1.001)' >/dev/null
ok $? "predict -> setosa, versicolor, virginica with probabilities summing to 1"
rows=$(for i in $(seq 1 70); do echo "[0.$i, 0.5]"; done | paste -sd, -)
http POST "/v1/models/$result/predict" "${J[@]}" -d "{\"rows\": [$rows]}"
[ "$(echo "$BODY" | jq '.predictions | length')" = 70 ]; ok $? "predict 70 rows (three batches) -> 70 answers"
http POST "/v1/models/$result/predict" "${J[@]}" -d '{"rows": [[0.5]]}'
envelope 400 invalid_request 'rows[0]'; ok $? "predict with a short row -> 400 param rows[0]"
http POST "/v1/models/$mdl/predict" "${J[@]}" -d '{"rows": [[0.5, 0.5]]}'
envelope 409 conflict; ok $? "predict on a model without weights -> 409"

# issue 21, numbers that are not numbers: weights checked value by value at upload, inputs at predict.
# st_file OUT WEIGHT_DTYPE WEIGHT_BYTES: a safetensors file for SPEC1 (0.weight [1,1], 0.bias [1] F32 1.0)
SPEC1='{"input":[1],"layers":[{"type":"linear","out_features":1}]}'
st_file() { # [META_JSON_MEMBERS]: the "__metadata__" object's members, as header text
        local size=$(( $(printf "$3" | wc -c) )) meta=${4:+"\"__metadata__\":{$4},"}
        local h="{$meta\"0.weight\":{\"dtype\":\"$2\",\"shape\":[1,1],\"data_offsets\":[0,$size]},\"0.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[$size,$((size + 4))]}}"
        printf "$(printf '\\x%02x' $((${#h} & 255)) $((${#h} >> 8)) 0 0 0 0 0 0)" >"$1"
        printf '%s' "$h" >>"$1"
        printf "$3"'\x00\x00\x80\x3f' >>"$1"
}
st_file "$TMP/ok.st" F32 '\x00\x00\x80\x3f'
http POST /v1/models -F weights=@"$TMP/ok.st" -F "spec=$SPEC1"
[ "$STATUS" = 201 ]; ok $? "a hand-made safetensors file with finite weights -> 201 ($(echo "$BODY" | jq -c .error))"
for bad in 'F32 \x00\x00\xc0\x7f NaN' 'F32 \x00\x00\x80\x7f Inf' 'F32 \x00\x00\x80\xff -Inf' \
        'F64 \x9c\x75\x00\x88\x3c\xe4\x37\x7e 1e+300' 'I64 \x01\x00\x00\x01\x00\x00\x00\x00 16777217'; do
        set -- $bad
        st_file "$TMP/bad.st" "$1" "$2"
        http POST /v1/models -F weights=@"$TMP/bad.st" -F "spec=$SPEC1"
        envelope 400 invalid_request weights && echo "$BODY" | jq -e --arg v "$3" \
                '.error.message | contains("'"'"'0.weight'"'"'") and contains($v)' >/dev/null
        ok $? "$1 weight $3 -> 400 at upload naming the tensor: $(echo "$BODY" | jq -r .error.message)"
done
http POST "/v1/models/$result/predict" "${J[@]}" -d '{"rows": [[0.5, 0.5], [0.5, 1e39]]}'
envelope 400 invalid_request 'rows[1][1]'; ok $? "predict with 1e39 -> 400 param rows[1][1]: $(echo "$BODY" | jq -r .error.message)"
http POST "/v1/models/$result/predict" "${J[@]}" -d '{"rows": [[-3e38, 3e38]]}'
{ [ "$STATUS" = 400 ] && [ "$(echo "$BODY" | jq -r .error.param)" = 'rows[0]' ]; } ||
        { [ "$STATUS" = 200 ] && echo "$BODY" | jq -e '.predictions[0].probabilities | length == 3' >/dev/null; }
ok $? "predict at the edge of float range -> probabilities or 400 rows[0], never empty ($STATUS)"

# issue 21: a 4-D IDX pair (N x 3 x H x W colour images) uploads as one dataset with 3 channels
perl -e 'open(my $i, ">", "$ARGV[0]/rgb-img") or die; binmode $i; print $i pack("NNNNN", 0x804, 6, 3, 4, 5), map { chr($_ % 251) } 0 .. 359;
        open(my $l, ">", "$ARGV[0]/rgb-lab") or die; binmode $l; print $l pack("NN", 0x801, 6), map { chr($_ % 2) } 0 .. 5;' "$TMP"
http POST '/v1/datasets?name=rgb' -F images=@"$TMP/rgb-img" -F labels=@"$TMP/rgb-lab"
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.schema.image_shape == [3, 4, 5] and .schema.rows == 6' >/dev/null
ok $? "upload a 4-D IDX pair -> 201, image_shape [3, 4, 5] ($(echo "$BODY" | jq -c '.schema.image_shape // .error'))"

# issue 21: "return": ["logits"]: the model's outputs before softmax, by class; probabilities are their softmax
http POST "/v1/models/$result/predict" "${J[@]}" -d '{"rows": [[0.5, 0.5], [4.5, 0.2]], "return": ["probabilities", "logits"]}'
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e '.predictions | all(
        . as $r | ($r.logits | [.[]] | max) as $m | ($r.logits | [.[] | (. - $m) | exp] | add) as $z |
        ($r.logits | keys) == ($r.probabilities | keys) and
        ($r.logits | to_entries | max_by(.value) | .key) == $r.label and
        ([$r.logits | to_entries[] | (((.value - $m) | exp) / $z - $r.probabilities[.key]) | fabs] | max) < 1e-9)' >/dev/null
ok $? "predict with return [probabilities, logits]: softmax(logits) = probabilities, argmax = label"
http POST "/v1/models/$result/predict" "${J[@]}" -d '{"rows": [[0.5, 0.5]], "return": ["logits"]}'
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e '.predictions[0] | has("logits") and (has("probabilities") | not) and .label == "setosa"' >/dev/null
ok $? "predict with return [logits]: logits and label, no probabilities"
http POST "/v1/models/$result/predict" "${J[@]}" -d '{"rows": [[0.5, 0.5]], "return": ["scores"]}'
envelope 400 invalid_request 'return[0]'; ok $? "predict with return [scores] -> 400 param return[0]"

# issue 21: an uploaded file carries its preprocessing and class names in the safetensors metadata
# (the daemon's own keys); predict applies them: logit = 1 * (x - 2) / 4 + 1, so x = 10 gives 3 exactly
st_file "$TMP/pre.st" F32 '\x00\x00\x80\x3f' '"finetuned.preprocess":"{\"standardize\":true,\"mean\":[2],\"std\":[4]}","finetuned.classes":"[\"only\"]"'
http POST /v1/models -F weights=@"$TMP/pre.st" -F "spec=$SPEC1"
pre=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ]; ok $? "upload weights with finetuned.preprocess and finetuned.classes metadata -> 201 ($(echo "$BODY" | jq -c .error))"
http POST "/v1/models/$pre/predict" "${J[@]}" -d '{"rows": [[10], [2]], "return": ["logits"]}'
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e '[.predictions[] | .logits.only] == [3, 1] and .predictions[0].label == "only"' >/dev/null
ok $? "predict on the uploaded model standardizes with its metadata, names its class: $(echo "$BODY" | jq -c '[.predictions[].logits]')"
st_file "$TMP/pre.st" F32 '\x00\x00\x80\x3f' '"finetuned.preprocess":"{\"standardize\":true,\"mean\":[2],\"std\":[0]}"'
http POST /v1/models -F weights=@"$TMP/pre.st" -F "spec=$SPEC1"
envelope 400 invalid_request weights && echo "$BODY" | grep -q "finetuned.preprocess"
ok $? "a std of 0 in the metadata -> 400 at upload: $(echo "$BODY" | jq -r .error.message)"
st_file "$TMP/pre.st" F32 '\x00\x00\x80\x3f' '"finetuned.classes":"[\"a\",\"b\"]"'
http POST /v1/models -F weights=@"$TMP/pre.st" -F "spec=$SPEC1"
envelope 400 invalid_request weights && echo "$BODY" | grep -q "finetuned.classes"
ok $? "two class names for one output -> 400 at upload: $(echo "$BODY" | jq -r .error.message)"

# chain: fine-tune the result again, freezing the first layer
http POST /v1/jobs "${J[@]}" -d "$(spec "$result" "$ds" 1 '"strategy": {"type": "partial", "freeze": ["0.*"]}')"
job2=$(echo "$BODY" | jq -r .id)
wait_state "$job2" succeeded failed
http GET "/v1/jobs/$job2"
[ "$(echo "$BODY" | jq -r .state)" = succeeded ] && [ "$(echo "$BODY" | jq -r .model)" = "$result" ]; ok $? "a job on the previous job's model succeeds (pretrain -> fine-tune chain)"

# checkpoint.keep 1: only the newest checkpoint stays, in the list and on disk; every checkpoint event stays
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$mdl\", \"training_file\": \"$ds\",
        \"task\": {\"type\": \"classification\", \"target\": \"species\"},
        \"hyperparameters\": {\"epochs\": 4, \"batch_size\": 16, \"learning_rate\": 0.05}, \"checkpoint\": {\"keep\": 1}}"
job3=$(echo "$BODY" | jq -r .id)
wait_state "$job3" succeeded failed
http GET "/v1/jobs/$job3/checkpoints"
cks=$(echo "$BODY" | jq -c '[.data[].epoch]')
dirs=$(ls "$TMP/state/jobs/$job3" 2>/dev/null | grep -c '^ckpt-')
evs=$(curl -s "$BASE/v1/jobs/$job3/events?limit=100" | jq '[.data[] | select(.type == "checkpoint")] | length')
[ "$cks" = "[4]" ] && [ "$dirs" = 1 ] && [ "$evs" = 4 ]
ok $? "checkpoint.keep 1: checkpoints $cks, $dirs directory on disk, $evs checkpoint events"

# ---- events as JSON ---------------------------------------------------------------------------------
http GET "/v1/jobs/$job/events?after=2&limit=3"
[ "$(echo "$BODY" | jq -c '[.data[].seq]')" = '[3,4,5]' ] && [ "$(echo "$BODY" | jq .has_more)" = true ]; ok $? "events?after=2&limit=3 -> 3,4,5 and has_more"
first=$(curl -s -H 'Accept: text/event-stream' -H 'Last-Event-ID: 5' "$BASE/v1/jobs/$job/events" | sed -n 's/^id: //p' | head -n1)
[ "$first" = 6 ]; ok $? "Accept: text/event-stream + Last-Event-ID: 5 replays from 6"
last=$(curl -s "$BASE/v1/jobs/$job/events?limit=1000" | jq '.data[-1].seq')
timeout 5 curl -s -N -H "Last-Event-ID: $last" "$BASE/v1/jobs/$job/events?stream=true" >"$TMP/tail"; rc=$?
[ $rc -eq 0 ] && ! grep -q '^id:' "$TMP/tail"; ok $? "resuming after the terminal event ends the stream at once"

# ---- validation before queueing ----------------------------------------------------------------------
bad() { # bad DESCRIPTION PARAM BODY
        http POST /v1/jobs "${J[@]}" -d "$3"
        envelope 400 invalid_request "$2"; ok $? "$1 -> 400 param $2: $(echo "$BODY" | jq -r .error.message)"
}
bad "unknown field" colour "$(spec "$mdl" "$ds" 1 '"colour": "red"')"
bad "negative learning rate" hyperparameters.learning_rate "$(spec "$mdl" "$ds" 1 | jq -c '.hyperparameters.learning_rate = -1')"
bad "epochs as a string" hyperparameters.epochs "$(spec "$mdl" "$ds" 1 | jq -c '.hyperparameters.epochs = "ten"')"
bad "missing dataset" training_file "$(spec "$mdl" ds_000000000000000000000000 1)"
bad "malformed dataset id" training_file "$(spec "$mdl" '../etc/passwd' 1)"
bad "missing model" model "$(spec mdl_000000000000000000000000 "$ds" 1)"
bad "a path as the model" model "$(spec /etc/passwd "$ds" 1)"
TARGET=petal bad "no such target column" task.target "$(TARGET=petal spec "$mdl" "$ds" 1)"
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 5, "outputs": 3}}'
m5=$(echo "$BODY" | jq -r .id)
bad "model inputs do not fit the data" model "$(spec "$m5" "$ds" 1)"

bad "data-parallel ranks (the daemon runs one process per job)" resources.ranks "$(spec "$mdl" "$ds" 1 | jq -c '.resources.ranks = 2')"
bad "zero ranks" resources.ranks "$(spec "$mdl" "$ds" 1 | jq -c '.resources.ranks = 0')"
bad "regression on a text column" task.type "$(spec "$mdl" "$ds" 1 | jq -c '.task.type = "regression"')"

# ---- a job that fails at run time reports why ----------------------------------------------------------
{ head -n 20 "$TMP/iris.csv"; echo "1.5,,setosa"; } >"$TMP/holes.csv"
http POST '/v1/datasets?name=holes' --data-binary @"$TMP/holes.csv"
holes=$(echo "$BODY" | jq -r .id)
[ "$(echo "$BODY" | jq .schema.missing_values)" = 1 ]; ok $? "a CSV with a missing value uploads (its summary counts it)"
http POST /v1/jobs "${J[@]}" -d "$(spec "$mdl" "$holes" 1 | jq -c '.preprocess.dropna = false')"
bad_job=$(echo "$BODY" | jq -r .id)
wait_state "$bad_job" failed succeeded
http GET "/v1/jobs/$bad_job"
echo "$BODY" | jq -e '.state == "failed" and .error.code == "invalid_data" and (.error.message | test("blobs") | not) and .metrics == null and .result_model == null' >/dev/null
ok $? "dropna=false on it fails at run time with the reason: $(echo "$BODY" | jq -c .error)"
timeout 10 curl -s -N "$BASE/v1/jobs/$bad_job/events?stream=true" | grep '^data:' | tail -n1 | grep -q '"failed"'; ok $? "its stream ends with status failed"

# ---- idempotency --------------------------------------------------------------------------------------
K=(-H "Idempotency-Key: retry-$RANDOM")
http POST /v1/jobs "${J[@]}" "${K[@]}" -d "$(spec "$mdl" "$ds" 1)"
a=$(echo "$BODY" | jq -r .id); s1=$STATUS
http POST /v1/jobs "${J[@]}" "${K[@]}" -d "$(spec "$mdl" "$ds" 1 | jq -c .)"
b=$(echo "$BODY" | jq -r .id)
[ "$s1" = 201 ] && [ "$STATUS" = 200 ] && [ "$a" = "$b" ]; ok $? "the same key and body (reformatted) -> the original job ($a)"
http POST /v1/jobs "${J[@]}" "${K[@]}" -d "$(spec "$mdl" "$ds" 2)"
envelope 422 idempotency_key_reused Idempotency-Key; ok $? "the same key with another body -> 422"
wait_state "$a" succeeded failed

# ---- cancel, 409s, the queue cap -------------------------------------------------------------------------
http POST '/v1/datasets?name=big' --data-binary @"$TMP/big.csv"
big=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 4, "hidden": [256, 256], "outputs": 2}}'
mbig=$(echo "$BODY" | jq -r .id)
TARGET=label
http POST /v1/jobs "${J[@]}" -d "$(TARGET=label spec "$mbig" "$big" 100000)" # cannot finish: cancelled below
long=$(echo "$BODY" | jq -r .id)
wait_state "$long" running; ok $? "a long job is running"
for i in $(seq 1 300); do
        http GET "/v1/jobs/$long"
        echo "$BODY" | jq -e '.progress.batch > 0 and .progress.epochs == 100000 and (.progress | has("eta_seconds"))' >/dev/null && break
        sleep 0.1
done
echo "$BODY" | jq -e '.progress.batch > 0' >/dev/null; ok $? "GET shows live progress: $(echo "$BODY" | jq -c '.progress | {epoch, batch, batches, eta_seconds}')"
http DELETE "/v1/datasets/$big"
envelope 409 conflict; ok $? "DELETE a dataset a running job uses -> 409"
http DELETE "/v1/models/$mbig"
envelope 409 conflict; ok $? "DELETE a model a running job uses -> 409"
http DELETE "/v1/jobs/$long"
envelope 409 conflict id && echo "$BODY" | jq -r .error.message | grep -q running; ok $? "DELETE a running job -> 409: $(echo "$BODY" | jq -r .error.message)"
b0=$(curl -s "$BASE/v1/jobs/$long" | jq .progress.step)
for i in $(seq 1 50); do
        http GET "/v1/jobs/$long"
        echo "$BODY" | jq -e ".state == \"running\" and .progress.step > $b0" >/dev/null && break
        sleep 0.1
done
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e ".state == \"running\" and .progress.step > $b0" >/dev/null; ok $? "it keeps running (step $b0 -> $(echo "$BODY" | jq .progress.step))"
# best of a running job: at least as good as every epoch recorded before it was asked for, and the value of the epoch it names
for i in $(seq 1 300); do
        [ "$(curl -s "$BASE/v1/jobs/$long/events?limit=1000" | jq '[.data[] | select(.type == "epoch")] | length')" -ge 2 ] && break
        sleep 0.1
done
before=$(curl -s "$BASE/v1/jobs/$long/events?limit=1000" | jq '[.data[] | select(.type == "epoch") | .data.val_accuracy] | max')
best=$(curl -s "$BASE/v1/jobs/$long" | jq -c .best)
at=$(curl -s "$BASE/v1/jobs/$long/events?limit=1000" | jq ".data[] | select(.type == \"epoch\" and .data.epoch == $(echo "$best" | jq '.epoch // 0')) | .data.val_accuracy")
echo "$best" | jq -e ".metric == \"val_accuracy\" and .value >= $before and .value == ${at:-null}" >/dev/null
ok $? "a running job's best follows its epochs: $best (the best recorded before: $before)"
q=()
for i in 1 2 3; do
        http POST /v1/jobs "${J[@]}" -d "$(TARGET=label spec "$mbig" "$big" 1)"; q+=("$(echo "$BODY" | jq -r .id)")
done
retry=$(curl -s -o "$TMP/r" -D - "${J[@]}" -d "$(TARGET=label spec "$mbig" "$big" 1)" "$BASE/v1/jobs" | tr -d '\r' | sed -n 's/^Retry-After: //Ip')
STATUS=$(curl -s -o /dev/null -w '%{http_code}' "${J[@]}" -d "$(TARGET=label spec "$mbig" "$big" 1)" "$BASE/v1/jobs")
[ "$STATUS" = 429 ] && [ -n "$retry" ] && jq -e '.error.code == "rate_limited"' "$TMP/r" >/dev/null; ok $? "a 4th queued job -> 429 with Retry-After: $retry"
http GET '/v1/jobs?state=queued'
[ "$(echo "$BODY" | jq '.data | length')" = 3 ] && echo "$BODY" | jq -e 'all(.data[]; .state == "queued")' >/dev/null; ok $? "GET /v1/jobs?state=queued -> the 3 queued jobs"
http POST "/v1/jobs/${q[0]}/cancel"
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq -r .state)" = cancelled ]; ok $? "cancel a queued job -> cancelled at once"
http POST "/v1/jobs/${q[0]}/cancel"
envelope 409 conflict; ok $? "cancel it again -> 409"
t0=$(date +%s.%N)
http POST "/v1/jobs/$long/cancel" "${J[@]}" -d '{}'
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq -r .state)" = cancelling ]; ok $? "cancel the running job -> cancelling"
wait_state "$long" cancelled; rc=$?
t1=$(date +%s.%N)
ok $rc "the running job is cancelled within $(echo "$t1 - $t0" | bc | cut -c1-4) s"
timeout 10 curl -s -N "$BASE/v1/jobs/$long/events?stream=true" | grep '^data:' | tail -n1 | grep -q '"cancelled"'; ok $? "its stream ends with status cancelled"
for j in "${q[@]:1}"; do curl -s -X POST "$BASE/v1/jobs/$j/cancel" >/dev/null; done

# ---- lists ---------------------------------------------------------------------------------------------------
http GET '/v1/jobs?limit=2'
n1=$(echo "$BODY" | jq -r '[.data[].id] | join(" ")'); after=$(echo "$BODY" | jq -r .next_after)
http GET "/v1/jobs?limit=100&after=$after"
rest=$(echo "$BODY" | jq '.data | length')
http GET '/v1/jobs?limit=100'
[ "$(echo "$BODY" | jq '.data | length')" = $((2 + rest)) ] && [ "$(echo "$BODY" | jq -r '[.data[0,1].id] | join(" ")')" = "$n1" ]
ok $? "job pages chain through next_after ($((2 + rest)) jobs)"
http GET '/v1/jobs?state=succeeded'
echo "$BODY" | jq -e '(.data | length) >= 3 and all(.data[]; .state == "succeeded")' >/dev/null; ok $? "state=succeeded filter"
http GET '/v1/models'
echo "$BODY" | jq -e "any(.data[]; .id == \"$result\" and .source == \"job\" and .source_job == \"$job\")" >/dev/null; ok $? "the result model is listed with source job"

curl -s "$BASE/metrics" >"$TMP/metrics"
grep -q '^finetuned_http_requests_total{.*route="/v1/jobs/{id}".*} [1-9]' "$TMP/metrics" &&
        grep -q '^finetuned_jobs_finished_total{.*succeeded.*} [1-9]' "$TMP/metrics" &&
        grep -q '^finetuned_training_epochs_total [1-9]' "$TMP/metrics"
ok $? "GET /metrics counts requests by route and the workers' jobs and epochs"

# ---- delete a finished job -------------------------------------------------------------------------------------
[ -d "$TMP/state/jobs/$job" ]; ok $? "the finished job has a checkpoint directory"
http DELETE "/v1/jobs/$job"
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e ".id == \"$job\" and .deleted == true" >/dev/null; ok $? "DELETE a succeeded job -> 200"
http GET "/v1/jobs/$job"
envelope 404 not_found; ok $? "GET it -> 404"
http GET "/v1/jobs/$job/events"
envelope 404 not_found; ok $? "its events -> 404"
[ ! -e "$TMP/state/jobs/$job" ]; ok $? "its checkpoint directory is gone"
http GET "/v1/models/$result"
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e ".source == \"job\" and .source_job == \"$job\" and .has_weights" >/dev/null
ok $? "the model it produced is still there"
STATUS=$(curl -s -o "$TMP/kept.safetensors" -w '%{http_code}' "$BASE/v1/models/$result/weights")
[ "$STATUS" = 200 ] && [ -s "$TMP/kept.safetensors" ]; ok $? "with its weights"
http DELETE "/v1/jobs/$job"
envelope 404 not_found; ok $? "DELETE it again -> 404"
http DELETE "/v1/jobs/${q[1]}"
[ "$STATUS" = 200 ]; ok $? "DELETE a cancelled job -> 200"
http DELETE /v1/jobs/job_zz
envelope 404 not_found id; ok $? "DELETE with a malformed id -> 404"

http GET /healthz
[ "$STATUS" = 200 ]; ok $? "still serving"
stop_daemon; ok $? "clean stop"
done_testing
