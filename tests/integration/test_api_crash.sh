#!/usr/bin/env bash
# test_api_crash.sh - durability of running jobs: kill -9 the daemon in the
# middle of a training job, restart it on the same state directory, and the job
# is requeued when its lease expires, resumes from its last checkpoint and
# finishes with every epoch's event present exactly once, the event ids
# contiguous, its metrics and its model. Then a job killed after re-runnable
# epochs: an SSE client that reconnects with Last-Event-ID sees the rest of the
# story without a gap or a duplicate. Also SIGTERM mid-job: the job goes back
# to the queue and the next start resumes it.
#
# The job that finishes is sized from the speed measured in the same run (a
# first job's epoch events, timed as they arrive): the daemon is killed as soon
# as its second epoch's checkpoint is recorded, with about 3 s of epochs still to
# go at that speed. The other jobs have far more epochs than any machine runs
# during the test, so the daemon is always stopped mid-job however fast or
# loaded the machine is, and they are cancelled at the end. The test waits for
# conditions it observes through the API (epochs recorded, job state), never
# for a fixed time.
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

# ---- kill -9 mid-job, restart, the job finishes --------------------------------------------------------
# 8000 rows (6400 training samples, 400 batches of 16 an epoch) through two 128-wide layers, a checkpoint
# every epoch: tens of milliseconds an epoch here, more under ASan or load; the speed is measured below.
awk 'BEGIN { print "a,b,c,d,label"; s = 11;
        for (i = 0; i < 8000; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, i % 5 / 5, (v > 0.5) } }' >"$TMP/rows8k.csv"
http POST /v1/datasets --data-binary @"$TMP/rows8k.csv"; ds8k=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 4, "hidden": [128, 128], "outputs": 2}}'
mdl128=$(echo "$BODY" | jq -r .id)
crash_spec() { # crash_spec EPOCHS
        echo "{\"model\": \"$mdl128\", \"training_file\": \"$ds8k\",
               \"task\": {\"type\": \"classification\", \"target\": \"label\"},
               \"hyperparameters\": {\"epochs\": $1, \"batch_size\": 16, \"learning_rate\": 0.01},
               \"checkpoint\": {\"every_epochs\": 1, \"keep\": 0}, \"seed\": 7}"
}
wait_for() { # wait_for SECONDS COMMAND...: polls every 0.02 s
        local i n=$(($1 * 50)); shift
        for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.02; done
        return 1
}
# stamp: each line prefixed with the wall-clock time it arrived (bash's $EPOCHREALTIME: no fork a line)
stamp() { local l; while IFS= read -r l; do printf '%s %s\n' "${EPOCHREALTIME/,/.}" "$l"; done; }
# epoch_times FILE: "TIME EPOCH" for each epoch event of a stamped SSE capture
epoch_times() { sed -n 's/^\([0-9.]*\) data: {"type":"epoch","epoch":\([0-9]*\),.*/\1 \2/p' "$1"; }
# timed FILE SECONDS: the capture's epoch events span at least SECONDS after the first (and 4 epochs)
timed() { epoch_times "$1" | awk -v s="$2" 'NR == 1 {t0 = $1} {t = $1} END {exit !(NR >= 4 && t - t0 >= s)}'; }
# checkpointed FILE EPOCH: the SSE capture shows the checkpoint event of that epoch
checkpointed() { grep -q "^[0-9.]* data: {\"checkpoint\":[0-9]*,\"epoch\":$2," "$1"; }
# all_events JOB: every event of the job as one JSON array (pages of 1000)
all_events() {
        local after=0 i=0 p
        while :; do
                i=$((i + 1))
                curl -s "$BASE/v1/jobs/$1/events?limit=1000&after=$after" >"$TMP/page.$i"
                [ "$(jq -r .has_more "$TMP/page.$i")" = true ] || break
                after=$(jq -r '.data[-1].seq' "$TMP/page.$i")
        done
        for p in $(seq 1 "$i"); do cat "$TMP/page.$p"; rm -f "$TMP/page.$p"; done | jq -c -s '[.[].data[]]'
}

