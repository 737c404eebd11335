#!/usr/bin/env bash
# test_api_http.sh - the HTTP framework against the real daemon: bearer-token
# auth, every bad-input class (400 with param, 401, 404, 405, 409, 413, 415)
# answered in the error envelope with the daemon still serving, slow clients
# cut off, the OpenAPI document matching the routes the daemon really serves,
# and datasets: CSV and IDX uploads (validated, schema detected), list with
# cursor pagination, get, delete; the per-address connection limit.
. "$(dirname "$0")/lib.sh"

FMNIST=/usr/share/datasets/fashion-mnist
token="t0ken-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$token" >"$TMP/token"
chmod 600 "$TMP/token"
AUTH=(-H "Authorization: Bearer $token")

# envelope STATUS CODE [PARAM]: the last http call answered STATUS with error.code CODE (and error.param PARAM).
envelope() {
        [ "$STATUS" = "$1" ] || return 1
        [ "$(echo "$BODY" | jq -r .error.code)" = "$2" ] || return 1
        echo "$BODY" | jq -e '.error | has("message") and has("param")' >/dev/null || return 1
        [ $# -lt 3 ] || [ "$(echo "$BODY" | jq -r .error.param)" = "$3" ]
}

# ---- startup rules -----------------------------------------------------------------
"$FINETUNED" serve --listen 0.0.0.0:0 --state-dir "$TMP/s0" 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] && grep -q -- "--token-file" "$TMP/err"; ok $? "non-loopback listen without --token-file -> exit 1: $(head -n1 "$TMP/err")"
cp "$TMP/token" "$TMP/token644"; chmod 644 "$TMP/token644"
"$FINETUNED" serve --listen 127.0.0.1:0 --state-dir "$TMP/s0" --token-file "$TMP/token644" 2>"$TMP/err"; rc=$?
[ $rc -eq 1 ] && grep -q "chmod 600" "$TMP/err"; ok $? "token file readable by others -> exit 1: $(head -n1 "$TMP/err")"

state="$TMP/state"
start_daemon "$state" --token-file "$TMP/token" --max-upload-mb 1 --http-timeout 2 --max-connections-per-ip 3; ok $? "daemon starts with a token file"

# ---- auth ----------------------------------------------------------------------------
http GET /v1/version
envelope 401 unauthorized; ok $? "no token -> 401"
hdr=$(curl -s -o /dev/null -D - "$BASE/v1/version" | tr -d '\r' | sed -n 's/^WWW-Authenticate: //Ip')
[ "$hdr" = Bearer ]; ok $? "401 carries WWW-Authenticate: Bearer"
http GET /v1/version -H "Authorization: Bearer ${token}x"
envelope 401 unauthorized; ok $? "a longer wrong token -> 401"
http GET /v1/version -H "Authorization: Bearer ${token%?}"
envelope 401 unauthorized; ok $? "a prefix of the token -> 401"
http GET /v1/version -H "Authorization: Basic $token"
envelope 401 unauthorized; ok $? "another scheme -> 401"
http GET /v1/version "${AUTH[@]}"
[ "$STATUS" = 200 ]; ok $? "the right token -> 200"
http GET /healthz
[ "$STATUS" = 200 ]; ok $? "/healthz needs no token"
http GET /nope
envelope 401 unauthorized; ok $? "unknown routes need the token too (no route discovery)"
! grep -q "$token" "$LOG"; ok $? "the token never appears in the log"

