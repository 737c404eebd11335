#!/usr/bin/env bash
# test_ops_state_lock.sh - one daemon per state directory: a second `finetuned
# serve` on a state directory another daemon holds (running or frozen with
# SIGSTOP) exits 1 naming the holder's pid and touches nothing; once the holder
# is gone (even by kill -9) the next daemon starts.
. "$(dirname "$0")/lib.sh"

state="$TMP/state"
start_daemon "$state"; ok $? "first daemon starts"
first=$DAEMON_PID
first_base=$BASE

"$FINETUNED" serve --listen 127.0.0.1:0 --state-dir "$state" >"$TMP/second.out" 2>"$TMP/second.log"
rc=$?
[ "$rc" -eq 1 ]; ok $? "a second daemon on the same state directory exits 1 (got $rc)"
grep -q "in use by another finetuned (pid $first)" "$TMP/second.log"
ok $? "its message names the other daemon's pid: $(cat "$TMP/second.log")"
! grep -q "listening on" "$TMP/second.log"; ok $? "it never listened"
curl -sf "$first_base/healthz" >/dev/null; ok $? "the first daemon still answers"

kill -STOP "$first"
"$FINETUNED" serve --listen 127.0.0.1:0 --state-dir "$state" 2>"$TMP/third.log"
rc=$?
kill -CONT "$first"
[ "$rc" -eq 1 ] && grep -q "pid $first" "$TMP/third.log"
ok $? "a frozen (SIGSTOP) daemon still holds the directory: refused with rc $rc"

kill -9 "$first"; wait "$first" 2>/dev/null; DAEMON_PID=
start_daemon "$state"; ok $? "after kill -9 of the holder the next daemon starts (the lock died with it)"
grep -q "^$DAEMON_PID$" "$state/finetuned.lock"; ok $? "the lock file names the new holder"
stop_daemon; ok $? "it stops cleanly"

done_testing
