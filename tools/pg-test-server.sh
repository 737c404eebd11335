#!/bin/bash
# pg-test-server.sh - a throwaway PostgreSQL server for the tests: initdb in DIR, a unix socket in DIR/sock,
# no TCP (listen_addresses=''), run as a non-root user (runuser -u postgres when started as root: initdb
# refuses root). Nothing of it outlives `stop`.
#   tools/pg-test-server.sh start DIR   prints the socket directory (libpq's host=) on stdout
#   tools/pg-test-server.sh stop DIR    (immediate: like a crash of the server)
#   tools/pg-test-server.sh start DIR   again after a stop: the same data, the same socket
# Exit 77 (the TAP/meson "skip" code) with a message when the PostgreSQL server binaries are not installed.
# Not for: production (fsync=off: a crash of the machine may lose it; it is thrown away anyway). Commits
# stay synchronous (synchronous_commit is not turned off): a commit is in the server's WAL when the client
# hears of it, so an immediate stop (test_pg_restart) loses no acknowledged job.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
        echo "usage: $0 start|stop DIR" >&2
        exit 2
fi

bindir=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
                bindir=$d
                break
        fi
done
if [ -z "$bindir" ] && command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        bindir=$(dirname "$(command -v pg_ctl)")
fi
if [ -z "$bindir" ]; then
        echo "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql (tools/setup.sh)" >&2
        exit 77
fi

as_user() {
        if [ "$(id -u)" = 0 ]; then
                runuser -u postgres -- "$@"
        else
                "$@"
        fi
}

case "$cmd" in
start)
        mkdir -p "$dir/sock"
        if [ "$(id -u)" = 0 ]; then
                chown -R postgres: "$dir"
                chmod 755 "$dir"
        fi
        if [ ! -d "$dir/data" ]; then
                as_user "$bindir/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 \
                        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
        fi
        # max_connections: every daemon thread holds a connection (HTTP threads, workers, SSE hub, listener)
        as_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
                -o "-k $dir/sock -c listen_addresses='' -c fsync=off -c full_page_writes=off -c max_connections=300" \
                start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
        echo "$dir/sock"
        ;;
stop)
        if [ -d "$dir/data" ]; then
                as_user "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
        fi
        ;;
*)
        echo "usage: $0 start|stop DIR" >&2
        exit 2
        ;;
esac
