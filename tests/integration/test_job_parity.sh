#!/bin/bash
# test_job_parity.sh - one way through the house (issue 14): the same job run by `finetuned train` and by the
# daemon over HTTP on loopback gives the same model file and the same metrics.json. For a CSV table (an mlp
# preset) and for an IDX subset of Fashion-MNIST whose labels are 5-9 only, which must get a 5-way head both
# ways (the daemon's model is registered with 10 outputs: its head is resized to the data).
#
# "The same model file": the tensor bytes are identical and the safetensors header (names, dtypes, shapes,
# offsets, metadata) is identical except for the daemon's "finetuned.job" metadata key, the job id, which a
# run of `finetuned train` does not have. metrics.json is identical except for each epoch's wall time
# ("seconds", "samples_per_sec").
# Not for: training numerics (tests/unit/test_train*.c), the API's validation (test_api_jobs.sh).
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
FMNIST=/usr/share/datasets/fashion-mnist
J=(-H 'Content-Type: application/json')

# ---- helpers --------------------------------------------------------------------------------------
hlen() { od -An -tu8 -N8 "$1" | tr -d ' '; }
header() { head -c $((8 + $(hlen "$1"))) "$1" | tail -c "$(hlen "$1")"; }
tensors() { tail -c +$((9 + $(hlen "$1"))) "$1"; }
# same_model CLI_FILE DAEMON_FILE JOB_ID: tensors byte-identical, headers equal but for finetuned.job
same_model() {
        cmp -s <(tensors "$1") <(tensors "$2") || { diag "tensor bytes differ"; return 1; }
        header "$2" | jq -e --arg job "$3" '.__metadata__["finetuned.job"] == $job' >/dev/null ||
                { diag "the daemon's file does not name job $3"; return 1; }
        diff <(header "$1" | jq -S .) <(header "$2" | jq -S 'del(.__metadata__["finetuned.job"])') >&2 ||
                { diag "headers differ"; return 1; }
}
untimed() { jq -S 'del(.history[]?.seconds, .history[]?.samples_per_sec)' "$1"; }
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
# daemon_run JOB_SPEC: queue it, wait, fetch model.safetensors and metrics.json into $TMP/d-<job id>/
daemon_run() {
        http POST /v1/jobs "${J[@]}" -d "$1"
        [ "$STATUS" = 201 ] || { diag "POST /v1/jobs: $STATUS $BODY"; return 1; }
        DJOB=$(echo "$BODY" | jq -r .id)
        wait_state "$DJOB" succeeded failed cancelled || return 1
        [ "$(curl -s "$BASE/v1/jobs/$DJOB" | jq -r .state)" = succeeded ] ||
                { diag "$(curl -s "$BASE/v1/jobs/$DJOB" | jq -c .error)"; return 1; }
        mkdir -p "$TMP/d-$DJOB"
        curl -s -f -o "$TMP/d-$DJOB/model.safetensors" "$BASE/v1/jobs/$DJOB/artifacts/model.safetensors" &&
                curl -s -f -o "$TMP/d-$DJOB/metrics.json" "$BASE/v1/jobs/$DJOB/artifacts/metrics.json"
}

# ---- data ------------------------------------------------------------------------------------------
mkdir -p "$TMP/cli"
cp "$SRC/examples/tabular/wine.csv" "$TMP/cli/"
# the first 1000 Fashion-MNIST test images whose label is 5..9 (sandal, shirt, sneaker, bag, ankle boot)
perl -e '
        my ($img, $lbl, $oimg, $olbl) = @ARGV;
        open(my $fi, "-|", "gunzip", "-c", $img) or die; binmode $fi; local $/; my $i = <$fi>;
        open(my $fl, "-|", "gunzip", "-c", $lbl) or die; binmode $fl; my $l = <$fl>;
        my (@keep);
        for my $k (0 .. 999) { my $y = ord(substr($l, 8 + $k, 1)); push @keep, $k if $y >= 5; }
        my $n = @keep;
        open(my $gi, ">", $oimg) or die; binmode $gi;
        print $gi pack("NNNN", 0x803, $n, 28, 28), map { substr($i, 16 + $_ * 784, 784) } @keep;
        open(my $gl, ">", $olbl) or die; binmode $gl;
        print $gl pack("NN", 0x801, $n), map { substr($l, 8 + $_, 1) } @keep;
