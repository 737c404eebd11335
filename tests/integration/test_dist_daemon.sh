#!/usr/bin/env bash
# test_dist_daemon.sh - the daemon runs data-parallel jobs under real Open MPI
# ranks (serve --mpirun): without a launcher a job with resources.ranks 2 is a
# 400; with one, the job trains at -np 2 and its events, metrics and model equal
# the same job run in one process (1e-5 relative); a running distributed job is
# cancelled with no rank left behind; a rank killed with SIGKILL ends that
# launch and the job resumes from its newest checkpoint and finishes with every
# epoch exactly once; a daemon stopped with SIGTERM gives the job back and the
# next start resumes it; a daemon killed with SIGKILL leaves no rank running and
# the job resumes after its lease; a launcher that cannot start fails the job
# with its own message. The test waits for conditions it observes (events,
# states, processes), never for a fixed time.
# Not for: the ranks' numerics (test_dist_mpi.sh), the launcher's template
# checks beyond the configuration errors (test_ops_config.sh).
# Usage: test_dist_daemon.sh FINETUNED ST_COMPARE
. "$(dirname "$0")/lib.sh"
# Under `make asan`: Open MPI's dlclosed components read as leaks (see test_dist_mpi.sh).
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
COMPARE=$2
J=(-H 'Content-Type: application/json')
TEMPLATE="mpirun --oversubscribe --bind-to none -np {ranks}"
[ "$(id -u)" = 0 ] && TEMPLATE="mpirun --allow-run-as-root --oversubscribe --bind-to none -np {ranks}"
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none

wait_for() { # wait_for SECONDS COMMAND...: polls every 0.1 s
        local i n=$(($1 * 10)); shift
        for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
        return 1
}
state_is() { [ "$(curl -s "$BASE/v1/jobs/$1" | jq -r .state)" = "$2" ]; }
epochs_of() { curl -s "$BASE/v1/jobs/$1/events?limit=1000" | jq -c '[.data[] | select(.type == "epoch") | .data.epoch]'; }
has_epochs() { [ "$(epochs_of "$1" | jq length)" -ge "$2" ]; }
one_to() { seq -s, 1 "$1" | sed 's/^/[/; s/$/]/'; }
# ranks_of STATE: the pids of the launcher and ranks running a job of that state directory
ranks_of() { pgrep -f "$1/jobs/job_.*/ranks-job.json" | tr '\n' ' '; }
no_ranks() { [ -z "$(ranks_of "$1")" ]; }
rank_pid() { # rank_pid STATE RANK
        local p
        for p in $(pgrep -f "train $1/jobs/job_.*/ranks-job.json"); do
                tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return; }
        done
}
upload() { # upload: sets DS and MDL on the running daemon
        http POST '/v1/datasets?name=wine' --data-binary @"$SRC/examples/tabular/wine.csv"; DS=$(echo "$BODY" | jq -r .id)
        http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 13, "hidden": [32, 16], "outputs": 3}}'
        MDL=$(echo "$BODY" | jq -r .id)
}
spec() { # spec RANKS EPOCHS BATCH: test_dist_mpi.sh's MLP job (10 steps of 29 rows at 2 epochs)
        echo "{\"model\": \"$MDL\", \"training_file\": \"$DS\", \"validation_split\": 0.2,
               \"task\": {\"type\": \"classification\", \"target\": \"cultivar\"},
               \"preprocess\": {\"standardize\": true},
               \"hyperparameters\": {\"epochs\": $2, \"batch_size\": $3, \"learning_rate\": 0.01, \"optimizer\": \"adam\",
                                     \"weight_decay\": 0.01, \"max_grad_norm\": 1.0},
               \"checkpoint\": {\"every_epochs\": 1, \"keep\": 2}, \"seed\": 5, \"resources\": {\"ranks\": $1}}"
}
# same_losses A B: two event lists (JSON arrays of events): every epoch's losses within 1e-5 relative, same steps
same_losses() {
        jq -e -n --slurpfile a "$1" --slurpfile b "$2" '
                def ep(x): x[0].data | map(select(.type == "epoch") | .data);
                def close(p; q): ((p - q) | fabs) <= 1e-5 * ([(p | fabs), (q | fabs), 1e-12] | max);
                (ep($a) | length) > 0 and (ep($a) | length) == (ep($b) | length)
                and ([range(ep($a) | length)] | all(. as $i | ep($a)[$i] as $x | ep($b)[$i] as $y
                        | $x.step == $y.step and close($x.train_loss; $y.train_loss) and close($x.val_loss; $y.val_loss)))' \
                >/dev/null
}

# ---- 1. no launcher: ranks above 1 are a 400; the one-process reference run ------------------------------
start_daemon "$TMP/s0" --threads 1; ok $? "daemon without --mpirun starts"
upload
http POST /v1/jobs "${J[@]}" -d "$(spec 2 2 29)"
[ "$STATUS" = 400 ] && [ "$(echo "$BODY" | jq -r .error.param)" = resources.ranks ] &&
        echo "$BODY" | jq -r .error.message | grep -q -- "--mpirun"
