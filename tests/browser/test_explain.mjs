// test_explain.mjs - the saliency page in a real browser against the real daemon: a small CNN trained on a
// Fashion-MNIST subset (through the API), the models list links an image model with weights to its explain page
// (and not a tabular one), a PNG of a test image is chosen in the file input, the page sends it as the API takes
// images (the same pixels the IDX file holds), draws the image and the heatmap over it on canvases (red and blue
// pixels where the map is strongest, the image alone elsewhere), names the class explained and the prediction,
// and shows the API's error for an unknown class next to the form; the job page's example tiles link here with
// ?dataset&index, and the page then explains that image of the dataset. Screenshots: explain-ig.png (integrated
// gradients, the predicted class), explain-gxi.png (gradient x input for class 0), explain-from-dataset.png (an
// example tile of the job page opened it), explain-narrow.png (390 px).
//
//   node test_explain.mjs FINETUNED_BINARY ARTIFACTS_DIR
//
// Prints TAP. Not for: the numbers (tests/unit/test_compute_explain.c), API refusals (test_api_explain.sh).
import { ok, diag, doneTesting, cleanup, startDaemon, launchBrowser, watchConsole, screenshot, TMP } from './harness.mjs';
import { join } from 'node:path';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { gunzipSync, deflateSync } from 'node:zlib';

const [bin, artifacts] = process.argv.slice(2);
const FMNIST = '/usr/share/datasets/fashion-mnist';

