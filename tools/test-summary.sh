#!/usr/bin/env bash
# test-summary.sh BUILD_DIR [LABEL] - print "LABEL: N passed, N failed" from
# meson's testlog.json (the closing line CI reads), exit 1 if anything failed.
set -eu
log="$1/meson-logs/testlog.json"
label=${2:-tests}
[ -f "$log" ] || { echo "$label: 0 passed, 1 failed"; exit 1; }
passed=$(jq -s '[.[] | select(.result == "OK" or .result == "EXPECTEDFAIL")] | length' "$log")
failed=$(jq -s '[.[] | select(.result != "OK" and .result != "EXPECTEDFAIL" and .result != "SKIP")] | length' "$log")
skipped=$(jq -s '[.[] | select(.result == "SKIP")] | length' "$log")
echo "$label: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
