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
echo "$body" | grep -q '<script type="module" src="/static/main.js"></script>' &&
        echo "$body" | grep -q '<script src="/static/chart.js" defer></script>'
ok $? "index.html loads chart.js, then the module main.js, from /static"

for f in main.js:text/javascript app.css:text/css chart.js:text/javascript favicon.svg:image/svg+xml; do
        name=${f%%:*} type=${f#*:}
        read -r code size ct < <(curl -s -o /dev/null -w '%{http_code} %{size_download} %{content_type}' "$BASE/static/$name")
        [ "$code" = 200 ] && [[ "$ct" == "$type"* ]] && [ "$size" -gt 100 ]
        ok $? "GET /static/$name -> 200 $type ($size bytes)"
done
curl -s "$BASE/static/chart.js" | head -c 300 | grep -q 'Chart.js v[0-9]'; ok $? "chart.js is Debian's Chart.js"
# Every ES module in web/ is embedded and served as itself, and every module imported is one of them: a
# file left out of web/meson.build would be a 404 in the browser.
WEB="$(dirname "$0")/../../web"
bad=
for src in "$WEB"/*.js; do
        name=$(basename "$src")
        h=$(headers "$BASE/static/$name")
        echo "$h" | grep -qi '^Content-Type: text/javascript; charset=utf-8' && echo "$h" | grep -qi '^Cache-Control: no-cache' &&
                echo "$h" | grep -qi '^ETag: "' && curl -s "$BASE/static/$name" | cmp -s - "$src" || bad="$bad $name"
done
for imp in $(grep -ho "from '\./[a-z-]*\.js'" "$WEB"/*.js | sed "s/from '\.\/\(.*\)'/\1/" | sort -u); do
        [ -f "$WEB/$imp" ] || bad="$bad $imp(imported)"
done
[ -z "$bad" ]; ok $? "every web/*.js module is served byte for byte as text/javascript with an ETag and no-cache${bad:+: not$bad}"

etag=$(headers "$BASE/static/main.js" | sed -n 's/^ETag: //Ip')
[[ "$etag" =~ ^\"[0-9a-f]{16}\"$ ]]; ok $? "strong ETag ($etag)"
st=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "If-None-Match: $etag" "$BASE/static/main.js")
[ "$st" = "304 0" ]; ok $? "If-None-Match with the ETag -> 304, no body ($st)"
st=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: \"0000000000000000\", W/$etag" "$BASE/static/main.js")
[ "$st" = 304 ]; ok $? "If-None-Match list with a weak match -> 304"
st=$(curl -s -o /dev/null -w '%{http_code}' -H 'If-None-Match: "0000000000000000"' "$BASE/static/main.js")
[ "$st" = 200 ]; ok $? "If-None-Match with another ETag -> 200"
h=$(headers -I "$BASE/static/main.js")
echo "$h" | grep -q '^HTTP/1.1 200' && echo "$h" | grep -qi '^Content-Length: [1-9]'
ok $? "HEAD /static/main.js -> 200 with Content-Length"

for p in /static/nope.js /static/app.js /static/index.html /static/ /static/a/b /static/..%2Fetc%2Fpasswd /index.html; do
        http GET "$p"
        [ "$STATUS" = 404 ] && [ "$(echo "$BODY" | jq -r .error.code)" = not_found ]
        ok $? "GET $p -> 404 in the error envelope"
done
long=$(head -c 3000 /dev/zero | tr '\0' a)
http GET "/static/$long.js"
[ "$STATUS" = 404 ]; ok $? "a 3000-character file name -> 404"
allow=$(headers -X POST "$BASE/" | sed -n 's/^Allow: //Ip')
st=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/static/main.js")
[ "$allow" = GET ] && [ "$st" = 405 ]; ok $? "POST / and /static/main.js -> 405 with Allow: GET"

http GET /healthz
[ "$STATUS" = 200 ]; ok $? "the daemon still serves"
stop_daemon; ok $? "daemon stops cleanly"
done_testing