# The speed: a first job's epoch events, timed as they arrive, over at least 0.6 s; then it is cancelled.
http POST /v1/jobs "${J[@]}" -d "$(crash_spec 100000)"; cal=$(echo "$BODY" | jq -r .id)
(timeout 120 curl -s -N "$BASE/v1/jobs/$cal/events?stream=true" | stamp) >"$TMP/cal.sse" &
calsse=$!
wait_for 60 timed "$TMP/cal.sse" 0.6
ok $? "a first job's epochs are timed as they arrive ($(epoch_times "$TMP/cal.sse" | wc -l) epochs)"
http POST "/v1/jobs/$cal/cancel"
wait_state "$cal" cancelled; ok $? "and it is cancelled"
wait "$calsse" 2>/dev/null
epoch_s=$(epoch_times "$TMP/cal.sse" |
        awk 'NR == 1 {t0 = $1; e0 = $2} {t = $1; e = $2} END {printf "%.6f", (t - t0) / (e - e0)}')
# Killed after epoch 2's checkpoint, about 3 s of epochs are still to go at that speed (3000 epochs at most).
CRASH_EPOCHS=$(echo "e = 2 + 3 / $epoch_s; if (e < 12) e = 12; if (e > 3000) e = 3000; e / 1" | bc)
diag "an epoch takes ${epoch_s}s: the crashed job has $CRASH_EPOCHS epochs"

http POST /v1/jobs "${J[@]}" -d "$(crash_spec "$CRASH_EPOCHS")"; cj=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ]; ok $? "job $cj queued ($CRASH_EPOCHS epochs, a checkpoint every epoch)"
(timeout 300 curl -s -N "$BASE/v1/jobs/$cj/events?stream=true" | stamp) >"$TMP/crash.sse" &
sse=$!
wait_for 120 checkpointed "$TMP/crash.sse" 2; ok $? "epoch 2 and its checkpoint are recorded"
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=
killed=$(date +%s.%N)
wait "$sse" 2>/dev/null
k=$(epoch_times "$TMP/crash.sse" | tail -n1 | awk '{print $2}')
[ "$k" -ge 2 ] && [ "$k" -lt "$CRASH_EPOCHS" ] && ! grep -q '"state":"succeeded"' "$TMP/crash.sse"
ok $? "kill -9 mid-job: after epoch $k of $CRASH_EPOCHS"
# what a client saw before the crash: "SEQ DATA" for each event
awk '$2 == "id:" {seq = $3}
     $2 == "data:" && seq {sub(/^[0-9.]* data: /, ""); print seq, $0; seq = ""}' "$TMP/crash.sse" |
        jq -r -R 'capture("^(?<s>[0-9]+) (?<d>.*)$") | "\(.s) \(.d | fromjson | tojson)"' >"$TMP/crash.seen"

start_daemon "$state" --lease 2 --threads 1; ok $? "restart on the same state directory"
job_done() { [ "$(curl -s "$BASE/v1/jobs/$1" | jq -r .state)" = succeeded ]; }
wait_for 300 job_done "$cj"; ok $? "the job finishes after the restart"
diag "$((CRASH_EPOCHS - k)) epochs were left at the kill; done $(echo "$(date +%s.%N) - $killed" | bc) s after it"
http GET "/v1/jobs/$cj"; echo "$BODY" >"$TMP/cj.json"
jq -e '.state == "succeeded" and .attempt == 2 and .error == null' "$TMP/cj.json" >/dev/null
ok $? "succeeded on attempt 2 ($(jq -c '{state, attempt, error}' "$TMP/cj.json"))"
all_events "$cj" >"$TMP/cj.events"
epochs=$(jq -c '[.[] | select(.type == "epoch") | .data.epoch]' "$TMP/cj.events")
[ "$epochs" = "$(one_to "$CRASH_EPOCHS")" ]
ok $? "every epoch 1..$CRASH_EPOCHS has its event exactly once ($(echo "$epochs" | jq length) epoch events)"
n=$(jq length "$TMP/cj.events")
[ "$(jq -c '[.[].seq]' "$TMP/cj.events")" = "$(one_to "$n")" ]; ok $? "event sequence 1..$n without gaps"
jq -e '[.[] | select(.type == "status") | .data.state] == ["queued","running","queued","running","succeeded"]' \
        "$TMP/cj.events" >/dev/null
