# lib.sh - shared helpers for the integration tests: TAP output, starting the
# real daemon on an ephemeral loopback port with a temporary state directory.
# Source it; FINETUNED must name the binary (meson passes it as $1).

set -u
FINETUNED=${FINETUNED:-$1}
TAP_N=0
TAP_FAILED=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/finetuned-test.XXXXXX")
DAEMON_PID=
cleanup() {
        [ -n "$DAEMON_PID" ] && kill -9 "$DAEMON_PID" 2>/dev/null
        rm -rf "$TMP"
}
trap cleanup EXIT

ok() { # ok COND_EXIT_STATUS DESCRIPTION
        TAP_N=$((TAP_N + 1))
        if [ "$1" -eq 0 ]; then echo "ok $TAP_N - $2"; else echo "not ok $TAP_N - $2"; TAP_FAILED=$((TAP_FAILED + 1)); fi
}
diag() { echo "# $*" | sed '2,$s/^/# /'; }
done_testing() { echo "1..$TAP_N"; [ "$TAP_FAILED" -eq 0 ]; }

# start_daemon STATE_DIR [extra flags...]: starts finetuned serve on
# 127.0.0.1:0, waits until it logs its address, sets DAEMON_PID and BASE.
# Under tests/pg-run.sh (FT_TEST_PG_HOST set) the daemon gets --store on a PostgreSQL database of the state
# directory's own (created on first use, so a restart on the same directory finds its data).
store_flags() { # store_flags STATE_DIR: sets STORE_FLAGS
        STORE_FLAGS=()
        [ -n "${FT_TEST_PG_HOST:-}" ] || return 0
        local db
        db=${FT_TEST_PG_DB:-ft_$(basename "$1" | tr -c 'A-Za-z0-9_\n' _)} # FT_TEST_PG_DB: one database for several
        createdb -h "$FT_TEST_PG_HOST" "$db" 2>/dev/null || true
        STORE_FLAGS=(--store "postgresql:///$db?host=$FT_TEST_PG_HOST")
}
start_daemon() {
        local state=$1; shift
        LOG="$TMP/daemon.$RANDOM.log"
        store_flags "$state"
        "$FINETUNED" serve --listen 127.0.0.1:0 --state-dir "$state" "${STORE_FLAGS[@]}" "$@" 2>"$LOG" &
        DAEMON_PID=$!
        local i
        for i in $(seq 1 600); do
                BASE=$(sed -n 's/.*listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$LOG" | head -n1)
                [ -n "$BASE" ] && return 0
                kill -0 "$DAEMON_PID" 2>/dev/null || { diag "daemon exited: $(cat "$LOG")"; DAEMON_PID=; return 1; }
                sleep 0.05
        done
        diag "daemon did not start: $(cat "$LOG")"
        return 1
}

# stop_daemon: SIGTERM, wait; returns the exit status and sets STOP_SECONDS.
stop_daemon() {
        local t0 t1 rc
        t0=$(date +%s.%N)
        kill -TERM "$DAEMON_PID"
        wait "$DAEMON_PID"; rc=$?
        t1=$(date +%s.%N)
        STOP_SECONDS=$(echo "$t1 - $t0" | bc)
        DAEMON_PID=
        return $rc
}

# http METHOD PATH [curl args...]: sets STATUS and BODY.
http() {
        local method=$1 path=$2; shift 2
        BODY=$(curl -s -S -X "$method" -o - -w '\n%{http_code}' "$BASE$path" "$@")
        STATUS=${BODY##*$'\n'}
        BODY=${BODY%$'\n'*}
}
