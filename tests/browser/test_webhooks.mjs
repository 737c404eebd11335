// test_webhooks.mjs - the dashboard's webhooks page and a job's labels, in
// headless Chromium against the real daemon (with --webhook-allow
// 127.0.0.1/32) and a receiver of the test's own that verifies each request's
// Standard Webhooks signature with the secret the page showed: a job's
// metadata on its page; register an endpoint through the form (job.epoch not
// ticked by default, the secret shown once), an internal address refused next
// to the URL field, Test, the delivery log showing it delivered, Delete.
//
//   node test_webhooks.mjs FINETUNED_BINARY ARTIFACTS_DIR
//
// Waits are for conditions on the page or the receiver, never a fixed time. Prints TAP.
import { ok, diag, doneTesting, cleanup, startDaemon, launchBrowser, watchConsole, screenshot, TMP, makeCsv, atExit }
        from './harness.mjs';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

const [bin, artifacts] = process.argv.slice(2);

async function call(base, method, path, body, type) {
        const r = await fetch(base + path, {method, body, headers: type ? {'Content-Type': type} : {}});
        const json = await r.json();
        if (!r.ok)
                throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
        return json;
}

// The receiver: every request's signature checked against `secret` (set once the page shows it).
const got = [];
let secret = null;
function verify(req, body) {
        const id = req.headers['webhook-id'], ts = req.headers['webhook-timestamp'], sig = req.headers['webhook-signature'];
        if (!secret || !id || !ts || !sig || Math.abs(Date.now() / 1000 - Number(ts)) > 300)
                return false;
        const want = createHmac('sha256', Buffer.from(secret.slice(6), 'base64')).update(`${id}.${ts}.`).update(body).digest();
        return sig.split(' ').some((s) => {
                const v = Buffer.from(s.replace(/^v1,/, ''), 'base64');
                return s.startsWith('v1,') && v.length === want.length && timingSafeEqual(v, want);
        });
}
const receiver = createServer((req, res) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
                const body = Buffer.concat(chunks);
                const valid = verify(req, body);
                got.push({id: req.headers['webhook-id'], valid, type: JSON.parse(body.toString()).type});
                res.writeHead(valid ? 204 : 401).end();
        });
});

async function main() {
        await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
        atExit(() => new Promise((r) => receiver.close(r)));
        const hook = `http://127.0.0.1:${receiver.address().port}/hook`;
        const daemon = await startDaemon(bin, join(TMP, 'state'), ['--webhook-allow', '127.0.0.1/32']);
        const base = daemon.base;
        ok(true, `daemon listening on ${base}, receiver on ${hook}`);

        const csv = makeCsv(join(TMP, 'blobs.csv'), 120, 4, ['a', 'b']);
        const ds = await call(base, 'POST', '/v1/datasets?name=blobs.csv', readFileSync(csv), 'text/csv');
        const model = await call(base, 'POST', '/v1/models', JSON.stringify(
                {name: 'mlp', preset: 'mlp', config: {inputs: 4, outputs: 2, hidden: [8]}}), 'application/json');
        const job = await call(base, 'POST', '/v1/jobs', JSON.stringify(
                {model: model.id, training_file: ds.id, hyperparameters: {epochs: 1},
                 metadata: {team: 'vision', pipeline: 'nightly'}, suffix: 'nightly-1'}), 'application/json');

        const context = await launchBrowser();
        const page = context.pages()[0] || await context.newPage();
        const cons = watchConsole(page);

        // the job page shows its labels and suffix
        await page.goto(`${base}/#/jobs/${job.id}`);
        await page.waitForSelector('#job-metadata li');
        const labels = await page.$$eval('#job-metadata li', (li) => li.map((l) => l.textContent));
        ok(JSON.stringify(labels) === JSON.stringify(['team = vision', 'pipeline = nightly']),
           `the job page shows its labels: ${labels.join(', ')}`);
        ok((await page.textContent('#job-suffix')) === 'nightly-1', 'and the model suffix');

        // register through the form
        await page.goto(`${base}/#/webhooks`);
        await page.waitForSelector('#webhook-form');
        const ticked = await page.$$eval('#webhook-form input[name=event_types]',
                                         (b) => b.filter((x) => x.checked).map((x) => x.value));
        ok(!ticked.includes('job.epoch') && ticked.includes('job.succeeded') && ticked.includes('job.warning'),
           `every event but job.epoch ticked by default (${ticked.length})`);
        await page.fill('#wh-url', 'http://10.0.0.1/hook');
        await page.click('#webhook-form button[type=submit]');
        await page.waitForFunction(() => document.querySelector('#wh-error').textContent.length > 0);
        ok(/internal address/.test(await page.textContent('#wh-error')) &&
           (await page.getAttribute('#wh-url', 'aria-invalid')) === 'true',
           'an internal address is refused next to the URL field');
        await page.fill('#wh-url', hook);
        await page.fill('#wh-desc', 'browser test');
        await page.click('#webhook-form button[type=submit]');
        await page.waitForSelector('#wh-secret-value');
        secret = await page.textContent('#wh-secret-value');
        ok(/^whsec_[A-Za-z0-9+/]+=*$/.test(secret), 'the secret is shown once, after the create');
        await page.waitForSelector('#webhooks-table tr[data-webhook]');
        const row = await page.textContent('#webhooks-table tr[data-webhook]');
        ok(row.includes(hook) && row.includes('browser test'), 'the endpoint is listed');
        const hooks = await call(base, 'GET', '/v1/webhooks');
        ok(hooks.data.length === 1 && !('secret' in hooks.data[0]), 'the API lists it, without the secret');

        // Test, then the delivery log: refresh until the test event is delivered
        await page.click('#webhooks-table tr[data-webhook] button:has-text("Test")');
        await page.waitForSelector('#wh-deliveries tr[data-delivery]');
        const deadline = Date.now() + 60000;
        let state = null;
        while (Date.now() < deadline) {
                state = await page.getAttribute('#wh-deliveries tr[data-delivery]', 'data-state');
                if (state === 'succeeded')
                        break;
                await page.click('#wh-deliveries button:has-text("Refresh")');
                await page.waitForTimeout(200);
        }
        ok(state === 'succeeded', `the delivery log shows the test event delivered (${state})`);
        ok(got.some((g) => g.type === 'webhook.test' && g.valid), 'the receiver got it with a valid signature');
        await screenshot(page, artifacts, 'webhooks');

        await page.click('#webhooks-table tr[data-webhook] button:has-text("Delete")');
        await page.waitForSelector('#webhooks-table td.empty');
        ok((await call(base, 'GET', '/v1/webhooks')).data.length === 0, 'Delete removes it');
        ok(got.every((g) => g.valid), `every request the receiver saw verified (${got.length})`);
        // the one 400 is the refused internal address, which Chromium logs as a failed resource
        const errors = cons.take();
        const others = errors.filter((e) => !/status of 400/.test(e));
        ok(others.length === 0 && errors.length - others.length === 1,
           'no console errors but the one refused registration', errors.join('\n'));
        ok((await daemon.stop()) === 0, 'daemon stops cleanly');
}

let failed = false;
try {
        await main();
} catch (e) {
        failed = true;
        ok(false, 'test ran to the end', e.stack || String(e));
}
await cleanup();
if (artifacts)
        diag(`screenshots in ${artifacts}`);
process.exit(doneTesting() && !failed ? 0 : 1);
