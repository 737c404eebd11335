#!/usr/bin/env bash
# test_ops_training.sh - operations while jobs train, under a fake service
# manager (socat at $NOTIFY_SOCKET). A long job: /metrics shows it (epoch,
# loss, samples/s, jobs by state, queue depth) and passes promtool, WATCHDOG=1
# keeps coming while the worker trains, STATUS= counts it; then it is
# cancelled. A second job: SIGTERM mid-training sends STOPPING=1, exits well
# inside TimeoutStopSec, leaves a checkpoint and the job back in the queue
# with its lease released; after a restart it resumes from that checkpoint,
# succeeds, and only the remaining epochs are counted. A job with long batches:
# the worker cannot beat inside a batch, so WATCHDOG=1 is withheld meanwhile.
. "$(dirname "$0")/lib.sh"

J=(-H 'Content-Type: application/json')
SOCAT_PID=
trap '[ -n "$SOCAT_PID" ] && kill "$SOCAT_PID" 2>/dev/null; cleanup' EXIT
SOCK="$TMP/notify.sock" NLOG="$TMP/notify.log"
: >"$NLOG"
socat -u "UNIX-RECV:$SOCK,unlink-early" "OPEN:$NLOG,append" &
SOCAT_PID=$!
for i in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.02; done
export NOTIFY_SOCKET="$SOCK" WATCHDOG_USEC=2000000

# 1000 rows, validation_split 0.2 (the default) -> 800 training samples an epoch, 50 batches of 16.
awk 'BEGIN { print "a,b,c,d,label"; s = 3;
        for (i = 0; i < 1000; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, i % 7 / 7, (v > 0.5) } }' >"$TMP/rows.csv"
PER_EPOCH=800
job_state() { sqlite3 "$TMP/state/finetuned.db" "SELECT state FROM jobs WHERE id = '$1'"; }
metric() { curl -s "$BASE/metrics" | grep -v '^#' | grep -F -- "$1" | head -n1 | awk '{print $NF}'; }
wait_for() { # wait_for SECONDS COMMAND...
        local n=$(($1 * 10)); shift
        for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
        return 1
}
new_job() { # new_job EPOCHS -> JOB
        http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$mdl\", \"training_file\": \"$ds\",
                \"task\": {\"type\": \"classification\", \"target\": \"label\"},
                \"hyperparameters\": {\"epochs\": $1, \"batch_size\": 16, \"learning_rate\": 0.01},
                \"checkpoint\": {\"every_epochs\": 1}, \"seed\": 1}"
        JOB=$(echo "$BODY" | jq -r .id)
        [ "$STATUS" = 201 ]
}
# wait_metric LINE: until a scrape has exactly this line (job counts refresh every tick)
wait_metric() { local l=$1; has_line() { curl -s "$BASE/metrics" | grep -qxF -- "$l"; }; wait_for 5 has_line; }
epochs_at_least() { [ "$(metric "finetuned_training_epochs_total ")" -ge "$1" ] 2>/dev/null; }

start_daemon "$TMP/state" --workers 1; ok $? "daemon starts"
http POST '/v1/datasets?name=rows' --data-binary @"$TMP/rows.csv"; ds=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"name": "mlp", "preset": "mlp", "config": {"inputs": 4, "hidden": [32], "outputs": 2}}'
mdl=$(echo "$BODY" | jq -r .id)