# ---- routing ---------------------------------------------------------------------------
http GET /nope "${AUTH[@]}"
envelope 404 not_found; ok $? "unknown route -> 404"
allow=$(curl -s -o /dev/null -D - -X PUT "${AUTH[@]}" "$BASE/v1/datasets" | tr -d '\r' | sed -n 's/^Allow: //Ip')
http PUT /v1/datasets "${AUTH[@]}"
envelope 405 method_not_allowed && [ "$allow" = "POST, GET" ]; ok $? "PUT /v1/datasets -> 405 with Allow: $allow"
http GET /v1/datasets/ds_0123456789abcdef01234567 "${AUTH[@]}"
envelope 404 not_found id; ok $? "well-formed unknown id -> 404 param id"
http GET '/v1/datasets/..%2F..%2Fetc%2Fpasswd' "${AUTH[@]}"
envelope 404 not_found; ok $? "encoded path traversal -> 404: $(echo "$BODY" | jq -r .error.message)"
http GET '/v1/datasets/ds_..' "${AUTH[@]}"
envelope 404 not_found id; ok $? "malformed id -> 404 param id before the store: $(echo "$BODY" | jq -r .error.message)"
http GET "/v1/jobs/job_$(printf 'a%.0s' $(seq 1 300))" "${AUTH[@]}"
envelope 404 not_found; ok $? "over-long id -> 404"

# ---- query strings ------------------------------------------------------------------------
http GET '/v1/datasets?limit=0' "${AUTH[@]}"
envelope 400 invalid_request limit; ok $? "limit=0 -> 400 param limit"
http GET '/v1/datasets?limit=abc' "${AUTH[@]}"
envelope 400 invalid_request limit; ok $? "limit=abc -> 400 param limit"
http GET '/v1/datasets?colour=red' "${AUTH[@]}"
envelope 400 invalid_request colour; ok $? "unknown query parameter -> 400 param colour"
http GET '/v1/jobs?state=sleeping' "${AUTH[@]}"
envelope 400 invalid_request state; ok $? "unknown state filter -> 400 param state"

# ---- JSON bodies -----------------------------------------------------------------------------
J=(-H 'Content-Type: application/json')
http POST /v1/models "${AUTH[@]}" "${J[@]}" -d '{"preset": "mlp", "bogus": 1}'
envelope 400 invalid_request bogus; ok $? "unknown field -> 400 param bogus"
http POST /v1/models "${AUTH[@]}" "${J[@]}" -d '{"preset": 5}'
envelope 400 invalid_request preset; ok $? "wrong type -> 400 param preset: $(echo "$BODY" | jq -r .error.message)"
http POST /v1/models "${AUTH[@]}" "${J[@]}" -d '{"preset": "gpt5"}'
envelope 400 invalid_request preset; ok $? "impossible value -> 400 param preset"
http POST /v1/models "${AUTH[@]}" "${J[@]}" -d '{"preset": "mlp",'
envelope 400 invalid_request && echo "$BODY" | jq -r .error.message | grep -q "line 1"; ok $? "broken JSON -> 400 naming line and column"
http POST /v1/models "${AUTH[@]}" "${J[@]}" -d '{"name":"a","name":"b"}'
envelope 400 invalid_request; ok $? "duplicate keys -> 400"
deep=$(printf '[%.0s' $(seq 1 40)); deep="{\"spec\":$deep$(printf ']%.0s' $(seq 1 40))}"
http POST /v1/models "${AUTH[@]}" "${J[@]}" -d "$deep"
envelope 400 invalid_request && echo "$BODY" | grep -q "nested"; ok $? "nesting deeper than 32 -> 400"
http POST /v1/models "${AUTH[@]}" -H 'Content-Type: text/plain' -d '{"preset":"mlp"}'
envelope 415 unsupported_media_type Content-Type; ok $? "JSON route with text/plain -> 415"
head -c 300000 /dev/zero | tr '\0' ' ' >"$TMP/big.json"
http POST /v1/jobs "${AUTH[@]}" "${J[@]}" --data-binary @"$TMP/big.json"
envelope 413 payload_too_large; ok $? "300 KB JSON body -> 413 (cap 256 KiB)"
http POST /v1/jobs "${AUTH[@]}" "${J[@]}" -d '[1,2]'
envelope 400 invalid_request; ok $? "a JSON array body -> 400"
http GET /v1/datasets "${AUTH[@]}" -d 'x=1'
envelope 413 payload_too_large; ok $? "a body on GET -> 413 (takes no body)"

