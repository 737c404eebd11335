#!/bin/bash
# run.sh - the transfer-learning example end to end: cut Fashion-MNIST into
# classes 0-4 (pretraining) and 20 labelled images per class of 5-9 (fine-
# tuning), pretrain the small CNN, then fine-tune it with the full, partial and
# layerwise strategies and train the same CNN from scratch with the same budget;
# print the accuracy of each on the 5,000 test images of classes 5-9.
#
#   examples/transfer/run.sh [WORK_DIR]      (FINETUNED=path/to/finetuned, SEEDS="1 2 3")
#
# Not for: the test suite (it takes minutes).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${1:-/tmp/finetuned-transfer}
FT=${FINETUNED:-$HERE/../../build/daemon/finetuned}
SEEDS=${SEEDS:-"1 2 3"}
mkdir -p "$WORK"
[ -f "$WORK/data/test-labels-idx1-ubyte" ] || python3 "$HERE/make_subsets.py" /usr/share/datasets/fashion-mnist "$WORK/data"
cp "$HERE"/*.json "$WORK/"
if [ ! -f "$WORK/pretrained/model.safetensors" ]; then
        "$FT" train "$WORK/pretrain.json" --out "$WORK/pretrained" >"$WORK/pretrain.ndjson"
fi
echo "pretraining (classes 0-4): validation accuracy $(jq -r 'select(.type == "metrics") | .metrics.accuracy' \
        "$WORK/pretrain.ndjson")"
printf '%-10s' strategy
for seed in $SEEDS; do printf ' seed %-5s' "$seed"; done
printf ' mean\n'
for run in scratch full partial layerwise; do
        printf '%-10s' "$run"
        sum=0
        for seed in $SEEDS; do
                jq ".seed = $seed" "$WORK/$run.json" >"$WORK/$run-$seed.json"
                "$FT" train "$WORK/$run-$seed.json" --out "$WORK/$run-$seed" >"$WORK/$run-$seed.ndjson"
                acc=$(jq -r 'select(.type == "metrics") | .metrics.accuracy' "$WORK/$run-$seed.ndjson")
                printf ' %-10.4f' "$acc"
                sum=$(echo "$sum + $acc" | bc -l)
        done
        printf ' %.4f\n' "$(echo "$sum / $(echo "$SEEDS" | wc -w)" | bc -l)"
done
