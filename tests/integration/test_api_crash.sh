#!/usr/bin/env bash
# test_api_crash.sh - durability of running jobs: kill -9 the daemon in the
# middle of a training job, restart it on the same state directory, and the job
# is requeued when its lease expires, resumes from its last checkpoint and
# finishes with every epoch's event present exactly once, the event ids
# contiguous, and an SSE client that reconnects with Last-Event-ID sees the
# rest of the story without a gap or a duplicate. Also SIGTERM mid-job: the job
# goes back to the queue and the next start resumes it.
. "$(dirname "$0")/lib.sh"

J=(-H 'Content-Type: application/json')
EPOCHS=16
awk 'BEGIN { print "a,b,c,d,label"; s = 3;
        for (i = 0; i < 2000; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, i % 7 / 7, (v > 0.5) } }' >"$TMP/big.csv"

# epochs_seen JOB: how many epoch events the job has recorded
epochs_seen() { curl -s "$BASE/v1/jobs/$1/events?limit=1000" | jq '[.data[] | select(.type == "epoch")] | length'; }
# wait_epoch FILE N: until the SSE capture FILE shows epoch N's event (reacts within ~10 ms)
wait_epoch() {
        local i
        for i in $(seq 1 3000); do grep -q "\"type\":\"epoch\",\"epoch\":$2," "$1" 2>/dev/null && return 0; sleep 0.01; done
        return 1
}
wait_state() {
        local job=$1 i s; shift
        for i in $(seq 1 400); do
                s=$(curl -s "$BASE/v1/jobs/$job" | jq -r .state)
                for want in "$@"; do [ "$s" = "$want" ] && return 0; done
                sleep 0.1
        done
        diag "job $job stuck in $s"
        return 1
}

state="$TMP/state"
start_daemon "$state" --lease 2 --threads 1; ok $? "daemon starts with a 2 s lease"
http POST /v1/datasets --data-binary @"$TMP/big.csv"; ds=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 4, "hidden": [64], "outputs": 2}}'; mdl=$(echo "$BODY" | jq -r .id)
spec="{\"model\": \"$mdl\", \"training_file\": \"$ds\", \"task\": {\"type\": \"classification\", \"target\": \"label\"},
       \"hyperparameters\": {\"epochs\": $EPOCHS, \"batch_size\": 16, \"learning_rate\": 0.01},
       \"checkpoint\": {\"every_epochs\": 5}, \"seed\": 5}"
http POST /v1/jobs "${J[@]}" -d "$spec"; job=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ]; ok $? "job $job queued ($EPOCHS epochs, a checkpoint every 5)"

timeout 60 curl -s -N "$BASE/v1/jobs/$job/events?stream=true" >"$TMP/sse1" &
sse=$!
wait_epoch "$TMP/sse1" 7; ok $? "7 epochs done (checkpoint at 5: epochs 6 and 7 will run again)"
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=
wait "$sse" 2>/dev/null
last=$(sed -n 's/^id: //p' "$TMP/sse1" | tail -n1)
ok 0 "kill -9 mid-training (the SSE client saw events up to id $last)"
rm -f "$TMP/sse3"

start_daemon "$state" --lease 2 --threads 1; ok $? "restart on the same state directory"
wait_state "$job" succeeded failed; ok $? "the job finishes after the restart"
http GET "/v1/jobs/$job"
echo "$BODY" | jq -e '.state == "succeeded" and .attempt == 2' >/dev/null; ok $? "succeeded on attempt 2 ($(echo "$BODY" | jq -c '{state, attempt, error}'))"
grep -q "resumes from" "$LOG"; ok $? "the worker resumed from a checkpoint: $(grep -o 'resumes from.*' "$LOG" | head -n1)"

http GET "/v1/jobs/$job/events?limit=1000"
echo "$BODY" >"$TMP/events.json"
[ "$(jq -c '[.data[] | select(.type == "epoch") | .data.epoch]' "$TMP/events.json")" = "$(seq -s, 1 $EPOCHS | sed 's/^/[/; s/$/]/')" ]
ok $? "every epoch's event exactly once: $(jq -c '[.data[] | select(.type == "epoch") | .data.epoch]' "$TMP/events.json")"
n=$(jq '.data | length' "$TMP/events.json")
[ "$(jq -c '[.data[].seq]' "$TMP/events.json")" = "$(seq -s, 1 "$n" | sed 's/^/[/; s/$/]/')" ]; ok $? "event sequence 1..$n without gaps"
jq -e '[.data[] | select(.type == "status") | .data.state] | . == ["queued","running","queued","running","succeeded"]' "$TMP/events.json" >/dev/null
ok $? "status events tell the story: $(jq -c '[.data[] | select(.type == "status") | .data.state]' "$TMP/events.json")"

timeout 20 curl -s -N -H "Last-Event-ID: $last" "$BASE/v1/jobs/$job/events?stream=true" >"$TMP/sse2"
all=$( (sed -n 's/^id: //p' "$TMP/sse1"; sed -n 's/^id: //p' "$TMP/sse2") | tr '\n' ' ')
[ "$all" = "$(seq 1 "$n" | tr '\n' ' ')" ]; ok $? "SSE before the crash + reconnect with Last-Event-ID = every event once"

# ---- SIGTERM mid-job: released, resumed on the next start ------------------------------------------
http POST /v1/jobs "${J[@]}" -d "$spec"; job2=$(echo "$BODY" | jq -r .id)
timeout 60 curl -s -N "$BASE/v1/jobs/$job2/events?stream=true" >"$TMP/sse3" &
wait_epoch "$TMP/sse3" 3
stop_daemon; rc=$?
[ $rc -eq 0 ] && [ "$(echo "$STOP_SECONDS < 5" | bc)" = 1 ]; ok $? "SIGTERM mid-job stops in ${STOP_SECONDS}s"
grep -q "released" "$LOG"; ok $? "the job was handed back to the queue"
start_daemon "$state" --lease 2 --threads 1
wait_state "$job2" succeeded failed
http GET "/v1/jobs/$job2/events?limit=1000"
[ "$(echo "$BODY" | jq -c '[.data[] | select(.type == "epoch") | .data.epoch]')" = "$(seq -s, 1 $EPOCHS | sed 's/^/[/; s/$/]/')" ]
ok $? "after SIGTERM + restart it finishes with every epoch once"
stop_daemon; ok $? "clean stop"

# ---- two workers run two jobs at once ----------------------------------------------------------------
start_daemon "$state" --workers 2 --threads 1
long=$(echo "$spec" | jq -c '.hyperparameters.epochs = 100000')
http POST /v1/jobs "${J[@]}" -d "$long"; a=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d "$long"; b=$(echo "$BODY" | jq -r .id)
both=0
for i in $(seq 1 300); do
        [ "$(curl -s "$BASE/v1/jobs?state=running" | jq '.data | length')" = 2 ] && { both=1; break; }
        sleep 0.05
done
[ $both = 1 ]; ok $? "--workers 2: two jobs running at the same time"
workers=$(for j in "$a" "$b"; do curl -s "$BASE/v1/jobs/$j/events" | jq -r '.data[] | select(.data.state == "running") | .data.worker'; done | sort -u | wc -l)
[ "$workers" = 2 ]; ok $? "on two different workers"
curl -s -X POST "$BASE/v1/jobs/$a/cancel" >/dev/null; curl -s -X POST "$BASE/v1/jobs/$b/cancel" >/dev/null
wait_state "$a" cancelled && wait_state "$b" cancelled; ok $? "both cancel"
stop_daemon; ok $? "clean stop"
done_testing
