// test_resume.mjs - the job page survives a daemon restart in the middle of a
// job: its event stream drops, the page reconnects with Last-Event-ID to the
// daemon restarted on the same address, the job resumes from its checkpoint
// (attempt 2), and the loss chart ends with every epoch exactly once.
//
//   node test_resume.mjs FINETUNED_BINARY ARTIFACTS_DIR
//
// The dataset, model and job are created through the real API (the submit form
// is test_jobs.mjs's subject). Prints TAP.
import { ok, diag, doneTesting, cleanup, startDaemon, launchBrowser, watchConsole, screenshot, TMP, makeCsv }
        from './harness.mjs';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

const [bin, artifacts] = process.argv.slice(2);
const EPOCHS = 8;

async function call(base, method, path, body, type) {
        const r = await fetch(base + path, {method, body,
                                            headers: type ? {'Content-Type': type} : {}});
        const json = await r.json();
        if (!r.ok)
                throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
        return json;
}

async function main() {
        const state = join(TMP, 'state');
        let daemon = await startDaemon(bin, state);
        const base = daemon.base;
        ok(true, `daemon listening on ${base}`);

        const csv = makeCsv(join(TMP, 'blobs.csv'), 3000, 16, ['a', 'b', 'c']);
        const ds = await call(base, 'POST', '/v1/datasets?name=blobs.csv', readFileSync(csv), 'text/csv');
        const model = await call(base, 'POST', '/v1/models', JSON.stringify(
                {name: 'mlp', preset: 'mlp', config: {inputs: 16, outputs: 3, hidden: [1024, 1024]}}), 'application/json');
        const job = await call(base, 'POST', '/v1/jobs', JSON.stringify(
                {model: model.id, training_file: ds.id, hyperparameters: {epochs: EPOCHS, learning_rate: 0.01}}),
                'application/json');
        ok(true, `job ${job.id} created through the API`);

        const context = await launchBrowser();
        const page = context.pages()[0] || await context.newPage();
        const cons = watchConsole(page);
        const resumes = [];
        page.on('request', (r) => {
                if (r.url().includes(`/v1/jobs/${job.id}/events`) && r.headers()['last-event-id'])
                        resumes.push(Number(r.headers()['last-event-id']));
        });
        await page.goto(`${base}/#/jobs/${job.id}`);
        await page.waitForFunction(() => Number(document.querySelector('#loss-chart').getAttribute('data-points')) >= 2,
                                   null, {timeout: 60000});
        const before = await page.evaluate(() => Number(document.querySelector('#loss-chart').getAttribute('data-points')));

        ok((await daemon.stop()) === 0, `daemon stopped with SIGTERM after ${before} epochs`);
        await page.waitForTimeout(700); // the stream drops; the page retries against a closed port
        daemon = await startDaemon(bin, state, [], base.replace('http://', ''));
        ok(daemon.base === base, `daemon restarted on the same address ${base}`);

        await page.waitForFunction(() => document.querySelector('#job-state').textContent === 'succeeded', null,
                                   {timeout: 120000});
        ok(resumes.length > 0 && resumes[0] >= before, `the page reconnected with Last-Event-ID ${resumes[0]}`, resumes);
        const xs = await page.evaluate(() => window.Chart.getChart(document.querySelector('#loss-chart')).data.datasets
                .map((d) => d.data.map((p) => p.x).join(',')));
        const want = [...Array(EPOCHS).keys()].map((i) => i + 1).join(',');
        ok(xs.length === 2 && xs.every((x) => x === want), `both loss curves have every epoch exactly once (${want})`, xs);
        const rows = await page.evaluate(() => [...document.querySelectorAll('#epoch-table tbody tr')].map((tr) => tr.dataset.epoch));
        ok(rows.join(',') === want, 'the per-epoch table has every epoch once', rows);
        const received = await page.evaluate(() => Number(document.querySelector('#epoch-table').dataset.received));
        ok(received === EPOCHS, `the page received ${received} epoch events for ${EPOCHS} epochs: no replay after the resume`);
        const after = await call(base, 'GET', `/v1/jobs/${job.id}`);
        ok(after.state === 'succeeded' && after.attempt === 2, `the job resumed as attempt ${after.attempt} and succeeded`);
        await page.waitForSelector('#confusion-matrix', {timeout: 30000});
        ok(true, 'final metrics and confusion matrix shown after the restart');
        await screenshot(page, artifacts, 'job-resumed');

        // The daemon going away cuts the stream, then refuses connections until it is back; nothing else.
        const errors = cons.take().filter((e) => !/ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET|ERR_INCOMPLETE_CHUNKED_ENCODING/.test(e));
        ok(errors.length === 0, 'no console errors but the cut stream and refused connections while the daemon was down', errors.join('\n'));
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
