// test_resume.mjs - the job page survives a daemon restart in the middle of a
// job: its event stream drops, the page reconnects with Last-Event-ID to the
// daemon restarted on the same address, the job resumes from its checkpoint
// (attempt 2), and the loss chart has every epoch exactly once.
//
//   node test_resume.mjs FINETUNED_BINARY ARTIFACTS_DIR
//
// The dataset, model and job are created through the real API (the submit form
// is test_jobs.mjs's subject). The job has far more epochs than any machine runs
// during the test, so the daemon is always stopped mid-job; the test waits for
// conditions (points on the chart, a refused reconnect, the epochs the API
// recorded), never for a fixed time, and cancels the job at the end. Prints TAP.
import { ok, diag, doneTesting, cleanup, startDaemon, launchBrowser, watchConsole, screenshot, TMP, makeCsv }
        from './harness.mjs';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

const [bin, artifacts] = process.argv.slice(2);
const EPOCHS = 100000; // cannot finish during the test: it is cancelled


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
        const refused = [];
        page.on('requestfailed', (r) => {
                const why = (r.failure() && r.failure().errorText) || '';
                if (r.url().includes(`/v1/jobs/${job.id}/events`) && why.includes('CONNECTION_REFUSED'))
                        refused.push(why);
        });
        const pointsOn = () => page.evaluate(() => Number(document.querySelector('#loss-chart').getAttribute('data-points')));
        await page.goto(`${base}/#/jobs/${job.id}`);
        await page.waitForFunction(() => Number(document.querySelector('#loss-chart').getAttribute('data-points')) >= 2,
                                   null, {timeout: 180000});
        const before = await pointsOn();

        ok((await daemon.stop()) === 0, `daemon stopped with SIGTERM after ${before} epochs on the chart`);
        // The stream drops; wait until the page's reconnect has been refused by the closed port.
        const deadline = Date.now() + 60000;
        while (!refused.length && Date.now() < deadline)
                await new Promise((r) => setTimeout(r, 50));
        ok(refused.length > 0, `the page retried while the daemon was down (${refused[0]})`, 'no refused reconnect within 60 s');
        daemon = await startDaemon(bin, state, [], base.replace('http://', ''));
        ok(daemon.base === base, `daemon restarted on the same address ${base}`);

        // What the crashed daemon recorded, then three new epochs of the resumed job, seen through the stream.
        const epochsOf = async () => (await call(base, 'GET', `/v1/jobs/${job.id}/events?limit=1000`)).data
                .filter((e) => e.type === 'epoch').map((e) => e.data.epoch);
        const recorded = (await epochsOf()).length;
        await page.waitForFunction((n) => Number(document.querySelector('#loss-chart').getAttribute('data-points')) >= n,
                                   recorded + 3, {timeout: 180000});
        ok(resumes.length > 0 && resumes[0] >= before, `the page reconnected with Last-Event-ID ${resumes[0]}`, resumes);
        const running = await call(base, 'GET', `/v1/jobs/${job.id}`);
        ok(running.state === 'running' && running.attempt === 2,
           `the job resumed as attempt ${running.attempt} and the chart follows it (${await pointsOn()} epochs)`, running);

        await call(base, 'POST', `/v1/jobs/${job.id}/cancel`);
        await page.waitForFunction(() => document.querySelector('#job-state').textContent === 'cancelled', null,
                                   {timeout: 60000});
        // The API's own list is the truth; the page has it all once its stream delivered the terminal event.
        const epochs = await epochsOf();
        const want = [...Array(epochs.length).keys()].map((i) => i + 1).join(',');
        ok(epochs.join(',') === want && epochs.length >= recorded + 3, `the API recorded every epoch once (1..${epochs.length})`,
           epochs);
        await page.waitForFunction((n) => document.querySelectorAll('#epoch-table tbody tr').length >= n, epochs.length,
                                   {timeout: 60000});
        const xs = await page.evaluate(() => window.Chart.getChart(document.querySelector('#loss-chart')).data.datasets
                .map((d) => d.data.map((p) => p.x).join(',')));
        ok(xs.length === 2 && xs.every((x) => x === want), `both loss curves have every epoch exactly once (1..${epochs.length})`, xs);
        const rows = await page.evaluate(() => [...document.querySelectorAll('#epoch-table tbody tr')].map((tr) => tr.dataset.epoch));
        ok(rows.join(',') === want, 'the per-epoch table has every epoch once', rows);
        const received = await page.evaluate(() => Number(document.querySelector('#epoch-table').dataset.received));
        ok(received === epochs.length,
           `the page received ${received} epoch events for ${epochs.length} epochs: no replay after the resume`);
        const after = await call(base, 'GET', `/v1/jobs/${job.id}`);
        ok(after.state === 'cancelled' && after.attempt === 2, `the job ended ${after.state} on attempt ${after.attempt}`);
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
