#!/usr/bin/env bash
# test_api_crash.sh - durability of running jobs: kill -9 the daemon in the
# middle of a training job, restart it on the same state directory, and the job
# is requeued when its lease expires, resumes from its last checkpoint and goes
# on with every epoch's event present exactly once, the event ids contiguous,
# and an SSE client that reconnects with Last-Event-ID sees the rest of the
# story without a gap or a duplicate. Also SIGTERM mid-job: the job goes back
# to the queue and the next start resumes it.
#
# The jobs have far more epochs than any machine runs during the test, so the
# daemon is always stopped mid-job however fast or loaded the machine is; the
# test waits for conditions it observes through the API (epochs recorded, job
# state), never for a fixed time, and cancels the resumed jobs at the end.
. "$(dirname "$0")/lib.sh"

J=(-H 'Content-Type: application/json')
EPOCHS=100000
awk 'BEGIN { print "a,b,c,d,label"; s = 3;
        for (i = 0; i < 2000; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, i % 7 / 7, (v > 0.5) } }' >"$TMP/big.csv"

# epochs_seen JOB: the epoch numbers of the job's epoch events, as a JSON array
epochs_seen() { curl -s "$BASE/v1/jobs/$1/events?limit=1000" | jq -c '[.data[] | select(.type == "epoch") | .data.epoch]'; }
# wait_epoch FILE N: until the SSE capture FILE shows epoch N's event (reacts within ~10 ms)
wait_epoch() {
        local i
        for i in $(seq 1 3000); do grep -q "\"type\":\"epoch\",\"epoch\":$2," "$1" 2>/dev/null && return 0; sleep 0.01; done
        return 1
}
# wait_epochs JOB N: until the job has recorded at least N epoch events (through the API)
wait_epochs() {
        local i
        for i in $(seq 1 1200); do [ "$(epochs_seen "$1" | jq length)" -ge "$2" ] && return 0; sleep 0.1; done
        diag "job $1 recorded only $(epochs_seen "$1")"
        return 1
}
wait_state() {
        local job=$1 i s; shift
        for i in $(seq 1 1200); do
                s=$(curl -s "$BASE/v1/jobs/$job" | jq -r .state)
                for want in "$@"; do [ "$s" = "$want" ] && return 0; done
                sleep 0.1
        done
        diag "job $job stuck in $s"
        return 1
}
# one_to N: the JSON array [1,...,N]
one_to() { seq -s, 1 "$1" | sed 's/^/[/; s/$/]/'; }

state="$TMP/state"
start_daemon "$state" --lease 2 --threads 1; ok $? "daemon starts with a 2 s lease"
http POST /v1/datasets --data-binary @"$TMP/big.csv"; ds=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 4, "hidden": [64], "outputs": 2}}'; mdl=$(echo "$BODY" | jq -r .id)
spec="{\"model\": \"$mdl\", \"training_file\": \"$ds\", \"task\": {\"type\": \"classification\", \"target\": \"label\"},
       \"hyperparameters\": {\"epochs\": $EPOCHS, \"batch_size\": 16, \"learning_rate\": 0.01},
       \"checkpoint\": {\"every_epochs\": 5}, \"seed\": 5}"
http POST /v1/jobs "${J[@]}" -d "$spec"; job=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ]; ok $? "job $job queued ($EPOCHS epochs, a checkpoint every 5)"

timeout 300 curl -s -N "$BASE/v1/jobs/$job/events?stream=true" >"$TMP/sse1" &
sse=$!
wait_epoch "$TMP/sse1" 7; ok $? "7 epochs done (checkpoint at 5: epochs 6 and on will run again)"
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=
wait "$sse" 2>/dev/null
last=$(sed -n 's/^id: //p' "$TMP/sse1" | tail -n1)
killed_at=$(grep -o '"type":"epoch","epoch":[0-9]*' "$TMP/sse1" | tail -n1 | sed 's/.*://')
ok 0 "kill -9 mid-training after epoch $killed_at (the SSE client saw events up to id $last)"

