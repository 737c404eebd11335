#!/usr/bin/env bash
# queue_bench.sh - the queue under load through the HTTP API, with wrk (not a test: numbers are printed, never
# asserted). A daemon with one worker kept busy by a long first job, so every job after it stays queued:
#
#   bench/queue_bench.sh build/daemon/finetuned [seconds]
#
# 1. POST /v1/jobs from 1 and from 32 connections: jobs/s and latency percentiles (synchronous=FULL; target p99
#    under 50 ms at 32 clients).
# 2. GET /v1/jobs?state=queued&limit=100 with the queue that left (tens of thousands of jobs): the cost of a page
#    must not grow with the queue.
# Needs wrk (tools/setup.sh --dev), curl, jq.
set -u
FINETUNED=${1:?usage: queue_bench.sh FINETUNED [SECONDS]}
SECS=${2:-10}
TMP=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT

# one compute thread for the long job, and no OpenMP spinning: leave the other cores to the HTTP server
OMP_WAIT_POLICY=passive "$FINETUNED" serve --threads 1 --listen 127.0.0.1:0 --state-dir "$TMP/state" --log-level notice --workers 1 \
        --max-queued-jobs 1000000 --max-connections-per-ip 256 2>"$TMP/log" &
PID=$!
B=
for _ in $(seq 1 100); do
        B=$(sed -n 's/.*listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$TMP/log" | head -n1)
        [ -n "$B" ] && break
        sleep 0.05
done
[ -n "$B" ] || { echo "daemon did not start"; cat "$TMP/log"; exit 1; }
echo "daemon: $B, $(nproc) cores"

printf 'a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n' >"$TMP/data.csv"
ds=$(curl -s --data-binary @"$TMP/data.csv" "$B/v1/datasets" | jq -r .id)
mdl=$(curl -s -H 'Content-Type: application/json' \
        -d '{"preset": "mlp", "config": {"inputs": 2, "hidden": [4], "outputs": 2}}' "$B/v1/models" | jq -r .id)
body="{\"model\": \"$mdl\", \"training_file\": \"$ds\", \"task\": {\"target\": \"label\"}, \"hyperparameters\": {\"epochs\": 1}}"
cat >"$TMP/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
long=$(curl -s -H 'Content-Type: application/json' -d "${body/\"epochs\": 1/\"epochs\": 1000000}" "$B/v1/jobs" | jq -r .id)
for _ in $(seq 1 100); do
        [ "$(curl -s "$B/v1/jobs/$long" | jq -r .state)" = running ] && break
        sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$body" "$B/v1/jobs")" = 201 ] ||
        { echo "POST /v1/jobs does not answer 201"; exit 1; }

report() { # report LABEL WRK_OUTPUT_FILE
        local rps p50 p99 non2xx
        rps=$(sed -n 's/^Requests\/sec: *//p' "$2")
        p50=$(awk '$1 == "50%" { print $2 }' "$2")
        p99=$(awk '$1 == "99%" { print $2 }' "$2")
        non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *//p' "$2")
        printf '%-52s %10s req/s   p50 %8s   p99 %8s%s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:+   non-2xx $non2xx}"
}

list() { # list LABEL_SUFFIX
        local queued
        queued=$(sqlite3 "$TMP/state/finetuned.db" "SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
        wrk -t2 -c8 -d"${SECS}s" --latency "$B/v1/jobs?state=queued&limit=100" >"$TMP/list.txt"
        report "GET /v1/jobs?state=queued&limit=100 ($queued queued)" "$TMP/list.txt"
        wrk -t2 -c8 -d"${SECS}s" --latency "$B/v1/jobs?state=queued&limit=1" >"$TMP/one.txt"
        report "GET /v1/jobs?state=queued&limit=1 ($queued queued)" "$TMP/one.txt"
}

wrk -t1 -c1 -d"${SECS}s" --latency -s "$TMP/post.lua" "$B/v1/jobs" >"$TMP/post1.txt"
report "POST /v1/jobs, 1 connection" "$TMP/post1.txt"
list
wrk -t4 -c32 -d"${SECS}s" --latency -s "$TMP/post.lua" "$B/v1/jobs" >"$TMP/post32.txt"
report "POST /v1/jobs, 32 connections" "$TMP/post32.txt"
wrk -t4 -c32 -d"${SECS}s" --latency -s "$TMP/post.lua" "$B/v1/jobs" >"$TMP/post32.txt"
report "POST /v1/jobs, 32 connections, again" "$TMP/post32.txt"
list
