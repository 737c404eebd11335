#!/usr/bin/env bash
# test_pg_failover.sh - kill -9 one daemon of two (sharing one PostgreSQL database, nothing else) while it runs a
# job with checkpoints: the other requeues the job after its lease, resumes it from the checkpoint it finds in
# the shared store (a blob: the dead daemon's disk is not reachable), and the job ends with weights bit-identical
# to an uninterrupted run of the same spec; its event stream, read from the surviving daemon, has every epoch
# exactly once. Run under tests/pg-run.sh. Waits for observed conditions, never for a fixed time.
. "$(dirname "$0")/lib.sh"

if [ -z "${FT_TEST_PG_HOST:-}" ]; then
        echo "Bail out! run under tests/pg-run.sh (it starts the PostgreSQL server)"
        exit 1
fi
export FT_TEST_PG_DB=ft_failover
PSQL=(psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$FT_TEST_PG_HOST" -d "$FT_TEST_PG_DB")
q() { "${PSQL[@]}" -c "$1"; }
J=(-H 'Content-Type: application/json')
A_PID= B_PID=
trap '[ -n "$A_PID" ] && kill -9 $A_PID 2>/dev/null; [ -n "$B_PID" ] && kill -9 $B_PID 2>/dev/null; cleanup' EXIT
EPOCHS=60

awk 'BEGIN { print "a,b,c,d,label"; s = 3;
        for (i = 0; i < 4000; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, i % 7 / 7, (v > 0.5) } }' >"$TMP/big.csv"

start_daemon "$TMP/a" --workers 1 --threads 1 --lease 2; ok $? "daemon A starts"
A=$BASE A_PID=$DAEMON_PID DAEMON_PID=
http POST '/v1/datasets?name=big' --data-binary @"$TMP/big.csv"
ds=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "dataset on A"
http POST /v1/models "${J[@]}" -d '{"name": "mlp4", "preset": "mlp", "config": {"inputs": 4, "hidden": [32], "outputs": 2}}'
mdl=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "model on A"
spec="{\"model\": \"$mdl\", \"training_file\": \"$ds\", \"task\": {\"type\": \"classification\", \"target\": \"label\"},
       \"hyperparameters\": {\"epochs\": $EPOCHS, \"batch_size\": 8, \"learning_rate\": 0.05},
       \"checkpoint\": {\"every_epochs\": 1, \"keep\": 2}, \"seed\": 1}"
http POST /v1/jobs "${J[@]}" -d "$spec"
job=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "job on A -> $job"

start_daemon "$TMP/b" --workers 1 --threads 1 --lease 2; ok $? "daemon B starts"
B=$BASE B_PID=$DAEMON_PID DAEMON_PID=
for i in $(seq 1 600); do
        n=$(q "SELECT count(*) FROM events WHERE job_id = '$job' AND type = 'checkpoint'")
        [ "$n" -ge 2 ] && break
        sleep 0.05
done
owner=$(q "SELECT split_part(lease_owner, ':', 2) FROM jobs WHERE id = '$job'")
kill -9 "$A_PID"; wait "$A_PID" 2>/dev/null
killed_at=$(q "SELECT last_epoch FROM jobs WHERE id = '$job'")
[ "$owner" = "$A_PID" ] && [ "$killed_at" -lt "$EPOCHS" ]; ok $? "kill -9 A while it ran the job (after epoch $killed_at of $EPOCHS)"
A_PID=

for i in $(seq 1 1200); do
        s=$(curl -s "$B/v1/jobs/$job" | jq -r .state)
        [ "$s" = succeeded ] || [ "$s" = failed ] && break
        sleep 0.1
done
[ "$s" = succeeded ]; ok $? "B requeued it after the lease and finished it ($s)"
[ "$(curl -s "$B/v1/jobs/$job" | jq -r .attempt)" = 2 ]; ok $? "at attempt 2"
grep -q "resumes from checkpoint blob" "$TMP"/daemon.*.log; ok $? "B resumed from the checkpoint blob"
curl -s "$B/v1/jobs/$job/events?limit=1000" >"$TMP/ev.json"
jq -e '[.data[].seq] == [range(1; (.data | length) + 1)]' "$TMP/ev.json" >/dev/null; ok $? "events 1..n from B, no gap or duplicate"
jq -e --argjson n "$EPOCHS" '[.data[] | select(.type == "epoch") | .data.epoch] == [range(1; $n + 1)]' "$TMP/ev.json" >/dev/null
ok $? "every epoch 1..$EPOCHS exactly once, in order"

BASE=$B
http POST /v1/jobs "${J[@]}" -d "$spec"
ref=$(echo "$BODY" | jq -r .id); [ "$STATUS" = 201 ]; ok $? "the same spec again, uninterrupted, on B -> $ref"
for i in $(seq 1 1200); do
        s=$(curl -s "$B/v1/jobs/$ref" | jq -r .state)
        [ "$s" = succeeded ] || [ "$s" = failed ] && break
        sleep 0.1
done
[ "$s" = succeeded ]; ok $? "it succeeded"
# the tensors, byte for byte (the header's metadata names the job, so the files differ there)
tensors() { # tensors FILE: the data after the 8-byte header length and the JSON header
        local h
        h=$(od -An -t u8 -N8 "$1" | tr -d ' ')
        tail -c +$((8 + h + 1)) "$1" | sha256sum
}
curl -s "$B/v1/models/$(curl -s "$B/v1/jobs/$job" | jq -r .result_model)/weights" >"$TMP/w1"
curl -s "$B/v1/models/$(curl -s "$B/v1/jobs/$ref" | jq -r .result_model)/weights" >"$TMP/w2"
h1=$(od -An -t u8 -N8 "$TMP/w1" | tr -d ' ') h2=$(od -An -t u8 -N8 "$TMP/w2" | tr -d ' ')
[ -s "$TMP/w1" ] && [ "$(tensors "$TMP/w1")" = "$(tensors "$TMP/w2")" ] &&
        [ "$(head -c $((8 + h1)) "$TMP/w1" | tail -c +9 | jq -c 'del(.__metadata__)')" = \
          "$(head -c $((8 + h2)) "$TMP/w2" | tail -c +9 | jq -c 'del(.__metadata__)')" ]
ok $? "the resumed job's tensors are bit-identical to the uninterrupted run's"
DAEMON_PID=$B_PID; stop_daemon; ok $? "B stops cleanly"; B_PID=
done_testing
