#!/bin/bash
# dist_bench.sh BUILD_DIR - data-parallel throughput on this machine: training
# samples/s of the CNN preset on 2000 Fashion-MNIST images at `-np 1` with 2
# threads against `-np 2` with 1 thread each (same global batch), the median of
# the epochs' samples_per_sec; then allreduce_bench at -np 2 (time per step
# against the gradient size). Run by hand; numbers go to docs/performance.md.
# Not for: tests (timings are never assertions).
set -eu
BUILD=${1:-build}
FT=$BUILD/daemon/finetuned
FMNIST=/usr/share/datasets/fashion-mnist
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
MPIRUN=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
n=2000
hex=$(printf '%08x' $n | sed 's/../\\x&/g')
{ printf "\\x00\\x00\\x08\\x03$hex\\x00\\x00\\x00\\x1c\\x00\\x00\\x00\\x1c"
  gunzip -c "$FMNIST/t10k-images-idx3-ubyte.gz" | tail -c +17 | head -c $((n * 784)); } | gzip >"$TMP/b-images-idx3-ubyte.gz"
{ printf "\\x00\\x00\\x08\\x01$hex"
  gunzip -c "$FMNIST/t10k-labels-idx1-ubyte.gz" | tail -c +9 | head -c $n; } | gzip >"$TMP/b-labels-idx1-ubyte.gz"
cat >"$TMP/job.json" <<'JOB'
{"model": {"preset": "cnn", "options": {"in_channels": 1, "input_size": [28, 28]}},
 "training_file": ["b-images-idx3-ubyte.gz", "b-labels-idx1-ubyte.gz"], "validation_split": 0,
 "hyperparameters": {"epochs": 3, "batch_size": 64, "learning_rate": 0.05, "optimizer": "sgd"},
 "checkpoint": {"every_epochs": 0}, "seed": 1}
JOB
median_sps() {
        jq -s '[.[] | select(.type == "epoch") | .samples_per_sec] | sort | .[length / 2 | floor]' "$1"
}
"${MPIRUN[@]}" -np 1 "$FT" train "$TMP/job.json" --out "$TMP/o1" --threads 2 >"$TMP/np1.ndjson"
"${MPIRUN[@]}" -np 2 "$FT" train "$TMP/job.json" --out "$TMP/o2" --threads 1 >"$TMP/np2.ndjson"
a=$(median_sps "$TMP/np1.ndjson")
b=$(median_sps "$TMP/np2.ndjson")
echo "cnn preset, batch 64: -np 1 x 2 threads $a samples/s; -np 2 x 1 thread $b samples/s; ratio $(echo "scale=2; $b / $a" | bc)"
"${MPIRUN[@]}" -np 2 "$BUILD/bench/allreduce_bench"
