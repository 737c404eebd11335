#!/usr/bin/env bash
# test_ops_notify.sh - the daemon under a fake service manager: a datagram
# listener (socat) at $NOTIFY_SOCKET receives READY=1 only once the database
# is open and the socket answers, never when startup fails; WATCHDOG=1 at the
# WATCHDOG_USEC cadence and not for another process's WATCHDOG_PID;
# RELOADING=1 then READY=1 on SIGHUP (which also reopens --log-file); and
# STOPPING=1 as the last message on SIGTERM.
. "$(dirname "$0")/lib.sh"

SOCAT_PID=
trap '[ -n "$SOCAT_PID" ] && kill "$SOCAT_PID" 2>/dev/null; cleanup' EXIT

# listen NAME: NOTIFY_SOCKET becomes a fresh socket $TMP/NAME.sock whose datagrams append to $TMP/NAME.log.
listen() {
        [ -n "$SOCAT_PID" ] && kill "$SOCAT_PID" 2>/dev/null && wait "$SOCAT_PID" 2>/dev/null
        SOCK="$TMP/$1.sock" NLOG="$TMP/$1.log"
        export NOTIFY_SOCKET="$SOCK"
        : >"$NLOG"
        socat -u "UNIX-RECV:$SOCK,unlink-early" "OPEN:$NLOG,append" &
        SOCAT_PID=$!
        local i
        for i in $(seq 1 100); do [ -S "$SOCK" ] && return 0; sleep 0.02; done
        return 1
}
wait_for() { # wait_for PATTERN [SECONDS]
        local i
        for i in $(seq 1 $((${2:-5} * 20))); do grep -q -- "$1" "$NLOG" && return 0; sleep 0.05; done
        return 1
}
# synced: a marker datagram of our own, once in $NLOG, proves every datagram sent before it is there too (one
# socket, one reader: in order), however late a loaded machine runs socat.
MARKS=0
synced() {
        MARKS=$((MARKS + 1))
        printf 'MARK=%d\n' "$MARKS" | socat -u - "UNIX-SENDTO:$SOCK" && wait_for "^MARK=$MARKS\$" 30
}
pings() { grep -c '^WATCHDOG=1$' "$NLOG"; }
# wait_pings N: until N more WATCHDOG=1 than now have arrived (at most 30 s)
wait_pings() {
        local want=$(($(pings) + $1)) i
        for i in $(seq 1 600); do [ "$(pings)" -ge "$want" ] && return 0; sleep 0.05; done
        return 1
}

