#!/usr/bin/env bash
# test_device.sh - device selection as a user sees it, on whatever build and machine this is (issue 15):
# /v1/version's "cuda" object and /metrics agree with each other and with the build (no CUDA: "cuda is not
# available in this build"; CUDA without a driver or device: compiled, no device, the reason); a job with
# device "cuda" fails naming why (CLI: exit 1 and the message; daemon: failed with code device_unavailable,
# param device); device "auto" trains and its runtime event says device_used and device_reason; --gpus is
# validated. On a machine whose GPU the CUDA backend can use, the same assertions hold with device true.
# Not for: GPU numerics (tools/device-check.sh).
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
J=(-H 'Content-Type: application/json')

start_daemon "$TMP/state"; ok $? "daemon starts"
http GET /v1/version
cuda=$(echo "$BODY" | jq -c .cuda)
diag "cuda: $cuda"
echo "$cuda" | jq -e '(.compiled|type)=="boolean" and (.device|type)=="boolean" and (.devices|type)=="number"
        and (.name|type)=="string" and (.memory_bytes|type)=="number" and (.driver_version|type)=="number"
        and (.reason|type)=="string"' >/dev/null
ok $? "/v1/version cuda has compiled, device, devices, name, memory_bytes, driver_version, reason"
compiled=$(echo "$cuda" | jq -r .compiled)
device=$(echo "$cuda" | jq -r .device)
reason=$(echo "$cuda" | jq -r .reason)
if [ "$compiled" = false ]; then
        echo "$cuda" | jq -e '.device == false and .devices == 0 and .reason == "cuda is not available in this build"' >/dev/null
        ok $? "a build without CUDA: no device, reason 'cuda is not available in this build'"
elif [ "$device" = false ]; then
        echo "$cuda" | jq -e '.devices == 0 and .name == "" and .memory_bytes == 0' >/dev/null &&
                echo "$reason" | grep -Eq '^(no NVIDIA driver: |no CUDA device$|the NVIDIA driver)'
        ok $? "a CUDA build without a GPU: compiled, no device, the reason ($reason)"
else
        echo "$cuda" | jq -e '.devices >= 1 and (.name | length) > 0 and .memory_bytes > 0 and .reason == ""' >/dev/null
        ok $? "a CUDA build with a GPU: its name and memory ($(echo "$cuda" | jq -r .name))"
fi
metrics=$(curl -s "$BASE/metrics")
n=$(echo "$metrics" | sed -n 's/^finetuned_cuda_devices \([0-9]*\)$/\1/p')
[ "$n" = "$(echo "$cuda" | jq .devices)" ] && echo "$metrics" | grep -q "^finetuned_build_info{.*cuda=\"$([ "$compiled" = true ] && echo yes || echo no)\"} 1"
ok $? "/metrics: finetuned_cuda_devices $n as /v1/version, build_info cuda label"

# The daemon: device cuda fails (today on every machine: no build, no driver, no device, or a backend that does
# not train yet), device auto trains on the CPU and says why.
awk 'BEGIN { print "a,b,label"; for (i = 0; i < 60; i++) printf "%.3f,%.3f,%d\n", i / 60, (i % 7) / 7, i % 2 }' >"$TMP/rows.csv"
http POST '/v1/datasets?name=rows' --data-binary @"$TMP/rows.csv"; ds=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 2, "hidden": [8], "outputs": 2}}'
mdl=$(echo "$BODY" | jq -r .id)
job_spec() { echo "{\"model\": \"$mdl\", \"training_file\": \"$ds\", \"device\": \"$1\",
        \"task\": {\"type\": \"classification\", \"target\": \"label\"},
        \"hyperparameters\": {\"epochs\": 1, \"batch_size\": 16}, \"seed\": 1}"; }
wait_done() { # wait_done JOB -> BODY of the finished job
        for i in $(seq 1 600); do
                http GET "/v1/jobs/$1"
                case $(echo "$BODY" | jq -r .state) in succeeded | failed | cancelled) return 0 ;; esac
                sleep 0.1
        done
        return 1
}
http POST /v1/jobs "${J[@]}" -d "$(job_spec cuda)"; job=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ] && wait_done "$job"
echo "$BODY" | jq -e '.state == "failed" and .error.code == "device_unavailable" and .error.param == "device"
        and (.error.message | startswith("'"'"'device'"'"' '"'"'cuda'"'"': "))' >/dev/null
