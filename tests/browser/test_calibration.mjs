// test_calibration.mjs - the calibration and predictions views in a real browser against the real daemon: a
// classification job with temperature scaling shows ECE/MCE/NLL before and after and draws the 15-bin
// reliability diagram (Chart.js, one bar per non-empty bin, both series); a predictions job shows its rows,
// the evaluation with its own diagram, and a working "Download predictions.csv"; the jobs list names its
// kind. Screenshots go to the artifacts directory (docs/dashboard.md describes them).
//
//   node test_calibration.mjs FINETUNED_BINARY ARTIFACTS_DIR
//
// Prints TAP. Not for: the numbers (tests/unit/test_metrics_curves.c, tests/integration/test_api_evaluate.sh).
import { ok, diag, doneTesting, cleanup, startDaemon, launchBrowser, watchConsole, screenshot, TMP, makeCsv }
        from './harness.mjs';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

const [bin, artifacts] = process.argv.slice(2);

async function post(base, path, json) {
        const r = await fetch(base + path, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                            body: JSON.stringify(json)});
        return {status: r.status, json: await r.json()};
}

async function waitJob(base, id) {
        for (let i = 0; i < 1200; i++) {
                const j = await (await fetch(`${base}/v1/jobs/${id}`)).json();
                if (['succeeded', 'failed', 'cancelled'].includes(j.state))
                        return j;
                await new Promise((r) => setTimeout(r, 100));
        }
        return null;
}

