#!/usr/bin/env bash
# test_ops_metrics.sh - GET /metrics on the real daemon: Prometheus text
# format 0.0.4, accepted by Prometheus's own parser and linter (`promtool
# check metrics`), with request counts by method, route pattern and status,
# latency histograms that add up, and process memory.
. "$(dirname "$0")/lib.sh"

state="$TMP/state"
start_daemon "$state"; ok $? "daemon starts"

for i in 1 2 3; do curl -s -o /dev/null "$BASE/healthz"; done
curl -s -o /dev/null "$BASE/v1/version"
curl -s -o /dev/null "$BASE/nope"
curl -s -o /dev/null -X DELETE "$BASE/healthz"

ct=$(curl -s -o "$TMP/m1" -w '%{http_code} %{content_type}' "$BASE/metrics")
[ "$ct" = "200 text/plain; version=0.0.4; charset=utf-8" ]; ok $? "GET /metrics -> 200 text/plain; version=0.0.4 ($ct)"
promtool check metrics <"$TMP/m1" >"$TMP/lint" 2>&1; rc=$?
ok $rc "promtool check metrics: no parse or lint problems"
[ $rc -eq 0 ] || diag "$(cat "$TMP/lint")"

has() { grep -qxF -- "$1" "$TMP/m1"; }
has 'finetuned_http_requests_total{method="GET",route="/healthz",code="200"} 3'; ok $? "3 x GET /healthz 200 counted by route"
has 'finetuned_http_requests_total{method="GET",route="/v1/version",code="200"} 1'; ok $? "GET /v1/version counted"
has 'finetuned_http_requests_total{method="GET",route="unmatched",code="404"} 1'; ok $? "an unknown path is route=\"unmatched\" 404 (no path in labels)"
has 'finetuned_http_requests_total{method="DELETE",route="unmatched",code="405"} 1'; ok $? "405 counted"
has 'finetuned_http_request_duration_seconds_count{method="GET",route="/healthz"} 3'; ok $? "histogram count per route"
has 'finetuned_http_request_duration_seconds_bucket{method="GET",route="/healthz",le="+Inf"} 3'; ok $? "histogram +Inf bucket"
sum=$(sed -n 's/^finetuned_http_request_duration_seconds_sum{method="GET",route="\/healthz"} //p' "$TMP/m1")
[ -n "$sum" ] && [ "$(echo "$sum > 0 && $sum < 3" | bc -l)" = 1 ]; ok $? "latency sum is positive and sane ($sum s)"
# Buckets never decrease.
awk -F' ' '/^finetuned_http_request_duration_seconds_bucket\{method="GET",route="\/healthz"/ { if ($2 < prev) bad = 1; prev = $2 } END { exit bad }' "$TMP/m1"
ok $? "buckets are cumulative"

rss=$(sed -n 's/^process_resident_memory_bytes //p' "$TMP/m1")
vm_rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON_PID/status")
[ -n "$rss" ] && [ "$rss" -gt 1000000 ] && [ "$(echo "r = $rss / 1024 / $vm_rss_kb; r > 0.5 && r < 2" | bc -l)" = 1 ]
ok $? "process_resident_memory_bytes matches /proc VmRSS ($rss B vs $vm_rss_kb kB)"
start=$(sed -n 's/^process_start_time_seconds //p' "$TMP/m1")
now=$(date +%s)
[ -n "$start" ] && [ "$(echo "$start <= $now + 1 && $start > $now - 600" | bc -l)" = 1 ]; ok $? "process start time is recent ($start)"
has 'finetuned_jobs_running 0'; ok $? "running jobs reported"
grep -q '^finetuned_build_info{version="[0-9.]*",' "$TMP/m1"; ok $? "build info"

# The scrape itself is counted by the next scrape.
curl -s -o "$TMP/m2" "$BASE/metrics"
has2() { grep -qxF -- "$1" "$TMP/m2"; }
has2 'finetuned_http_requests_total{method="GET",route="/metrics",code="200"} 1'; ok $? "the previous scrape is counted"
promtool check metrics <"$TMP/m2" >/dev/null 2>&1; ok $? "second scrape also passes promtool"

# HEAD works (libmicrohttpd drops the body) and is its own method label.
code=$(curl -s -o /dev/null -I -w '%{http_code}' "$BASE/metrics"); [ "$code" = 200 ]; ok $? "HEAD /metrics -> 200"

stop_daemon; ok $? "daemon stops"
done_testing
