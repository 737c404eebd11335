#!/usr/bin/env bash
# test_webhooks.sh - signed webhooks and job labels on a real daemon, with a
# receiver of the test's own on loopback (webhook_receiver.mjs, node's crypto)
# that verifies every signature: every event of a job arrives (job.queued,
# job.running, each job.epoch, job.succeeded) with the labels in it; a 500 is
# retried with the same webhook-id until it is delivered; events whose
# deliveries were pending survive a kill -9 of the daemon and arrive after the
# restart; a receiver that hangs slows neither training nor the API; the
# endpoint and label limits answer 400 with the error envelope; internal
# addresses are refused at registration and again at connect time unless
# --webhook-allow names them; labels filter the job list.
# Waits are for conditions observed through the API or the receiver's log,
# never a fixed time; no timing is asserted.
. "$(dirname "$0")/lib.sh"

J=(-H 'Content-Type: application/json')
R="$TMP/recv"
mkdir -p "$R"
node "$(dirname "$0")/webhook_receiver.mjs" "$R" &
RECV_PID=$!
trap 'kill "$RECV_PID" 2>/dev/null; cleanup' EXIT
for i in $(seq 1 200); do [ -s "$R/port" ] && break; sleep 0.05; done
PORT=$(cat "$R/port")
HOOK="http://127.0.0.1:$PORT/hook"
ok $? "receiver listens on 127.0.0.1:$PORT"

