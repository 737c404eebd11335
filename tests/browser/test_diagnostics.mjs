// test_diagnostics.mjs - the job page's per-example diagnostics in a real browser against the real daemon and
// trainer: an IDX dataset of 12x12 bar images (horizontal, vertical, diagonal) with every 10th label moved to the
// next class trains on the daemon; the page shows the counts, the images themselves in a grid with their true and
// predicted classes and probabilities (drawn from GET /v1/datasets/{id}/images), the suspected label errors, a
// confusion-matrix cell that narrows the grid to its class pair, paging, and for a CSV job a table with each
// row's line. Screenshots go to the artifacts directory.
//
//   node test_diagnostics.mjs FINETUNED_BINARY ARTIFACTS_DIR
//
// Prints TAP. Not for: the API's edge cases (tests/integration/test_api_diagnostics.sh).
import { ok, diag, doneTesting, cleanup, startDaemon, launchBrowser, watchConsole, screenshot, TMP, makeCsv }
        from './harness.mjs';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

const [bin, artifacts] = process.argv.slice(2);
const N = 600, S = 12, CLASSES = 3;

// Bars with a little noise; labels 0 horizontal, 1 vertical, 2 diagonal; every 10th moved to the next class.
function bars() {
        let seed = 7;
        const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
        const img = Buffer.alloc(16 + N * S * S), lab = Buffer.alloc(8 + N), truth = [];
        img.writeUInt32BE(0x803, 0), img.writeUInt32BE(N, 4), img.writeUInt32BE(S, 8), img.writeUInt32BE(S, 12);
        lab.writeUInt32BE(0x801, 0), lab.writeUInt32BE(N, 4);
        for (let i = 0; i < N; i++) {
                const c = i % CLASSES, at = 2 + Math.floor(rand() * (S - 4));
                truth.push(c);
                for (let y = 0; y < S; y++)
                        for (let x = 0; x < S; x++) {
                                const on = c === 0 ? Math.abs(y - at) <= 1 : c === 1 ? Math.abs(x - at) <= 1 : Math.abs(x - y) <= 1;
                                img[16 + i * S * S + y * S + x] = Math.min(255, (on ? 200 : 0) + Math.floor(rand() * 50));
                        }
                lab[8 + i] = i % 10 === 0 ? (c + 1) % CLASSES : c;
        }
        return {img, lab, truth};
}

async function json(base, method, path, body) {
        const r = await fetch(base + path, {method, body: body && JSON.stringify(body),
                                             headers: body ? {'Content-Type': 'application/json'} : {}});
        return r.json();
}

async function finish(base, id) {
        for (let i = 0; id && i < 1200; i++) {
                const j = await json(base, 'GET', '/v1/jobs/' + id);
                if (['succeeded', 'failed', 'cancelled'].includes(j.state))
                        return j;
                await new Promise((r) => setTimeout(r, 200));
        }
        return null;
}