start_daemon "$state" --lease 2 --threads 1; ok $? "restart on the same state directory"
# The lease expires, the job is claimed again and resumes: three more epochs recorded than the crashed daemon left
# prove it runs on (the job cannot finish: it has $EPOCHS epochs).
before=$(epochs_seen "$job" | jq length)
wait_epochs "$job" $((before + 3)); ok $? "the job goes on after the restart: $(epochs_seen "$job" | jq length) epochs recorded"
http GET "/v1/jobs/$job"
echo "$BODY" | jq -e '.state == "running" and .attempt == 2' >/dev/null; ok $? "running on attempt 2 ($(echo "$BODY" | jq -c '{state, attempt, error}'))"
ckpt=$(grep -o 'resumes from.*(epoch [0-9]*)' "$LOG" | head -n1)
[ -n "$ckpt" ] && [ "$(echo "$ckpt" | sed 's/.*(epoch \([0-9]*\))/\1/')" -le "$before" ]
ok $? "the worker resumed from a checkpoint before the crash: $ckpt"
http POST "/v1/jobs/$job/cancel"
wait_state "$job" cancelled; ok $? "cancelled after the resume"

http GET "/v1/jobs/$job/events?limit=1000"
echo "$BODY" >"$TMP/events.json"
ne=$(jq '[.data[] | select(.type == "epoch")] | length' "$TMP/events.json")
[ "$ne" -ge $((before + 3)) ] && [ "$(jq -c '[.data[] | select(.type == "epoch") | .data.epoch]' "$TMP/events.json")" = "$(one_to "$ne")" ]
ok $? "every epoch's event exactly once: $(jq -c '[.data[] | select(.type == "epoch") | .data.epoch]' "$TMP/events.json")"
n=$(jq '.data | length' "$TMP/events.json")
[ "$(jq -c '[.data[].seq]' "$TMP/events.json")" = "$(one_to "$n")" ]; ok $? "event sequence 1..$n without gaps"
jq -e '[.data[] | select(.type == "status") | .data.state] | . == ["queued","running","queued","running","cancelling","cancelled"]' "$TMP/events.json" >/dev/null
ok $? "status events tell the story: $(jq -c '[.data[] | select(.type == "status") | .data.state]' "$TMP/events.json")"

timeout 20 curl -s -N -H "Last-Event-ID: $last" "$BASE/v1/jobs/$job/events?stream=true" >"$TMP/sse2"
all=$( (sed -n 's/^id: //p' "$TMP/sse1"; sed -n 's/^id: //p' "$TMP/sse2") | tr '\n' ' ')
[ "$all" = "$(seq 1 "$n" | tr '\n' ' ')" ]; ok $? "SSE before the crash + reconnect with Last-Event-ID = every event once"

# ---- SIGTERM mid-job: released, resumed on the next start ------------------------------------------
http POST /v1/jobs "${J[@]}" -d "$spec"; job2=$(echo "$BODY" | jq -r .id)
wait_epochs "$job2" 3; ok $? "the second job is running (3 epochs recorded)"
stop_daemon; rc=$?
[ $rc -eq 0 ] && [ "$(echo "$STOP_SECONDS < 5" | bc)" = 1 ]; ok $? "SIGTERM mid-job stops in ${STOP_SECONDS}s"
grep -q "job $job2 released" "$LOG"; ok $? "the job was handed back to the queue: $(grep -o "job $job2 released.*" "$LOG")"
start_daemon "$state" --lease 2 --threads 1
before=$(epochs_seen "$job2" | jq length)
wait_epochs "$job2" $((before + 3)); ok $? "after the restart it goes on: $(epochs_seen "$job2" | jq length) epochs recorded"
grep -q "job $job2 resumes from" "$LOG"; ok $? "from its checkpoint: $(grep -o "job $job2 resumes from.*" "$LOG")"
http POST "/v1/jobs/$job2/cancel"
wait_state "$job2" cancelled
http GET "/v1/jobs/$job2/events?limit=1000"
seen=$(echo "$BODY" | jq -c '[.data[] | select(.type == "epoch") | .data.epoch]')
[ "$seen" = "$(one_to "$(echo "$seen" | jq length)")" ]; ok $? "every epoch once across the SIGTERM and the restart: $seen"
echo "$BODY" | jq -e '[.data[] | select(.type == "status") | .data.reason // .data.state] | .[2] == "released"' >/dev/null
ok $? "its events record the release: $(echo "$BODY" | jq -c '[.data[] | select(.type == "status") | [.data.state, .data.reason]]')"
stop_daemon; ok $? "clean stop"

# ---- two workers run two jobs at once ----------------------------------------------------------------
start_daemon "$state" --workers 2 --threads 1
long=$spec
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