' "$FMNIST/t10k-images-idx3-ubyte.gz" "$FMNIST/t10k-labels-idx1-ubyte.gz" "$TMP/cli/sub-images-idx3-ubyte" \
        "$TMP/cli/sub-labels-idx1-ubyte"
n_sub=$(od -An -tu1 -j8 "$TMP/cli/sub-labels-idx1-ubyte" | tr -s ' \n' '\n' | grep -c .)
labels=$(od -An -tu1 -j8 "$TMP/cli/sub-labels-idx1-ubyte" | tr -s ' \n' '\n' | grep . | sort -u | tr '\n' ' ')
[ "$n_sub" -gt 100 ] && [ "$labels" = "5 6 7 8 9 " ]
ok $? "an IDX subset of $n_sub images labelled 5-9 only ($labels)"

# ---- the CSV job ------------------------------------------------------------------------------------
common='"task": {"type": "classification", "target": "cultivar"}, "validation_split": 0.25,
        "hyperparameters": {"epochs": 3, "batch_size": 16, "learning_rate": 0.01},
        "early_stopping": {"metric": "val_f1", "patience": 5}, "seed": 11'
echo "{\"model\": {\"preset\": \"mlp\", \"options\": {\"hidden\": [16]}}, \"training_file\": \"wine.csv\", $common}" \
        >"$TMP/cli/wine.json"
"$FINETUNED" train "$TMP/cli/wine.json" --out "$TMP/cli/wine" --threads 1 >"$TMP/cli/wine.ndjson" 2>"$TMP/err"
ok $? "finetuned train: the CSV job ($(head -c 200 "$TMP/err"))"

start_daemon "$TMP/state" --threads 1; ok $? "daemon starts (one compute thread, as finetuned train --threads 1)"
http POST '/v1/datasets?name=wine' --data-binary @"$TMP/cli/wine.csv"
wine=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 13, "hidden": [16], "outputs": 3}}'
mlp=$(echo "$BODY" | jq -r .id)
daemon_run "{\"model\": \"$mlp\", \"training_file\": \"$wine\", $common}"
ok $? "the daemon: the same CSV job ($DJOB)"
same_model "$TMP/cli/wine/model.safetensors" "$TMP/d-$DJOB/model.safetensors" "$DJOB"
ok $? "CSV: the same model file (tensor bytes identical; header identical but for finetuned.job)"
diff <(untimed "$TMP/cli/wine/metrics.json") <(untimed "$TMP/d-$DJOB/metrics.json") >&2
ok $? "CSV: the same metrics.json (up to epoch wall times)"
jq -e '(keys == ["best_epoch", "diagnostics", "epochs_run", "history", "metrics", "split", "stopped_early"])
       and .split == "validation" and .epochs_run == 3 and (.history | length) == 3
       and (.metrics.accuracy | type) == "number"' "$TMP/cli/wine/metrics.json" >/dev/null
ok $? "metrics.json: split, best_epoch, epochs_run, stopped_early, metrics and history, both ways"
# issue 21: the README's `jq .metrics.accuracy` on the CLI's file: a number, the daemon's for the same job
a_cli=$(jq .metrics.accuracy "$TMP/cli/wine/metrics.json"); a_d=$(jq .metrics.accuracy "$TMP/d-$DJOB/metrics.json")
[ "$a_cli" != null ] && [ "$a_cli" = "$a_d" ] && jq -e '.final == null' "$TMP/cli/wine/metrics.json" >/dev/null
ok $? "jq .metrics.accuracy: $a_cli from finetuned train, $a_d from the daemon; no .final"
http GET "/v1/jobs/$DJOB"
echo "$BODY" | jq -e --slurpfile m "$TMP/d-$DJOB/metrics.json" '.metrics == ($m[0] | del(.history, .diagnostics))' >/dev/null
ok $? "the job's metrics are metrics.json without its history"
http GET "/v1/jobs/$DJOB/events?limit=1000"
echo "$BODY" | jq -c '[.data[] | select(.type == "epoch" or .type == "metrics") | .data
        | del(.seconds, .samples_per_sec)]' >"$TMP/d.events"
