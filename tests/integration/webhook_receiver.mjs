// webhook_receiver.mjs - the webhook tests' own receiver: an HTTP server on
// 127.0.0.1 that verifies every request as the Standard Webhooks
// specification says a receiver should (webhook-id, webhook-timestamp within
// five minutes, webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>"
// under the base64 key after "whsec_"), with node's own crypto, and appends one
// JSON line per request to DIR/received.ndjson: {id, timestamp, type, valid,
// status, body}. Controlled through files in DIR, read on every request:
//   DIR/secret     the endpoint's secret (no file: every signature is invalid)
//   DIR/fail_next  a number N: answer the next N requests 500 (then 200)
//   DIR/slow_ms    a number: wait that long before answering
// Answers 401 to a request whose signature does not verify. Writes its port to
// DIR/port once listening.
//   node webhook_receiver.mjs DIR
import { createHmac, timingSafeEqual } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

const dir = process.argv[2];
const read = (name) => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'utf8').trim() : null);

function verify(secret, id, timestamp, body, header) {
    if (!secret || !secret.startsWith('whsec_') || !id || !timestamp || !header) return false;
    if (!/^[0-9]+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
    const key = Buffer.from(secret.slice(6), 'base64');
    const want = createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest();
    // the header may carry several space-separated signatures; one that verifies is enough
    return header.split(' ').some((sig) => {
        const [version, value] = sig.split(',');
        if (version !== 'v1' || !value) return false;
        const got = Buffer.from(value, 'base64');
        return got.length === want.length && timingSafeEqual(got, want);
    });
}

const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        const body = Buffer.concat(chunks);
        const id = req.headers['webhook-id'], timestamp = req.headers['webhook-timestamp'];
        const valid = req.method === 'POST' && verify(read('secret'), id, timestamp, body, req.headers['webhook-signature']);
        let status = valid ? 200 : 401;
        const failNext = Number(read('fail_next') || 0);
        if (valid && failNext > 0) {
            writeFileSync(join(dir, 'fail_next'), String(failNext - 1));
            status = 500;
        }
        let type = null;
        try { type = JSON.parse(body.toString('utf8')).type; } catch { type = null; }
        const answer = () => {
            appendFileSync(join(dir, 'received.ndjson'),
                JSON.stringify({ id, timestamp, type, valid, status, body: body.toString('utf8') }) + '\n');
            res.writeHead(status, { 'Content-Type': 'text/plain' });
            res.end(status === 200 ? 'ok' : 'no');
        };
        const slow = Number(read('slow_ms') || 0);
        if (slow > 0) setTimeout(answer, slow); else answer();
    });
});
server.listen(0, '127.0.0.1', () => writeFileSync(join(dir, 'port'), String(server.address().port)));
