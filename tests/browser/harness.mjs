// harness.mjs - what every browser test needs: TAP output, the real finetuned
// daemon on an ephemeral loopback port with a temporary state directory (as
// tests/integration/lib.sh does), Debian's headless Chromium through
// playwright-core with a fresh profile, console-error capture and screenshots
// under the build directory. Not for: the scenarios themselves
// (test_dashboard.mjs).
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM = process.env.FINETUNED_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// ---- TAP --------------------------------------------------------------------
let tapN = 0, tapFailed = 0;
export function ok(cond, desc, detail) {
        tapN++;
        console.log(`${cond ? 'ok' : 'not ok'} ${tapN} - ${desc}`);
        if (!cond) {
                tapFailed++;
                if (detail !== undefined)
                        diag(typeof detail === 'string' ? detail : JSON.stringify(detail));
        }
        return !!cond;
}
export function diag(text) {
        for (const line of String(text).split('\n'))
                console.log('# ' + line);
}
export function doneTesting() {
        console.log(`1..${tapN}`);
        return tapFailed === 0;
}
export function bailOut(why) {
        console.log('Bail out! ' + why);
}

// ---- temporary files ---------------------------------------------------------
export const TMP = mkdtempSync(join(process.env.TMPDIR || tmpdir(), 'finetuned-browser.'));
const cleanups = [];
export function atExit(fn) {
        cleanups.push(fn);
}
// A timeout (meson) or ^C still stops the daemons and the browser this test started.
for (const sig of ['SIGTERM', 'SIGINT'])
        process.once(sig, () => {
                console.log(`Bail out! ${sig}`);
                cleanup().finally(() => process.exit(1));
        });

export async function cleanup() {
        while (cleanups.length) {
                try {
                        await cleanups.pop()();
                } catch (e) {
                        diag('cleanup: ' + e.message);
                }
        }
        rmSync(TMP, {recursive: true, force: true});
}

// ---- the daemon -------------------------------------------------------------
// startDaemon(bin, stateDir, extraArgs, listen) -> {base, proc, log(), stop()}; listen defaults to an
// ephemeral loopback port ("127.0.0.1:0").
export function startDaemon(bin, stateDir, extra, listen) {
        return new Promise((resolve, reject) => {
                // One compute thread: OpenMP threads spinning on a shared, oversubscribed CI machine are
                // several times slower than one.
                const proc = spawn(bin, ['serve', '--listen', listen || '127.0.0.1:0', '--state-dir', stateDir,
                                         '--threads', '1', ...(extra || [])],
                                   {stdio: ['ignore', 'ignore', 'pipe']});
                let log = '', done = false;
                const d = {proc, base: null, log: () => log};
                d.stop = () => new Promise((res) => {
                        if (proc.exitCode !== null || proc.signalCode !== null)
                                return res(proc.exitCode);
                        proc.once('exit', (code) => res(code));
                        proc.kill('SIGTERM');
                        setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
                });
                atExit(d.stop);
                const timer = setTimeout(() => {
                        if (!done) {
                                done = true;
                                reject(new Error('daemon did not start: ' + log));
                        }
                }, 15000);
                proc.stderr.on('data', (chunk) => {
                        log += chunk.toString();
                        const m = /listening on (http:\/\/[0-9.:]+)/.exec(log);
                        if (m && !done) {
                                done = true;
                                clearTimeout(timer);
                                d.base = m[1];
                                resolve(d);
                        }
                });
                proc.on('exit', (code) => {
                        if (!done) {
                                done = true;
                                clearTimeout(timer);
                                reject(new Error(`daemon exited with ${code}: ${log}`));
                        }
                });
        });
}

// ---- the browser -------------------------------------------------------------
export async function launchBrowser() {
        let chromium;
        try {
                ({ chromium } = await import('playwright-core'));
        } catch (e) {
                throw new Error('playwright-core is not installed in tests/browser/node_modules: run tools/setup.sh (' +
                                e.message + ')');
        }
        if (!existsSync(CHROMIUM))
                throw new Error(`${CHROMIUM} is missing: run tools/setup.sh (Debian package chromium)`);
        const profile = join(TMP, 'profile');
        mkdirSync(profile);
        // A persistent context on a fresh directory is Chromium's --user-data-dir.
        const context = await chromium.launchPersistentContext(profile, {
                executablePath: CHROMIUM,
                headless: true,
                args: CHROMIUM_ARGS,
                viewport: {width: 1280, height: 800},
                acceptDownloads: true,
                timeout: 60000,
        });
        atExit(() => context.close());
        return context;
}

// Record console errors and uncaught exceptions; take() returns and clears them.
export function watchConsole(page) {
        let errors = [];
        page.on('console', (m) => {
                if (m.type() === 'error')
                        errors.push('console: ' + m.text());
        });
        page.on('pageerror', (e) => errors.push('exception: ' + e.message));
        return {
                take() {
                        const e = errors;
                        errors = [];
                        return e;
                },
        };
}

export async function screenshot(page, dir, name) {
        if (!dir)
                return;
        mkdirSync(dir, {recursive: true});
        await page.screenshot({path: join(dir, name + '.png'), fullPage: true});
}

export function writeText(path, text) {
        writeFileSync(path, text);
        return path;
}

// A seeded, learnable CSV at path: one Gaussian blob per class in `features`
// dimensions, the class names in a last column "label".
export function makeCsv(path, rows, features, classes) {
        let seed = 12345;
        const rand = () => {
                seed = (seed + 0x6d2b79f5) | 0;
                let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
                t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
                return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
        };
        const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
        const lines = [[...Array(features).keys()].map((i) => 'f' + i).concat('label').join(',')];
        for (let r = 0; r < rows; r++) {
                const c = r % classes.length;
                const row = [];
                for (let i = 0; i < features; i++)
                        row.push(((i % classes.length === c ? 1.5 : 0) + gauss()).toFixed(4));
                row.push(classes[c]);
                lines.push(row.join(','));
        }
        return writeText(path, lines.join('\n') + '\n');
}
