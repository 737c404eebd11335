#!/usr/bin/env bash
# test_pg_fleet.sh - two daemons, separate state directories and ports, sharing nothing but one PostgreSQL
# database (run under tests/pg-run.sh, which starts a throwaway server):
# - SSE on daemon A streams, in order and exactly once, the epochs of a job daemon B is running (LISTEN/NOTIFY);
#   the lag from each event's commit to its arrival on A is reported (a timing is never asserted);
# - a dataset uploaded to one daemon trains on the other (blobs as large objects, each daemon's local cache);
# - 1,000 small jobs submitted through either daemon: every job runs exactly once (attempt 1, one "running"
#   status event), both daemons did work, and every job's event stream is 1..n with no gap or duplicate, read
#   from the database and, for a sample, through the other daemon's API.
. "$(dirname "$0")/lib.sh"

if [ -z "${FT_TEST_PG_HOST:-}" ]; then
        echo "Bail out! run under tests/pg-run.sh (it starts the PostgreSQL server)"
        exit 1
fi
export FT_TEST_PG_DB=ft_fleet
JOBS=${FT_FLEET_JOBS:-1000}
J=(-H 'Content-Type: application/json')
PSQL=(psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$FT_TEST_PG_HOST" -d "$FT_TEST_PG_DB")
A_PID= B_PID=
trap '[ -n "$A_PID" ] && kill -9 $A_PID 2>/dev/null; [ -n "$B_PID" ] && kill -9 $B_PID 2>/dev/null; cleanup' EXIT
now_ms() { local t=${EPOCHREALTIME/./}; echo "${t:0:-3}"; } # no fork: the SSE loop stamps lines as they come

# 30 rows, 3 classes: a job of one epoch takes milliseconds
awk 'BEGIN { print "x1,x2,species"; s = 7;
        for (i = 0; i < 30; i++) { c = i % 3; s = (s * 1103515245 + 12345) % 2147483648; a = s / 2147483648;
                printf "%.3f,%.3f,%s\n", c * 2 + a, (c == 1) * 3 + a, (c == 0 ? "setosa" : c == 1 ? "versicolor" : "virginica") } }' >"$TMP/tiny.csv"
# a bigger one for the job that streams while it runs
awk 'BEGIN { print "a,b,c,d,label"; s = 3;
        for (i = 0; i < 4000; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, i % 7 / 7, (v > 0.5) } }' >"$TMP/big.csv"

# ---- daemon B alone first: it takes the streaming job ----------------------------------------------------
start_daemon "$TMP/b" --workers 2 --threads 1 --max-queued-jobs 5000; ok $? "daemon B starts on the shared store"
B=$BASE B_PID=$DAEMON_PID B_LOG=$LOG DAEMON_PID=
grep -q "store postgresql" "$B_LOG"; ok $? "B says its store is postgresql"

http POST '/v1/datasets?name=big' --data-binary @"$TMP/big.csv"
big=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "upload big.csv to B -> $big"
http POST /v1/models "${J[@]}" -d '{"name": "mlp4", "preset": "mlp", "config": {"inputs": 4, "hidden": [32], "outputs": 2}}'
mlp4=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "model on B -> $mlp4"
http POST /v1/jobs "${J[@]}" -d "{\"model\": \"$mlp4\", \"training_file\": \"$big\",
        \"task\": {\"type\": \"classification\", \"target\": \"label\"},
        \"hyperparameters\": {\"epochs\": 40, \"batch_size\": 8, \"learning_rate\": 0.05}, \"seed\": 1}"
sj=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "streaming job submitted to B -> $sj"
for i in $(seq 1 200); do
        [ "$(curl -s "$B/v1/jobs/$sj" | jq -r .state)" = running ] && break
        sleep 0.05
done
[ "$(curl -s "$B/v1/jobs/$sj" | jq -r .state)" = running ]; ok $? "B runs it"

# ---- daemon A, and SSE on A while B trains ---------------------------------------------------------------
start_daemon "$TMP/a" --workers 2 --threads 1 --max-queued-jobs 5000; ok $? "daemon A starts on the same store"
A=$BASE A_PID=$DAEMON_PID DAEMON_PID=
opened=$(now_ms)
curl -s -N --max-time 120 "$A/v1/jobs/$sj/events?stream=true" | while IFS= read -r line; do
        t=${EPOCHREALTIME/./}
        echo "${t:0:-3} $line"
done >"$TMP/sse.log"
ids=$(sed -n 's/^[0-9]* id: //p' "$TMP/sse.log" | tr '\n' ' ')
n=$("${PSQL[@]}" -c "SELECT count(*) FROM events WHERE job_id = '$sj'")
[ "$ids" = "$(seq 1 "$n" | tr '\n' ' ')" ]; ok $? "SSE on A: events 1..$n of B's job, in order, each once"
epochs=$(grep -c '^[0-9]* event: epoch' "$TMP/sse.log")
[ "$epochs" = 40 ]; ok $? "all 40 epoch events arrived on A ($epochs)"
tail -n 3 "$TMP/sse.log" | grep -q '"state":"succeeded"'; ok $? "the stream ends with B's succeeded status"
# lag: the SSE arrival on A minus the commit time on B (events.created_at), for the events written after A's
# stream opened (the earlier ones were replayed)
"${PSQL[@]}" -F ' ' -c "SELECT seq, created_at FROM events WHERE job_id = '$sj' AND created_at > $opened ORDER BY seq" >"$TMP/written"
awk 'NR == FNR { at[$1] = $2; next } $2 == "id:" && ($3 in at) { lag = $1 - at[$3]; if (lag > max) max = lag; sum += lag; n++ }
     END { printf "%d events pushed live, lag mean %.0f ms, max %d ms\n", n, n ? sum / n : 0, max }' \
        "$TMP/written" "$TMP/sse.log" >"$TMP/lag"
