#!/usr/bin/env bash
# test_inspect.sh - `finetuned inspect`: JSON summaries of a CSV, an IDX pair
# (Fashion-MNIST, plain and gzip, either order) and a safetensors file on stdout;
# bad files give one error line naming the file and place on stderr, exit 1.
. "$(dirname "$0")/lib.sh"
FIX="$(cd "$(dirname "$0")/../fixtures/io" && pwd)"
FM=/usr/share/datasets/fashion-mnist

printf 'sepal,petal,"kind, of"\n1.5,2,setosa\n"3",4,virginica\r\n5,,setosa\n' >"$TMP/iris.csv"
out=$("$FINETUNED" inspect --target "kind, of" "$TMP/iris.csv"); rc=$?
[ $rc -eq 0 ] && echo "$out" | jq -e '.format=="csv" and .rows==2 and .features==2 and .num_classes==2
        and .missing_values==1 and .rows_dropped==1 and .classes[0].name=="setosa"' >/dev/null
ok $? "CSV summary: rows, features, classes with counts, missing values"

printf 'x;y\n1;0.5\n2;1.5\n' >"$TMP/reg.csv"
out=$("$FINETUNED" inspect --regression --delimiter ';' "$TMP/reg.csv"); rc=$?
[ $rc -eq 0 ] && echo "$out" | jq -e '.task=="regression" and .target_stats.mean==1.0' >/dev/null
ok $? "--regression --delimiter: target statistics"
out=$("$FINETUNED" inspect $FM/train-labels-idx1-ubyte.gz $FM/train-images-idx3-ubyte.gz); rc=$?
[ $rc -eq 0 ] && echo "$out" | jq -e '.format=="idx" and .rows==60000 and .image_shape==[1,28,28] and .num_classes==10
        and ([.classes[].count]|unique)==[6000]' >/dev/null
ok $? "Fashion-MNIST train pair (labels first): 60000 x 1x28x28, 10 classes of 6000"

gunzip -c $FM/t10k-images-idx3-ubyte.gz >"$TMP/img"; gunzip -c $FM/t10k-labels-idx1-ubyte.gz >"$TMP/lab"
out=$("$FINETUNED" inspect "$TMP/img" "$TMP/lab"); rc=$?
[ $rc -eq 0 ] && echo "$out" | jq -e '.rows==10000' >/dev/null; ok $? "uncompressed IDX pair"

# issue 21: an images file alone finds its labels file beside it, as `finetuned train` does
mkdir -p "$TMP/fm" && cp "$TMP/img" "$TMP/fm/t10k-images-idx3-ubyte" && cp "$TMP/lab" "$TMP/fm/t10k-labels-idx1-ubyte"
out=$("$FINETUNED" inspect "$TMP/fm/t10k-images-idx3-ubyte"); rc=$?
[ $rc -eq 0 ] && echo "$out" | jq -e '.format=="idx" and .rows==10000 and .num_classes==10' >/dev/null
ok $? "an IDX images file alone: its labels file beside it is found ($rc)"
out=$("$FINETUNED" inspect $FM/t10k-images-idx3-ubyte.gz); rc=$?
[ $rc -eq 0 ] && echo "$out" | jq -e '.rows==10000' >/dev/null; ok $? "the same for a .gz images file ($rc)"
rm "$TMP/fm/t10k-labels-idx1-ubyte"
err=$("$FINETUNED" inspect "$TMP/fm/t10k-images-idx3-ubyte" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -qF "t10k-labels-idx1-ubyte"; ok $? "a missing labels file is named: $err"
err=$("$FINETUNED" inspect "$TMP/img" 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -qF "give it with its pair"; ok $? "an images file with another name: $err"

out=$("$FINETUNED" inspect "$FIX/cnn_bn.safetensors"); rc=$?
[ $rc -eq 0 ] && echo "$out" | jq -e '.format=="safetensors" and .metadata.format=="pt"
        and (.tensors[] | select(.name=="1.num_batches_tracked") | .dtype=="I64" and .shape==[])
        and (.tensors[] | select(.name=="0.weight") | .shape==[4,3,3,3])' >/dev/null
ok $? "safetensors: every tensor with dtype and shape, and the metadata"

expect_error() { # expect_error DESCRIPTION NEEDLE ARGS...
        local what=$1 needle=$2; shift 2
        local err rc
        err=$("$FINETUNED" inspect "$@" 2>&1 >/dev/null); rc=$?
        [ $rc -eq 1 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] && echo "$err" | grep -qF -- "$needle"
        ok $? "$what -> exit 1: $err"
}
printf 'a,b,t\n1,2,x\n3,4\n' >"$TMP/ragged.csv"
expect_error "ragged CSV row" "ragged.csv':3: row has 2 fields, the header has 3" "$TMP/ragged.csv"
printf 'a,t\n1,x\nfoo,y\n' >"$TMP/text.csv"
expect_error "non-numeric cell" "text.csv':3:1: column 'a': \"foo\" is not a number" "$TMP/text.csv"
expect_error "missing target" "target column 'label' not found" --target label "$TMP/text.csv"
: >"$TMP/empty.csv"
expect_error "empty file" "empty.csv' is empty" "$TMP/empty.csv"
head -c 1000 "$TMP/img" >"$TMP/short"
expect_error "truncated IDX" "truncated" "$TMP/short" "$TMP/lab"
h='{"w":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}'
printf "\\x$(printf %02x ${#h})\\0\\0\\0\\0\\0\\0\\0%sx" "$h" >"$TMP/bad.safetensors"
expect_error "unknown dtype" "tensor 'w': unknown dtype 'Q8'" "$TMP/bad.safetensors"
expect_error "byte limit" "over the limit of 10" --max-bytes 10 "$FIX/cnn_bn.safetensors"
expect_error "missing file" "cannot open" "$TMP/nope.csv"
expect_error "--strict-missing" "iris.csv':4:2: missing value in column 'petal'" --strict-missing "$TMP/iris.csv"
"$FINETUNED" inspect >/dev/null 2>&1; [ $? -eq 2 ]; ok $? "no file is a usage error (exit 2)"
"$FINETUNED" inspect --help | grep -q "safetensors"; ok $? "--help describes it"
done_testing