# ---- uploads ------------------------------------------------------------------------------------
printf 'sepal_length,sepal_width,species\n5.1,3.5,setosa\n7.0,3.2,versicolor\n6.3,3.3,virginica\n4.9,3.0,setosa\n' >"$TMP/iris.csv"
http POST '/v1/datasets?name=iris' "${AUTH[@]}" --data-binary @"$TMP/iris.csv"
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e '.id and .name == "iris" and .format == "csv" and .schema.rows == 4 and .schema.features == 2 and .schema.num_classes == 3 and .schema.target == "species"' >/dev/null
ok $? "CSV upload -> 201 with the detected schema"
ds1=$(echo "$BODY" | jq -r .id)
http POST /v1/datasets "${AUTH[@]}" -F file=@"$TMP/iris.csv"
[ "$STATUS" = 201 ] && [ "$(echo "$BODY" | jq -r .name)" = iris.csv ]; ok $? "multipart 'file' upload -> 201 named after the file"
ds2=$(echo "$BODY" | jq -r .id)
printf 'a,b\n1,x\n' >"$TMP/bad.csv"
http POST /v1/datasets "${AUTH[@]}" --data-binary @"$TMP/bad.csv"
envelope 400 invalid_request && ! echo "$BODY" | grep -q blobs; ok $? "invalid CSV -> 400 without server paths: $(echo "$BODY" | jq -r .error.message)"
head -c 2000000 /dev/zero >"$TMP/big.bin"
http POST /v1/datasets "${AUTH[@]}" --data-binary @"$TMP/big.bin"
envelope 413 payload_too_large; ok $? "2 MB upload over a 1 MiB cap -> 413 (Content-Length)"
http POST /v1/datasets "${AUTH[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big.bin"
envelope 413 payload_too_large; ok $? "2 MB chunked upload -> 413 (counted while streaming)"
http POST /v1/datasets "${AUTH[@]}" -H 'Content-Type: application/json' --data-binary @"$TMP/iris.csv"
envelope 415 unsupported_media_type; ok $? "upload sent as JSON -> 415"
http POST /v1/datasets "${AUTH[@]}" -F images=@"$TMP/iris.csv"
envelope 400 invalid_request labels; ok $? "'images' without 'labels' -> 400 param labels"
http POST /v1/datasets "${AUTH[@]}" -F file=@"$TMP/iris.csv" $(for i in 1 2 3 4 5 6; do echo -F "p$i=@$TMP/iris.csv"; done)
envelope 400 invalid_request; ok $? "seven parts -> 400"
# IDX: the first 200 Fashion-MNIST test images and labels, gzip'd
{ printf '\x00\x00\x08\x03\x00\x00\x00\xc8\x00\x00\x00\x1c\x00\x00\x00\x1c'; gunzip -c "$FMNIST/t10k-images-idx3-ubyte.gz" | tail -c +17 | head -c $((200 * 784)); } | gzip >"$TMP/img.gz"
{ printf '\x00\x00\x08\x01\x00\x00\x00\xc8'; gunzip -c "$FMNIST/t10k-labels-idx1-ubyte.gz" | tail -c +9 | head -c 200; } | gzip >"$TMP/lbl.gz"
{ printf '\x00\x00\x08\x01\x00\x00\x00\x64'; gunzip -c "$FMNIST/t10k-labels-idx1-ubyte.gz" | tail -c +9 | head -c 100; } >"$TMP/lbl100"
http POST '/v1/datasets?name=fmnist-200' "${AUTH[@]}" -F images=@"$TMP/img.gz" -F labels=@"$TMP/lbl.gz"
[ "$STATUS" = 201 ] && echo "$BODY" | jq -e --arg lsha "$(sha256sum "$TMP/lbl.gz" | cut -d' ' -f1)" --arg lbytes "$(stat -c %s "$TMP/lbl.gz")" '.format == "idx.gz" and .schema.rows == 200 and .schema.image_shape == [1,28,28] and .schema.num_classes == 10 and (.schema | has("labels_dataset") | not) and .labels == {"format": "idx.gz", "sha256": $lsha, "bytes": ($lbytes | tonumber)}' >/dev/null
ok $? "IDX pair as multipart -> 201, one dataset: 200 images 1x28x28, 10 classes, its labels file beside the images"
ds3=$(echo "$BODY" | jq -r .id)
[ "$(echo "$BODY" | jq -r .sha256)" = "$(sha256sum "$TMP/img.gz" | cut -d' ' -f1)" ]; ok $? "sha256 and bytes are the images file's"
http GET "/v1/datasets/$ds1" "${AUTH[@]}"
[ "$(echo "$BODY" | jq -c .labels)" = null ]; ok $? "a CSV dataset has no labels file (labels: null)"
http POST /v1/datasets "${AUTH[@]}" -F images=@"$TMP/img.gz" -F labels=@"$TMP/lbl100"
envelope 400 invalid_request && echo "$BODY" | grep -q "200 images"; ok $? "IDX counts differ -> 400: $(echo "$BODY" | jq -r .error.message)"
http POST /v1/datasets "${AUTH[@]}" --data-binary @"$TMP/img.gz"
envelope 400 invalid_request labels; ok $? "IDX images alone -> 400 param labels"