jq -s -c '[.[] | select(.type == "epoch" or .type == "metrics") | del(.seconds, .samples_per_sec)]' \
        "$TMP/cli/wine.ndjson" >"$TMP/c.events"
cmp -s "$TMP/c.events" "$TMP/d.events"
ok $? "the daemon's stored epoch and metrics events are the CLI's NDJSON lines (up to wall times)"

# ---- the IDX subset labelled 5-9 ---------------------------------------------------------------------
common='"hyperparameters": {"epochs": 2, "batch_size": 32, "learning_rate": 0.005}, "validation_split": 0.2,
        "seed": 5'
echo "{\"model\": {\"preset\": \"cnn\", \"options\": {\"channels\": [8, 16], \"hidden\": 16}},
       \"training_file\": \"sub-images-idx3-ubyte\", $common}" >"$TMP/cli/sub.json"
"$FINETUNED" train "$TMP/cli/sub.json" --out "$TMP/cli/sub" --threads 1 >"$TMP/cli/sub.ndjson" 2>"$TMP/err"
ok $? "finetuned train: the IDX subset, its labels file found by name ($(head -c 200 "$TMP/err"))"
http POST '/v1/datasets?name=fmnist-5-9' -F images=@"$TMP/cli/sub-images-idx3-ubyte" \
        -F labels=@"$TMP/cli/sub-labels-idx1-ubyte"
sub=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.schema.num_classes == 5 and ([.schema.classes[].name] == ["5","6","7","8","9"])' \
        >/dev/null
ok $? "uploaded as one dataset: 5 classes, \"5\"..\"9\""
http POST /v1/models "${J[@]}" -d '{"preset": "cnn", "config": {"in_channels": 1, "input_size": [28, 28],
        "channels": [8, 16], "hidden": 16, "outputs": 10}}'
cnn=$(echo "$BODY" | jq -r .id)
daemon_run "{\"model\": \"$cnn\", \"training_file\": \"$sub\", $common}"
ok $? "the daemon: the same job on a 10-output cnn ($DJOB)"
for f in "$TMP/cli/sub/model.safetensors" "$TMP/d-$DJOB/model.safetensors"; do
        header "$f" | jq -e '.["9.weight"].shape == [5, 16] and .["9.bias"].shape == [5]
                and (.__metadata__["finetuned.classes"] | fromjson) == ["5","6","7","8","9"]' >/dev/null || exit_code=1
done
[ -z "${exit_code:-}" ]
ok $? "a 5-way head both ways (9.weight [5, 16], classes \"5\"..\"9\")"
grep -q "$DJOB: head '9' replaced for 5 outputs" "$LOG"; ok $? "the daemon says it replaced the head"
same_model "$TMP/cli/sub/model.safetensors" "$TMP/d-$DJOB/model.safetensors" "$DJOB"
ok $? "IDX 5-9: the same model file (tensor bytes identical; header identical but for finetuned.job)"
diff <(untimed "$TMP/cli/sub/metrics.json") <(untimed "$TMP/d-$DJOB/metrics.json") >&2
ok $? "IDX 5-9: the same metrics.json (up to epoch wall times)"
jq -e '.metrics.confusion_matrix.labels == ["5","6","7","8","9"]' "$TMP/cli/sub/metrics.json" >/dev/null
ok $? "its confusion matrix is 5x5 over the classes present"

stop_daemon; ok $? "clean stop"
done_testing
