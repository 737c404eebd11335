#!/bin/bash
# test_dist_mpi.sh - data-parallel `finetuned train` under real Open MPI ranks:
# -np 2 equals -np 1 (same global batch, uneven shards) within 1e-5 relative on
# every epoch's losses and the final weights for the MLP and CNN presets; a
# checkpoint written at -np 2 resumes at -np 1 and the other way round to the
# same weights; a rank killed mid-epoch or a rank that hangs ends the job with
# an error (no hang past --collective-timeout).
# Not for: the daemon's launcher, the trainer's numerics (tests/unit/test_train*.c).
# Usage: test_dist_mpi.sh FINETUNED ST_COMPARE
. "$(dirname "$0")/lib.sh"
# Under `make asan`: Open MPI dlopens its components and dlcloses them in MPI_Finalize, and LeakSanitizer reports
# what they allocated as leaks of an <unknown module>, aborting every rank at exit. The ranks run without leak
# checking; the same training code is leak-checked by every single-process test.
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
COMPARE=$2
FMNIST=/usr/share/datasets/fashion-mnist

MPIRUN=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none

# same EVENTS_A EVENTS_B: every epoch's train_loss and val_loss within 1e-5 relative, same steps
same_losses() {
        jq -e -n --slurpfile a "$1" --slurpfile b "$2" '
                def ep(x): x | map(select(.type == "epoch"));
                def close(p; q): ((p - q) | fabs) <= 1e-5 * ([(p | fabs), (q | fabs), 1e-12] | max);
                (ep($a) | length) > 0 and (ep($a) | length) == (ep($b) | length)
                and ([range(ep($a) | length)] | all(. as $i | ep($a)[$i] as $x | ep($b)[$i] as $y
                        | $x.step == $y.step and close($x.train_loss; $y.train_loss) and close($x.val_loss; $y.val_loss)))' \
                >/dev/null
}
# run NP NAME JOB [ARGS]: finetuned train under mpirun -np NP, events in $TMP/NAME.ndjson, results in $TMP/NAME
run() {
        local np=$1 name=$2 job=$3
        shift 3
        "${MPIRUN[@]}" -np "$np" "$FINETUNED" train "$job" --out "$TMP/$name" --threads 1 "$@" \
                >"$TMP/$name.ndjson" 2>"$TMP/$name.err"
}

# 1. MLP on the wine table: 10 steps of 29 rows (shards of 15 and 14, the last batch short)
cp "$SRC/examples/tabular/wine.csv" "$TMP/"
cat >"$TMP/mlp.json" <<'JOB'
{"model": {"preset": "mlp", "options": {"hidden": [32, 16]}}, "training_file": "wine.csv",
 "validation_split": 0.2, "task": {"type": "classification", "target": "cultivar"},
 "preprocess": {"standardize": true},
 "hyperparameters": {"epochs": 2, "batch_size": 29, "learning_rate": 0.01, "optimizer": "adam",
                     "weight_decay": 0.01, "max_grad_norm": 1.0}, "seed": 5}
JOB
run 1 mlp1 "$TMP/mlp.json"
ok $? "mlp at -np 1 trains ($(tail -c 300 "$TMP/mlp1.err"))"
run 2 mlp2 "$TMP/mlp.json"
ok $? "mlp at -np 2 trains ($(tail -c 300 "$TMP/mlp2.err"))"
[ "$(jq -s 'map(select(.type == "epoch")) | last | .step' "$TMP/mlp2.ndjson")" = 10 ]
ok $? "10 optimizer steps"
same_losses "$TMP/mlp1.ndjson" "$TMP/mlp2.ndjson"
ok $? "mlp: -np 2 losses equal -np 1 within 1e-5 relative"
out=$("$COMPARE" "$TMP/mlp1/model.safetensors" "$TMP/mlp2/model.safetensors" 1e-5)
ok $? "mlp: -np 2 final weights equal -np 1: $out"
[ "$(grep -c '"type":"metrics"' "$TMP/mlp2.ndjson")" = 1 ] && [ ! -s "$TMP/mlp2.err" ]
ok $? "rank 0 alone prints events (one metrics event, nothing on stderr)"