# wait_for SECONDS CMD...: until CMD succeeds (polled every 0.1 s)
wait_for() {
        local n=$(($1 * 10)) i; shift
        for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
        return 1
}
# received JQ_FILTER: the receiver's log lines (one JSON array) through a filter
received() { jq -s -c "$1" "$R/received.ndjson" 2>/dev/null; }
wait_state() {
        local job=$1 want=$2 i s
        for i in $(seq 1 1200); do
                s=$(curl -s "$BASE/v1/jobs/$job" | jq -r .state)
                [ "$s" = "$want" ] && return 0
                sleep 0.1
        done
        diag "job $job is $s, not $want"
        return 1
}
# delivered JOB TYPE: the receiver answered 200 to a verified TYPE event of JOB
delivered() {
        [ "$(received "[.[] | select(.valid and .status == 200 and .type == \"$2\" and
                (.body | fromjson | .data.id) == \"$1\")] | length")" -ge 1 ]
}

state="$TMP/state"
start_daemon "$state" --webhook-allow 127.0.0.1/32 --threads 1 --lease 2
ok $? "daemon starts with --webhook-allow 127.0.0.1/32"

awk 'BEGIN { print "x1,x2,label"; s = 11;
        for (i = 0; i < 200; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%d\n", v, 1 - v * v, (v > 0.5) } }' >"$TMP/d.csv"
http POST '/v1/datasets?name=d' --data-binary @"$TMP/d.csv"
ds=$(echo "$BODY" | jq -r .id)
http POST /v1/models "${J[@]}" -d '{"name": "base", "preset": "mlp", "config": {"inputs": 2, "hidden": [8], "outputs": 2}}'
mdl=$(echo "$BODY" | jq -r .id)
[ "${ds:0:3}" = ds_ ] && [ "${mdl:0:4}" = mdl_ ]; ok $? "a dataset and a model"
job_body() { # EPOCHS METADATA_JSON [SUFFIX]
        echo "{\"model\": \"$mdl\", \"training_file\": \"$ds\", \"hyperparameters\": {\"epochs\": $1, \"batch_size\": 32},
               \"metadata\": $2${3:+, \"suffix\": \"$3\"}}"
}

# ---- registration: the secret once, the limits --------------------------------------------------------------
http POST /v1/webhooks "${J[@]}" -d "{\"url\": \"$HOOK\", \"event_types\": [\"job.queued\", \"job.running\",
        \"job.succeeded\", \"job.failed\", \"job.epoch\"], \"description\": \"ci\"}"
wh=$(echo "$BODY" | jq -r .id)
echo "$BODY" | jq -r .secret >"$R/secret"
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '(.secret | test("^whsec_[A-Za-z0-9+/]{43}=$")) and
        .event_types == ["job.queued","job.running","job.succeeded","job.failed","job.epoch"]' >/dev/null
ok $? "POST /v1/webhooks: 201 with a whsec_ secret ($wh)"
http GET "/v1/webhooks/$wh"
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e 'has("secret") | not' >/dev/null; ok $? "GET never shows the secret"
http GET /v1/webhooks
echo "$BODY" | jq -e '.data | length == 1 and (.[0] | has("secret") | not)' >/dev/null; ok $? "the list neither"
http POST /v1/webhooks "${J[@]}" -d "{\"url\": \"$HOOK\"}"
echo "$BODY" | jq -e '.event_types | index("job.epoch") == null and index("job.warning") != null and
        index("job.paused") != null' >/dev/null
ok $? "no event_types: every event but job.epoch (opt-in)"
http DELETE "/v1/webhooks/$(echo "$BODY" | jq -r .id)"; ok $([ "$STATUS" = 200 ]; echo $?) "delete it"

envelope400() { # PARAM_REGEX DESCRIPTION
        [ "$STATUS" = 400 ] && echo "$BODY" | jq -e --arg p "$1" '.error.code == "invalid_request" and
                (.error.message | length > 0) and (.error.param | test($p))' >/dev/null
        ok $? "$2 -> 400 ($(echo "$BODY" | jq -r .error.message))"
}
long=$(head -c 2100 /dev/zero | tr '\0' a)
http POST /v1/webhooks "${J[@]}" -d "{\"url\": \"http://example.com/$long\"}"; envelope400 '^url$' "a 2100-byte url"
http POST /v1/webhooks "${J[@]}" -d '{"url": "ftp://example.com/x"}'; envelope400 '^url$' "an ftp url"
http POST /v1/webhooks "${J[@]}" -d '{"url": "http://user:pw@example.com/x"}'; envelope400 '^url$' "credentials in the url"
http POST /v1/webhooks "${J[@]}" -d '{"url": "http://10.1.2.3/x"}'; envelope400 '^url$' "a private address not allowed"
http POST /v1/webhooks "${J[@]}" -d '{"url": "http://[::1]:8080/x"}'; envelope400 '^url$' "IPv6 loopback not allowed"
http POST /v1/webhooks "${J[@]}" -d '{"url": "http://example.com/", "event_types": ["job.nope"]}'
envelope400 'event_types' "an unknown event type"
http POST /v1/webhooks "${J[@]}" -d '{"url": "http://example.com/", "event_types": ["job.failed", "job.failed"]}'
envelope400 'event_types' "an event type twice"
nine='["job.queued","job.running","job.paused","job.succeeded","job.failed","job.cancelled","job.epoch","job.warning","job.queued"]'
http POST /v1/webhooks "${J[@]}" -d "{\"url\": \"http://example.com/\", \"event_types\": $nine}"
envelope400 'event_types' "nine event types"
for i in $(seq 2 16); do curl -s -o /dev/null "${J[@]}" -d '{"url": "https://example.com/hook"}' "$BASE/v1/webhooks"; done
http POST /v1/webhooks "${J[@]}" -d '{"url": "https://example.com/hook"}'; envelope400 '^url$' "a 17th endpoint"
for id in $(curl -s "$BASE/v1/webhooks?limit=100" | jq -r --arg keep "$wh" '.data[] | select(.id != $keep) | .id'); do
        curl -s -o /dev/null -X DELETE "$BASE/v1/webhooks/$id"
done
http GET /v1/webhooks; echo "$BODY" | jq -e '.data | length == 1' >/dev/null; ok $? "the extra endpoints deleted"

# ---- a test-send answered 500 first: retried with the same webhook-id ------------------------------------
echo 1 >"$R/fail_next"
http POST "/v1/webhooks/$wh/test"
msg=$(echo "$BODY" | jq -r .delivery)
[ "$STATUS" = 202 ] && [ "${msg:0:4}" = msg_ ]; ok $? "POST /v1/webhooks/{id}/test: 202, delivery $msg"
retried() { [ "$(received "[.[] | select(.id == \"$msg\") | .status]")" = "[500,200]" ]; }
wait_for 60 retried; ok $? "the receiver saw $msg twice, verified both times: 500, then 200 ($(received "[.[] | select(.id == \"$msg\") | .status]"))"
http GET "/v1/webhooks/$wh/deliveries"
echo "$BODY" | jq -e --arg m "$msg" '.data[0] | .id == $m and .state == "succeeded" and .attempts == 2 and
        .last_status == 200 and .event_type == "webhook.test" and .job == null and .payload.type == "webhook.test"' >/dev/null
ok $? "its delivery log: succeeded on attempt 2"

# ---- every event of a job, signed, with its labels ------------------------------------------------------
http POST /v1/jobs "${J[@]}" -d "$(job_body 3 '{"team": "vision", "run": "7"}' v1)"
job1=$(echo "$BODY" | jq -r .id)
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.metadata == {"team":"vision","run":"7"} and .suffix == "v1"' >/dev/null
ok $? "POST /v1/jobs with metadata and suffix: shown back ($job1)"
wait_state "$job1" succeeded; ok $? "job 1 succeeded"
all_job1() { delivered "$job1" job.queued && delivered "$job1" job.running && delivered "$job1" job.succeeded &&
        [ "$(received "[.[] | select(.valid and .status == 200 and .type == \"job.epoch\" and
                (.body | fromjson | .data.id) == \"$job1\") | .body | fromjson | .data.event.data.epoch] | unique")" = "[1,2,3]" ]; }
wait_for 30 all_job1; ok $? "job 1: queued, running, epochs 1-3 and succeeded delivered"
received "[.[] | select(.type == \"job.succeeded\") | .body | fromjson | .data][0]" | jq -e --arg j "$job1" \
        '.id == $j and .object == "job" and .state == "succeeded" and .metadata == {"team":"vision","run":"7"} and
         .event.type == "status"' >/dev/null
ok $? "job.succeeded carries the job id, state, labels and the event"
http GET "/v1/jobs/$job1"
model=$(echo "$BODY" | jq -r .result_model)
http GET "/v1/models/$model"; [ "$(echo "$BODY" | jq -r .name)" = "base:v1" ]; ok $? "the model it produced is named base:v1"

# ---- labels filter the list ----------------------------------------------------------------------------
http POST /v1/jobs "${J[@]}" -d "$(job_body 1 '{"team": "audio"}')"; job2=$(echo "$BODY" | jq -r .id)
http POST /v1/jobs "${J[@]}" -d "$(job_body 1 '{"team": "vision"}')"; job3=$(echo "$BODY" | jq -r .id)
wait_state "$job2" succeeded && wait_state "$job3" succeeded; ok $? "jobs 2 (audio) and 3 (vision) succeeded"
http GET '/v1/jobs?metadata%5Bteam%5D=vision'
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq -c '[.data[].id]')" = "[\"$job3\",\"$job1\"]" ]
ok $? "?metadata[team]=vision: jobs 3 and 1, newest first"
http GET '/v1/jobs?metadata%5Bteam%5D=vision&metadata%5Brun%5D=7'
[ "$(echo "$BODY" | jq -c '[.data[].id]')" = "[\"$job1\"]" ]; ok $? "team=vision and run=7: job 1"
http GET '/v1/jobs?metadata%5Bteam%5D=vision&state=succeeded&limit=1'
[ "$(echo "$BODY" | jq -c '[[.data[].id], .has_more, .next_after]')" = "[[\"$job3\"],true,\"$job3\"]" ]
ok $? "with state and limit: one page, has_more"
http GET "/v1/jobs?metadata%5Bteam%5D=vision&after=$job3"
[ "$(echo "$BODY" | jq -c '[.data[].id]')" = "[\"$job1\"]" ]; ok $? "the next page"
http GET '/v1/jobs?metadata%5Bteam%5D=nobody'; [ "$(echo "$BODY" | jq '.data | length')" = 0 ]; ok $? "no match: empty"
http GET '/v1/jobs?metadata%5Ba%5D=1&metadata%5Bb%5D=1&metadata%5Bc%5D=1&metadata%5Bd%5D=1&metadata%5Be%5D=1'
envelope400 '^metadata$' "five metadata filters"
http GET '/v1/jobs?metadata%5B%5D=1'; envelope400 'metadata' "metadata[] without a key"

pairs=$(seq 1 17 | awk '{ printf "%s\"k%d\": \"v\"", (NR > 1 ? ", " : ""), $1 }')
http POST /v1/jobs "${J[@]}" -d "$(job_body 1 "{$pairs}")"; envelope400 '^metadata$' "17 metadata pairs"
k65=$(head -c 65 /dev/zero | tr '\0' k)
http POST /v1/jobs "${J[@]}" -d "$(job_body 1 "{\"$k65\": \"v\"}")"; envelope400 '^metadata$' "a 65-character key"
v513=$(head -c 513 /dev/zero | tr '\0' v)
http POST /v1/jobs "${J[@]}" -d "$(job_body 1 "{\"k\": \"$v513\"}")"; envelope400 '^metadata\.k$' "a 513-character value"
http POST /v1/jobs "${J[@]}" -d "$(job_body 1 '{"k": 3}')"; envelope400 '^metadata\.k$' "a number as a value"
http POST /v1/jobs "${J[@]}" -d "$(job_body 1 '["team"]')"; envelope400 '^metadata$' "metadata not an object"
http POST /v1/jobs "${J[@]}" -d "$(job_body 1 '{}' 'has space')"; envelope400 '^suffix$' "a suffix with a space"

# ---- kill -9 while deliveries are pending: the outbox survives ------------------------------------------------
echo 100000 >"$R/fail_next"
http POST /v1/jobs "${J[@]}" -d "$(job_body 2 '{"team": "crash"}')"; job4=$(echo "$BODY" | jq -r .id)
wait_state "$job4" succeeded; ok $? "job 4 succeeded while the receiver answers 500"
refused4() { [ "$(received "[.[] | select(.status == 500 and (.body | fromjson | .data.id) == \"$job4\")] | length")" -ge 1 ]; }
wait_for 30 refused4; ok $? "its deliveries were tried and refused"
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=
ok 0 "kill -9 the daemon"
pending=$(sqlite3 "$state/finetuned.db" "SELECT COUNT(*) FROM webhook_deliveries WHERE job_id = '$job4' AND state = 'pending'")
[ "$pending" -ge 4 ]; ok $? "job 4's deliveries are still in the outbox after kill -9 ($pending pending)"
echo 0 >"$R/fail_next"
start_daemon "$state" --webhook-allow 127.0.0.1/32 --threads 1 --lease 2; ok $? "restart on the same state directory"
all_job4() { delivered "$job4" job.queued && delivered "$job4" job.running && delivered "$job4" job.succeeded &&
        [ "$(received "[.[] | select(.valid and .status == 200 and .type == \"job.epoch\" and
                (.body | fromjson | .data.id) == \"$job4\") | .body | fromjson | .data.event.data.epoch] | unique")" = "[1,2]" ]; }
wait_for 120 all_job4; ok $? "after the restart every event of job 4 is delivered"
same_ids() { # each of job 4's webhook-ids was first refused, then delivered: the same id across retries
        received "[.[] | select((.body | fromjson | .data.id) == \"$job4\")] | group_by(.id) |
                map(map(.status) | (index(500) != null) and (index(200) != null)) | all" | grep -q true
}
same_ids; ok $? "each of job 4's deliveries kept its webhook-id from the 500s to the 200"

# ---- a receiver that hangs slows neither training nor the API ---------------------------------------------
echo 30000 >"$R/slow_ms"
http POST /v1/jobs "${J[@]}" -d "$(job_body 2 '{"team": "slow"}')"; job5=$(echo "$BODY" | jq -r .id)
wait_state "$job5" succeeded; ok $? "job 5 finishes while the receiver hangs"
curl -s --max-time 5 "$BASE/healthz" | jq -e '.status == "ok"' >/dev/null; ok $? "the API answers meanwhile"
timed_out() { curl -s "$BASE/v1/webhooks/$wh/deliveries" | jq -e --arg j "$job5" \
        '[.data[] | select(.job == $j and .attempts >= 1 and .state == "pending" and (.last_error // "" | test("[Tt]imeout|timed out")))] | length >= 1' >/dev/null; }
wait_for 60 timed_out; ok $? "its deliveries time out and stay pending for a retry"
metric() { curl -s "$BASE/metrics" | sed -n "s/^finetuned_webhook_attempts_total{result=\"$1\"} //p"; }
[ "$(metric delivered)" -ge 4 ] && [ "$(metric retry)" -ge 1 ] && [ "$(metric given_up)" = 0 ]
ok $? "GET /metrics counts this process's attempts: delivered $(metric delivered), retry $(metric retry), given_up $(metric given_up)"
rm -f "$R/slow_ms"

# ---- every request the receiver saw carried a valid signature --------------------------------------------
[ "$(received '[.[] | select(.valid | not)] | length')" = 0 ]
ok $? "every one of the $(received 'length') requests verified (Standard Webhooks signature, fresh timestamp)"

# ---- internal addresses: refused at connect time without --webhook-allow ---------------------------------
stop_daemon
start_daemon "$state" --threads 1; ok $? "restart without --webhook-allow"
http POST /v1/webhooks "${J[@]}" -d "{\"url\": \"$HOOK\"}"; envelope400 '^url$' "127.0.0.1 is refused at registration"
http POST /v1/webhooks "${J[@]}" -d "{\"url\": \"http://localhost:$PORT/hook\"}"; envelope400 '^url$' "so is localhost"
http POST "/v1/webhooks/$wh/test"; msg2=$(echo "$BODY" | jq -r .delivery)
refused_at_connect() { curl -s "$BASE/v1/webhooks/$wh/deliveries" | jq -e --arg m "$msg2" \
        '.data[] | select(.id == $m) | .attempts >= 1 and (.last_error | test("internal address 127.0.0.1"))' >/dev/null; }
wait_for 30 refused_at_connect; ok $? "the existing endpoint's delivery is refused when it connects"
[ "$(received "[.[] | select(.id == \"$msg2\")] | length")" = 0 ]; ok $? "and never reached the receiver"

http DELETE "/v1/webhooks/$wh"; [ "$STATUS" = 200 ]; ok $? "DELETE /v1/webhooks/{id}"
http GET "/v1/webhooks/$wh/deliveries"; [ "$STATUS" = 404 ]; ok $? "its deliveries are gone with it (404)"
stop_daemon; ok $? "clean stop"
done_testing