# ---- a long job, watched and then cancelled ----
new_job 100000; ok $? "a long job is created"
long=$JOB
wait_for 60 epochs_at_least 2; ok $? "two epochs done"
curl -s "$BASE/metrics" >"$TMP/m"
promtool check metrics <"$TMP/m" >"$TMP/lint" 2>&1; ok $? "promtool accepts /metrics during training"
[ -s "$TMP/lint" ] && diag "$(cat "$TMP/lint")"
e=$(grep "^finetuned_job_epoch{job=\"$long\"}" "$TMP/m" | awk '{print $2}')
[ -n "$e" ] && [ "$e" -ge 2 ]; ok $? "the running job's current epoch ($e)"
wait_metric 'finetuned_jobs{state="running"} 1'; ok $? "finetuned_jobs{state=running} 1 (from the store)"
wait_metric 'finetuned_queue_depth 0'; ok $? "queue depth 0"
grep -q '^finetuned_jobs_running 1$' "$TMP/m"; ok $? "one job on this process's workers"
loss=$(grep "^finetuned_job_loss{job=\"$long\"}" "$TMP/m" | awk '{print $2}')
# awk, not bc: Prometheus writes a small loss as 1.2e-05, which bc cannot read
[ -n "$loss" ] && awk -v l="$loss" 'BEGIN { exit !(l > 0 && l < 10) }'; ok $? "current loss ($loss)"
grep -q "^finetuned_job_epochs{job=\"$long\"} 100000$" "$TMP/m"; ok $? "requested epochs"
rate=$(grep '^finetuned_training_samples_per_second ' "$TMP/m" | awk '{print $2}')
[ -n "$rate" ] && awk -v r="$rate" 'BEGIN { exit !(r > 0) }'; ok $? "training samples/s > 0 ($rate)"
samples=$(grep '^finetuned_training_samples_total ' "$TMP/m" | awk '{print $2}')
epochs=$(grep '^finetuned_training_epochs_total ' "$TMP/m" | awk '{print $2}')
[ "$samples" -ge $((epochs * PER_EPOCH)) ] && [ "$samples" -le $(((epochs + 1) * PER_EPOCH)) ]
ok $? "samples ($samples) match the epochs done ($epochs x $PER_EPOCH + the current one)"
# The second job should last about 3 s at the speed just measured, so that SIGTERM
# lands in its middle on any machine and the rest is quick after the restart.
EPOCHS2=$(echo "e = $rate * 3 / $PER_EPOCH; if (e < 10) e = 10; if (e > 3000) e = 3000; e / 1" | bc)
new_job "$EPOCHS2"; short=$JOB
wait_metric 'finetuned_queue_depth 1'; ok $? "a second job waits: queue depth 1"
wait_for 3 grep -q '^STATUS=listening on http://.*; 1 queued, 1 running$' "$NLOG"; ok $? "STATUS= counts queued and running jobs"
n0=$(grep -c '^WATCHDOG=1$' "$NLOG"); sleep 1.5; n1=$(grep -c '^WATCHDOG=1$' "$NLOG")
[ $((n1 - n0)) -ge 2 ]; ok $? "WATCHDOG=1 keeps coming while the worker trains ($((n1 - n0)) in 1.5 s)"
http POST "/v1/jobs/$long/cancel" "${J[@]}" -d '{}'
cancelled() { [ "$(metric 'finetuned_jobs_finished_total{state="cancelled"}')" = 1 ]; }
wait_for 30 cancelled; ok $? "the cancelled job is counted as cancelled"