# 2. the CNN preset on 250 Fashion-MNIST images: 10 steps of 40
hex=$(printf '%08x' 250 | sed 's/../\\x&/g')
{ printf "\\x00\\x00\\x08\\x03$hex\\x00\\x00\\x00\\x1c\\x00\\x00\\x00\\x1c"
  gunzip -c "$FMNIST/t10k-images-idx3-ubyte.gz" | tail -c +17 | head -c $((250 * 784)); } | gzip >"$TMP/img-images-idx3-ubyte.gz"
{ printf "\\x00\\x00\\x08\\x01$hex"
  gunzip -c "$FMNIST/t10k-labels-idx1-ubyte.gz" | tail -c +9 | head -c 250; } | gzip >"$TMP/img-labels-idx1-ubyte.gz"
cat >"$TMP/cnn.json" <<'JOB'
{"model": {"preset": "cnn", "options": {"in_channels": 1, "input_size": [28, 28], "channels": [4, 8], "hidden": 16}},
 "training_file": ["img-images-idx3-ubyte.gz", "img-labels-idx1-ubyte.gz"], "validation_split": 0.2,
 "preprocess": {"normalize": {"mean": [0.5], "std": [0.5]}},
 "hyperparameters": {"epochs": 2, "batch_size": 40, "learning_rate": 0.05, "optimizer": "sgd", "momentum": 0.9},
 "seed": 3}
JOB
run 1 cnn1 "$TMP/cnn.json"
ok $? "cnn at -np 1 trains ($(tail -c 300 "$TMP/cnn1.err"))"
run 2 cnn2 "$TMP/cnn.json"
ok $? "cnn at -np 2 trains ($(tail -c 300 "$TMP/cnn2.err"))"
same_losses "$TMP/cnn1.ndjson" "$TMP/cnn2.ndjson"
ok $? "cnn: -np 2 losses equal -np 1 within 1e-5 relative"
out=$("$COMPARE" "$TMP/cnn1/model.safetensors" "$TMP/cnn2/model.safetensors" 1e-5)
ok $? "cnn: -np 2 final weights equal -np 1: $out"

# 3. resume across N: the epoch-1 checkpoint of one N continued at the other
run 1 mlp21 "$TMP/mlp.json" --resume "$TMP/mlp2/checkpoints/ckpt-5"
ok $? "a checkpoint written at -np 2 resumes at -np 1 ($(tail -c 300 "$TMP/mlp21.err"))"
out=$("$COMPARE" "$TMP/mlp1/model.safetensors" "$TMP/mlp21/model.safetensors" 1e-5)
ok $? "... to the uninterrupted run's weights: $out"
run 2 mlp12 "$TMP/mlp.json" --resume "$TMP/mlp1/checkpoints/ckpt-5"
ok $? "a checkpoint written at -np 1 resumes at -np 2 ($(tail -c 300 "$TMP/mlp12.err"))"
out=$("$COMPARE" "$TMP/mlp1/model.safetensors" "$TMP/mlp12/model.safetensors" 1e-5)
ok $? "... to the uninterrupted run's weights: $out"

# 4. a rank that dies or hangs mid-epoch
jq '.hyperparameters.epochs = 100000 | .hyperparameters.batch_size = 8' "$TMP/mlp.json" >"$TMP/long.json"
rank_pid() { # rank_pid RANK: the pid of this test's rank RANK
        local p
        for p in $(pgrep -f "train $TMP/long.json"); do
                tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo "$p"; return; }
        done
}
for how in KILL STOP; do
        run 2 "fail$how" "$TMP/long.json" --collective-timeout 5 &
        job=$!
        for i in $(seq 1 600); do
                grep -q '"type":"epoch"' "$TMP/fail$how.ndjson" 2>/dev/null && break
                sleep 0.1
        done
        victim=$(rank_pid 1)
        [ -n "$victim" ] && kill -"$how" "$victim"
        start=$SECONDS
        for i in $(seq 1 1200); do
                kill -0 "$job" 2>/dev/null || break
                sleep 0.1
        done
        if kill -0 "$job" 2>/dev/null; then
                kill "$job"
                [ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null
                rc=hang
        else
                wait "$job"
                rc=$?
        fi
        diag "SIG$how rank 1: exit $rc after $((SECONDS - start)) s: $(grep -v '^-*$' "$TMP/fail$how.err" | head -c 400)"
        [ -n "$victim" ] && [ "$rc" != hang ] && [ "$rc" != 0 ]
        ok $? "rank 1 stopped by SIG$how: the job fails, no hang"
        [ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null
done
grep -q "rank 0 of 2: the .* waited more than 5 s for the other ranks" "$TMP/failSTOP.err"
ok $? "a hung rank: rank 0 says it waited past --collective-timeout"
grep -qi "signal 9\|killed" "$TMP/failKILL.err"
ok $? "a killed rank: the launcher names the dead rank"

done_testing