# ---- list, pagination, get, delete -----------------------------------------------------------------
http GET '/v1/datasets?limit=2' "${AUTH[@]}"
p1=$(echo "$BODY" | jq -r '[.data[].id] | join(" ")'); next=$(echo "$BODY" | jq -r .next_after)
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq -r '.object + " " + (.has_more|tostring)')" = "list true" ] && [ "$(echo "$p1" | wc -w)" = 2 ]
ok $? "page 1 (limit 2): has_more, next_after=$next"
http GET "/v1/datasets?limit=2&after=$next" "${AUTH[@]}"
p2=$(echo "$BODY" | jq -r '[.data[].id] | join(" ")')
http GET "/v1/datasets?limit=100" "${AUTH[@]}"
all=$(echo "$BODY" | jq -r '[.data[].id] | join(" ")')
[ "$(echo "$all" | wc -w)" = 3 ] && [ "$p1 $p2" = "$all" ] && [ "$(echo "$BODY" | jq .has_more)" = false ]
ok $? "pages 1+2 are the whole list, newest first, no overlap ($all)"
http GET '/v1/datasets?after=ds_000000000000000000000000' "${AUTH[@]}"
envelope 400 invalid_request after; ok $? "unknown cursor -> 400 param after"
http GET "/v1/datasets/$ds1" "${AUTH[@]}"
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq -r .id)" = "$ds1" ]; ok $? "GET one dataset"
http DELETE "/v1/datasets/$ds3" "${AUTH[@]}"
[ "$STATUS" = 200 ] && [ "$(echo "$BODY" | jq .deleted)" = true ]; ok $? "DELETE dataset -> 200 deleted (the IDX pair: both files)"
http GET "/v1/datasets?limit=100" "${AUTH[@]}"
! echo "$BODY" | jq -e --arg id "$ds3" '.data[] | select(.id == $id)' >/dev/null; ok $? "it is gone from the list"
http DELETE "/v1/datasets/$ds3" "${AUTH[@]}"
envelope 404 not_found; ok $? "DELETE again -> 404"

