#!/usr/bin/env bash
# test_api_hostile.sh - hostile HTTP clients on a real daemon on loopback:
# request smuggling hygiene (Content-Length twice, Content-Length with
# Transfer-Encoding, 1,000 query parameters: 400 envelopes), multipart parts
# given twice and a body without its closing boundary (400), a slowloris
# client (one header byte every 2 s with --http-timeout 5) disconnected by the
# header deadline, a slow upload body cut by the minimum body rate, and
# clients over the per-address cap answered 503 with Retry-After and the
# envelope while /healthz and /metrics still answer. Plain python3 sockets.
. "$(dirname "$0")/lib.sh"

start_daemon "$TMP/state" --http-timeout 5 --max-connections-per-ip 8; ok $? "daemon starts (http-timeout 5, 8 per address)"
PORT=${BASE##*:}

py() { python3 - "$PORT" "$@"; }

out=$(py <<'PY'
import json, socket, sys
port = int(sys.argv[1])
def req(raw):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(20); s.sendall(raw)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            out += d
    except Exception as e:
        return "error " + str(e)
    head, _, body = out.partition(b"\r\n\r\n")
    status = head.split(b" ")[1].decode() if head else "none"
    try: code = json.loads(body)["error"]["code"]
    except Exception: code = "no-envelope"
    return status + " " + code
print(req(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}"))
print(req(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"))
q = "&".join("p%d=%d" % (i, i) for i in range(1000))
print(req(("GET /v1/jobs?%s HTTP/1.1\r\nHost: x\r\n\r\n" % q).encode()))
print(req(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
PY
)
diag "$out"
[ "$(sed -n 1p <<<"$out")" = "400 invalid_request" ]; ok $? "two different Content-Length headers: 400 envelope"
[ "$(sed -n 2p <<<"$out")" = "400 invalid_request" ]; ok $? "Content-Length with Transfer-Encoding: chunked: 400 envelope"
[ "$(sed -n 3p <<<"$out")" = "400 invalid_request" ]; ok $? "1,000 query parameters: 400 envelope, not a closed connection"
[ "$(sed -n 4p <<<"$out")" = "200 no-envelope" ]; ok $? "the same Content-Length twice is one length (RFC 9112): answered"

# multipart bodies: a part given twice, and a body cut before its closing boundary (it was stored as a
# shorter dataset): 400 envelopes, nothing stored
printf 'a,b,label\n1,2,0\n2,1,1\n3,1,1\n1,3,0\n4,4,1\n' >"$TMP/mp.csv"
http POST /v1/datasets -F "file=@$TMP/mp.csv" -F "file=@$TMP/mp.csv"
[ "$STATUS" = 400 ] && echo "$BODY" | jq -r .error.message | grep -q "given twice"
ok $? "a multipart part given twice: 400 ($STATUS $(echo "$BODY" | jq -c .error))"
http POST /v1/models -F name=a -F name=b -F preset=mlp -F 'config={"inputs":2,"hidden":[4],"outputs":2}'
[ "$STATUS" = 400 ]; ok $? "a form field given twice: 400 ($STATUS)"
before=$(curl -s "$BASE/v1/datasets?limit=100" | jq '.data | length')
cut=$(printf -- '--fz\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n\r\na,b,label\n1,2,0\n2,1,1\n3,1,1\n')
http POST /v1/datasets -H 'Content-Type: multipart/form-data; boundary=fz' --data-binary "$cut"
[ "$STATUS" = 400 ] && echo "$BODY" | jq -r .error.message | grep -q "closing boundary"
ok $? "a multipart body without its closing boundary: 400 ($STATUS $(echo "$BODY" | jq -c .error))"
[ "$(curl -s "$BASE/v1/datasets?limit=100" | jq '.data | length')" = "$before" ]; ok $? "and nothing was stored"

# slowloris: one header byte every 2 s; the daemon must hang up well before 40 s (20 bytes)
out=$(py <<'PY'
import select, socket, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(3)
t0 = time.monotonic(); sent = 0
msg = b"GET /v1/jobs HTTP/1.1\r\nX-Slow: " + b"a" * 100
closed = False
for b in msg:
    try:
        s.send(bytes([b])); sent += 1
        if select.select([s], [], [], 0)[0] and s.recv(1) == b"": closed = True; break
    except OSError: closed = True; break
    if time.monotonic() - t0 > 40: break
    time.sleep(2)
print("closed" if closed else "open", sent)
PY
)
diag "slowloris: $out"
set -- $out
[ "$1" = closed ] && [ "$2" -lt 20 ]; ok $? "a header sent one byte every 2 s is cut off by the header deadline ($2 bytes sent)"

# a slow upload body: 10 bytes a second against a 1 KiB/s minimum
out=$(py <<'PY'
import select, socket, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(3)
s.sendall(b"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 100000\r\n\r\n")
t0 = time.monotonic(); closed = False
while time.monotonic() - t0 < 40:
    try:
        s.send(b"1,2,3,4,5\n")
        if select.select([s], [], [], 0)[0] and s.recv(1) == b"": closed = True; break
    except OSError: closed = True; break
    time.sleep(1)
print("closed" if closed else "open", int(time.monotonic() - t0))
PY
)
diag "slow body: $out"
set -- $out
[ "$1" = closed ]; ok $? "an upload body at 10 B/s is cut off by the minimum body rate"

# over the per-address cap (8): 503 envelopes with Retry-After; /healthz and /metrics still answer
out=$(py <<'PY'
import json, socket, sys
port = int(sys.argv[1])
held = []
for i in range(12):  # 12 open connections, each with an answered request: a dashboard's keep-alives
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(10)
    held.append(s)
def one(path):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            out += d
    except Exception as e:
        return "error", "", ""
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    retry = [l for l in lines if l.lower().startswith("retry-after:")]
    try: code = json.loads(body)["error"]["code"]
    except Exception: code = "-"
    return lines[0].split(" ")[1], code, retry[0] if retry else ""
print(*one("/v1/jobs"))
print(*one("/healthz"))
print(*one("/metrics")[:1])
PY
)
diag "$out"
[ "$(sed -n 1p <<<"$out")" = "503 unavailable Retry-After: 1" ]; ok $? "over the per-address cap: 503 envelope with Retry-After, not a reset"
[ "$(sed -n 2p <<<"$out" | cut -d' ' -f1)" = 200 ]; ok $? "/healthz still answers from the reserve"
[ "$(sed -n 3p <<<"$out")" = 200 ]; ok $? "/metrics still answers from the reserve"
http GET /healthz; [ "$STATUS" = 200 ]; ok $? "the daemon is fine afterwards"
stop_daemon; ok $? "it stops cleanly"
done_testing
