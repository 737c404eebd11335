#!/usr/bin/env bash
# test_static.sh - the embedded dashboard as curl sees it: / and /static/{name}
# with content types, ETag revalidation (304), security headers, HEAD, and 404/405
# for everything else. The browser suite loads the same files in Chromium.
. "$(dirname "$0")/lib.sh"

start_daemon "$TMP/state"; ok $? "daemon starts"

headers() { curl -s -o /dev/null -D - "$@" | tr -d '\r'; }
h=$(headers "$BASE/")
echo "$h" | grep -q '^HTTP/1.1 200' && echo "$h" | grep -qi '^Content-Type: text/html; charset=utf-8'
ok $? "GET / -> 200 text/html"
echo "$h" | grep -qi "^Content-Security-Policy: default-src 'self'; script-src 'self'" &&
        echo "$h" | grep -qi '^X-Content-Type-Options: nosniff' && echo "$h" | grep -qi '^Cache-Control: no-cache'
ok $? "GET / carries CSP, nosniff and no-cache"
body=$(curl -s "$BASE/")
echo "$body" | grep -q '<script src="/static/app.js" defer></script>' && echo "$body" | grep -q '/static/chart.js'
ok $? "index.html loads app.js and chart.js from /static"

for f in app.js:text/javascript app.css:text/css chart.js:text/javascript favicon.svg:image/svg+xml; do
        name=${f%%:*} type=${f#*:}
        read -r code size ct < <(curl -s -o /dev/null -w '%{http_code} %{size_download} %{content_type}' "$BASE/static/$name")
        [ "$code" = 200 ] && [[ "$ct" == "$type"* ]] && [ "$size" -gt 100 ]
        ok $? "GET /static/$name -> 200 $type ($size bytes)"
done
curl -s "$BASE/static/chart.js" | head -c 300 | grep -q 'Chart.js v[0-9]'; ok $? "chart.js is Debian's Chart.js"

etag=$(headers "$BASE/static/app.js" | sed -n 's/^ETag: //Ip')
[[ "$etag" =~ ^\"[0-9a-f]{16}\"$ ]]; ok $? "strong ETag ($etag)"
st=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "If-None-Match: $etag" "$BASE/static/app.js")
[ "$st" = "304 0" ]; ok $? "If-None-Match with the ETag -> 304, no body ($st)"
st=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: \"0000000000000000\", W/$etag" "$BASE/static/app.js")
[ "$st" = 304 ]; ok $? "If-None-Match list with a weak match -> 304"
st=$(curl -s -o /dev/null -w '%{http_code}' -H 'If-None-Match: "0000000000000000"' "$BASE/static/app.js")
[ "$st" = 200 ]; ok $? "If-None-Match with another ETag -> 200"
h=$(headers -I "$BASE/static/app.js")
echo "$h" | grep -q '^HTTP/1.1 200' && echo "$h" | grep -qi '^Content-Length: [1-9]'
ok $? "HEAD /static/app.js -> 200 with Content-Length"

for p in /static/nope.js /static/index.html /static/ /static/a/b /static/..%2Fetc%2Fpasswd /index.html; do
        http GET "$p"
        [ "$STATUS" = 404 ] && [ "$(echo "$BODY" | jq -r .error.code)" = not_found ]
        ok $? "GET $p -> 404 in the error envelope"
done
long=$(head -c 3000 /dev/zero | tr '\0' a)
http GET "/static/$long.js"
[ "$STATUS" = 404 ]; ok $? "a 3000-character file name -> 404"
allow=$(headers -X POST "$BASE/" | sed -n 's/^Allow: //Ip')
st=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/static/app.js")
[ "$allow" = GET ] && [ "$st" = 405 ]; ok $? "POST / and /static/app.js -> 405 with Allow: GET"

http GET /healthz
[ "$STATUS" = 200 ]; ok $? "the daemon still serves"
stop_daemon; ok $? "daemon stops cleanly"
done_testing
