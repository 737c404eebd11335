#!/bin/bash
# test_train_cli.sh - `finetuned train` as a user runs it: the tabular example
# end to end (NDJSON events, model.safetensors, metrics.json), the saved model
# fine-tuned again, bad specs and bad data exiting non-zero with the field or
# file:line named, SIGTERM stopping with a checkpoint and --resume finishing
# with the same weights as an uninterrupted run.
# Not for: the trainer's numerics (tests/unit/test_train*.c).
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)

cp "$SRC/examples/tabular/wine.csv" "$SRC/examples/tabular/job.json" "$TMP/"

# 1. the example
"$FINETUNED" train "$TMP/job.json" --out "$TMP/out" --threads 1 >"$TMP/events.ndjson" 2>"$TMP/err"
ok $? "tabular example trains (exit 0)"
jq -e . "$TMP/events.ndjson" >/dev/null 2>&1
ok $? "every stdout line is JSON"
n_epochs=$(jq -r 'select(.type == "epoch") | .epoch' "$TMP/events.ndjson" | wc -l)
[ "$n_epochs" -ge 1 ]
ok $? "epoch events ($n_epochs)"
jq -e 'select(.type == "epoch") | has("train_loss") and has("val_loss") and has("val_accuracy") and has("val_f1")
       and has("lr") and has("seconds") and has("samples_per_sec")' "$TMP/events.ndjson" | grep -qv true
[ $? -ne 0 ]
ok $? "epoch events carry train_loss, val_loss, val_accuracy, val_f1, lr, seconds, samples_per_sec"
acc=$(jq -r 'select(.type == "metrics") | .metrics.accuracy' "$TMP/events.ndjson")
diag "wine validation accuracy $acc"
[ "$(echo "$acc >= 0.9" | bc)" = 1 ]
ok $? "wine validation accuracy $acc >= 0.9"
[ -s "$TMP/out/model.safetensors" ] && jq -e '.metrics.per_class | length == 3' "$TMP/out/metrics.json" >/dev/null
ok $? "model.safetensors and metrics.json (3 classes) written"
# metrics.json is the daemon's document (issue 21): the README's `jq .metrics.accuracy` works on it
jq -e --slurpfile ev "$TMP/events.ndjson" '
        ($ev | map(select(.type == "metrics"))[0] | del(.type)) as $final
        | (keys == ["best_epoch", "diagnostics", "epochs_run", "history", "metrics", "split", "stopped_early"])
        and .split == "validation" and (.metrics.accuracy | type) == "number"
        and del(.history, .diagnostics) == $final
        and .history == ($ev | map(select(.type == "epoch")))
        and (.history | length) == .epochs_run' "$TMP/out/metrics.json" >/dev/null
ok $? "metrics.json: split, best_epoch, epochs_run, stopped_early, metrics as the final event; history the epoch events"
"$FINETUNED" inspect "$TMP/out/model.safetensors" >"$TMP/inspect.json" 2>&1 &&
        jq -e '.metadata["finetuned.classes"] | fromjson | . == ["barbera","barolo","grignolino"]' "$TMP/inspect.json" \
                >/dev/null
ok $? "the saved model carries its class names and spec"
[ ! -s "$TMP/err" ]
ok $? "nothing on stderr when it is not a terminal"

# 2. the saved model as the base of another job (same classes: the head is kept)
jq '.model = "out/model.safetensors" | .hyperparameters.epochs = 2 | del(.early_stopping)' "$TMP/job.json" \
        >"$TMP/again.json"
"$FINETUNED" train "$TMP/again.json" --out "$TMP/again" >"$TMP/again.ndjson" 2>"$TMP/err"
ok $? "a saved model fine-tunes again ($(head -c 200 "$TMP/err"))"

# 3. bad specs and bad data
echo '{"model": "mlp", "training_file": "wine.csv", "hyperparameters": {"learning_rate": -1}}' >"$TMP/bad.json"
"$FINETUNED" train "$TMP/bad.json" --out "$TMP/bad" >/dev/null 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] && grep -q "hyperparameters.learning_rate" "$TMP/err"
ok $? "a negative learning rate exits 1 naming the field: $(cat "$TMP/err")"
echo '{"model": "mlp", "training_file": "wine.csv", "epochs": 3}' >"$TMP/bad.json"
"$FINETUNED" train "$TMP/bad.json" --out "$TMP/bad" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "'epochs'" "$TMP/err"
ok $? "an unknown field exits 1 naming it: $(cat "$TMP/err")"
printf 'a,b,label\n1,2,x\n3,oops,y\n' >"$TMP/broken.csv"
echo '{"model": "mlp", "training_file": "broken.csv"}' >"$TMP/bad.json"
"$FINETUNED" train "$TMP/bad.json" --out "$TMP/bad" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "broken.csv.*:3:" "$TMP/err"
ok $? "a non-numeric cell exits 1 naming file:line: $(cat "$TMP/err")"
echo '{"model": "mlp", "training_file": "missing.csv"}' >"$TMP/bad.json"
"$FINETUNED" train "$TMP/bad.json" --out "$TMP/bad" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "missing.csv" "$TMP/err"
ok $? "a missing file exits 1 naming it: $(cat "$TMP/err")"
"$FINETUNED" train "$TMP/job.json" >/dev/null 2>&1
[ $? -eq 2 ]
ok $? "no --out is a usage error (exit 2)"

