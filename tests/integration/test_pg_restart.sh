#!/usr/bin/env bash
# test_pg_restart.sh - the PostgreSQL server goes away and comes back (an immediate stop, like a crash, while a
# client keeps submitting): requests in between answer 503 with Retry-After, the daemon never exits, it
# reconnects by itself, and every job that was acknowledged (201) exists afterwards and runs to the end.
# Run under tests/pg-run.sh.
. "$(dirname "$0")/lib.sh"

if [ -z "${FT_TEST_PG_DIR:-}" ]; then
        echo "Bail out! run under tests/pg-run.sh (it starts the PostgreSQL server)"
        exit 1
fi
SERVER=$(cd "$(dirname "$0")/../.." && pwd)/tools/pg-test-server.sh
PSQL=(psql -X -q -A -t -h "$FT_TEST_PG_HOST")
J=(-H 'Content-Type: application/json')

awk 'BEGIN { print "x1,x2,species"; for (i = 0; i < 30; i++) { c = i % 3; printf "%.3f,%.3f,%s\n", c * 2 + i / 40, (c == 1) * 3, "s" c } }' >"$TMP/tiny.csv"
start_daemon "$TMP/state" --workers 1 --threads 1 --max-queued-jobs 5000; ok $? "daemon starts on PostgreSQL"
db=$(basename "$TMP/state" | tr -c 'A-Za-z0-9_\n' _); db=ft_$db
http POST '/v1/datasets?name=tiny' --data-binary @"$TMP/tiny.csv"
ds=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "dataset"
http POST /v1/models "${J[@]}" -d '{"name": "mlp", "preset": "mlp", "config": {"inputs": 2, "hidden": [8], "outputs": 3}}'
mdl=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "model"
echo "{\"model\": \"$mdl\", \"training_file\": \"$ds\", \"task\": {\"type\": \"classification\", \"target\": \"species\"},
       \"hyperparameters\": {\"epochs\": 1, \"batch_size\": 16}, \"seed\": 1}" >"$TMP/spec.json"

# a client submitting all the time: each answer's status, Retry-After and job id
(
        while [ ! -e "$TMP/stop-client" ]; do
                curl -s -D "$TMP/h" -o "$TMP/b" -H 'Content-Type: application/json' --data-binary @"$TMP/spec.json" \
                        "$BASE/v1/jobs" >/dev/null
                code=$(sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$TMP/h")
                retry=$(tr -d '\r' <"$TMP/h" | sed -n 's/^Retry-After: //Ip')
                echo "$code ${retry:--} $(jq -r '.id // "-"' "$TMP/b" 2>/dev/null)"
                sleep 0.05
        done
) >"$TMP/answers" &
client=$!
sleep 1
"$SERVER" stop "$FT_TEST_PG_DIR"; ok $? "PostgreSQL stopped (immediate)"
sleep 2
http GET /v1/jobs
[ "$STATUS" = 503 ] && [ "$(echo "$BODY" | jq -r .error.code)" = unavailable ]; ok $? "GET /v1/jobs while it is down -> 503 unavailable"
kill -0 "$DAEMON_PID"; ok $? "the daemon is still running"
"$SERVER" start "$FT_TEST_PG_DIR" >/dev/null; ok $? "PostgreSQL started again"
for i in $(seq 1 100); do
        http GET /v1/jobs
        [ "$STATUS" = 200 ] && break
        sleep 0.1
done
[ "$STATUS" = 200 ]; ok $? "the daemon reconnected by itself"
sleep 1
touch "$TMP/stop-client"
wait $client
down=$(awk '$1 == 503' "$TMP/answers" | wc -l)
acked=$(awk '$1 == 201' "$TMP/answers" | wc -l)
other=$(awk '$1 != 503 && $1 != 201' "$TMP/answers" | wc -l)
awk '$1 != 503 && $1 != 201' "$TMP/answers" | while read -r l; do diag "other: $l"; done
[ "$down" -gt 0 ] && [ "$acked" -gt 0 ] && [ "$other" = 0 ]
ok $? "the client got only 201 or 503: $acked acknowledged, $down refused, $other other"
[ "$(awk '$1 == 503 && $2 == "-"' "$TMP/answers" | wc -l)" = 0 ]; ok $? "every 503 has Retry-After"
[ "$(awk '$1 == 201 { n++ } END { print n + 0 }' "$TMP/answers")" -gt 0 ] &&
        awk '$1 == 201 { print $3 }' "$TMP/answers" >"$TMP/acked"
for i in $(seq 1 600); do
        left=$("${PSQL[@]}" -d "$db" -c "SELECT count(*) FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'cancelled')")
        [ "$left" = 0 ] && break
        sleep 0.2
done
missing=0 unfinished=0
while read -r id; do
        got=$(curl -s "$BASE/v1/jobs/$id")
        s=$(echo "$got" | jq -r .state)
        [ "$s" = null ] && { missing=$((missing + 1)); diag "missing $id: $got; in the database: $("${PSQL[@]}" -d "$db" -c "SELECT state FROM jobs WHERE id = '$id'")"; }
        [ "$s" = succeeded ] || unfinished=$((unfinished + 1))
done <"$TMP/acked"
[ "$missing" = 0 ] && [ "$unfinished" = 0 ]
ok $? "all $acked acknowledged jobs exist and succeeded ($missing missing, $unfinished not succeeded)"
grep -iE "error|warn" "$LOG" | head -5 | while read -r l; do diag "log: $l"; done
stop_daemon; ok $? "clean stop"
done_testing