ok $? "resources.ranks 2 without a launcher -> 400 param resources.ranks: $(echo "$BODY" | jq -r .error.message)"
http POST /v1/jobs "${J[@]}" -d "$(spec 1 2 29)"; ref=$(echo "$BODY" | jq -r .id)
wait_for 120 state_is "$ref" succeeded; ok $? "the one-process reference job succeeds"
curl -s "$BASE/v1/jobs/$ref/events?limit=1000" >"$TMP/ref.events"
http GET "/v1/jobs/$ref"; echo "$BODY" >"$TMP/ref.json"
curl -s -o "$TMP/ref.safetensors" "$BASE/v1/models/$(jq -r .result_model "$TMP/ref.json")/weights"
stop_daemon

# ---- 2. with a launcher: the same job at -np 2 ----------------------------------------------------------
S=$TMP/s1
start_daemon "$S" --threads 1 --lease 2 --mpirun "$TEMPLATE"; ok $? "daemon with --mpirun '$TEMPLATE' starts"
upload
http POST /v1/jobs "${J[@]}" -d "$(spec 2 2 29)"; dj=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ]; ok $? "resources.ranks 2 is accepted ($STATUS)"
wait_for 120 state_is "$dj" succeeded; ok $? "the job trains at -np 2 and succeeds ($(curl -s "$BASE/v1/jobs/$dj" | jq -c .error))"
curl -s "$BASE/v1/jobs/$dj/events?limit=1000" >"$TMP/dj.events"
http GET "/v1/jobs/$dj"; echo "$BODY" >"$TMP/dj.json"
[ "$(jq -c '[.data[] | select(.type == "epoch") | .data.epoch]' "$TMP/dj.events")" = "[1,2]" ] &&
        [ "$(jq '[.data[] | select(.type == "metrics")] | length' "$TMP/dj.events")" = 1 ] &&
        [ "$(jq '[.data[] | select(.type == "checkpoint")] | length' "$TMP/dj.events")" = 2 ]
ok $? "its stream: epochs 1 and 2, a checkpoint each, one metrics event ($(jq -c '[.data[].type]' "$TMP/dj.events"))"
jq -e '[.data[] | select(.type == "runtime")] | length == 1 and .[0].data.batch == 14 and .[0].data.primitives > 0' \
        "$TMP/dj.events" >/dev/null
ok $? "and rank 0's runtime event, for its shard of 14 rows ($(jq -c '[.data[] | select(.type == "runtime") | .data.batch]' "$TMP/dj.events"))"
same_losses "$TMP/ref.events" "$TMP/dj.events"
ok $? "every epoch's losses equal the one-process job's within 1e-5 relative"
jq -e -n --slurpfile a "$TMP/ref.json" --slurpfile b "$TMP/dj.json" \
        '($a[0].metrics.metrics.accuracy == $b[0].metrics.metrics.accuracy) and
         ((($a[0].metrics.metrics.loss - $b[0].metrics.metrics.loss) | fabs) <= 1e-5 * $a[0].metrics.metrics.loss)' >/dev/null
ok $? "its metrics equal the one-process job's ($(jq -c .metrics.metrics.loss "$TMP/dj.json"))"
curl -s -o "$TMP/dj.safetensors" "$BASE/v1/models/$(jq -r .result_model "$TMP/dj.json")/weights"
out=$("$COMPARE" "$TMP/ref.safetensors" "$TMP/dj.safetensors" 1e-5)
ok $? "its model's weights equal the one-process job's within 1e-5: $out"
no_ranks "$S"; ok $? "no rank is left running"

# ---- 3. cancel a running distributed job ----------------------------------------------------------------
http POST /v1/jobs "${J[@]}" -d "$(spec 2 100000 8)"; cj=$(echo "$BODY" | jq -r .id)
wait_for 120 has_epochs "$cj" 2; ok $? "a long job at -np 2 runs (epochs $(epochs_of "$cj" | jq -c '.[-1]'))"
http GET "/v1/jobs/$cj"
echo "$BODY" | jq -e '.state == "running" and .progress.type == "progress" and .progress.epochs == 100000' >/dev/null
ok $? "its live progress comes from rank 0 ($(echo "$BODY" | jq -c .progress))"
[ -n "$(rank_pid "$S" 0)" ] && [ -n "$(rank_pid "$S" 1)" ]; ok $? "two ranks run it"
leaked=
for p in $(ranks_of "$S"); do
        leaked+=$(ls -l "/proc/$p/fd" 2>/dev/null | grep -E "finetuned\.(db|lock)" | sed "s/^/$p: /")
done
[ -z "$leaked" ]; ok $? "the launcher and ranks hold none of the daemon's database or lock files ($leaked)"
http POST "/v1/jobs/$cj/cancel"
wait_for 60 state_is "$cj" cancelled; ok $? "cancel: the job is cancelled"
wait_for 10 no_ranks "$S"; ok $? "and the launcher and its ranks are gone ($(ranks_of "$S"))"