# 4. SIGTERM stops with a checkpoint; --resume gives the uninterrupted weights. A fast machine may finish
# before the signal lands: then try again with more epochs.
epochs=100
for attempt in 1 2 3 4; do
        jq ".hyperparameters.epochs = $epochs | .hyperparameters.batch_size = 4 | del(.early_stopping)
            | .checkpoint.every_epochs = 25" "$TMP/job.json" >"$TMP/long.json"
        rm -rf "$TMP/long"
        "$FINETUNED" train "$TMP/long.json" --out "$TMP/long" --threads 1 >"$TMP/long.ndjson" 2>"$TMP/err" &
        pid=$!
        for _ in $(seq 1 400); do
                grep -q '"epoch":3,' "$TMP/long.ndjson" 2>/dev/null && break
                sleep 0.01
        done
        kill -TERM $pid 2>/dev/null
        wait $pid
        rc=$?
        [ $rc -eq 0 ] || break
        epochs=$((epochs * 5))
done
diag "stopped a run of $epochs epochs after $(jq -r 'select(.type == "epoch") | .epoch' "$TMP/long.ndjson" | tail -1)"
[ $rc -eq 130 ] && grep -q -- "--resume" "$TMP/err"
ok $? "SIGTERM stops the run (exit $rc) and says how to resume"
jq -e 'select(.type == "checkpoint" and .partial == true)' "$TMP/long.ndjson" >/dev/null
ok $? "a partial checkpoint was written on stop"
"$FINETUNED" train "$TMP/long.json" --out "$TMP/long" --resume "$TMP/long" --threads 1 >"$TMP/resumed.ndjson" \
        2>"$TMP/err"
ok $? "--resume finishes the run ($(head -c 200 "$TMP/err"))"
"$FINETUNED" train "$TMP/long.json" --out "$TMP/whole" --threads 1 >/dev/null 2>&1
cmp -s "$TMP/long/model.safetensors" "$TMP/whole/model.safetensors"
ok $? "resumed model.safetensors is byte-identical to an uninterrupted run's"

# issue 21: colour images as a 4-D IDX file (N x 3 x 8 x 8): the model sees 3 channels
mkdir -p "$TMP/rgb"
perl -e 'open(my $i, ">", "$ARGV[0]/c-images-idx3-ubyte") or die; binmode $i;
        print $i pack("NNNNN", 0x804, 40, 3, 8, 8);
        for my $k (0 .. 39) { for my $c (0 .. 2) { for my $p (0 .. 63) { print $i chr(($c == $k % 2 ? 200 : 20) + ($p * 7 + $k) % 30) } } }
        open(my $l, ">", "$ARGV[0]/c-labels-idx1-ubyte") or die; binmode $l;
        print $l pack("NN", 0x801, 40), map { chr($_ % 2) } 0 .. 39;' "$TMP/rgb"
out=$("$FINETUNED" inspect "$TMP/rgb/c-images-idx3-ubyte"); rc=$?
[ $rc -eq 0 ] && echo "$out" | jq -e '.image_shape == [3, 8, 8] and .rows == 40' >/dev/null
ok $? "inspect a 4-D IDX file: image_shape [3, 8, 8]"
echo '{"model": {"preset": "cnn", "options": {"channels": [4], "hidden": 8}}, "training_file": "c-images-idx3-ubyte",
       "hyperparameters": {"epochs": 1, "batch_size": 8}, "validation_split": 0.25, "seed": 1}' >"$TMP/rgb/job.json"
"$FINETUNED" train "$TMP/rgb/job.json" --out "$TMP/rgb/out" --threads 1 >/dev/null 2>"$TMP/rgb/err"
rc=$?; hl=$(od -An -tu8 -N8 "$TMP/rgb/out/model.safetensors" | tr -d ' ')
[ $rc -eq 0 ] && head -c $((8 + hl)) "$TMP/rgb/out/model.safetensors" | tail -c "$hl" | jq -e '."0.weight".shape == [4, 3, 3, 3]' >/dev/null
ok $? "train on 4-D IDX colour images: the first conv takes 3 channels ($(head -c 200 "$TMP/rgb/err"))"

done_testing
