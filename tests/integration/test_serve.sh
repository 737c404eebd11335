#!/usr/bin/env bash
# test_serve.sh - the daemon starts, answers /healthz and /v1/version, maps
# unknown routes to 404/405 in the error envelope, stops on SIGTERM within 1 s,
# and refuses bad startup input with one clear line and exit status 1 (2 for
# usage errors) without touching an existing database.
. "$(dirname "$0")/lib.sh"

state="$TMP/state"
start_daemon "$state"; ok $? "daemon starts on an ephemeral loopback port"
[ -f "$state/finetuned.db" ]; ok $? "database created in the state directory"

http GET /healthz
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq -r .status)" = ok ]; ok $? "GET /healthz -> 200 {status: ok}"
ct=$(curl -s -o /dev/null -w '%{content_type}' "$BASE/healthz")
[ "$ct" = application/json ]; ok $? "content type is application/json ($ct)"

http GET /v1/version
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e '.version and .onednn.version and .onednn.isa and (.cuda.compiled|type=="boolean")' >/dev/null
ok $? "GET /v1/version reports version, oneDNN version and ISA, CUDA: $BODY"

http GET /nope
[ "$STATUS" = 404 ] && [ "$(echo "$BODY" | jq -r .error.code)" = not_found ] && echo "$BODY" | jq -e '.error | has("message") and has("param")' >/dev/null
ok $? "unknown route -> 404 in the error envelope"

allow=$(curl -s -o /dev/null -D - -X DELETE "$BASE/healthz" | tr -d '\r' | sed -n 's/^Allow: //Ip')
status=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$BASE/healthz")
[ "$status" = 405 ] && [ "$allow" = GET ]; ok $? "wrong method -> 405 with Allow: GET"

# A port in use: a second daemon on the same address fails with one line.
port=${BASE##*:}
"$FINETUNED" serve --listen "127.0.0.1:$port" --state-dir "$TMP/state2" 2>"$TMP/inuse.log"; rc=$?
[ $rc -eq 1 ] && grep -q "127.0.0.1:$port" "$TMP/inuse.log" && grep -qi "in use" "$TMP/inuse.log"
ok $? "port in use -> exit 1 naming the address: $(cat "$TMP/inuse.log")"

stop_daemon; rc=$?
[ $rc -eq 0 ]; ok $? "SIGTERM -> exit status 0"
[ "$(echo "$STOP_SECONDS < 1.0" | bc)" = 1 ]; ok $? "stopped within 1 s (${STOP_SECONDS}s)"

# The same state directory opens again (migrations are re-runnable).
start_daemon "$state"; ok $? "daemon restarts on an existing database"
kill -INT "$DAEMON_PID"; wait "$DAEMON_PID"; ok $? "SIGINT -> exit status 0"
DAEMON_PID=

# Bad startup input.
expect_fail() { # expect_fail WANT_RC PATTERN DESCRIPTION -- ARGS...
        local want=$1 pattern=$2 desc=$3; shift 4
        "$FINETUNED" "$@" >"$TMP/out" 2>"$TMP/err"; local rc=$?
        [ $rc -eq "$want" ] && grep -q -- "$pattern" "$TMP/err"
        ok $? "$desc -> exit $want ($(head -n1 "$TMP/err"))"
}
touch "$TMP/afile"
expect_fail 1 "$TMP/afile" "state path is a file" -- serve --listen 127.0.0.1:0 --state-dir "$TMP/afile"
expect_fail 1 "/proc/1/finetuned" "state directory cannot be created" -- serve --listen 127.0.0.1:0 --state-dir /proc/1/finetuned
expect_fail 1 "not writable" "state directory not writable" -- serve --listen 127.0.0.1:0 --state-dir /sys/kernel
expect_fail 1 "300.1.1.1" "unresolvable --listen" -- serve --listen 300.1.1.1:80 --state-dir "$TMP/s3"
expect_fail 1 "99999" "--listen port out of range" -- serve --listen 127.0.0.1:99999 --state-dir "$TMP/s3"
expect_fail 2 "--frobnicate" "unknown flag" -- serve --frobnicate
expect_fail 2 "unknown command" "unknown command" -- frobnicate
FINETUNED_WORKERS=zero "$FINETUNED" serve --state-dir "$TMP/s3" 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] && grep -q FINETUNED_WORKERS "$TMP/err"; ok $? "FINETUNED_WORKERS=zero -> exit 1 naming the variable"

mkdir -p "$TMP/corrupt"
head -c 8192 /dev/urandom >"$TMP/corrupt/finetuned.db"
sum=$(sha256sum <"$TMP/corrupt/finetuned.db")
expect_fail 1 "finetuned.db" "corrupt database" -- serve --listen 127.0.0.1:0 --state-dir "$TMP/corrupt"
[ "$(sha256sum <"$TMP/corrupt/finetuned.db")" = "$sum" ]; ok $? "corrupt database file left untouched"

"$FINETUNED" --version | grep -q '^finetuned [0-9]'; ok $? "--version"
"$FINETUNED" serve --help | grep -q -- '--state-dir'; ok $? "serve --help lists the flags"
"$FINETUNED" --help | grep -q serve; ok $? "--help lists the commands"

done_testing