# ---- slow clients --------------------------------------------------------------------------------
port=${BASE##*:}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n' >&3
t0=$(date +%s)
timeout 10 cat <&3 >/dev/null
t1=$(date +%s)
exec 3<&-
[ $((t1 - t0)) -le 6 ]; ok $? "a client that stops mid-headers is cut off after the timeout ($((t1 - t0)) s, --http-timeout 2)"

# ---- per-address connection limit (3 here) ---------------------------------------------------------
exec 4<>"/dev/tcp/127.0.0.1/$port" 5<>"/dev/tcp/127.0.0.1/$port" 6<>"/dev/tcp/127.0.0.1/$port"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${AUTH[@]}" "$BASE/v1/datasets")
health=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/healthz")
exec 4<&- 5<&- 6<&-
# the daemon notices the closes when it gets to run: ask until it answers (at most ~10 s)
for i in $(seq 1 100); do
        code2=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${AUTH[@]}" "$BASE/v1/datasets")
        [ "$code2" = 200 ] && break
        sleep 0.1
done
[ "$code" = 503 ] && [ "$code2" = 200 ]; ok $? "a 4th connection from one address is answered 503 ($code), served again once they close ($code2)"
[ "$health" = 200 ]; ok $? "/healthz answers over the cap, from the reserve ($health)"

# ---- the OpenAPI document matches the routes ------------------------------------------------------------
http GET /v1/openapi.json
[ "$STATUS" = 200 ] && echo "$BODY" | jq -e '.openapi == "3.1.0" and (.paths | length) > 10' >/dev/null
ok $? "GET /v1/openapi.json (public) is OpenAPI 3.1.0"
echo "$BODY" >"$TMP/openapi.json"
bad=0; n=0
while read -r method path; do
        n=$((n + 1))
        url=$(echo "$path" | sed 's/{id}/x_1/; s/{name}/metrics.json/')
        code=$(curl -s -o "$TMP/r" -w '%{http_code}' -X "$method" "${AUTH[@]}" "$BASE$url")
        if [ "$code" = 405 ] || grep -q '"no route' "$TMP/r"; then bad=$((bad + 1)); diag "$method $path -> $code"; fi
done < <(jq -r '.paths | to_entries[] | .key as $p | .value | keys[] | ascii_upcase + " " + $p' "$TMP/openapi.json")
[ $bad -eq 0 ] && [ $n -ge 18 ]; ok $? "each of the $n operations in the document is a real route"
echo "$BODY" | jq -e '.paths["/v1/models"].post.requestBody.content["application/json"].schema.properties.preset.enum | index("resnet18")' >/dev/null
ok $? "request bodies come from the validation tables (models.preset enum)"
echo "$BODY" | jq -e '(.paths["/metrics"].get.responses["200"].content | keys) == ["text/plain"] and
        (.paths["/"].get.responses["200"].content | keys) == ["text/html"] and
        (.paths["/v1/models/{id}/weights"].get.responses["200"].content | keys) == ["application/octet-stream"]' >/dev/null
ok $? "binary routes name their media types (/metrics text/plain, / text/html, weights octet-stream)"

# ---- SIGHUP re-reads the token file ----------------------------------------------------------------------
new="n3w-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$new" >"$TMP/token"
kill -HUP "$DAEMON_PID"
for i in $(seq 1 50); do grep -q "token file re-read" "$LOG" && break; sleep 0.05; done
http GET /v1/version "${AUTH[@]}"; old=$STATUS
http GET /v1/version -H "Authorization: Bearer $new"
[ "$old" = 401 ] && [ "$STATUS" = 200 ]; ok $? "after SIGHUP the new token works ($STATUS) and the old one not ($old)"
chmod 644 "$TMP/token"; kill -HUP "$DAEMON_PID"
for i in $(seq 1 50); do grep -q "keeping the old token" "$LOG" && break; sleep 0.05; done
http GET /v1/version -H "Authorization: Bearer $new"
[ "$STATUS" = 200 ] && grep -q "keeping the old token" "$LOG"; ok $? "a token file made world-readable is refused on SIGHUP; the old token stays"
! grep -q "$new" "$LOG"; ok $? "the new token is not logged either"

http GET /healthz
[ "$STATUS" = 200 ] && kill -0 "$DAEMON_PID"; ok $? "after every bad request the daemon still serves"
stop_daemon; ok $? "clean stop"
done_testing