async function main() {
        const csv = makeCsv(join(TMP, 'shapes.csv'), 600, 4, ['circle', 'square', 'triangle']);
        const daemon = await startDaemon(bin, join(TMP, 'state'), ['--workers', '1', '--threads', '1']);
        const base = daemon.base;
        ok(true, `daemon listening on ${base}`);
        const up = await fetch(base + '/v1/datasets?name=shapes', {method: 'POST', body: readFileSync(csv)});
        const DS = (await up.json()).id;
        const mdl = await post(base, '/v1/models', {preset: 'mlp', config: {inputs: 4, hidden: [32], outputs: 3}});
        const job = await post(base, '/v1/jobs', {model: mdl.json.id, training_file: DS, validation_split: 0.3,
                                                   hyperparameters: {epochs: 6, batch_size: 32, learning_rate: 0.05},
                                                   calibration: {temperature_scaling: true}, seed: 5});
        const done = await waitJob(base, job.json.id);
        const cal = done && done.metrics.metrics.calibration;
        ok(done && done.state === 'succeeded' && cal && cal.temperature_scaling, 'a job with temperature scaling succeeded');

        const context = await launchBrowser();
        const page = context.pages()[0] || await context.newPage();
        await page.setViewportSize({width: 1280, height: 800});
        const cons = watchConsole(page);

        await page.goto(`${base}/#/jobs/${job.json.id}`);
        await page.waitForSelector('#reliability-chart[data-points]:not([data-points="0"])', {timeout: 30000});
        const seen = await page.evaluate(() => {
                const t = document.querySelector('#calibration-table');
                const chart = window.Chart.getChart(document.querySelector('#reliability-chart'));
                return {
                        head: [...t.querySelectorAll('thead th')].map((th) => th.textContent),
                        rows: [...t.querySelectorAll('tbody tr')].map((tr) => [...tr.children].map((c) => c.textContent)),
                        points: Number(document.querySelector('#reliability-chart').dataset.points),
                        series: chart ? chart.data.datasets.map((d) => d.label) : [],
                        bars: chart ? chart.data.labels.length : 0,
                        flat: [...document.querySelectorAll('#final-metrics th')].some((th) => th.textContent.startsWith('calibration')),
                };
        });
        const nonEmpty = cal.reliability.filter((b) => b.count > 0).length;
        ok(seen.points === nonEmpty && seen.bars === 15, `the reliability diagram has 15 bins, ${nonEmpty} of them filled`,
           JSON.stringify(seen));
        ok(seen.series.length === 3 && seen.series.some((s) => s.startsWith('accuracy (T = ')) &&
                   seen.series.includes('perfect calibration'),
           'it draws accuracy before and after scaling and the diagonal', seen.series.join(', '));
        const ece = seen.rows.find((r) => r[0] === 'ECE');
        ok(seen.head.length === 3 && seen.head[2].startsWith('after (T = ') && ece &&
                   Math.abs(Number(ece[1]) - cal.ece) < 1e-3 && Math.abs(Number(ece[2]) - cal.temperature_scaling.ece) < 1e-3,
           `the table shows ECE ${ece && ece[1]} before and ${ece && ece[2]} after`, JSON.stringify(seen.rows));
        ok(!seen.flat, 'calibration is its own section, not flattened into the metrics table');
        await screenshot(page, artifacts, 'calibration-job');

        // ---- a predictions job, started from the models page ------------------------------------
        const wide = makeCsv(join(TMP, 'wide.csv'), 30, 7, ['a', 'b']);
        const up2 = await fetch(base + '/v1/datasets?name=wide', {method: 'POST', body: readFileSync(wide)});
        const WIDE = (await up2.json()).id;
        await page.goto(`${base}/#/models`);
        await page.waitForSelector('#predict-form:not([hidden])', {timeout: 15000});
        await page.selectOption('#predict-model', done.result_model);
        await page.selectOption('#predict-dataset', WIDE);
        await page.click('#predict-run');
        await page.waitForFunction(() => document.querySelector('#predict-error').textContent !== '', null, {timeout: 15000});
        const refusal = await page.evaluate(() => document.querySelector('#predict-error').textContent);
        ok(/takes 4 features/.test(refusal), 'a dataset that does not fit the model is refused on the form', refusal);
        await page.selectOption('#predict-dataset', DS);
        await page.click('#predict-run');
        await page.waitForFunction(() => /^#\/jobs\/job_/.test(location.hash), null, {timeout: 15000});
        const pj = {json: {id: await page.evaluate(() => decodeURIComponent(location.hash.slice('#/jobs/'.length)))}};
        ok(true, `the form queued predictions job ${pj.json.id} and opened it`);
        const pdone = await waitJob(base, pj.json.id);
        ok(pdone && pdone.state === 'succeeded', 'a predictions job succeeded');
        await page.goto(`${base}/#/jobs/${pj.json.id}`);
        await page.waitForSelector('#download-predictions:not([hidden])', {timeout: 30000});
        await page.waitForSelector('#reliability-chart[data-points]:not([data-points="0"])', {timeout: 30000});
        const pv = await page.evaluate(() => ({
                title: document.querySelector('#results-title').textContent,
                model: !document.querySelector('#download-model').hidden,
                progress: document.querySelector('#lbl-epoch').textContent,
                confusion: !!document.querySelector('#confusion-matrix'),
        }));
        ok(pv.title === 'Evaluation on the dataset (600 rows)' && !pv.model && pv.progress === 'all rows' && pv.confusion,
           'the predictions job page: its rows, the evaluation with its confusion matrix, no model to download',
           JSON.stringify(pv));
        const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#download-predictions')]);
        const text = readFileSync(await dl.path(), 'utf8');
        ok(text.startsWith('row,label,prediction,p_circle,p_square,p_triangle\n') && text.trim().split('\n').length === 601,
           'Download predictions.csv saves the CSV (601 lines)', text.slice(0, 80));
        await screenshot(page, artifacts, 'predictions-job');
        await page.goto(`${base}/#/jobs`);
        await page.waitForSelector(`tr[data-job="${pj.json.id}"]`, {timeout: 15000});
        const cells = await page.evaluate((id) => [...document.querySelector(`tr[data-job="${id}"]`).children]
                                                  .map((td) => td.textContent), pj.json.id);
        ok(cells.includes('predictions') && cells.some((c) => c.includes('600 rows predicted')),
           'the jobs list names its kind and rows', cells.join(' | '));
        /* the one expected error: the form's refused dataset (400) */
        const errors = cons.take().filter((e) => !e.includes('status of 400'));
        ok(errors.length === 0, 'no console errors but the refused form\'s 400', errors.join('\n'));
        await context.close();
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
