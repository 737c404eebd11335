// test_job_page.mjs - the job page's warnings, receipt and replay in a real browser against the real daemon:
// a job on a CSV whose rarer class has under a tenth of the other's rows shows its class_imbalance warning
// event in the page's notice; once it succeeded its reproducibility receipt sits in a collapsed section with
// the seed and result_sha256 the API gives, and the Replay button queues a replay and opens it, whose page
// says (once it succeeded) that the result is bit-identical; the models page evaluates the result model on
// the dataset (the API's accuracy, log loss, ROC-AUC, ECE); the submit form's Estimate shows a dry run's
// estimate and queues nothing. Screenshots: job-warnings.png, job-replay.png, models-evaluate.png,
// submit-estimate.png.
//
//   node test_job_page.mjs FINETUNED_BINARY ARTIFACTS_DIR
//
// Prints TAP. Not for: the receipts' contents (tests/integration), the curves (test_jobs.mjs).
import { ok, diag, doneTesting, cleanup, startDaemon, launchBrowser, watchConsole, screenshot, makeCsv, TMP } from './harness.mjs';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

const [bin, artifacts] = process.argv.slice(2);

async function json(base, method, path, body) {
        const r = await fetch(base + path, {method, headers: body ? {'Content-Type': 'application/json'} : {},
                                            body: body ? JSON.stringify(body) : undefined});
        return {status: r.status, json: await r.json()};
}