# ---- the second job: SIGTERM in the middle, resume after a restart ----
running_short() { [ "$(metric "finetuned_job_epoch{job=\"$short\"}")" -ge 2 ] 2>/dev/null; }
wait_for 60 running_short; ok $? "the second job runs (epoch $(metric "finetuned_job_epoch{job=\"$short\"}") of $EPOCHS2)"
: >"$NLOG"
stop_daemon; rc=$?
[ $rc -eq 0 ]; ok $? "SIGTERM mid-training -> exit 0"
[ "$(echo "$STOP_SECONDS < 10" | bc)" = 1 ]; ok $? "stopped in ${STOP_SECONDS}s, well inside TimeoutStopSec=90s"
grep -q '^STOPPING=1$' "$NLOG"; ok $? "STOPPING=1 sent"
[ "$(job_state "$short")" = queued ]; ok $? "the job is back in the queue (state $(job_state "$short"))"
ck=$(sqlite3 "$TMP/state/finetuned.db" "SELECT count(*) FROM checkpoints WHERE job_id = '$short'")
[ "$ck" -ge 1 ]; ok $? "its checkpoints are recorded ($ck)"
lease=$(sqlite3 "$TMP/state/finetuned.db" "SELECT coalesce(lease_owner, '') FROM jobs WHERE id = '$short'")
[ -z "$lease" ]; ok $? "its lease was released"

start_daemon "$TMP/state" --workers 1; ok $? "daemon restarts"
done_job() { [ "$(curl -s "$BASE/v1/jobs/$short" | jq -r .state)" = succeeded ]; }
wait_for 120 done_job; ok $? "the requeued job succeeds after the restart"
# every page of the job's events (checkpoint events outnumber one page)
after=0; : >"$TMP/epochs"
while :; do
        http GET "/v1/jobs/$short/events?limit=1000&after=$after"
        echo "$BODY" | jq -r '.data[] | select(.type == "epoch") | .data.epoch' >>"$TMP/epochs"
        [ "$(echo "$BODY" | jq -r .has_more)" = true ] || break
        after=$(echo "$BODY" | jq -r .next_after)
done
n=$(wc -l <"$TMP/epochs"); u=$(sort -n -u "$TMP/epochs" | wc -l)
[ "$n" = "$EPOCHS2" ] && [ "$u" = "$EPOCHS2" ] && [ "$(sort -n "$TMP/epochs" | tail -n1)" = "$EPOCHS2" ]
ok $? "every epoch's event exactly once ($n events, $u distinct, of $EPOCHS2)"
curl -s "$BASE/metrics" >"$TMP/m2"
grep -q 'finished_total{state="succeeded"} 1$' "$TMP/m2" && ! grep -q '^finetuned_job_epoch{job=' "$TMP/m2"
ok $? "the finished job is counted and its per-job series are gone"
e2=$(grep '^finetuned_training_epochs_total ' "$TMP/m2" | awk '{print $2}')
s2=$(grep '^finetuned_training_samples_total ' "$TMP/m2" | awk '{print $2}')
[ "$e2" -ge 1 ] && [ "$e2" -lt "$EPOCHS2" ] && [ "$s2" -eq $((e2 * PER_EPOCH)) ]
ok $? "after the restart only the remaining epochs ran: $e2 epochs, exactly $s2 samples"
stop_daemon; ok $? "stops"

# ---- a worker inside a long batch holds the watchdog back ----
# WATCHDOG_USEC 0.5 s (an idle worker beats every 0.25 s) and batches of 800 samples
# through three 4096-wide layers (160 GFLOP: over 1 s even at the sgemm peak): while the worker is inside a batch
# it cannot report progress, so the main loop must stop sending WATCHDOG=1 (and says
# why); idle, the pings come back.
export WATCHDOG_USEC=500000
start_daemon "$TMP/state" --workers 1; ok $? "daemon restarts with WATCHDOG_USEC=0.5 s"
sleep 0.5
! grep -q "made no progress" "$LOG"; ok $? "idle: every slot is fresh, no stall reported"
http POST /v1/models "${J[@]}" -d '{"name": "wide", "preset": "mlp", "config": {"inputs": 4, "hidden": [4096, 4096, 4096], "outputs": 2}}'
wide=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$wide\", \"training_file\": \"$ds\",
        \"task\": {\"type\": \"classification\", \"target\": \"label\"},
        \"hyperparameters\": {\"epochs\": 2, \"batch_size\": 800}, \"seed\": 1}"
wjob=$(echo "$BODY" | jq -r .id)
wide_done() { [ "$(curl -s "$BASE/v1/jobs/$wjob" | jq -r .state)" = succeeded ]; }
wait_for 120 wide_done; ok $? "the wide job succeeds"
grep -q "error: worker 0 made no progress for 0.5 s: not feeding the watchdog" "$LOG"
ok $? "inside a long batch the worker's slot went stale and WATCHDOG=1 was withheld ($(grep -c 'made no progress' "$LOG") times)"
# pings every 0.25 s when healthy: two in 1.5 s leaves room for a slow (ASan, loaded) machine
n0=$(grep -c '^WATCHDOG=1$' "$NLOG"); sleep 1.5; n1=$(grep -c '^WATCHDOG=1$' "$NLOG")
[ $((n1 - n0)) -ge 2 ]; ok $? "idle again: WATCHDOG=1 resumes ($((n1 - n0)) in 1.5 s)"
stop_daemon; ok $? "stops"
done_testing