ok $? "status events: $(jq -c '[.[] | select(.type == "status") | .data.state]' "$TMP/cj.events")"
# Every event a client saw before the crash is still there, at the same seq, unchanged: nothing re-emitted.
jq -r '.[] | "\(.seq) \(.data | tojson)"' "$TMP/cj.events" >"$TMP/cj.all"
[ -s "$TMP/crash.seen" ] && [ "$(head -n "$(wc -l <"$TMP/crash.seen")" "$TMP/cj.all")" = "$(cat "$TMP/crash.seen")" ]
ok $? "the $(wc -l <"$TMP/crash.seen") events seen before the kill are the first of the story, unchanged"
http GET "/v1/jobs/$cj/checkpoints?limit=100"
c1=$(echo "$BODY" | jq '[.data[] | select(.attempt == 1) | .epoch] | max')
c2=$(echo "$BODY" | jq '[.data[] | select(.attempt == 2) | .epoch] | min')
[ "$c1" -ge 2 ] && [ "$c2" = $((c1 + 1)) ] && grep -q "job $cj resumes from .* (epoch $c1)$" "$LOG"
ok $? "resumed from the epoch-$c1 checkpoint, attempt 2's first is epoch $c2: $(grep -o "resumes from.*" "$LOG")"
jq -e --argjson n "$CRASH_EPOCHS" '.metrics.epochs_run == $n and (.metrics.metrics.accuracy | type) == "number"
        and (.metrics.metrics.loss | type) == "number" and .metrics.stopped_early == false' "$TMP/cj.json" >/dev/null
ok $? "final metrics on the job: $(jq -c '.metrics | {epochs_run, accuracy: .metrics.accuracy}' "$TMP/cj.json")"
[ "$(jq -c '[.[] | select(.type == "metrics")] | length' "$TMP/cj.events")" = 1 ]; ok $? "one metrics event"
http GET "/v1/jobs/$cj/artifacts/metrics.json"
echo "$BODY" >"$TMP/cm.json" # a file: with every example's diagnostics it outgrows one argument
[ "$STATUS" = 200 ] && jq -n -e --slurpfile a "$TMP/cm.json" --slurpfile j "$TMP/cj.json" '($a[0] | del(.history, .diagnostics)) == $j[0].metrics' >/dev/null
ok $? "artifacts/metrics.json is the job's metrics, plus its history and diagnostics"
# the history (the checkpoint's epochs, then the resumed run's) is the stream's epochs, up to their timing
jq -n -e --slurpfile a "$TMP/cm.json" --slurpfile ev "$TMP/cj.events" '
        [$a[0].history[] | del(.seconds, .samples_per_sec)]
        == [$ev[0][] | select(.type == "epoch") | .data | del(.seconds, .samples_per_sec)]' >/dev/null
ok $? "metrics.json history: every epoch of the stream, same numbers across the crash"
curl -s -f -o "$TMP/model.safetensors" "$BASE/v1/jobs/$cj/artifacts/model.safetensors"
ok $? "the model artifact downloads"
"$FINETUNED" inspect "$TMP/model.safetensors" >"$TMP/model.json" \
        && jq -e --arg j "$cj" '.format == "safetensors" and .metadata["finetuned.job"] == $j
                and (.tensors | length) == 6' "$TMP/model.json" >/dev/null
ok $? "it is this job's model: $(jq -c '{format, job: .metadata["finetuned.job"], tensors: (.tensors | length)}' \
        "$TMP/model.json" 2>/dev/null)"
rm -f "$TMP/model.safetensors"
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