async function main() {
        const daemon = await startDaemon(bin, join(TMP, 'state'), ['--workers', '1']);
        const base = daemon.base;
        ok(true, `daemon listening on ${base}`);
        // 12 rows in 12: 11 of class "common", 1 of "rare" (1/11 < a tenth)
        const csv = makeCsv(join(TMP, 'skewed.csv'), 240, 4, [...Array(11).fill('common'), 'rare']);
        const ds = await (await fetch(base + '/v1/datasets?name=skewed', {method: 'POST', body: readFileSync(csv)})).json();
        const mdl = await json(base, 'POST', '/v1/models', {preset: 'mlp', config: {inputs: 4, hidden: [8], outputs: 2}});
        const job = await json(base, 'POST', '/v1/jobs', {model: mdl.json.id, training_file: ds.id, seed: 7,
                hyperparameters: {epochs: 2, batch_size: 32}});
        ok(job.status === 201, 'a job on the skewed CSV is queued', job.json);
        const id = job.json.id;

        const context = await launchBrowser();
        const page = context.pages()[0] || await context.newPage();
        const cons = watchConsole(page);
        await page.goto(base + '/#/jobs/' + id);
        await page.waitForSelector('#job-warnings:not([hidden]) li[data-code="class_imbalance"]', {timeout: 60000});
        const warn = await page.textContent('#job-warning-list');
        ok(/class_imbalance/.test(warn) && /rare/.test(warn), 'the class_imbalance warning event shows in the page\'s notice', warn);
        await page.waitForFunction(() => document.querySelector('#job-state').textContent.includes('succeeded'), null,
                                   {timeout: 300000});
        await page.waitForSelector('#job-receipt:not([hidden])', {timeout: 30000});
        const n = await page.$$eval('#job-warning-list li', (l) => l.length);
        ok(n === 1, 'the warning is listed once, though the stream and the poll both ran', n);
        await screenshot(page, artifacts, 'job-warnings');
        const api = await json(base, 'GET', '/v1/jobs/' + id);
        const rec = await page.evaluate(() => ({open: document.querySelector('#job-receipt').open,
                                                text: document.querySelector('#job-receipt').textContent}));
        ok(!rec.open && rec.text.includes(api.json.receipt.result_sha256) && rec.text.includes('seed'),
           'the receipt is in a collapsed section with the API\'s result_sha256 and seed', rec);

        await page.click('#replay-job');
        await page.waitForFunction((old) => /^#\/jobs\/job_/.test(location.hash) && !location.hash.includes(old), id,
                                   {timeout: 30000});
        const replayId = decodeURIComponent(await page.evaluate(() => location.hash.slice('#/jobs/'.length)));
        const rj = await json(base, 'GET', '/v1/jobs/' + replayId);
        ok(rj.json.replay_of === id || (rj.json.replay && rj.json.replay.of === id), 'Replay opens the new job, a replay of the first', rj.json.replay);
        await page.waitForSelector('#job-replay[data-identical="true"]', {timeout: 300000});
        const line = await page.textContent('#job-replay');
        ok(line.includes(id) && /bit-identical/.test(line), 'the replay\'s page says its result is bit-identical to the original\'s', line);
        await screenshot(page, artifacts, 'job-replay');
        // the models page evaluates the result model on the dataset: the table shows the API's numbers
        const result = api.json.result_model;
        await page.goto(base + '/#/models');
        await page.waitForSelector(`#evaluate-form:not([hidden]) #evaluate-model option[value="${result}"]`, {state: 'attached', timeout: 30000});
        await page.selectOption('#evaluate-model', result);
        await page.selectOption('#evaluate-dataset', ds.id);
        await page.click('#evaluate-run');
        await page.waitForSelector('#evaluate-table', {timeout: 60000});
        const shown = await page.$$eval('#evaluate-table tbody tr', (rows) =>
                Object.fromEntries(rows.map((r) => [r.dataset.metric, r.querySelector('td').textContent])));
        const ev = await json(base, 'POST', `/v1/models/${result}/evaluate`, {dataset: ds.id, curve_points: 2});
        const m = ev.json.metrics;
        const near = (t, v) => Math.abs(Number(t) - v) <= 1e-4 + 1e-3 * Math.abs(v);
        ok(near(shown.accuracy, m.accuracy) && near(shown['log loss'], m.log_loss) &&
           near(shown['ROC-AUC (macro)'], m.roc_auc.macro) && near(shown['calibration ECE'], m.calibration.ece),
           'Evaluate on a dataset: accuracy, log loss, macro ROC-AUC and ECE as the API answers them', {shown, api: {
                   accuracy: m.accuracy, log_loss: m.log_loss, roc_auc: m.roc_auc.macro, ece: m.calibration.ece}});
        await screenshot(page, artifacts, 'models-evaluate');

        // the submit form's Estimate: a dry run of the same spec, nothing queued
        const before = (await json(base, 'GET', '/v1/jobs?limit=100')).json.data.length;
        await page.goto(base + `/#/submit?dataset=${ds.id}&model=${mdl.json.id}`);
        await page.waitForFunction((d) => document.querySelector('#f-training_file').value === d, ds.id, {timeout: 30000});
        let dry = null;
        page.on('request', (r) => {
                if (r.url().includes('/v1/jobs?dry_run=true') && r.method() === 'POST')
                        dry = JSON.parse(r.postData());
        });
        await page.click('#estimate-job');
        await page.waitForSelector('#estimate-seconds', {timeout: 120000});
        const est = await page.evaluate(() => ({seconds: Number(document.querySelector('#estimate-seconds').dataset.seconds),
                                                memory: document.querySelector('#estimate-memory').textContent,
                                                checkpoints: document.querySelector('#estimate-checkpoints').textContent,
                                                warnings: document.querySelector('#estimate-warnings').textContent}));
        const after = (await json(base, 'GET', '/v1/jobs?limit=100')).json.data.length;
        ok(dry && dry.model === mdl.json.id && dry.training_file === ds.id && est.seconds > 0 && /[KM]iB/.test(est.memory) &&
           /[KM]iB/.test(est.checkpoints) && est.warnings.length > 0 && after === before,
           'Estimate posts the form\'s spec as a dry run and shows seconds, peak memory, checkpoints, warnings; no job queued',
           {dry: dry && {model: dry.model, training_file: dry.training_file}, est, before, after});
        await screenshot(page, artifacts, 'submit-estimate');
        const errors = cons.take();
        ok(errors.length === 0, 'no console errors', errors.join('\n'));
        const code = await daemon.stop();
        ok(code === 0, 'daemon stops cleanly', code);
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
