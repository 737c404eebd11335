#!/usr/bin/env bash
# test_ops_training.sh - operations while a job trains, under a fake service
# manager (socat at $NOTIFY_SOCKET): /metrics shows the running job (epoch,
# loss, samples/s, jobs by state, queue depth) and passes promtool; WATCHDOG=1
# keeps coming while the worker trains; STATUS= counts the running job;
# SIGTERM mid-training sends STOPPING=1, exits well inside TimeoutStopSec,
# leaves a checkpoint and the job back in the queue, and after a restart the
# job resumes from that checkpoint and succeeds.
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

# A dataset big enough that the job is still running when we look at it.
awk 'BEGIN { print "a,b,c,d,label"; s = 3;
        for (i = 0; i < 4000; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, i % 7 / 7, (v > 0.5) } }' >"$TMP/big.csv"
job_state() { sqlite3 "$TMP/state/finetuned.db" "SELECT state FROM jobs WHERE id = '$1'"; }
metric() { curl -s "$BASE/metrics" | grep -v '^#' | grep -F -- "$1" | head -n1 | awk '{print $NF}'; }
wait_for() { # wait_for SECONDS COMMAND...
        local n=$(($1 * 10)); shift
        for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
        return 1
}

start_daemon "$TMP/state" --workers 1; ok $? "daemon starts"
http POST '/v1/datasets?name=big' --data-binary @"$TMP/big.csv"; ds=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"name": "mlp", "preset": "mlp", "config": {"inputs": 4, "hidden": [64, 64], "outputs": 2}}'
mdl=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$mdl\", \"training_file\": \"$ds\",
        \"task\": {\"type\": \"classification\", \"target\": \"label\"},
        \"hyperparameters\": {\"epochs\": 40, \"batch_size\": 8, \"learning_rate\": 0.01},
        \"checkpoint\": {\"every_epochs\": 1}, \"seed\": 1}"
job=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ]; ok $? "job $job created"

has_epoch() { [ "$(metric "finetuned_training_epochs_total ")" -ge 2 ] 2>/dev/null; }
wait_for 60 has_epoch; ok $? "two epochs done"
e=$(metric "finetuned_job_epoch{job=\"$job\"}")
[ -n "$e" ] && [ "$e" -ge 2 ]; ok $? "/metrics shows the running job's epoch ($e)"
curl -s "$BASE/metrics" >"$TMP/m"
promtool check metrics <"$TMP/m" >"$TMP/lint" 2>&1; ok $? "promtool accepts /metrics during training"
grep -q "^finetuned_jobs{state=\"running\"} 1$" "$TMP/m"; ok $? "finetuned_jobs{state=running} 1 (from the store)"
grep -q '^finetuned_queue_depth 0$' "$TMP/m"; ok $? "queue depth 0"
grep -q '^finetuned_jobs_running 1$' "$TMP/m"; ok $? "one job on this process's workers"
loss=$(grep "^finetuned_job_loss{job=\"$job\"}" "$TMP/m" | awk '{print $2}')
[ -n "$loss" ] && [ "$(echo "$loss > 0 && $loss < 10" | bc -l)" = 1 ]; ok $? "current loss reported ($loss)"
grep -q "^finetuned_job_epochs{job=\"$job\"} 40$" "$TMP/m"; ok $? "requested epochs reported"
rate=$(grep '^finetuned_training_samples_per_second ' "$TMP/m" | awk '{print $2}')
[ -n "$rate" ] && [ "$(echo "$rate > 0" | bc -l)" = 1 ]; ok $? "training samples/s > 0 ($rate)"
samples=$(grep '^finetuned_training_samples_total ' "$TMP/m" | awk '{print $2}')
epochs=$(grep '^finetuned_training_epochs_total ' "$TMP/m" | awk '{print $2}')
# 4000 rows, validation_split 0.2 -> 3200 training samples an epoch (400 batches of 8).
[ "$epochs" -ge 2 ] && [ "$samples" -ge $((epochs * 3200)) ] && [ "$samples" -le $(((epochs + 1) * 3200)) ]
ok $? "samples ($samples) match the epochs done ($epochs x 3200 + the current one)"
grep -q '^STATUS=listening on http://.*; 0 queued, 1 running$' "$NLOG"; ok $? "STATUS= counts the running job"
n0=$(grep -c '^WATCHDOG=1$' "$NLOG"); sleep 1.5; n1=$(grep -c '^WATCHDOG=1$' "$NLOG")
[ $((n1 - n0)) -ge 2 ]; ok $? "WATCHDOG=1 keeps coming while the worker trains ($((n1 - n0)) in 1.5 s)"

# SIGTERM in the middle of training.
: >"$NLOG"
stop_daemon; rc=$?
[ $rc -eq 0 ]; ok $? "SIGTERM mid-training -> exit 0"
[ "$(echo "$STOP_SECONDS < 10" | bc)" = 1 ]; ok $? "stopped in ${STOP_SECONDS}s, well inside TimeoutStopSec=90s"
grep -q '^STOPPING=1$' "$NLOG"; ok $? "STOPPING=1 sent"
[ "$(job_state "$job")" = queued ]; ok $? "the job is back in the queue (state $(job_state "$job"))"
ck=$(sqlite3 "$TMP/state/finetuned.db" "SELECT count(*) FROM checkpoints WHERE job_id = '$job'")
[ "$ck" -ge 1 ]; ok $? "checkpoints recorded ($ck)"
lease=$(sqlite3 "$TMP/state/finetuned.db" "SELECT coalesce(lease_owner, '') FROM jobs WHERE id = '$job'")
[ -z "$lease" ]; ok $? "its lease was released"

# Restart: the job resumes and finishes.
start_daemon "$TMP/state" --workers 1; ok $? "daemon restarts"
done_job() { [ "$(curl -s "$BASE/v1/jobs/$job" | jq -r .state)" = succeeded ]; }
wait_for 120 done_job; ok $? "the requeued job succeeds after the restart"
http GET "/v1/jobs/$job/events?limit=1000"
n=$(echo "$BODY" | jq '[.data[] | select(.type == "epoch")] | length')
[ "$n" = 40 ]; ok $? "every epoch's event exactly once ($n)"
curl -s "$BASE/metrics" >"$TMP/m2"
grep -q "finished_total{state=\"succeeded\"} 1$" "$TMP/m2" && ! grep -q "^finetuned_job_epoch{job=" "$TMP/m2"
ok $? "the finished job is counted and its per-job series are gone"
e2=$(grep '^finetuned_training_epochs_total ' "$TMP/m2" | awk '{print $2}')
s2=$(grep '^finetuned_training_samples_total ' "$TMP/m2" | awk '{print $2}')
[ "$e2" -ge 1 ] && [ "$e2" -lt 40 ] && [ "$s2" -eq $((e2 * 3200)) ]
ok $? "after the restart only the remaining epochs ran: $e2 epochs, exactly $s2 samples"
stop_daemon; ok $? "stops"
done_testing
