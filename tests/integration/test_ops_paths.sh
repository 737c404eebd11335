#!/usr/bin/env bash
# test_ops_paths.sh - server paths never reach clients: a job that fails on a
# file of the state directory (here <state>/jobs is a file, not a directory,
# so the job's directory cannot be made) stores an error that names what the
# client knows, never the state directory's absolute path; the log keeps it.
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
stop_daemon; ok $? "it stops cleanly"
done_testing