diag "SSE A <- B: $(cat "$TMP/lag")"

# ---- a dataset uploaded to A trains on B and A ------------------------------------------------------------
BASE=$A
http POST '/v1/datasets?name=tiny' --data-binary @"$TMP/tiny.csv"
ds=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "upload tiny.csv to A -> $ds"
BASE=$B
http POST /v1/models "${J[@]}" -d '{"name": "mlp", "preset": "mlp", "config": {"inputs": 2, "hidden": [8], "outputs": 3}}'
mdl=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "model on B -> $mdl"
http GET "/v1/datasets/$ds"
[ "$STATUS" = 200 ]; ok $? "B serves the dataset uploaded to A"

# ---- 1,000 jobs through either daemon --------------------------------------------------------------------
spec="{\"model\": \"$mdl\", \"training_file\": \"$ds\", \"task\": {\"type\": \"classification\", \"target\": \"species\"},
       \"hyperparameters\": {\"epochs\": 1, \"batch_size\": 16, \"learning_rate\": 0.05}, \"seed\": 1}"
echo "$spec" >"$TMP/spec.json"
t0=$(now_ms)
seq 1 "$JOBS" | awk -v a="$A" -v b="$B" '{ print ($1 % 2 ? a : b) }' |
        xargs -P 8 -I{} curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' \
                --data-binary @"$TMP/spec.json" {}/v1/jobs >"$TMP/codes"
created=$(grep -c '^201$' "$TMP/codes")
[ "$created" = "$JOBS" ]; ok $? "$JOBS jobs submitted, alternating A and B: $created got 201"
t1=$(now_ms)
for i in $(seq 1 1200); do
        left=$("${PSQL[@]}" -c "SELECT count(*) FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'cancelled')")
        [ "$left" = 0 ] && break
        sleep 0.25
done
t2=$(now_ms)
[ "$left" = 0 ]; ok $? "every job finished ($left left)"
diag "submitted $JOBS in $((t1 - t0)) ms, all finished $((t2 - t0)) ms after the first submit (machine shared, not a benchmark)"
q() { "${PSQL[@]}" -c "$1"; }
[ "$(q "SELECT count(*) FROM jobs WHERE model_id = '$mdl' AND state = 'succeeded' AND attempt = 1")" = "$JOBS" ]
ok $? "all $JOBS succeeded at attempt 1"
[ "$(q "SELECT count(*) FROM (SELECT job_id FROM events WHERE type = 'status'
        AND data_json::jsonb ->> 'state' = 'running' GROUP BY job_id HAVING count(*) <> 1) x")" = 0 ]
ok $? "each job has exactly one running status event (no job ran twice, none on both daemons)"
[ "$(q "SELECT count(*) FROM (SELECT job_id, count(*) AS n, count(DISTINCT seq) AS d, min(seq) AS lo, max(seq) AS hi
        FROM events GROUP BY job_id) x WHERE n <> d OR lo <> 1 OR hi <> n")" = 0 ]
ok $? "every job's events are 1..n: no gaps, no duplicates"
q "SELECT split_part(data_json::jsonb ->> 'worker', ':', 2), count(*) FROM events e JOIN jobs j ON j.id = e.job_id
   WHERE j.model_id = '$mdl' AND e.type = 'status' AND e.data_json::jsonb ->> 'state' = 'running' GROUP BY 1 ORDER BY 1" >"$TMP/per"
per_a=$(awk -F'|' -v p="$A_PID" '$1 == p { print $2 }' "$TMP/per")
per_b=$(awk -F'|' -v p="$B_PID" '$1 == p { print $2 }' "$TMP/per")
[ "${per_a:-0}" -gt 0 ] && [ "${per_b:-0}" -gt 0 ] && [ $((per_a + per_b)) = "$JOBS" ]
ok $? "both daemons did work: A ran ${per_a:-0}, B ran ${per_b:-0}"

# a sample through the API of the daemon that did not run the job
bad=0
for id in $(q "SELECT id FROM jobs WHERE model_id = '$mdl' ORDER BY random() LIMIT 20"); do
        worker=$(q "SELECT split_part(data_json::jsonb ->> 'worker', ':', 2) FROM events WHERE job_id = '$id'
                    AND type = 'status' AND data_json::jsonb ->> 'state' = 'running'")
        other=$([ "$worker" = "$A_PID" ] && echo "$B" || echo "$A")
        seqs=$(curl -s "$other/v1/jobs/$id/events?limit=1000" | jq -c '[.data[].seq]')
        n=$(q "SELECT count(*) FROM events WHERE job_id = '$id'")
        [ "$seqs" = "$(seq 1 "$n" | jq -s -c .)" ] || { bad=$((bad + 1)); diag "$id: $seqs"; }
        state=$(curl -s "$other/v1/jobs/$id" | jq -r .state)
        [ "$state" = succeeded ] || bad=$((bad + 1))
done
[ "$bad" = 0 ]; ok $? "20 jobs read through the other daemon: events 1..n, succeeded"
rm=$(curl -s "$A/v1/jobs?limit=1&state=succeeded" | jq -r '.data[0].result_model')
curl -s -o "$TMP/w.safetensors" -w '%{http_code}' "$B/v1/models/$rm/weights" | grep -q 200 &&
        [ "$(curl -s "$A/v1/models/$rm/weights" | sha256sum)" = "$(sha256sum <"$TMP/w.safetensors")" ]
ok $? "a result model's weights download the same from both daemons"

DAEMON_PID=$A_PID; stop_daemon; ok $? "A stops cleanly"; A_PID=
DAEMON_PID=$B_PID; stop_daemon; ok $? "B stops cleanly"; B_PID=
done_testing
