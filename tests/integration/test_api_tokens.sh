#!/usr/bin/env bash
# test_api_tokens.sh - scoped bearer tokens on the real daemon (issue 18): a
# token file with admin and read-only tokens and comments; a read-only token
# reads (GET, HEAD, SSE) and gets 403 forbidden in the envelope on every
# write; the admin token writes; SIGHUP re-reads the file (a token removed
# stops working, one added starts); bad token files are refused naming the
# file and line.
. "$(dirname "$0")/lib.sh"

rnd() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
admin="adm-$(rnd)"; reader="rd-$(rnd)"; reader2="rd2-$(rnd)"
cat >"$TMP/tokens" <<EOT
# the pipeline's token
$admin
# the dashboard's, GET only
read   $reader
EOT
chmod 600 "$TMP/tokens"
A=(-H "Authorization: Bearer $admin"); R=(-H "Authorization: Bearer $reader")

envelope() {
        [ "$STATUS" = "$1" ] && [ "$(echo "$BODY" | jq -r .error.code)" = "$2" ] &&
                echo "$BODY" | jq -e '.error | has("message") and has("param")' >/dev/null
}

# ---- bad token files: exit 1 naming the file and the line ----------------------------
bad() { # bad DESCRIPTION EXPECTED_TEXT CONTENT
        printf '%s' "$3" >"$TMP/bad"; chmod 600 "$TMP/bad"
        "$FINETUNED" serve --listen 127.0.0.1:0 --state-dir "$TMP/s0" --token-file "$TMP/bad" 2>"$TMP/err"; rc=$?
        [ $rc -eq 1 ] && grep -qF -- "$2" "$TMP/err"; ok $? "$1 -> exit 1: $(grep -m1 -F -- "$2" "$TMP/err" || cat "$TMP/err")"
}
bad "an unknown scope" "bad:2: unknown token scope 'write'" $'# c\nwrite 0123456789abcdef0123\n'
bad "a short token" "bad:1: token is shorter than 16 characters" $'read short\n'
bad "only comments" "has no token" $'# nothing\n\n'
bad "17 tokens" "more than 16 tokens" "$(for i in $(seq 17); do echo "tok-$i-0123456789abcdef"; done)"

start_daemon "$TMP/state" --token-file "$TMP/tokens"; ok $? "daemon starts with an admin and a read-only token"

# ---- the read-only token reads -------------------------------------------------------
http GET /v1/version "${R[@]}"; [ "$STATUS" = 200 ]; ok $? "read token: GET /v1/version -> 200"
http GET /v1/jobs "${R[@]}"; [ "$STATUS" = 200 ]; ok $? "read token: GET /v1/jobs -> 200"
st=$(curl -s -o /dev/null -w '%{http_code}' -I "${R[@]}" "$BASE/v1/datasets"); [ "$st" = 200 ]; ok $? "read token: HEAD -> $st"

# ---- and cannot write ------------------------------------------------------------------
printf 'x,y\n1,0\n2,1\n3,0\n4,1\n' >"$TMP/d.csv"
http POST /v1/datasets "${R[@]}" -F "file=@$TMP/d.csv"
envelope 403 forbidden; ok $? "read token: upload -> 403 forbidden: $BODY"
echo "$BODY" | jq -r .error.message | grep -q "read-only"; ok $? "the message says the token is read-only"
http POST /v1/jobs "${R[@]}" -H 'Content-Type: application/json' -d '{}'
envelope 403 forbidden; ok $? "read token: POST /v1/jobs -> 403 (before the body is validated)"
http DELETE /v1/datasets/ds_0000000000000000 "${R[@]}"; envelope 403 forbidden; ok $? "read token: DELETE -> 403"
http POST /v1/jobs -H "Authorization: Bearer ${reader}x" -d '{}'; envelope 401 unauthorized; ok $? "a longer read token -> 401"

# ---- the admin token writes ------------------------------------------------------------
http POST /v1/datasets "${A[@]}" -F "file=@$TMP/d.csv"; [ "$STATUS" = 201 ]; ok $? "admin token: upload -> $STATUS"
ds=$(echo "$BODY" | jq -r .id)
http GET "/v1/datasets/$ds" "${R[@]}"; [ "$STATUS" = 200 ]; ok $? "read token sees what admin wrote"
http GET /v1/version; envelope 401 unauthorized; ok $? "no token -> 401"
http GET /v1/openapi.json "${R[@]}"
echo "$BODY" | jq -e '.paths["/v1/jobs"].post.responses["403"] and (.paths["/v1/jobs"].get.responses["403"] | not)' >/dev/null
ok $? "OpenAPI lists 403 on writes only"

# ---- SIGHUP re-reads the token file --------------------------------------------------
printf '%s\nread %s\n' "$admin" "$reader2" >"$TMP/tokens"
kill -HUP "$DAEMON_PID"
for _ in $(seq 50); do grep -q "token file re-read" "$LOG" && break; sleep 0.1; done
http GET /v1/version "${R[@]}"; envelope 401 unauthorized; ok $? "after SIGHUP the removed read token -> 401"
http GET /v1/version -H "Authorization: Bearer $reader2"; [ "$STATUS" = 200 ]; ok $? "the added read token -> 200"
! grep -qe "$admin" -e "$reader" -e "$reader2" "$LOG"; ok $? "no token appears in the log"
stop_daemon; ok $? "daemon stops cleanly"
done_testing