# ---- 4. a rank killed mid-epoch: the launch ends, the job resumes from its checkpoint -------------------
EPOCHS=60
http POST /v1/jobs "${J[@]}" -d "$(spec 2 $EPOCHS 8)"; kj=$(echo "$BODY" | jq -r .id)
wait_for 120 has_epochs "$kj" 2; ok $? "a $EPOCHS-epoch job at -np 2 runs"
victim=$(rank_pid "$S" 1)
[ -n "$victim" ] && kill -9 "$victim"; ok $? "kill -9 rank 1 (pid $victim) after epoch $(epochs_of "$kj" | jq -c '.[-1]')"
wait_for 300 state_is "$kj" succeeded; ok $? "the job resumes and succeeds ($(curl -s "$BASE/v1/jobs/$kj" | jq -c '{state, error}'))"
grep -q "job $kj: the MPI launcher exited with status .*rank 1.*relaunching from the newest checkpoint" "$LOG" &&
        grep -q "job $kj resumes from jobs/$kj/ranks/checkpoints/ckpt-" "$LOG"
ok $? "the log names the dead rank and the checkpoint the job resumed from"
[ "$(epochs_of "$kj")" = "$(one_to $EPOCHS)" ]; ok $? "every epoch 1..$EPOCHS has its event exactly once"

# ---- 5. SIGTERM to the daemon, then SIGKILL: the job is given back, resumed, and finishes --------------
# 200 epochs: on a quiet machine 60 ran out while the daemon was still stopping, and then "runs again" had
# nothing left to run
EPOCHS=200
http POST /v1/jobs "${J[@]}" -d "$(spec 2 $EPOCHS 8)"; tj=$(echo "$BODY" | jq -r .id)
wait_for 120 has_epochs "$tj" 2; ok $? "a third job at -np 2 runs"
stop_daemon; rc=$?
[ "$rc" = 0 ] && no_ranks "$S"; ok $? "SIGTERM: the daemon stops (exit $rc) with no rank left ($(ranks_of "$S"))"
grep -q "job $tj released for the next start" "$LOG"; ok $? "and gives the job back to the queue"
start_daemon "$S" --threads 1 --lease 2 --mpirun "$TEMPLATE"; ok $? "restart"
seen=$(epochs_of "$tj" | jq length)
wait_for 120 has_epochs "$tj" $((seen + 2)); ok $? "the job runs again ($(epochs_of "$tj" | jq -c '.[-1]'))"
grep -q "job $tj resumes from jobs/$tj/ranks/checkpoints/ckpt-" "$LOG"; ok $? "from its newest checkpoint"
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=
wait_for 10 no_ranks "$S"; ok $? "SIGKILL to the daemon: its launcher and ranks end too ($(ranks_of "$S"))"
start_daemon "$S" --threads 1 --lease 2 --mpirun "$TEMPLATE"; ok $? "restart after the kill"
wait_for 300 state_is "$tj" succeeded; ok $? "the job is requeued after its lease, resumes and succeeds"
[ "$(epochs_of "$tj")" = "$(one_to $EPOCHS)" ]; ok $? "every epoch 1..$EPOCHS has its event exactly once"
http GET "/v1/jobs/$tj"; [ "$(echo "$BODY" | jq -r .attempt)" = 3 ]; ok $? "on attempt 3"
stop_daemon

# ---- 6. a launcher that cannot run the job: the job fails with the launcher's message -------------------
start_daemon "$TMP/s2" --threads 1 --mpirun "$TEMPLATE --hostfile $TMP/no-such-hostfile"; ok $? "daemon with a broken hostfile"
upload
http POST /v1/jobs "${J[@]}" -d "$(spec 2 2 29)"; fj=$(echo "$BODY" | jq -r .id)
wait_for 120 state_is "$fj" failed; ok $? "the job fails"
http GET "/v1/jobs/$fj"
echo "$BODY" | jq -e '.error.code == "training_failed" and (.error.message | test("failed 3 times; the MPI launcher exited with status [0-9]+: .*no-such-hostfile"))' >/dev/null
ok $? "with the launcher's own message: $(echo "$BODY" | jq -r .error.message)"
stop_daemon

# ---- 7. the setting is checked at start ------------------------------------------------------------------
"$FINETUNED" serve --check-config --state-dir "$TMP/s3" --mpirun "mpirun -np 2" >"$TMP/c1" 2>&1
[ $? != 0 ] && grep -q "{ranks}" "$TMP/c1"; ok $? "a template without {ranks} is refused: $(cat "$TMP/c1")"
"$FINETUNED" serve --check-config --state-dir "$TMP/s3" --mpirun "mpirun -np {ranks} 'a b'" >"$TMP/c2" 2>&1
[ $? != 0 ] && grep -q "without a shell" "$TMP/c2"; ok $? "quotes are refused: $(cat "$TMP/c2")"
FINETUNED_MPIRUN="$TEMPLATE" "$FINETUNED" serve --check-config --state-dir "$TMP/s3" >"$TMP/c3" 2>&1
grep -q "^mpirun = $TEMPLATE .*# FINETUNED_MPIRUN" "$TMP/c3"; ok $? "FINETUNED_MPIRUN sets it: $(grep mpirun "$TMP/c3")"

done_testing
