/* api.js - the dashboard's API client: api() sends a request with the bearer
 * token and parses the JSON answer or throws ApiError (with the error
 * envelope's code and param); on 401 it asks for the token once (one prompt
 * shared by every waiting request) and keeps it in sessionStorage. Also:
 * listAll() over cursor pages, download() through fetch (so the token goes
 * along), reportError() to the banner, poll() for views that refresh.
 *
 * Not for: the event stream (events.js) or what any response means (job.js,
 * dataset.js, catalog.js). */
import { h, $, showBanner } from './dom.js';

const TOKEN_KEY = 'finetuned.token';

/* A non-2xx answer: message, code and param from {"error": {...}}. */
export class ApiError extends Error {
        constructor(status, body) {
                const e = (body && body.error) || {};
                super(e.message || 'HTTP ' + status);
                this.name = 'ApiError';
                this.status = status;
                this.code = e.code || null;
                this.param = e.param || null;
        }
}

let tokenPrompt = null; /* one prompt at a time, shared by every request that got a 401 */
function askToken(refused) {
        if (tokenPrompt)
                return tokenPrompt;
        const dialog = $('#token-dialog'), form = $('#token-form'), input = $('#token-input');
        $('#token-error').textContent = refused ? 'the daemon refused that token' : '';
        input.value = '';
        tokenPrompt = new Promise((resolve) => {
                const onSubmit = (ev) => {
                        const value = input.value.trim();
                        if (!value) {
                                ev.preventDefault();
                                return;
                        }
                        sessionStorage.setItem(TOKEN_KEY, value);
                        form.removeEventListener('submit', onSubmit);
                        tokenPrompt = null;
                        resolve();
                };
                form.addEventListener('submit', onSubmit);
                /* Escape would leave the page useless: the token is required. */
                dialog.addEventListener('cancel', (ev) => ev.preventDefault());
                dialog.showModal();
                input.focus();
        });
        return tokenPrompt;
}

function authHeaders(extra) {
        const headers = new Headers(extra || {});
        const token = sessionStorage.getItem(TOKEN_KEY);
        if (token)
                headers.set('Authorization', 'Bearer ' + token);
        return headers;
}

/* api(method, path, {json, body, headers, raw, signal}): the parsed JSON
 * answer, or the Response itself when raw (and 2xx); throws ApiError. */
export async function api(method, path, opts) {
        opts = opts || {};
        for (;;) {
                const headers = authHeaders(opts.headers);
                let body = opts.body;
                if (opts.json !== undefined) {
                        headers.set('Content-Type', 'application/json');
                        body = JSON.stringify(opts.json);
                }
                const res = await fetch(path, {method, headers, body, signal: opts.signal});
                if (res.status === 401) {
                        const had = !!sessionStorage.getItem(TOKEN_KEY);
                        sessionStorage.removeItem(TOKEN_KEY);
                        await askToken(had);
                        continue;
                }
                if (opts.raw && res.ok)
                        return res;
                const text = await res.text();
                let data = null;
                try {
                        data = text ? JSON.parse(text) : null;
                } catch (e) {
                        data = null;
                }
                if (!res.ok)
                        throw new ApiError(res.status, data);
                return data;
        }
}

/* Every item of a list ({"data", "has_more", "next_after"}), 100 a page, up to max (500). */
export async function listAll(path, max) {
        const items = [];
        let after = null;
        max = max || 500;
        for (;;) {
                const sep = path.includes('?') ? '&' : '?';
                const page = await api('GET', path + sep + 'limit=100' + (after !== null ? '&after=' + encodeURIComponent(after) : ''));
                items.push(...page.data);
                if (!page.has_more || !page.data.length || items.length >= max)
                        return items;
                after = page.next_after;
        }
}

/* Download through fetch so the token goes along, then save the blob as filename. */
export async function download(path, filename) {
        const res = await api('GET', path, {raw: true});
        const blob = await res.blob();
        const url = URL.createObjectURL(blob);
        const a = h('a', {href: url, download: filename});
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/* An error for the banner: the API's message (and param), or that the daemon is unreachable. */
export function reportError(e) {
        showBanner(e instanceof ApiError ? e.message + (e.param ? ' (' + e.param + ')' : '') :
                   'cannot reach the daemon: ' + (e && e.message ? e.message : e));
}

/* Run fn now and every ms after it finishes, skipping ticks while the tab is
 * hidden; errors go to the banner. Returns stop(). */
export function poll(ms, fn) {
        let timer = null, stopped = false, first = true;
        async function tick() {
                try {
                        const run = first || !document.hidden;
                        first = false;
                        if (run)
                                await fn();
                } catch (e) {
                        if (!stopped)
                                reportError(e);
                }
                if (!stopped)
                        timer = setTimeout(tick, ms);
        }
        tick();
        return () => {
                stopped = true;
                clearTimeout(timer);
        };
}