# 1. Start-up: READY=1 names the address, which answers at once.
listen main; ok $? "a datagram listener is up at $SOCK"
state="$TMP/state"
export WATCHDOG_USEC=300000
"$FINETUNED" serve --listen 127.0.0.1:0 --state-dir "$state" --log-file "$TMP/daemon.log" &
DAEMON_PID=$!
wait_for '^READY=1$'; ok $? "READY=1 received"
base=$(sed -n 's/^STATUS=listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$NLOG" | head -n1)
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")
[ "$code" = 200 ]; ok $? "at READY=1 the announced address answers /healthz ($base -> $code)"
[ -f "$state/finetuned.db" ] && [ "$(sqlite3 "$state/finetuned.db" 'PRAGMA user_version')" -ge 1 ]
ok $? "at READY=1 the database exists and is migrated"
[ "$(head -n1 "$NLOG")" = READY=1 ]; ok $? "READY=1 is the first message"

# 2. The watchdog: 300 ms interval -> a ping every 100 ms while healthy (how many per second is the
# scheduler's business on a loaded machine: the test waits for them to come, it does not count a window).
t0=$(date +%s.%N)
wait_pings 4; rc=$?
ok $rc "WATCHDOG=1 keeps coming while the daemon makes progress (4 more in $(echo "$(date +%s.%N) - $t0" | bc | cut -c1-4) s)"
grep -Eq "^STATUS=listening on http://.*; (0 queued, )?0 running$" "$NLOG"; ok $? "STATUS= reports the running jobs: $(grep '^STATUS=' "$NLOG" | tail -n1)"

# A stopped process stops pinging (the pings come from its own main loop).
# Everything it sent before SIGSTOP is in the log once our marker is; then 0.6 s (6 intervals) without one.
kill -STOP "$DAEMON_PID"; synced
n0=$(pings); sleep 0.6; synced; n1=$(pings)
kill -CONT "$DAEMON_PID"
[ "$n1" -eq "$n0" ]; ok $? "no WATCHDOG=1 while the process is stopped ($n0 before, $n1 after 0.6 s)"
wait_pings 1; ok $? "WATCHDOG=1 resumes after SIGCONT"

# 3. SIGHUP: RELOADING=1, the log file is reopened, READY=1 again.
mv "$TMP/daemon.log" "$TMP/daemon.log.1"
: >"$NLOG"
kill -HUP "$DAEMON_PID"
wait_for '^READY=1$'; ok $? "READY=1 after SIGHUP"
[ "$(grep -m1 -n '^RELOADING=1$' "$NLOG" | cut -d: -f1)" -lt "$(grep -m1 -n '^READY=1$' "$NLOG" | cut -d: -f1)" ]
ok $? "RELOADING=1 comes before READY=1"
for i in $(seq 1 40); do [ -s "$TMP/daemon.log" ] && break; sleep 0.05; done
grep -q 'log file reopened' "$TMP/daemon.log" && grep -q 'listening on' "$TMP/daemon.log.1"
ok $? "SIGHUP reopened --log-file: new lines go to a new file, the rotated one keeps the old"

# 4. SIGTERM: STOPPING=1 is the last thing said.
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; rc=$?; DAEMON_PID=
[ $rc -eq 0 ]; ok $? "SIGTERM -> exit 0"
synced
last_kv=$(grep -v '^STATUS=\|^MARK=' "$NLOG" | tail -n1)
[ "$last_kv" = STOPPING=1 ]; ok $? "STOPPING=1 is the last notification ($last_kv)"

# 5. A failed start never says READY=1.
listen fail
mkdir -p "$TMP/corrupt" && head -c 8192 /dev/urandom >"$TMP/corrupt/finetuned.db"
"$FINETUNED" serve --listen 127.0.0.1:0 --state-dir "$TMP/corrupt" 2>"$TMP/err"; rc=$?
synced
[ $rc -eq 1 ] && ! grep -q READY=1 "$NLOG"; ok $? "a corrupt database: exit 1 and no READY=1 ($(head -c 200 "$NLOG" | tr "\n" " "))"
"$FINETUNED" serve --listen 300.0.0.1:80 --state-dir "$TMP/s2" 2>"$TMP/err"; rc=$?
synced
[ $rc -eq 1 ] && ! grep -q READY=1 "$NLOG"; ok $? "an unusable address: exit 1 and no READY=1"

# 6. WATCHDOG_PID naming another process: no pings for us.
listen other
WATCHDOG_PID=1 "$FINETUNED" serve --listen 127.0.0.1:0 --state-dir "$state" 2>/dev/null &
DAEMON_PID=$!
wait_for '^READY=1$'; ok $? "READY=1 with WATCHDOG_PID=1"
sleep 0.5; synced # 5 intervals in which it would have pinged
! grep -q '^WATCHDOG=1$' "$NLOG"; ok $? "no WATCHDOG=1 when WATCHDOG_PID is another process"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; DAEMON_PID=

# 7. No watchdog asked for: no pings, and no NOTIFY_SOCKET at all still runs.
listen nowd
unset WATCHDOG_USEC
"$FINETUNED" serve --listen 127.0.0.1:0 --state-dir "$state" 2>/dev/null &
DAEMON_PID=$!
wait_for '^READY=1$'; sleep 0.3; synced
! grep -q '^WATCHDOG=1$' "$NLOG"; ok $? "no WATCHDOG_USEC: READY=1 but no pings"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; DAEMON_PID=
unset NOTIFY_SOCKET
start_daemon "$state"; ok $? "without NOTIFY_SOCKET the daemon starts as before"
stop_daemon; ok $? "and stops with status 0"

done_testing