// A gray 8-bit PNG of w x h pixels (no library: signature, IHDR, one IDAT, IEND, each chunk CRC-32'd).
const CRC = Array.from({length: 256}, (_, n) => {
        let c = n;
        for (let k = 0; k < 8; k++)
                c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        return c >>> 0;
});
function crc32(buf) {
        let c = 0xffffffff;
        for (const b of buf)
                c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
        return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
        const len = Buffer.alloc(4), crc = Buffer.alloc(4), td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
        len.writeUInt32BE(data.length);
        crc.writeUInt32BE(crc32(td));
        return Buffer.concat([len, td, crc]);
}
function grayPng(pixels, w, h) {
        const ihdr = Buffer.alloc(13);
        ihdr.writeUInt32BE(w, 0);
        ihdr.writeUInt32BE(h, 4);
        ihdr.set([8, 0, 0, 0, 0], 8); /* 8 bits, gray, deflate, no filter method choice, no interlace */
        const raw = Buffer.alloc((w + 1) * h);
        for (let y = 0; y < h; y++)
                raw.set(pixels.subarray(y * w, (y + 1) * w), y * (w + 1) + 1); /* filter byte 0: none */
        return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
                              chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
// The first n images and labels of an IDX pair, gzip'd as the API takes them.
function idxSubset(src, n) {
        const img = gunzipSync(readFileSync(join(FMNIST, `${src}-images-idx3-ubyte.gz`)));
        const lab = gunzipSync(readFileSync(join(FMNIST, `${src}-labels-idx1-ubyte.gz`)));
        const ih = Buffer.from(img.subarray(0, 16)), lh = Buffer.from(lab.subarray(0, 8));
        ih.writeUInt32BE(n, 4);
        lh.writeUInt32BE(n, 4);
        return {images: Buffer.concat([ih, img.subarray(16, 16 + n * 784)]), labels: Buffer.concat([lh, lab.subarray(8, 8 + n)]),
                pixels: (i) => img.subarray(16 + i * 784, 16 + (i + 1) * 784)};
}

async function json(base, method, path, body) {
        const r = await fetch(base + path, {method, headers: body ? {'Content-Type': 'application/json'} : {},
                                            body: body ? JSON.stringify(body) : undefined});
        return {status: r.status, json: await r.json()};
}

async function train(base, model, ds) {
        const job = await json(base, 'POST', '/v1/jobs', {model, training_file: ds, seed: 3, hyperparameters:
                {epochs: 3, batch_size: 32, learning_rate: 0.005, optimizer: 'adam'}});
        for (let i = 0; i < 1200; i++) {
                const g = await json(base, 'GET', `/v1/jobs/${job.json.id}`);
                if (['succeeded', 'failed', 'cancelled'].includes(g.json.state))
                        return g.json;
                await new Promise((r) => setTimeout(r, 250));
        }
        return null;
}

/* counts of strongly red, strongly blue and gray pixels on a canvas */
async function canvasColours(page, sel) {
        return page.evaluate((s) => {
                const c = document.querySelector(s);
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let red = 0, blue = 0, gray = 0;
                for (let i = 0; i < d.length; i += 4) {
                        const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
                        if (r > g + 60 && r > b + 60)
                                red++;
                        else if (b > r + 60 && b > g + 30)
                                blue++;
                        else if (Math.abs(r - g) < 3 && Math.abs(g - b) < 3)
                                gray++;
                }
                return {width: c.width, height: c.height, red, blue, gray};
        }, sel);
}

async function main() {
        if (!existsSync(FMNIST)) {
                ok(false, `${FMNIST} exists (tools/setup.sh installs dataset-fashion-mnist)`);
                return;
        }
        const daemon = await startDaemon(bin, join(TMP, 'state'), ['--workers', '1']);
        const base = daemon.base;
        ok(true, `daemon listening on ${base}`);
        const sub = idxSubset('train', 1000), test = idxSubset('t10k', 1);
        const fd = new FormData();
        fd.append('images', new Blob([sub.images]), 'i');
        fd.append('labels', new Blob([sub.labels]), 'l');
        const ds = await (await fetch(base + '/v1/datasets?name=fmnist-1000', {method: 'POST', body: fd})).json();
        const m0 = await json(base, 'POST', '/v1/models', {name: 'small-cnn', preset: 'cnn',
                config: {in_channels: 1, input_size: [28, 28], channels: [4, 8], hidden: 16, outputs: 10}});
        const done = await train(base, m0.json.id, ds.id);
        ok(done && done.state === 'succeeded', 'a small CNN trained through the API', done && done.error);
        const tuned = done.result_model;
        const tab = await json(base, 'POST', '/v1/models', {name: 'tabular', preset: 'mlp', config: {inputs: 4, outputs: 2}});

        const context = await launchBrowser();
        const page = context.pages()[0] || await context.newPage();
        const cons = watchConsole(page);
        await page.goto(base + '/#/models');
        await page.waitForSelector(`tr[data-model="${tuned}"]`);
        const links = await page.evaluate(([t, u]) => ({
                tuned: !!document.querySelector(`tr[data-model="${t}"] a[href$="/explain"]`),
                untrained: !!document.querySelector(`tr[data-model="${u}"] a[href$="/explain"]`),
        }), [tuned, tab.json.id]);
        ok(links.tuned && !links.untrained, 'the models list links the trained image model to Explain, not a tabular one', links);
        await page.click(`tr[data-model="${tuned}"] a[href$="/explain"]`);
        await page.waitForFunction(() => !document.querySelector('#explain-file').disabled, null, {timeout: 30000});

        // the test image as a PNG file; the page must send exactly its pixels
        const png = join(TMP, 'boot.png');
        writeFileSync(png, grayPng(test.pixels(0), 28, 28));
        let sent = null;
        page.on('request', (r) => {
                if (r.url().endsWith('/explain') && r.method() === 'POST')
                        sent = JSON.parse(r.postData());
        });
        await page.setInputFiles('#explain-file', png);
        await page.waitForFunction(() => !document.querySelector('#explain-run').disabled, null, {timeout: 30000});
        await page.click('#explain-run');
        await page.waitForFunction(() => document.querySelector('#explain-status').textContent === 'Done.', null,
                                   {timeout: 120000});
        const want = Array.from(test.pixels(0));
        ok(sent && sent.images.length === 1 && sent.images[0].length === 784 &&
           sent.images[0].every((v, i) => v === want[i]) && sent.method === 'integrated_gradients' && sent.steps === 32,
           'the page sends the PNG\'s 784 pixels as the API takes images, integrated gradients with 32 steps',
           sent && {method: sent.method, steps: sent.steps, n: sent.images[0].length});
        const api = await json(base, 'POST', `/v1/models/${tuned}/explain`, {images: [want]});
        const shown = await page.textContent('#explain-target-label');
        ok(shown.startsWith(api.json.target.label + ' ('), `the page names the class explained, the API's prediction "${api.json.target.label}"`, shown);
        const c = await canvasColours(page, '#explain-overlay');
        const plain = await canvasColours(page, '#explain-input');
        ok(c.width === 280 && c.height === 280 && c.red > 100 && c.blue > 100 && c.gray > 1000,
           'the overlay canvas (280x280: 10 px per pixel) has red and blue heat and the gray image where the map is weak', c);
        ok(plain.red === 0 && plain.blue === 0 && plain.gray === plain.width * plain.height,
           'the input canvas shows the gray image alone', plain);
        await screenshot(page, artifacts, 'explain-ig');

        // gradient x input for class 0, then an unknown class: the API's message on the page
        await page.selectOption('#explain-method', 'gradient_x_input');
        await page.fill('#explain-target', '0');
        await page.click('#explain-run');
        await page.waitForFunction(() => document.querySelector('#explain-status').textContent === 'Done.' &&
                                         document.querySelector('#explain-target-label').textContent.startsWith('0 ('),
                                   null, {timeout: 60000});
        ok(sent.method === 'gradient_x_input' && sent.target === 0 && sent.steps === undefined,
           'gradient x input for class 0: the request carries method and target, no steps', sent && {method: sent.method, target: sent.target});
        await screenshot(page, artifacts, 'explain-gxi');
        await page.fill('#explain-target', 'no-such-class');
        await page.click('#explain-run');
        await page.waitForFunction(() => /not one of the model's/.test(document.querySelector('#explain-status').textContent),
                                   null, {timeout: 60000});
        ok(true, 'an unknown class: the API\'s error shows in the page\'s status line');
        // the job page's per-example grid links each image to this page for the result model; it explains at once
        await page.goto(base + '/#/jobs/' + done.id);
        await page.waitForSelector('#ex-grid a.ex-explain', {timeout: 60000});
        const href = await page.getAttribute('#ex-grid li:first-child a.ex-explain', 'href');
        const idx = Number(await page.getAttribute('#ex-grid li:first-child', 'data-index'));
        ok(href === `#/models/${tuned}/explain?dataset=${ds.id}&index=${idx}`,
           'an example tile links to the result model\'s explain page with its dataset and index', href);
        sent = null;
        await page.click('#ex-grid li:first-child a.ex-explain');
        await page.waitForFunction(() => document.querySelector('#explain-status') &&
                                         document.querySelector('#explain-status').textContent === 'Done.', null, {timeout: 120000});
        const wantIdx = Array.from(sub.pixels(idx));
        ok(sent && sent.images[0].length === 784 && sent.images[0].every((v, i) => v === wantIdx[i]),
           `the page took image #${idx} from the dataset (GET /images) and sent exactly its pixels`, sent && sent.images[0].length);
        const src = await page.textContent('#explain-source');
        ok(src.includes('#' + idx) && src.includes('fmnist-1000'), 'the page names the image and its dataset', src);
        await screenshot(page, artifacts, 'explain-from-dataset');
        await page.goto(base + `/#/models/${tuned}/explain?dataset=${ds.id}&index=99999`);
        await page.waitForFunction(() => /indices|index/.test(document.querySelector('#explain-status').textContent),
                                   null, {timeout: 30000});
        ok(true, 'an index past the dataset: the API\'s error shows in the status line');
        await page.goto(base + `/#/models/${tuned}/explain`);
        await page.waitForFunction(() => !document.querySelector('#explain-file').disabled, null, {timeout: 30000});
        await page.setViewportSize({width: 390, height: 800});
        await page.waitForTimeout(200);
        const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        ok(over <= 0, 'narrow window (390 px): the explain page fits without sideways scrolling', `${over} px too wide`);
        await screenshot(page, artifacts, 'explain-narrow');
        const errors = cons.take().filter((e) => !e.includes('status of 400'));
        ok(errors.length === 0, 'no console errors but the expected 400', errors.join('\n'));
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
