#!/bin/bash
# pg-run.sh - run one test against a throwaway PostgreSQL server: start it (tools/pg-test-server.sh), export
# FT_TEST_PG_HOST (its socket directory) for the test, run the test with the remaining arguments, and stop and
# remove the server whatever happens (trap, also on failure or a signal). Skips (77) only when the PostgreSQL
# server binaries are not installed.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/ft-pg-XXXXXX")
cleanup() {
        "$here/tools/pg-test-server.sh" stop "$dir"
        rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
t0=$(date +%s%N)
host=$("$here/tools/pg-test-server.sh" start "$dir")
rc=$?
if [ $rc = 77 ]; then
        echo "1..0 # SKIP PostgreSQL server binaries not installed"
        exit 77
fi
if [ $rc != 0 ]; then
        echo "Bail out! cannot start the PostgreSQL test server"
        exit 1
fi
echo "# PostgreSQL test server up in $(( ($(date +%s%N) - t0) / 1000000 )) ms at $host"
export FT_TEST_PG_HOST=$host
export FT_TEST_PG_DIR=$dir # for a test that stops and starts the server (tools/pg-test-server.sh stop|start)
export PGUSER=postgres # the server's superuser (trust authentication on its socket only)
"$@"
