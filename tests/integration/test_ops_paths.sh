#!/usr/bin/env bash
# test_ops_paths.sh - server paths never reach clients: a job that fails on a
# file of the state directory (here <state>/jobs is a file, not a directory,
# so the job's directory cannot be made) stores an error that names what the
# client knows, never the state directory's absolute path; the log keeps it.
# An API answer too: predict on a model whose weights file went bad on disk
# names the blob by a sha prefix, not by its path (api_reply_error scrubs
# every message).
. "$(dirname "$0")/lib.sh"

J=(-H 'Content-Type: application/json')
state="$TMP/state"
mkdir -p "$state" && : >"$state/jobs"
start_daemon "$state" --threads 1; ok $? "daemon starts"
printf 'a,b,label\n1,2,0\n2,1,1\n3,1,1\n1,3,0\n' >"$TMP/d.csv"
http POST /v1/datasets --data-binary @"$TMP/d.csv"; ds=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 2, "hidden": [4], "outputs": 2}}'
mdl=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$mdl\", \"training_file\": \"$ds\",
        \"task\": {\"type\": \"classification\", \"target\": \"label\"}, \"hyperparameters\": {\"epochs\": 1}}"
job=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ]; ok $? "job submitted ($STATUS)"
for i in $(seq 1 300); do
        http GET "/v1/jobs/$job"
        [ "$(echo "$BODY" | jq -r .state)" = failed ] && break
        sleep 0.1
done
msg=$(echo "$BODY" | jq -r .error.message)
diag "error: $msg"
[ "$(echo "$BODY" | jq -r .state)" = failed ]; ok $? "the job failed"
! grep -qF "$TMP" <<<"$msg"; ok $? "its error has no server path"
grep -q "cannot create" <<<"$msg"; ok $? "and still says what went wrong"
grep -F "$state/jobs" "$LOG" | grep -q "failed"; ok $? "the log keeps the full path"
http GET "/v1/jobs/$job/events?limit=100"
! grep -qF "$TMP" <<<"$BODY"; ok $? "no server path in its events either"

# an API answer: a trained model whose weights file on disk went bad (truncated) answers predict with an
# error that names no server path (the message used to carry '<state>/blobs/xx/<sha>')
weights_file() { # a safetensors file for the 2-4-2 MLP from the preset's own shapes, all 0.5
        local hdr='{"0.weight":{"dtype":"F32","shape":[4,2],"data_offsets":[0,32]},"0.bias":{"dtype":"F32","shape":[4],"data_offsets":[32,48]},"2.weight":{"dtype":"F32","shape":[2,4],"data_offsets":[48,80]},"2.bias":{"dtype":"F32","shape":[2],"data_offsets":[80,88]}}'
        local n=${#hdr}
        { printf "$(printf '\\x%02x' $((n & 255)) $((n >> 8 & 255)) 0 0 0 0 0 0)"; printf '%s' "$hdr"
          for i in $(seq 22); do printf '\x00\x00\x00\x3f'; done; } >"$1"
}
weights_file "$TMP/w.safetensors"
http POST /v1/models -F "weights=@$TMP/w.safetensors" -F name=uploaded \
        -F 'spec={"input":[2],"layers":[{"type":"linear","out_features":4},{"type":"relu"},{"type":"linear","out_features":2}]}'
up=$(echo "$BODY" | jq -r .id)
diag "upload: $STATUS $(echo "$BODY" | head -c 300)"
sha=$(echo "$BODY" | jq -r .weights_sha256)
blob=$(find "$state/blobs" -name "$sha*" -type f | head -n1)
[ -n "$blob" ] && truncate -s 20 "$blob"; ok $? "the model's weights are truncated on disk ($STATUS)"
http POST "/v1/models/$up/predict" "${J[@]}" -d '{"rows": [[1, 2]]}'
diag "predict on it: $STATUS $BODY"
[ "${STATUS:0:1}" = 4 ] || [ "${STATUS:0:1}" = 5 ]; ok $? "predict on it answers an error: $STATUS"
! grep -qF "$TMP" <<<"$BODY"; ok $? "with no server path in the answer"
stop_daemon; ok $? "it stops cleanly"
done_testing
