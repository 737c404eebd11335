#!/usr/bin/env bash
# test_ops_backup.sh - docs/operations.md's backup procedure on a running
# daemon: `sqlite3 DB ".backup FILE"` (SQLite's online backup API) while the
# daemon serves, the copy passes integrity_check with the same schema, and a
# daemon started on the restored copy comes up and serves.
. "$(dirname "$0")/lib.sh"

state="$TMP/state"
start_daemon "$state"; ok $? "daemon starts"
db="$state/finetuned.db"

# Keep the daemon busy with requests while the backup runs.
( for i in $(seq 1 100); do curl -s -o /dev/null "$BASE/healthz"; done ) &
load=$!
sqlite3 "$db" ".backup '$TMP/backup.db'"; ok $? "online backup of the live database"
wait "$load"
http GET /healthz; [ "$STATUS" = 200 ]; ok $? "daemon still serving after the backup"

[ "$(sqlite3 "$TMP/backup.db" 'PRAGMA integrity_check')" = ok ]; ok $? "backup passes integrity_check"
[ "$(sqlite3 "$TMP/backup.db" 'PRAGMA user_version')" = "$(sqlite3 "$db" 'PRAGMA user_version')" ]
ok $? "backup has the live schema version ($(sqlite3 "$TMP/backup.db" 'PRAGMA user_version'))"
a=$(sqlite3 "$db" "SELECT group_concat(name) FROM (SELECT name FROM sqlite_schema ORDER BY name)")
b=$(sqlite3 "$TMP/backup.db" "SELECT group_concat(name) FROM (SELECT name FROM sqlite_schema ORDER BY name)")
[ -n "$a" ] && [ "$a" = "$b" ]; ok $? "backup has every table and index"
stop_daemon; ok $? "daemon stops"

# Restore into a fresh state directory and start on it.
mkdir -p "$TMP/restored" && cp "$TMP/backup.db" "$TMP/restored/finetuned.db"
start_daemon "$TMP/restored"; ok $? "daemon starts on the restored backup"
http GET /healthz; [ "$STATUS" = 200 ]; ok $? "and serves"
stop_daemon; ok $? "and stops"
done_testing