async function main() {
        const daemon = await startDaemon(bin, join(TMP, 'state'), ['--workers', '1']);
        const base = daemon.base;
        ok(true, `daemon listening on ${base}`);
        const {img, lab} = bars();
        const fd = new FormData();
        fd.append('images', new Blob([img]), 'bars-images-idx3-ubyte');
        fd.append('labels', new Blob([lab]), 'bars-labels-idx1-ubyte');
        const ds = await (await fetch(base + '/v1/datasets?name=bars', {method: 'POST', body: fd})).json();
        ok(ds.id && ds.schema.num_classes === 3, `IDX bars uploaded: ${ds.id}`, ds);
        const mdl = await json(base, 'POST', '/v1/models', {preset: 'cnn', config: {in_channels: 1, input_size: [S, S], channels: [8, 16], hidden: 16, outputs: 3}});
        const job = await json(base, 'POST', '/v1/jobs', {model: mdl.id, training_file: ds.id, validation_split: 0.3, seed: 4,
                                                          hyperparameters: {epochs: 6, batch_size: 16, learning_rate: 0.005}});
        if (!ok(job.id, `job ${job.id} queued`, job))
                return;
        const done = await finish(base, job.id);
        ok(done && done.state === 'succeeded', `the job trains (${done && done.state})`, done && done.error);
        const diagApi = await json(base, 'GET', `/v1/jobs/${job.id}/diagnostics`);
        diag(`diagnostics: ${diagApi.examples_count} examples, ${diagApi.mistakes} mistakes, ` +
             `${diagApi.suspected_label_errors} suspected`);

        const context = await launchBrowser();
        const page = context.pages()[0] || await context.newPage();
        const cons = watchConsole(page);
        await page.goto(`${base}/#/jobs/${job.id}`);
        try {
                await page.waitForSelector('#ex-grid .ex-tile canvas', {timeout: 60000});
        } catch (e) {
                await screenshot(page, artifacts, 'examples-missing');
                throw new Error('no image grid: ' + cons.take().join('\n') + '\n' +
                                await page.evaluate(() => (document.querySelector('#examples') || {outerHTML: 'no #examples'}).outerHTML.slice(0, 2000)));
        }
        const first = await page.evaluate(() => ({
                summary: document.querySelector('#ex-summary').textContent,
                tiles: document.querySelectorAll('#ex-grid .ex-tile').length,
                drawn: [...document.querySelectorAll('#ex-grid canvas')].every((c) => {
                        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                        return d.some((v, i) => i % 4 !== 3 && v > 100); /* the bar is bright */
                }),
                caption: document.querySelector('#ex-grid figcaption').textContent,
                order: document.querySelector('#ex-order').value,
                more: !document.querySelector('#ex-more').hidden,
        }));
        ok(first.summary.includes(`${diagApi.examples_count} validation examples`) &&
           first.summary.includes(`${diagApi.suspected_label_errors} suspected label errors`),
           'the summary counts examples, mistakes and suspects', first.summary);
        ok(first.tiles === 48 && first.drawn && first.more, 'a grid of 48 images, each drawn from its pixels, and a More button', first);
        ok(first.order === 'loss' && /true \S+ \(p [0-9.]+\) · predicted \S+ \(p [0-9.]+\)/.test(first.caption),
           'highest loss first, each with its true and predicted class and probabilities', first.caption);
        await screenshot(page, artifacts, 'examples-grid');

        await page.click('#ex-more');
        await page.waitForFunction(() => document.querySelectorAll('#ex-grid .ex-tile').length > 48, null, {timeout: 30000});
        const paged = await page.evaluate(() => new Set([...document.querySelectorAll('#ex-grid .ex-tile')].map((t) => t.dataset.index)).size);
        ok(paged > 48, `More appends the next page (${paged} distinct examples)`);

        await page.selectOption('#ex-order', 'suspected');
        await page.waitForFunction(() => document.querySelector('#ex-grid .ex-tile.suspect') || document.querySelector('#ex-empty'),
                                   null, {timeout: 30000});
        const sus = await page.evaluate(() => [...document.querySelectorAll('#ex-grid .ex-tile')].map((t) => ({
                suspect: t.classList.contains('suspect'), note: t.querySelector('.suspect-note') ? t.querySelector('.suspect-note').textContent : ''})));
        ok(sus.length === Math.min(48, diagApi.suspected_label_errors) && sus.every((s) => s.suspect && /maybe \S+/.test(s.note)),
           `suspected label errors: ${sus.length} tiles, each with the class it may be`, sus.slice(0, 3));
        await screenshot(page, artifacts, 'examples-suspected');

        // one off-diagonal cell of the confusion matrix: its examples only
        const cell = await page.evaluate(() => {
                const b = [...document.querySelectorAll('#confusion-matrix button.cell-pick')]
                        .filter((x) => x.dataset.true !== x.dataset.pred && Number(x.textContent) > 0)
                        .sort((x, y) => Number(y.textContent) - Number(x.textContent))[0];
                return b ? {t: b.dataset.true, p: b.dataset.pred, n: Number(b.textContent)} : null;
        });
        ok(cell !== null, 'the confusion matrix has an off-diagonal cell with examples', cell);
        if (cell) {
                await page.click(`#confusion-matrix button.cell-pick[data-true="${cell.t}"][data-pred="${cell.p}"]`);
                await page.waitForFunction((c) => document.querySelector('#ex-filter').textContent.includes(`true class ${c.t}`) &&
                                           document.querySelectorAll('#ex-grid .ex-tile').length === Math.min(48, c.n), cell, {timeout: 30000});
                const tiles = await page.evaluate(() => [...document.querySelectorAll('#ex-grid .ex-tile')].map((t) => [t.dataset.label, t.dataset.predicted]));
                ok(tiles.length === Math.min(48, cell.n) && tiles.every(([l, p]) => l === cell.t && p === cell.p),
                   `clicking the cell (true ${cell.t}, predicted ${cell.p}: ${cell.n}) shows exactly its examples`, tiles.slice(0, 3));
                await screenshot(page, artifacts, 'examples-cell');
                await page.click('#ex-clear');
                await page.waitForFunction(() => document.querySelector('#ex-filter').textContent === '', null, {timeout: 30000});
                ok(true, 'Show every class clears the filter');
        }
        let errors = cons.take();
        ok(errors.length === 0, 'no console errors', errors.join('\n'));

        // a CSV job: the same section as a table with each row's line
        const csvPath = makeCsv(join(TMP, 'blobs.csv'), 300, 4, ['a', 'b', 'c']);
        const csvDs = await (await fetch(base + '/v1/datasets?name=blobs', {method: 'POST', body: readFileSync(csvPath)})).json();
        const m2 = await json(base, 'POST', '/v1/models', {preset: 'mlp', config: {inputs: 4, hidden: [8], outputs: 3}});
        const j2 = await json(base, 'POST', '/v1/jobs', {model: m2.id, training_file: csvDs.id, hyperparameters: {epochs: 3}});
        const d2 = await finish(base, j2.id);
        ok(d2 && d2.state === 'succeeded', 'a CSV job trains');
        await page.goto(`${base}/#/jobs/${j2.id}`);
        await page.waitForSelector('#ex-table tbody tr', {timeout: 60000});
        const rows = await page.evaluate(() => [...document.querySelectorAll('#ex-table tbody tr')].map((tr) => [...tr.cells].map((c) => c.textContent)));
        const lines = readFileSync(csvPath, 'utf8').split('\n');
        ok(rows.length === 48 && rows.every((r) => lines[Number(r[1]) - 1] && lines[Number(r[1]) - 1].endsWith(',' + r[2])),
           'a CSV job: a table whose line column points at the row with that label', rows.slice(0, 2));
        await screenshot(page, artifacts, 'examples-table');
        errors = cons.take();
        ok(errors.length === 0, 'no console errors', errors.join('\n'));
        await daemon.stop();
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
