#!/usr/bin/env bash
# test_ops_config.sh - the configuration file on the real binary: the daemon
# runs with what the file says, flags and FINETUNED_* beat the file,
# $CONFIGURATION_DIRECTORY is searched, and `serve --check-config` prints the
# effective settings or rejects a bad file naming FILE:LINE:COL, exit 1;
# SIGHUP re-reads --token-file.
. "$(dirname "$0")/lib.sh"

state="$TMP/state"
cat >"$TMP/good.conf" <<CONF
# a test configuration
listen = 127.0.0.1:0
state-dir = $state
workers = 2
log-level = debug
CONF

"$FINETUNED" serve --config "$TMP/good.conf" --check-config >"$TMP/out" 2>"$TMP/err"; rc=$?
[ $rc -eq 0 ]; ok $? "--check-config on a good file -> exit 0"
grep -q "^# configuration file: $TMP/good.conf$" "$TMP/out"; ok $? "names the file"
grep -Eq '^workers = 2 +# line 4$' "$TMP/out"; ok $? "workers from line 4: $(grep '^workers' "$TMP/out")"
grep -Eq '^threads = 0 +# default$' "$TMP/out"; ok $? "threads from the defaults"
[ ! -e "$state" ]; ok $? "--check-config starts nothing and creates no state directory"

FINETUNED_WORKERS=3 "$FINETUNED" serve --config "$TMP/good.conf" --check-config >"$TMP/out" 2>&1
grep -Eq '^workers = 3 +# FINETUNED_WORKERS$' "$TMP/out"; ok $? "environment beats the file"
FINETUNED_WORKERS=3 "$FINETUNED" serve --workers 4 --config "$TMP/good.conf" --check-config >"$TMP/out" 2>&1
grep -Eq '^workers = 4 +# --workers$' "$TMP/out"; ok $? "a flag beats the environment and the file"

mkdir -p "$TMP/etc"
cp "$TMP/good.conf" "$TMP/etc/finetuned.conf"
CONFIGURATION_DIRECTORY="$TMP/etc" "$FINETUNED" serve --check-config >"$TMP/out" 2>&1
grep -q "^# configuration file: $TMP/etc/finetuned.conf$" "$TMP/out"; ok $? "\$CONFIGURATION_DIRECTORY/finetuned.conf is read"

# The daemon really runs with the file's settings.
"$FINETUNED" serve --config "$TMP/good.conf" 2>"$TMP/daemon.log" &
DAEMON_PID=$!
for i in $(seq 1 600); do grep -q 'listening on' "$TMP/daemon.log" && break; sleep 0.05; done
grep -Eq "listening on http://127.0.0.1:[0-9]+ \\(state $state, schema v[0-9]+, 2 workers[,)]" "$TMP/daemon.log"
ok $? "serve uses the file's listen, state-dir and workers: $(grep 'listening' "$TMP/daemon.log")"
grep -q "debug\|configuration file $TMP/good.conf" "$TMP/daemon.log"; ok $? "and logs which file it read"
stop_daemon; ok $? "stops"

# Bad files: exit 1, one line naming FILE:LINE:COL.
check_bad() { # check_bad WANT DESCRIPTION  (file from stdin)
        cat >"$TMP/bad.conf"
        "$FINETUNED" serve --config "$TMP/bad.conf" --check-config >"$TMP/out" 2>"$TMP/err"; local rc=$?
        [ $rc -eq 1 ] && grep -qF -- "$TMP/bad.conf:$1" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -eq 1 ]
        ok $? "$2 -> exit 1: $(cat "$TMP/err")"
}
check_bad "4:1: unknown option 'wokers'" "a misspelt option" < <(printf '# ok\nworkers = 2\n\nwokers = 3\n')
check_bad "2:11: invalid threads '-1'" "a negative number" < <(printf 'listen = 127.0.0.1:0\nthreads = -1\n')
check_bad "1:10: invalid listen address" "a port out of range" < <(printf 'listen = 127.0.0.1:80000\n')
check_bad "2:1: 'workers' set twice (first on line 1)" "an option given twice" < <(printf 'workers = 2\nworkers = 3\n')
check_bad "1:1: expected 'key = value'" "a line without '='" < <(printf 'log-level debug\n')
printf 'workers = 1\n' >"$TMP/bad.conf"; printf '\0' >>"$TMP/bad.conf"
"$FINETUNED" serve --config "$TMP/bad.conf" --check-config 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] && grep -q "bad.conf:2:1: NUL byte" "$TMP/err"; ok $? "binary data -> exit 1: $(cat "$TMP/err")"

# The same errors stop `serve` itself before anything starts.
printf 'workers = lots\n' >"$TMP/bad.conf"
"$FINETUNED" serve --config "$TMP/bad.conf" --state-dir "$TMP/never" 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] && grep -q "bad.conf:1:11:" "$TMP/err" && [ ! -e "$TMP/never" ]; ok $? "serve refuses a bad file before starting: $(cat "$TMP/err")"
"$FINETUNED" serve --config "$TMP/missing.conf" --check-config 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] && grep -q "missing.conf" "$TMP/err"; ok $? "a missing --config file -> exit 1: $(cat "$TMP/err")"
CONFIGURATION_DIRECTORY="$TMP/nothing" "$FINETUNED" serve --check-config >"$TMP/out" 2>&1
[ $? -eq 0 ] && grep -q '^# configuration file: (none)' "$TMP/out"; ok $? "no file in \$CONFIGURATION_DIRECTORY: defaults"

# A token file others can read is refused by --check-config.
echo "secret-token-$RANDOM$RANDOM" >"$TMP/token"; chmod 644 "$TMP/token"
"$FINETUNED" serve --config '' --token-file "$TMP/token" --check-config >/dev/null 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] && grep -q "readable by group or others" "$TMP/err"; ok $? "world-readable token file refused: $(cat "$TMP/err")"
chmod 600 "$TMP/token"
"$FINETUNED" serve --config '' --token-file "$TMP/token" --check-config >"$TMP/out" 2>&1; ok $? "a 0600 token file passes"
! grep -q secret-token "$TMP/out"; ok $? "the token itself is never printed"

# SIGHUP re-reads the token file; a bad new file keeps the old token.
newtok() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
t1=$(newtok); t2=$(newtok)
printf '%s\n' "$t1" >"$TMP/tok"; chmod 600 "$TMP/tok"
start_daemon "$TMP/state-auth" --config '' --token-file "$TMP/tok"; ok $? "daemon starts with a token file"
code() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$BASE/v1/version"; }
[ "$(code "$t1")" = 200 ] && [ "$(code "$t2")" = 401 ]; ok $? "the first token works, another does not"
printf '%s\n' "$t2" >"$TMP/tok"
kill -HUP "$DAEMON_PID"
for i in $(seq 1 50); do [ "$(code "$t2")" = 200 ] && break; sleep 0.05; done
[ "$(code "$t2")" = 200 ] && [ "$(code "$t1")" = 401 ]; ok $? "after SIGHUP the new token works and the old one is refused"
printf 'short\n' >"$TMP/tok"
kill -HUP "$DAEMON_PID"
for i in $(seq 1 50); do grep -q "keeping the old token" "$LOG" && break; sleep 0.05; done
grep -q "keeping the old token" "$LOG" && [ "$(code "$t2")" = 200 ]; ok $? "a bad token file on SIGHUP keeps the old token: $(grep -o 'keeping the old token.*' "$LOG" | head -n1)"
! grep -q "$t1\|$t2" "$LOG"; ok $? "no token ever reaches the log"
stop_daemon; ok $? "stops"

done_testing
