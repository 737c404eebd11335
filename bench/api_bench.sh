#!/usr/bin/env bash
# api_bench.sh - load tests of the HTTP API with wrk (not a test: numbers are
# printed, never asserted). Run by hand on an otherwise idle machine:
#
#   bench/api_bench.sh build/daemon/finetuned [seconds]
#
# 1. GET /v1/jobs/{id} on an idle daemon: requests/s and latency percentiles
#    (target: >= 10,000 requests/s).
# 2. The same while a training job keeps every core busy (target: p99 <= 50 ms).
# 3. 100 concurrent SSE clients on one job: each must receive every event.
# Needs wrk (tools/setup.sh --dev), curl, jq.
set -u
FINETUNED=${1:?usage: api_bench.sh FINETUNED [SECONDS]}
SECS=${2:-10}
TMP=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT
J=(-H 'Content-Type: application/json')

"$FINETUNED" serve --listen 127.0.0.1:0 --state-dir "$TMP/state" --log-level notice --max-queued-jobs 1000 --max-connections-per-ip 256 \
        2>"$TMP/log" &
PID=$!
for _ in $(seq 1 100); do
        B=$(sed -n 's/.*listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$TMP/log" | head -n1)
        [ -n "$B" ] && break
        sleep 0.05
done
[ -n "$B" ] || { echo "daemon did not start"; cat "$TMP/log"; exit 1; }
echo "daemon: $B, $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"

awk 'BEGIN { print "a,b,c,d,label"; s = 3;
        for (i = 0; i < 20000; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, i % 7 / 7, (v > 0.5) } }' >"$TMP/data.csv"
ds=$(curl -s --data-binary @"$TMP/data.csv" "$B/v1/datasets" | jq -r .id)
mdl=$(curl -s "${J[@]}" -d '{"preset": "mlp", "config": {"inputs": 4, "hidden": [512, 512], "outputs": 2}}' "$B/v1/models" | jq -r .id)
spec() { echo "{\"model\": \"$mdl\", \"training_file\": \"$ds\", \"task\": {\"target\": \"label\"},
                \"hyperparameters\": {\"epochs\": $1, \"batch_size\": 32}}"; }
job=$(curl -s "${J[@]}" -d "$(spec 1)" "$B/v1/jobs" | jq -r .id)
while [ "$(curl -s "$B/v1/jobs/$job" | jq -r .state)" != succeeded ]; do sleep 0.2; done

report() { # report LABEL WRK_OUTPUT_FILE
        local rps p50 p99
        rps=$(sed -n 's/^Requests\/sec: *//p' "$2")
        p50=$(awk '$1 == "50%" { print $2 }' "$2")
        p99=$(awk '$1 == "99%" { print $2 }' "$2")
        printf '%-44s %10s req/s   p50 %8s   p99 %8s\n' "$1" "$rps" "$p50" "$p99"
}

wrk -t2 -c32 -d"${SECS}s" --latency "$B/v1/jobs/$job" >"$TMP/idle.txt"
report "GET /v1/jobs/{id}, idle daemon" "$TMP/idle.txt"

busy=$(curl -s "${J[@]}" -d "$(spec 1000)" "$B/v1/jobs" | jq -r .id)
while [ "$(curl -s "$B/v1/jobs/$busy" | jq -r .state)" != running ]; do sleep 0.1; done
sleep 1
wrk -t2 -c32 -d"${SECS}s" --latency "$B/v1/jobs/$job" >"$TMP/busy.txt"
report "GET /v1/jobs/{id}, training on every core" "$TMP/busy.txt"
wrk -t1 -c8 -R 200 -d"${SECS}s" --latency "$B/v1/jobs/$job" >"$TMP/busy2.txt" 2>/dev/null ||
        wrk -t1 -c4 -d"${SECS}s" --latency "$B/v1/jobs/$job" >"$TMP/busy2.txt"
report "  (4 connections)" "$TMP/busy2.txt"
curl -s -X POST "$B/v1/jobs/$busy/cancel" >/dev/null
while [ "$(curl -s "$B/v1/jobs/$busy" | jq -r .state)" != cancelled ]; do sleep 0.1; done

# 100 SSE clients on one job
sse=$(curl -s "${J[@]}" -d "$(spec 5)" "$B/v1/jobs" | jq -r .id)
for i in $(seq 1 100); do
        timeout 300 curl -s -N "$B/v1/jobs/$sse/events?stream=true" >"$TMP/sse.$i" &
done
wait_for() { while [ "$(curl -s "$B/v1/jobs/$1" | jq -r .state)" != succeeded ]; do sleep 0.2; done; }
wait_for "$sse"
sleep 1
n=$(curl -s "$B/v1/jobs/$sse/events?limit=1000" | jq '.data | length')
want=$(seq 1 "$n" | tr '\n' ' ')
complete=0
for i in $(seq 1 100); do
        [ "$(sed -n 's/^id: //p' "$TMP/sse.$i" | tr '\n' ' ')" = "$want" ] && complete=$((complete + 1))
done
echo "100 SSE clients on one job: $complete received all $n events in order"
