// test_dashboard.mjs - the dashboard in a real browser against the real daemon:
// the page and its embedded assets load with no console errors, every view
// renders, inputs have labels, keyboard focus works, the layout fits 1280x800
// and a narrow window; the page is ES modules (every web/*.js loaded, served as
// JavaScript, with its header comment); screenshots go to the artifacts directory.
//
//   node test_dashboard.mjs FINETUNED_BINARY ARTIFACTS_DIR
//
// Prints TAP. Not for: API behaviour (tests/integration covers it with curl).
import { ok, diag, doneTesting, bailOut, cleanup, startDaemon, launchBrowser, watchConsole, screenshot, TMP }
        from './harness.mjs';
import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const [bin, artifacts] = process.argv.slice(2);
if (!bin) {
        bailOut('usage: test_dashboard.mjs FINETUNED_BINARY [ARTIFACTS_DIR]');
        process.exit(1);
}

const WEB = fileURLToPath(new URL('../../web/', import.meta.url));
const VIEWS = [
        ['#/jobs', 'Jobs'],
        ['#/submit', 'New fine-tuning job'],
        ['#/datasets', 'Datasets'],
        ['#/models', 'Models'],
        ['#/compare', 'Compare jobs'],
];

async function main() {
        const daemon = await startDaemon(bin, join(TMP, 'state'));
        ok(true, `daemon listening on ${daemon.base}`);
        const base = daemon.base;

        // The embedded files, as a browser and curl see them.
        let res = await fetch(base + '/');
        const csp = res.headers.get('content-security-policy') || '';
        ok(res.status === 200 && res.headers.get('content-type').startsWith('text/html') && csp.includes("script-src 'self'"),
           'GET / -> 200 text/html with a Content-Security-Policy', `${res.status} ${res.headers.get('content-type')} ${csp}`);
        const etag = res.headers.get('etag');
        res = await fetch(base + '/', {headers: {'If-None-Match': etag}});
        ok(res.status === 304, 'GET / with If-None-Match -> 304', res.status);
        res = await fetch(base + '/static/chart.js');
        const chartText = await res.text();
        ok(res.status === 200 && res.headers.get('content-type').startsWith('text/javascript') && /Chart\.js v\d/.test(chartText),
           'Chart.js from Debian is embedded and served at /static/chart.js', chartText.slice(0, 80));
        res = await fetch(base + '/static/no-such-file.js');
        const body = await res.json();
        ok(res.status === 404 && body.error && body.error.code === 'not_found', 'unknown dashboard file -> 404 envelope');

        const context = await launchBrowser();
        const page = context.pages()[0] || await context.newPage();
        const cons = watchConsole(page);
        const scripts = new Map(); /* /static/*.js the page fetched -> status and content type */
        page.on('response', (r) => {
                const m = /\/static\/([^/?]+\.js)$/.exec(r.url());
                if (m)
                        scripts.set(m[1], `${r.status()} ${r.headers()['content-type']}`);
        });

        await page.goto(base + '/', {waitUntil: 'load'});
        await page.waitForSelector('main h1');

        // The dashboard is ES modules: index.html loads main.js, which imports every other web/*.js (no file is
        // dead, none is missing from the embedded set), each served as JavaScript and opening with its purpose.
        const modules = readdirSync(WEB).filter((f) => f.endsWith('.js')).sort();
        const loaded = [...scripts.keys()].filter((f) => f !== 'chart.js').sort();
        ok(JSON.stringify(loaded) === JSON.stringify(modules), `the page loaded every module of web/ (${modules.length})`,
           {loaded, modules});
        const badType = [...scripts].filter(([, v]) => !/^200 text\/javascript/.test(v));
        ok(badType.length === 0, 'every script answered 200 text/javascript', badType);
        const headless = [];
        for (const f of modules) {
                const text = await (await fetch(`${base}/static/${f}`)).text();
                if (!text.startsWith(`/* ${f} - `) || !/\n \* Not for: /.test(text.slice(0, 2000)))
                        headless.push(f);
        }
        ok(headless.length === 0, 'every module starts with a comment saying what it is and is not for', headless);
        const leaked = await page.evaluate(() => ['h', 'api', 'route', 'viewJobs', 'followEvents'].filter((k) => k in window));
        ok(leaked.length === 0, 'the modules put nothing on window (Chart.js is the one global)', leaked);
        const info = await page.evaluate(() => ({
                title: document.title,
                chart: typeof window.Chart === 'function' ? window.Chart.version : null,
                nav: [...document.querySelectorAll('nav a')].map((a) => a.textContent),
        }));
        ok(info.title === 'Jobs · finetuned', 'the page opens on the jobs list', info.title);
        ok(!!info.chart, `Chart.js ${info.chart} loaded from the daemon`);
        ok(info.nav.join(',') === 'Jobs,New job,Datasets,Models,Compare,Webhooks', 'navigation lists every view', info.nav);
        await page.waitForFunction(() => document.querySelector('#version').textContent.startsWith('finetuned '));
        ok(true, 'the header shows the daemon version');

        // Keyboard: the first Tab reaches the skip link, which moves focus to the content.
        await page.keyboard.press('Tab');
        let focused = await page.evaluate(() => document.activeElement.className);
        ok(focused === 'skip', 'Tab focuses the skip link first', focused);
        await page.keyboard.press('Tab');
        focused = await page.evaluate(() => document.activeElement.textContent.trim());
        ok(focused === 'finetuned', 'the next Tab reaches the brand link', focused);
        const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
        ok(outline !== 'none', 'the focused link shows a focus outline', outline);

        for (const [hash, h1] of VIEWS) {
                await page.evaluate((h) => { location.hash = h; }, hash);
                await page.waitForFunction((t) => document.querySelector('main h1') &&
                                           document.querySelector('main h1').textContent === t, h1);
                await page.waitForTimeout(300);
                const name = hash.slice(2);
                await screenshot(page, artifacts, `1280x800-${name}`);
                const unlabelled = await page.evaluate(() => [...document.querySelectorAll('main input, main select, main textarea')]
                        .filter((el) => el.type !== 'hidden' && !el.labels.length && !el.getAttribute('aria-label') &&
                                !el.getAttribute('aria-labelledby'))
                        .map((el) => el.id || el.name || el.outerHTML.slice(0, 60)));
                ok(unlabelled.length === 0, `${name}: every input has a label`, unlabelled);
                const current = await page.evaluate(() => document.querySelector('nav a[aria-current="page"]').textContent);
                ok(true, `${name}: renders, nav marks ${current}`);
        }

        // Unknown and malformed addresses answer a "not found" page, not an exception.
        const seen = cons.take();
        for (const bad of ['#/nope', '#/jobs/%E0%A4%A', '#/jobs/job_000000000000000000000000']) {
                await page.evaluate((h) => { location.hash = h; }, bad);
                await page.waitForFunction(() => /not found/i.test(document.querySelector('main h1').textContent));
        }
        ok(true, 'unknown pages, malformed escapes and unknown job ids show "not found"');
        // the unknown job's 404 is the expected answer; anything else counts
        seen.push(...cons.take().filter((e) => !e.includes('status of 404')));

        // The submit form's defaults are filled in.
        await page.evaluate(() => { location.hash = '#/submit'; });
        await page.waitForSelector('#job-form');
        const defaults = await page.evaluate(() => Object.fromEntries(
                [...document.querySelectorAll('#job-form [data-param]')].map((el) => [el.dataset.param,
                        el.type === 'checkbox' ? el.checked : el.value])));
        ok(defaults['hyperparameters.epochs'] === '10' && defaults['hyperparameters.learning_rate'] === '0.001' &&
           defaults['hyperparameters.batch_size'] === '32' && defaults['strategy.type'] === 'full' &&
           defaults['task.target'] === '', 'submit form: defaults filled in', defaults);

        // A narrow window: nothing overflows sideways except inside scrolling table boxes.
        await page.setViewportSize({width: 390, height: 800});
        for (const [hash, h1] of VIEWS) {
                await page.evaluate((h) => { location.hash = h; }, hash);
                await page.waitForFunction((t) => document.querySelector('main h1').textContent === t, h1);
                await page.waitForTimeout(200);
                const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
                ok(over <= 0, `narrow window (390 px): ${hash.slice(2)} fits without sideways scrolling`, `${over} px too wide`);
                await screenshot(page, artifacts, `390x800-${hash.slice(2)}`);
        }
        await page.setViewportSize({width: 1280, height: 800});

        const errors = seen.concat(cons.take());
        ok(errors.length === 0, 'no console errors or uncaught exceptions while loading and browsing', errors.join('\n'));

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