ok $? "device cuda without a usable GPU: failed, device_unavailable, param device: $(echo "$BODY" | jq -r .error.message)"
if [ "$device" = false ]; then
        [ "$(echo "$BODY" | jq -r .error.message)" = "'device' 'cuda': $reason" ]
        ok $? "the message names the reason /v1/version gives"
fi

http POST /v1/jobs "${J[@]}" -d "$(job_spec auto)"; job=$(echo "$BODY" | jq -r .id)
wait_done "$job" && [ "$(echo "$BODY" | jq -r .state)" = succeeded ]; ok $? "device auto: succeeded"
http GET "/v1/jobs/$job/events?limit=1000"
rt=$(echo "$BODY" | jq -c '[.data[] | select(.type == "runtime")][0].data')
diag "runtime event: $rt"
echo "$rt" | jq -e '.device_used == "cpu" and (.device_reason | length) > 0' >/dev/null
ok $? "device auto: the runtime event says device_used cpu and why"
if [ "$device" = false ]; then
        [ "$(echo "$rt" | jq -r .device_reason)" = "$reason" ]; ok $? "device_reason is the reason /v1/version gives"
fi
http POST /v1/jobs "${J[@]}" -d "$(job_spec cpu)"; job=$(echo "$BODY" | jq -r .id)
wait_done "$job" && http GET "/v1/jobs/$job/events?limit=1000" &&
        echo "$BODY" | jq -e '[.data[] | select(.type == "runtime")][0].data
                | .device_used == "cpu" and .device_reason == "'"'"'device'"'"' is '"'"'cpu'"'"'"' >/dev/null
ok $? "device cpu: device_used cpu, reason 'device' is 'cpu'"
stop_daemon

# The CLI: device cuda exits 1 before reading data, naming the reason; auto trains.
cp "$SRC/examples/tabular/wine.csv" "$TMP/"
jq '.device = "cuda" | .hyperparameters.epochs = 1' "$SRC/examples/tabular/job.json" >"$TMP/cuda.json"
"$FINETUNED" train "$TMP/cuda.json" --out "$TMP/out-cuda" --threads 1 >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] && grep -q "finetuned train: '.*cuda.json': 'device' 'cuda': " "$TMP/err"
ok $? "train with device cuda: exit $rc, $(cat "$TMP/err")"
if [ "$compiled" = false ]; then
        grep -q "cuda is not available in this build" "$TMP/err"; ok $? "  names 'cuda is not available in this build'"
fi
jq '.device = "auto" | .hyperparameters.epochs = 1' "$SRC/examples/tabular/job.json" >"$TMP/auto.json"
"$FINETUNED" train "$TMP/auto.json" --out "$TMP/out-auto" --threads 1 >"$TMP/events.ndjson" 2>"$TMP/err"; rc=$?
[ $rc -eq 0 ] && jq -e 'select(.type == "runtime") | .device_used == "cpu"' "$TMP/events.ndjson" | grep -q true
ok $? "train with device auto: exit $rc, runtime event device_used cpu"

# --gpus: parsed and validated
"$FINETUNED" serve --gpus 0,1 --check-config --state-dir "$TMP/s2" >"$TMP/cfg" 2>&1
grep -Eq '^gpus *= *0,1' "$TMP/cfg"; ok $? "--gpus 0,1 --check-config: $(grep gpus "$TMP/cfg")"
for bad in 0,0 x 64 -1 1,,2 ' 1'; do
        "$FINETUNED" serve --gpus "$bad" --check-config --state-dir "$TMP/s2" >/dev/null 2>"$TMP/cfg"; rc=$?
        [ $rc -ne 0 ] && grep -q "invalid gpus" "$TMP/cfg"; ok $? "--gpus '$bad' refused (exit $rc): $(cat "$TMP/cfg")"
done
FINETUNED_GPUS=none "$FINETUNED" serve --check-config --state-dir "$TMP/s2" >"$TMP/cfg" 2>&1
grep -Eq '^gpus *= *none' "$TMP/cfg"; ok $? "FINETUNED_GPUS=none: $(grep gpus "$TMP/cfg")"
done_testing
