/* app.js - the dashboard's behaviour: a hash router over six views (jobs,
 * one job, submit, datasets, models, compare), an API client that asks for
 * the bearer token once on 401 and keeps it in sessionStorage, a server-sent
 * events reader over fetch (so it can send the token and Last-Event-ID), and
 * Chart.js line charts. Every string from the API is put into the page as
 * text, never as HTML.
 *
 * Not for: looks (app.css) or the page skeleton (index.html). */
'use strict';

(function () {
        const TOKEN_KEY = 'finetuned.token';
        const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
        const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf',
                         '#7f7f7f', '#bcbd22'];
        const POLL_MS = 1500;
        const PRESETS = ['mlp', 'cnn', 'resnet18', 'resnet34'];

        /* ---- small helpers ---------------------------------------------------- */

        /* h('a', {href: '#'}, 'text', child...): build an element; strings become text nodes. */
        function h(tag, attrs, ...children) {
                const el = document.createElement(tag);
                for (const [k, v] of Object.entries(attrs || {})) {
                        if (v === undefined || v === null || v === false)
                                continue;
                        if (k === 'class')
                                el.className = v;
                        else if (k === 'text')
                                el.textContent = v;
                        else if (k.startsWith('on'))
                                el.addEventListener(k.slice(2), v);
                        else if (k in el && typeof v !== 'string')
                                el[k] = v;
                        else
                                el.setAttribute(k, v === true ? '' : String(v));
                }
                for (const c of children.flat()) {
                        if (c === undefined || c === null || c === false)
                                continue;
                        el.append(c instanceof Node ? c : document.createTextNode(String(c)));
                }
                return el;
        }
        const $ = (sel, root) => (root || document).querySelector(sel);
        const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

        function fmtNum(v, digits) {
                if (!isNum(v))
                        return v === undefined || v === null ? '—' : String(v);
                if (Number.isInteger(v))
                        return String(v);
                const a = Math.abs(v);
                if (a !== 0 && (a < 1e-3 || a >= 1e6))
                        return v.toExponential(2);
                return v.toFixed(digits === undefined ? 4 : digits);
        }
        function fmtDuration(s) {
                if (!isNum(s) || s < 0)
                        return '—';
                s = Math.round(s);
                if (s < 60)
                        return s + ' s';
                if (s < 3600)
                        return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
                return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
        }
        function fmtBytes(n) {
                if (!isNum(n))
                        return '—';
                const units = ['B', 'KiB', 'MiB', 'GiB'];
                let i = 0;
                while (n >= 1024 && i < units.length - 1) {
                        n /= 1024;
                        i++;
                }
                return (i ? n.toFixed(1) : n) + ' ' + units[i];
        }
        function fmtTime(t) {
                if (t === undefined || t === null)
                        return '—';
                const d = typeof t === 'number' ? new Date(t < 1e12 ? t * 1000 : t) : new Date(t);
                return isNaN(d) ? String(t) : d.toLocaleString();
        }
        function stateBadge(state) {
                return h('span', {class: 'state state-' + (state || 'unknown'), 'data-state': state}, state || '?');
        }

        /* ---- the API client --------------------------------------------------- */

        class ApiError extends Error {
                constructor(status, body) {
                        const e = (body && body.error) || {};
                        super(e.message || 'HTTP ' + status);
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
         * answer, or the Response when raw; throws ApiError with .param. */
        async function api(method, path, opts) {
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

        /* Every item of a cursor-paginated list (limit/after/has_more), up to max. */
        async function listAll(path, max) {
                const items = [];
                let after = null;
                max = max || 500;
                for (;;) {
                        const sep = path.includes('?') ? '&' : '?';
                        const page = await api('GET', path + sep + 'limit=100' +
                                               (after ? '&after=' + encodeURIComponent(after) : ''));
                        const data = Array.isArray(page) ? page : (page && page.data) || [];
                        items.push(...data);
                        if (Array.isArray(page) || !page.has_more || !data.length || items.length >= max)
                                return items;
                        const last = data[data.length - 1];
                        after = page.next_after !== undefined && page.next_after !== null ? page.next_after :
                                last.seq !== undefined ? last.seq : last.id;
                }
        }

        /* Download through fetch so the token goes along, then save the blob. */
        async function download(path, filename) {
                const res = await api('GET', path, {raw: true});
                const blob = await res.blob();
                const url = URL.createObjectURL(blob);
                const a = h('a', {href: url, download: filename});
                document.body.append(a);
                a.click();
                a.remove();
                setTimeout(() => URL.revokeObjectURL(url), 10000);
        }

        function showBanner(message) {
                const b = $('#banner');
                b.textContent = message || '';
                b.hidden = !message;
        }
        function reportError(e) {
                showBanner(e instanceof ApiError ? e.message + (e.param ? ' (' + e.param + ')' : '') :
                           'cannot reach the daemon: ' + (e && e.message ? e.message : e));
        }

        /* ---- server-sent events over fetch ------------------------------------ */

        /* Follow a job's event stream: replays everything after lastId, then
         * pushes new events; reconnects with Last-Event-ID whenever the stream
         * drops before the terminal status event, and stops after it.
         * onEvent(data, type) gets each event's JSON data and its SSE name.
         * Returns {close(), nudge()}: nudge() says the daemon answers again (a
         * poll succeeded), so a stream waiting to reconnect does it now rather
         * than after its back-off (up to 8 s of events missing from the page). */
        function followEvents(jobId, onEvent, onEnd) {
                const ctl = new AbortController();
                let lastId = null, closed = false, delay = 500, waiting = null;
                async function run() {
                        while (!closed) {
                                let ended = false;
                                try {
                                        const headers = {Accept: 'text/event-stream'};
                                        if (lastId !== null)
                                                headers['Last-Event-ID'] = String(lastId);
                                        const res = await api('GET', '/v1/jobs/' + encodeURIComponent(jobId) +
                                                              '/events?stream=true',
                                                              {headers, raw: true, signal: ctl.signal});
                                        delay = 500;
                                        const reader = res.body.getReader();
                                        const decoder = new TextDecoder();
                                        let buf = '', ev = {data: []};
                                        for (;;) {
                                                const {value, done} = await reader.read();
                                                if (done)
                                                        break;
                                                buf += decoder.decode(value, {stream: true});
                                                if (buf.length > (1 << 20))
                                                        throw new Error('an event stream line longer than 1 MiB');
                                                let nl;
                                                while ((nl = buf.indexOf('\n')) >= 0) {
                                                        const line = buf.slice(0, nl).replace(/\r$/, '');
                                                        buf = buf.slice(nl + 1);
                                                        if (line === '') {
                                                                if (ev.data.length) {
                                                                        if (ev.id !== undefined)
                                                                                lastId = ev.id;
                                                                        let payload = null;
                                                                        try {
                                                                                payload = JSON.parse(ev.data.join('\n'));
                                                                        } catch (e) {
                                                                                payload = null;
                                                                        }
                                                                        if (payload) {
                                                                                onEvent(payload, ev.event);
                                                                                if ((ev.event || payload.type) === 'status' &&
                                                                                    TERMINAL.has(payload.state))
                                                                                        ended = true;
                                                                        }
                                                                }
                                                                ev = {data: []};
                                                        } else if (line.startsWith(':')) {
                                                                /* comment / keep-alive */
                                                        } else {
                                                                const c = line.indexOf(':');
                                                                const field = c < 0 ? line : line.slice(0, c);
                                                                const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
                                                                if (field === 'data')
                                                                        ev.data.push(val);
                                                                else if (field === 'id')
                                                                        ev.id = val;
                                                                else if (field === 'event')
                                                                        ev.event = val;
                                                        }
                                                }
                                                if (ended) {
                                                        reader.cancel().catch(() => {});
                                                        break;
                                                }
                                        }
                                        /* The server ends the stream after the terminal event; any
                                         * other end is a drop: reconnect from lastId. */
                                } catch (e) {
                                        if (closed || e.name === 'AbortError')
                                                return;
                                        if (e instanceof ApiError && e.status === 404) {
                                                ended = true;
                                        }
                                }
                                if (ended) {
                                        closed = true;
                                        if (onEnd)
                                                onEnd();
                                        return;
                                }
                                await new Promise((r) => {
                                        const t = setTimeout(r, delay);
                                        waiting = () => {
                                                clearTimeout(t);
                                                delay = 250;
                                                r();
                                        };
                                });
                                waiting = null;
                                delay = Math.min(delay * 2, 8000);
                        }
                }
                run();
                return {
                        close() {
                                closed = true;
                                ctl.abort();
                                if (waiting)
                                        waiting();
                        },
                        nudge() {
                                if (waiting)
                                        waiting();
                        },
                };
        }

        /* ---- reading jobs, whatever optional parts they carry ----------------- */

        const specOf = (job) => (job && (job.spec || job.request)) || job || {};
        const jobModel = (job) => job.model || specOf(job).model || job.base_model;
        const jobDataset = (job) => job.training_file || specOf(job).training_file || job.dataset;
        function jobStrategy(job) {
                const s = job.strategy || specOf(job).strategy;
                return (s && (s.type || s)) || 'full';
        }
        const jobProgress = (job) => job.progress || {};
        function jobEpochs(job) {
                const p = jobProgress(job), hp = specOf(job).hyperparameters || job.hyperparameters || {};
                return p.epochs || p.total_epochs || hp.epochs;
        }
        /* The metric a job is judged by: its early-stopping metric, else validation
         * accuracy (classification) or R² (regression); and whether higher is better. */
        function jobMetric(job) {
                const spec = specOf(job), es = spec.early_stopping;
                const name = (es && es.metric) ||
                             ((spec.task && spec.task.type) === 'regression' ? 'val_r2' : 'val_accuracy');
                return {name, max: !/loss|mse|mae|rmse/.test(name)};
        }

        /* Best validation metric per job from its epoch events, read incrementally
         * (?after=last seq) so a poll costs one small request per running job. */
        const bestCache = new Map(); /* id -> {after, best, final} */
        async function jobBestUpdate(job) {
                let c = bestCache.get(job.id);
                if (!c) {
                        c = {after: 0, best: null, final: false};
                        bestCache.set(job.id, c);
                }
                if (c.final || job.state === 'queued')
                        return;
                const terminal = TERMINAL.has(job.state);
                const metric = jobMetric(job);
                for (let pages = 0; pages < 20; pages++) {
                        const page = await api('GET', '/v1/jobs/' + encodeURIComponent(job.id) + '/events?limit=1000&after=' + c.after);
                        const items = (page && page.data) || [];
                        for (const e of items) {
                                if (isNum(e.seq))
                                        c.after = Math.max(c.after, e.seq);
                                const d = e.data || {};
                                if (e.type !== 'epoch' || !isNum(d[metric.name]))
                                        continue;
                                if (!c.best || (metric.max ? d[metric.name] > c.best.value : d[metric.name] < c.best.value))
                                        c.best = {name: metric.name, value: d[metric.name], epoch: d.epoch};
                        }
                        if (!page || !page.has_more)
                                break;
                }
                c.final = terminal;
        }
        function jobBest(job) {
                const c = bestCache.get(job.id);
                return c ? c.best : null;
        }

        /* {frac, within, epoch, epochs, eta}: the run's fraction done and the current epoch's. */
        function progressOf(job) {
                const p = jobProgress(job), epochs = jobEpochs(job);
                const epoch = isNum(p.epoch) ? p.epoch : 0;
                let within = null, frac = 0;
                if (isNum(p.batch) && p.batches)
                        within = Math.min(1, p.batch / p.batches);
                if (job.state === 'succeeded')
                        frac = 1;
                else if (isNum(p.step) && p.steps)
                        frac = Math.min(1, p.step / p.steps);
                else if (epochs)
                        frac = Math.min(1, (Math.max(0, epoch - 1) + (within || 0)) / epochs);
                const eta = isNum(p.eta_seconds) ? p.eta_seconds : isNum(p.eta_s) ? p.eta_s : null;
                return {frac, within, epoch, epochs, eta};
        }

        function progressCell(job) {
                const pr = progressOf(job);
                let text = pr.epochs && job.state !== 'queued' ? 'epoch ' + pr.epoch + '/' + pr.epochs : '';
                if (job.state === 'succeeded')
                        text = ((job.metrics && job.metrics.epochs_run) || pr.epochs || '') + ' epochs, done';
                else if (TERMINAL.has(job.state) && pr.epochs)
                        text = 'stopped in epoch ' + pr.epoch + '/' + pr.epochs;
                if (!TERMINAL.has(job.state) && isNum(pr.eta))
                        text += (text ? ' · ' : '') + 'ETA ' + fmtDuration(pr.eta);
                const bar = h('progress', {max: 1, 'aria-label': 'progress of job ' + job.id});
                bar.value = pr.frac;
                return h('div', {class: 'progress'}, bar, h('small', {}, text || (job.state === 'queued' ? 'waiting' : '')));
        }

        /* ---- charts ----------------------------------------------------------- */

        function lineChart(canvas, yTitle) {
                /* global Chart */
                return new Chart(canvas, {
                        type: 'line',
                        data: {datasets: []},
                        options: {
                                animation: false,
                                responsive: true,
                                maintainAspectRatio: false,
                                parsing: false,
                                normalized: true,
                                interaction: {mode: 'nearest', intersect: false},
                                scales: {
                                        x: {type: 'linear', title: {display: true, text: 'epoch'},
                                            ticks: {precision: 0}},
                                        y: {title: {display: true, text: yTitle}},
                                },
                                plugins: {legend: {position: 'bottom'}},
                        },
                });
        }
        function chartSeries(chart, label, color) {
                let ds = chart.data.datasets.find((d) => d.label === label);
                if (!ds) {
                        ds = {label, data: [], borderColor: color, backgroundColor: color, pointRadius: 3,
                              borderWidth: 2, tension: 0};
                        chart.data.datasets.push(ds);
                }
                return ds;
        }
        /* Add or replace the point at x; keeps points sorted by x. */
        function chartPoint(chart, label, color, x, y) {
                if (!isNum(x) || !isNum(y))
                        return;
                const ds = chartSeries(chart, label, color);
                const i = ds.data.findIndex((p) => p.x === x);
                if (i >= 0)
                        ds.data[i] = {x, y};
                else {
                        ds.data.push({x, y});
                        ds.data.sort((a, b) => a.x - b.x);
                }
        }
        function chartCanvas(label) {
                const canvas = h('canvas', {role: 'img', 'aria-label': label, 'data-points': 0});
                return {canvas, box: h('div', {class: 'chart-box'}, canvas)};
        }
        function chartUpdate(chart) {
                chart.update('none');
                const n = chart.data.datasets.reduce((m, d) => Math.max(m, d.data.length), 0);
                chart.canvas.setAttribute('data-points', n);
        }

        /* ---- views ------------------------------------------------------------ */

        let cleanup = null; /* the current view's teardown */
        const view = () => $('#view');

        function setView(title, ...children) {
                document.title = title + ' · finetuned';
                view().replaceChildren(...children);
        }

        /* Run fn now and every ms after it finishes, skipping ticks while the tab is hidden. */
        function every(ms, fn) {
                let timer = null, stopped = false, first = true;
                async function tick() {
                        try {
                                const run = first || !document.hidden;
                                first = false;
                                if (run)
                                        await fn();
                        } catch (e) {
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

        /* -- jobs list -- */
        function viewJobs(params) {
                const selected = new Set();
                const tbody = h('tbody');
                const filter = h('select', {id: 'state-filter'},
                                 ['all', 'queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled'].map(
                                         (s) => h('option', {value: s === 'all' ? '' : s}, s)));
                filter.value = params.get('state') || '';
                const compareBtn = h('button', {type: 'button', disabled: true, id: 'compare-selected',
                                                onclick: () => {
                                                        location.hash = '#/compare?ids=' + [...selected].join(',');
                                                }},
                                     'Compare selected');
                const more = h('p', {class: 'muted', hidden: true}, 'Showing the newest 100 jobs; filter by state to see others.');
                const empty = h('p', {class: 'empty', hidden: true}, 'No jobs yet. ',
                                h('a', {href: '#/submit'}, 'Start one'), '.');
                const table = h('table', {id: 'jobs-table'},
                                h('caption', {class: 'sr-only'}, 'Fine-tuning jobs, newest first'),
                                h('thead', {}, h('tr', {},
                                                 h('th', {scope: 'col'}, h('span', {class: 'sr-only'}, 'Compare')),
                                                 h('th', {scope: 'col'}, 'Job'), h('th', {scope: 'col'}, 'State'),
                                                 h('th', {scope: 'col'}, 'Model'),
                                                 h('th', {scope: 'col'}, 'Dataset'),
                                                 h('th', {scope: 'col'}, 'Strategy'),
                                                 h('th', {scope: 'col'}, 'Progress'),
                                                 h('th', {scope: 'col', class: 'num'}, 'Best val metric'),
                                                 h('th', {scope: 'col'}, 'Created'))),
                                tbody);
                setView('Jobs',
                        h('div', {class: 'toolbar'}, h('h1', {}, 'Jobs'),
                          h('label', {for: 'state-filter'}, 'State '), filter, compareBtn,
                          h('a', {class: 'button', href: '#/submit'}, 'New job')),
                        h('div', {class: 'table-wrap'}, table, empty), more);

                const rows = new Map();
                function rowFor(job) {
                        let r = rows.get(job.id);
                        if (r)
                                return r;
                        const box = h('input', {type: 'checkbox', id: 'sel-' + job.id,
                                                'aria-label': 'select job ' + job.id + ' to compare',
                                                onchange: (ev) => {
                                                        if (ev.target.checked)
                                                                selected.add(job.id);
                                                        else
                                                                selected.delete(job.id);
                                                        compareBtn.disabled = selected.size < 2;
                                                }});
                        r = {tr: h('tr', {'data-job': job.id}), box, cells: []};
                        /* data-label: the column name, shown beside each cell when a narrow window stacks the rows */
                        r.cells = [h('td', {'data-label': 'Compare'}, box), h('td', {'data-label': 'Job', class: 'clip'}),
                                   h('td', {'data-label': 'State'}), h('td', {'data-label': 'Model', class: 'clip mono'}),
                                   h('td', {'data-label': 'Dataset', class: 'clip mono'}), h('td', {'data-label': 'Strategy'}),
                                   h('td', {'data-label': 'Progress'}), h('td', {class: 'num', 'data-label': 'Best val metric'}),
                                   h('td', {'data-label': 'Created'})];
                        r.tr.append(...r.cells);
                        rows.set(job.id, r);
                        return r;
                }
                function fill(r, job) {
                        const best = jobBest(job);
                        const c = r.cells;
                        c[1].replaceChildren(h('a', {href: '#/jobs/' + encodeURIComponent(job.id), class: 'mono', title: job.id}, job.id));
                        c[2].replaceChildren(stateBadge(job.state));
                        c[3].textContent = jobModel(job) || '—';
                        c[3].title = c[3].textContent;
                        c[4].textContent = jobDataset(job) || '—';
                        c[4].title = c[4].textContent;
                        c[5].textContent = jobStrategy(job);
                        c[6].replaceChildren(progressCell(job));
                        c[7].textContent = best ? best.name + ' ' + fmtNum(best.value) + ' (epoch ' + best.epoch + ')' : '—';
                        c[8].textContent = fmtTime(job.created_at || job.created);
                }
                const stop = every(POLL_MS, async () => {
                        const q = filter.value ? '&state=' + encodeURIComponent(filter.value) : '';
                        const page = await api('GET', '/v1/jobs?limit=100' + q);
                        const jobs = (page && page.data) || [];
                        const seen = new Set();
                        await Promise.all(jobs.map((job) => jobBestUpdate(job).catch(() => {})));
                        jobs.forEach((job, i) => {
                                const r = rowFor(job);
                                fill(r, job);
                                seen.add(job.id);
                                if (tbody.children[i] !== r.tr)
                                        tbody.insertBefore(r.tr, tbody.children[i] || null);
                        });
                        for (const [id, r] of rows)
                                if (!seen.has(id)) {
                                        r.tr.remove();
                                        rows.delete(id);
                                        selected.delete(id);
                                }
                        compareBtn.disabled = selected.size < 2;
                        empty.hidden = jobs.length > 0;
                        more.hidden = !(page && page.has_more);
                        table.hidden = jobs.length === 0;
                        showBanner('');
                });
                filter.addEventListener('change', () => {
                        history.replaceState(null, '', '#/jobs' + (filter.value ? '?state=' + filter.value : ''));
                        for (const r of rows.values())
                                r.tr.remove();
                        rows.clear();
                });
                return stop;
        }

        /* -- one job -- */
        function kvList(obj, prefix) {
                const dl = h('dl', {class: 'kv'});
                const walk = (o, p) => {
                        for (const [k, v] of Object.entries(o || {})) {
                                const key = p ? p + '.' + k : k;
                                if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length)
                                        walk(v, key);
                                else
                                        dl.append(h('dt', {}, key),
                                                  h('dd', {class: 'mono'}, Array.isArray(v) || (v && typeof v === 'object') ?
                                                    JSON.stringify(v) : fmtNum(v, 6)));
                        }
                };
                walk(obj, prefix || '');
                return dl;
        }

        /* Scalar metrics, with one level of nesting flattened: macro_avg.f1. */
        function metricsTable(metrics) {
                const rows = [];
                const row = (k, v) => rows.push(h('tr', {}, h('th', {scope: 'row'}, k), h('td', {class: 'num'}, fmtNum(v))));
                for (const [k, v] of Object.entries(metrics || {})) {
                        if (isNum(v))
                                row(k, v);
                        else if (v && typeof v === 'object' && !Array.isArray(v) && k !== 'confusion_matrix')
                                for (const [k2, v2] of Object.entries(v))
                                        if (isNum(v2))
                                                row(k + '.' + k2, v2);
                }
                if (!rows.length)
                        return null;
                return h('table', {id: 'final-metrics'}, h('caption', {class: 'sr-only'}, 'Final metrics'),
                         h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Metric'), h('th', {scope: 'col', class: 'num'}, 'Value'))),
                         h('tbody', {}, rows));
        }

        function classNames(metrics, n) {
                const cm = metrics.confusion_matrix;
                const names = (cm && !Array.isArray(cm) && cm.labels) || metrics.class_names || metrics.labels ||
                              (Array.isArray(metrics.classes) ? metrics.classes.map((c) => (c && c.name !== undefined ? c.name : c)) : null);
                const out = [];
                for (let i = 0; i < n; i++)
                        out.push(Array.isArray(names) && names[i] !== undefined ? String(names[i]) : String(i));
                return out;
        }

        function perClassTable(metrics) {
                let pc = metrics.per_class || metrics.classes_report;
                if (!pc)
                        return null;
                if (!Array.isArray(pc))
                        pc = Object.entries(pc).map(([name, v]) => Object.assign({class: name}, v));
                if (!pc.length)
                        return null;
                const names = classNames(metrics, pc.length);
                const cols = ['precision', 'recall', 'f1', 'support'].filter((c) => pc.some((r) => r[c] !== undefined));
                return h('table', {id: 'per-class'}, h('caption', {class: 'sr-only'}, 'Per-class metrics'),
                         h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Class'),
                                           cols.map((c) => h('th', {scope: 'col', class: 'num'}, c)))),
                         h('tbody', {}, pc.map((r, i) => h('tr', {},
                                 h('th', {scope: 'row'}, String(r.class !== undefined ? r.class : r.name !== undefined ? r.name : names[i])),
                                 cols.map((c) => h('td', {class: 'num'}, fmtNum(r[c])))))));
        }

        function confusionTable(metrics) {
                /* {"labels": [...], "matrix": [[...]]} or a bare matrix; rows are true classes */
                const cm = metrics.confusion_matrix || metrics.confusion;
                const m = cm && !Array.isArray(cm) ? cm.matrix : cm;
                if (!Array.isArray(m) || !m.length)
                        return null;
                let names = classNames(metrics, m.length);
                if (!(cm.labels || metrics.class_names) && Array.isArray(metrics.per_class))
                        names = metrics.per_class.map((r, i) => String(r.class !== undefined ? r.class : r.name !== undefined ? r.name : i));
                const max = Math.max(1, ...m.map((row) => Math.max(...row.map((v) => (isNum(v) ? v : 0)))));
                return h('table', {class: 'confusion', id: 'confusion-matrix'},
                         h('caption', {class: 'muted'}, 'rows: true class · columns: predicted class'),
                         h('thead', {}, h('tr', {}, h('th', {class: 'corner', scope: 'col'}, 'true \\ pred'),
                                           names.map((n) => h('th', {scope: 'col'}, n)))),
                         h('tbody', {}, m.map((row, i) => h('tr', {}, h('th', {scope: 'row'}, names[i]),
                                 row.map((v, j) => {
                                         const t = isNum(v) ? v / max : 0;
                                         const bg = i === j ? 'rgba(26,127,55,' + (0.08 + 0.85 * t) + ')' :
                                                              'rgba(207,34,46,' + (t > 0 ? 0.1 + 0.85 * t : 0.03) + ')';
                                         return h('td', {style: 'background:' + bg + ';color:' + (t > 0.55 ? '#fff' : 'inherit'),
                                                         title: 'true ' + names[i] + ', predicted ' + names[j] + ': ' + v},
                                                  fmtNum(v));
                                 })))));
        }

        function viewJob(params, id) {
                let job = null, stream = null, stopPoll = null, metricsLoaded = false, left = false;
                const path = '/v1/jobs/' + encodeURIComponent(id);
                const title = h('h1', {}, 'Job ', h('span', {class: 'mono'}, id));
                const badge = h('span', {id: 'job-state'});
                const cancelBtn = h('button', {type: 'button', class: 'danger', id: 'cancel-job', hidden: true,
                                               onclick: async () => {
                                                       cancelBtn.disabled = true;
                                                       try {
                                                               job = await api('POST', path + '/cancel');
                                                               render();
                                                       } catch (e) {
                                                               reportError(e);
                                                               cancelBtn.disabled = false;
                                                       }
                                               }}, 'Cancel job');
                const dlModel = h('button', {type: 'button', id: 'download-model', hidden: true,
                                             onclick: () => download(path + '/artifacts/model.safetensors', id + '.safetensors').catch(reportError)},
                                  'Download model');
                const dlMetrics = h('button', {type: 'button', id: 'download-metrics', hidden: true,
                                               onclick: () => download(path + '/artifacts/metrics.json', id + '-metrics.json').catch(reportError)},
                                    'Download metrics');
                const compareLink = h('a', {class: 'button', href: '#/compare?ids=' + encodeURIComponent(id)}, 'Compare with…');
                const deleteBtn = h('button', {type: 'button', class: 'danger', id: 'delete-job', hidden: true,
                                               onclick: async () => {
                                                       if (!confirm('Delete job ' + id + ' and its events and checkpoints?'))
                                                               return;
                                                       try {
                                                               await api('DELETE', path);
                                                               location.hash = '#/jobs';
                                                       } catch (e) {
                                                               reportError(e);
                                                       }
                                               }}, 'Delete job');

                const epochBar = h('progress', {max: 1, value: 0, id: 'epoch-progress', 'aria-labelledby': 'lbl-epoch'});
                const stepBar = h('progress', {max: 1, value: 0, id: 'step-progress', 'aria-labelledby': 'lbl-step'});
                const epochText = h('span', {id: 'lbl-epoch'}, 'epochs');
                const stepText = h('span', {id: 'lbl-step'}, 'within the epoch');
                const etaText = h('p', {class: 'muted', id: 'eta'});
                const errorBox = h('div', {class: 'error-box', id: 'job-error', role: 'alert', hidden: true});

                const loss = chartCanvas('loss per epoch');
                const metric = chartCanvas('validation metrics per epoch');
                loss.canvas.id = 'loss-chart';
                metric.canvas.id = 'metric-chart';
                const lossChart = lineChart(loss.canvas, 'loss');
                const metricChart = lineChart(metric.canvas, 'validation metric');
                const epochRows = h('tbody');
                const epochCols = new Set(['epoch']);
                const epochTable = h('table', {id: 'epoch-table'}, h('thead'), epochRows);
                const epochs = new Map();

                const setup = h('section', {class: 'card', id: 'job-setup'}, h('h2', {}, 'Setup'));
                const results = h('section', {id: 'results', 'aria-labelledby': 'results-title'});

                setView('Job ' + id,
                        h('div', {class: 'toolbar'}, title, badge, cancelBtn, dlModel, dlMetrics, compareLink, deleteBtn),
                        errorBox,
                        h('section', {class: 'card progress-card', id: 'job-progress'}, h('h2', {}, 'Progress'),
                          h('div', {class: 'progress'}, epochText, epochBar),
                          h('div', {class: 'progress'}, stepText, stepBar), etaText),
                        h('h2', {}, 'Curves'),
                        h('div', {class: 'charts'}, loss.box, metric.box),
                        h('details', {}, h('summary', {}, 'Per-epoch numbers'), h('div', {class: 'table-wrap'}, epochTable)),
                        results,
                        h('h2', {}, 'Setup'),
                        setup);

                function onEpoch(e) {
                        const ep = e.epoch;
                        if (!isNum(ep))
                                return;
                        epochs.set(ep, e);
                        /* how many epoch events arrived, replays included (a resumed stream must not replay) */
                        epochTable.dataset.received = Number(epochTable.dataset.received || 0) + 1;
                        chartPoint(lossChart, 'train loss', PALETTE[0], ep, e.train_loss);
                        chartPoint(lossChart, 'validation loss', PALETTE[1], ep, e.val_loss);
                        let c = 2;
                        for (const [k, v] of Object.entries(e))
                                if (k.startsWith('val_') && k !== 'val_loss' && isNum(v))
                                        chartPoint(metricChart, k.replace(/^val_/, 'validation '), PALETTE[c++ % PALETTE.length], ep, v);
                        chartUpdate(lossChart);
                        chartUpdate(metricChart);
                        for (const [k, v] of Object.entries(e))
                                if (isNum(v) && k !== 'seq' && k !== 'id')
                                        epochCols.add(k);
                        const cols = [...epochCols];
                        epochTable.tHead.replaceChildren(h('tr', {}, cols.map((k) => h('th', {scope: 'col', class: 'num'}, k))));
                        epochRows.replaceChildren(...[...epochs.keys()].sort((a, b) => a - b).map((k) =>
                                h('tr', {'data-epoch': k}, cols.map((col) => h('td', {class: 'num'}, fmtNum(epochs.get(k)[col]))))));
                }

                /* ev: the event's data; sseType: its SSE "event:" name (the event type). */
                function onEvent(ev, sseType) {
                        const type = sseType || ev.type || ev.event;
                        const data = Object.assign({}, ev.data && typeof ev.data === 'object' ? ev.data : {}, ev);
                        if (type === 'epoch')
                                onEpoch(data);
                        else if (type === 'progress' && job) {
                                job.progress = Object.assign({}, job.progress, ev.data || ev);
                                renderProgress();
                        } else if (job && (type === 'status' || type === 'state') && data.state) {
                                job.state = data.state;
                                render();
                        }
                        if (TERMINAL.has(data.state) || type === 'completed' || type === 'done')
                                refresh().catch(reportError);
                }

                function renderProgress() {
                        const pr = progressOf(job), p = jobProgress(job);
                        epochBar.value = pr.frac;
                        const run = job.metrics && job.metrics.epochs_run;
                        epochText.textContent = !pr.epochs ? 'epochs' :
                                job.state === 'succeeded' ? (run && run < pr.epochs ? run + ' of ' + pr.epochs + ' epochs (stopped early)' :
                                                             'all ' + pr.epochs + ' epochs') :
                                TERMINAL.has(job.state) ? job.state + ' in epoch ' + pr.epoch + ' of ' + pr.epochs :
                                job.state === 'queued' ? 'queued: ' + pr.epochs + ' epochs' :
                                'epoch ' + pr.epoch + ' of ' + pr.epochs;
                        stepBar.value = job.state === 'succeeded' ? 1 : pr.within || 0;
                        stepText.textContent = isNum(p.batch) && p.batches && !TERMINAL.has(job.state) ?
                                'batch ' + p.batch + ' of ' + p.batches + ' in this epoch' : 'within the epoch';
                        const parts = [];
                        if (!TERMINAL.has(job.state) && isNum(pr.eta))
                                parts.push('ETA ' + fmtDuration(pr.eta));
                        if (isNum(p.train_loss) && !TERMINAL.has(job.state))
                                parts.push('running train loss ' + fmtNum(p.train_loss));
                        if (job.attempt > 1)
                                parts.push('attempt ' + job.attempt);
                        etaText.textContent = parts.join(' · ');
                }

                async function loadResults() {
                        if (metricsLoaded || !job || job.state !== 'succeeded')
                                return;
                        metricsLoaded = true;
                        /* The metrics object itself, or the final "metrics" event wrapping it. */
                        const unwrap = (m) => (m && m.metrics && typeof m.metrics === 'object' ? m.metrics : m) || {};
                        let metrics = unwrap(job.metrics);
                        if (!metrics.confusion_matrix && !metrics.per_class && !isNum(metrics.mse)) {
                                try {
                                        const res = await api('GET', path + '/artifacts/metrics.json', {raw: true});
                                        metrics = Object.assign({}, metrics, unwrap(await res.json()));
                                } catch (e) {
                                        /* metrics.json missing: show what the job carries */
                                }
                        }
                        const scalar = metricsTable(metrics.final || metrics.test || metrics);
                        const left = [h('h3', {}, 'Overall'),
                                      scalar ? h('div', {class: 'table-wrap'}, scalar) : h('p', {class: 'muted'}, 'no metrics recorded')];
                        const right = [];
                        const pc = perClassTable(metrics);
                        if (pc)
                                right.push(h('h3', {}, 'Per class'), h('div', {class: 'table-wrap'}, pc));
                        const cm = confusionTable(metrics);
                        if (cm)
                                right.push(h('h3', {}, 'Confusion matrix'), h('div', {class: 'table-wrap'}, cm));
                        const where = job.metrics && job.metrics.split ? ' (' + job.metrics.split + ' data' +
                                (isNum(job.metrics.best_epoch) ? ', best epoch ' + job.metrics.best_epoch : '') + ')' : '';
                        results.replaceChildren(h('h2', {id: 'results-title'}, 'Final metrics' + where),
                                                h('div', {class: 'results-grid'}, h('div', {}, ...left), h('div', {}, ...right)));
                }

                function render() {
                        badge.replaceChildren(stateBadge(job.state));
                        const live = job.state === 'queued' || job.state === 'running';
                        cancelBtn.hidden = !live;
                        cancelBtn.disabled = !live;
                        dlModel.hidden = dlMetrics.hidden = job.state !== 'succeeded';
                        deleteBtn.hidden = !TERMINAL.has(job.state);
                        renderProgress();
                        if (job.error) {
                                errorBox.hidden = false;
                                errorBox.textContent = 'failed: ' + (job.error.message || JSON.stringify(job.error)) +
                                        (job.error.param ? ' (' + job.error.param + ')' : '');
                        }
                        /* The setup never changes: draw it once (and again when the produced model appears),
                         * so polling does not close the details a reader opened. */
                        const setupKey = job.id + '/' + (job.result_model || '') + '/' + job.attempt;
                        if (setup.dataset.key !== setupKey) {
                                setup.dataset.key = setupKey;
                                renderSetup();
                        }
                        loadResults();
                }

                function renderSetup() {
                        const spec = specOf(job);
                        const parts = [];
                        parts.push(h('dl', {class: 'kv'},
                                     h('dt', {}, 'model'), h('dd', {class: 'mono'}, jobModel(job) || '—'),
                                     h('dt', {}, 'training data'), h('dd', {class: 'mono'}, jobDataset(job) || '—'),
                                     h('dt', {}, 'strategy'), h('dd', {}, jobStrategy(job)),
                                     h('dt', {}, 'created'), h('dd', {}, fmtTime(job.created_at))));
                        parts.push(h('h3', {}, 'Hyperparameters'), kvList(spec.hyperparameters || job.hyperparameters));
                        const strat = spec.strategy || job.strategy;
                        if (strat && typeof strat === 'object')
                                parts.push(h('h3', {}, 'Strategy'), kvList(strat));
                        const rest = {};
                        for (const k of ['task', 'preprocess', 'early_stopping', 'validation_file', 'validation_split', 'seed', 'device'])
                                if (spec[k] !== undefined)
                                        rest[k] = spec[k];
                        if (Object.keys(rest).length)
                                parts.push(h('details', {}, h('summary', {}, 'Data, task and the rest'), kvList(rest)));
                        setup.replaceChildren(h('div', {class: 'setup-grid'}, h('div', {}, h('h3', {}, 'Job'), parts[0]),
                                                h('div', {}, ...parts.slice(1, 3)), h('div', {}, ...parts.slice(3))));
                        if (job.attempt > 1)
                                setup.append(h('p', {}, 'attempt ' + job.attempt + ' of ' + (job.max_attempts || '?')));
                        if (job.result_model || job.output_model)
                                setup.append(h('p', {}, 'Produced model ',
                                                h('a', {href: '#/models', class: 'mono', id: 'result-model'},
                                                  job.result_model || job.output_model)));
                }

                async function refresh() {
                        const fresh = await api('GET', path);
                        if (left)
                                return;
                        if (stream) /* the daemon answers: a dropped stream reconnects now */
                                stream.nudge();
                        job = fresh;
                        render();
                        if (TERMINAL.has(job.state) && stopPoll) {
                                stopPoll();
                                stopPoll = null;
                        }
                }

                (async () => {
                        try {
                                await refresh();
                        } catch (e) {
                                if (left)
                                        return;
                                if (e instanceof ApiError && e.status === 404) {
                                        setView('Job not found', h('h1', {}, 'Job not found'),
                                                h('p', {}, 'There is no job ', h('code', {}, id), '. ', h('a', {href: '#/jobs'}, 'All jobs')));
                                        return;
                                }
                                reportError(e);
                                return;
                        }
                        /* The reader may have left while the job loaded: start nothing then,
                         * or the stream would hold one of the browser's few connections forever. */
                        if (left)
                                return;
                        stream = followEvents(id, onEvent, () => refresh().catch(reportError));
                        if (!TERMINAL.has(job.state))
                                stopPoll = every(POLL_MS, refresh);
                })();

                return () => {
                        left = true;
                        if (stream)
                                stream.close();
                        if (stopPoll)
                                stopPoll();
                        lossChart.destroy();
                        metricChart.destroy();
                };
        }

        /* -- compare: overlay several jobs on one chart -- */
        function viewCompare(params) {
                const ids = (params.get('ids') || '').split(',').filter(Boolean);
                const chosen = new Set(ids);
                const metricSel = h('select', {id: 'compare-metric'},
                                    ['val_loss', 'train_loss', 'val_accuracy', 'val_f1'].map((m) => h('option', {value: m}, m)));
                metricSel.value = params.get('metric') || 'val_loss';
                const c = chartCanvas('comparison of jobs per epoch');
                c.canvas.id = 'compare-chart';
                c.box.classList.add('tall');
                const chart = lineChart(c.canvas, metricSel.value);
                const picker = h('fieldset', {class: 'card'}, h('legend', {}, 'Jobs on the chart'));
                setView('Compare',
                        h('div', {class: 'toolbar'}, h('h1', {}, 'Compare jobs'),
                          h('label', {for: 'compare-metric'}, 'Metric '), metricSel),
                        c.box, picker);
                const events = new Map(); /* job id -> epoch events */
                const jobs = new Map();

                function redraw() {
                        chart.data.datasets = [];
                        chart.options.scales.y.title.text = metricSel.value;
                        let i = 0;
                        for (const id of chosen) {
                                const job = jobs.get(id), evs = events.get(id) || [];
                                const hp = job ? specOf(job).hyperparameters || {} : {};
                                const label = id + (job ? ' · ' + jobStrategy(job) + (hp.optimizer ? ' · ' + hp.optimizer : '') +
                                                    (isNum(hp.learning_rate) ? ' lr ' + hp.learning_rate : '') : '');
                                const ds = chartSeries(chart, label, PALETTE[i++ % PALETTE.length]);
                                ds.data = evs.filter((e) => isNum(e.epoch) && isNum(e[metricSel.value]))
                                        .map((e) => ({x: e.epoch, y: e[metricSel.value]}));
                        }
                        chartUpdate(chart);
                }
                async function loadEvents(id) {
                        const items = await listAll('/v1/jobs/' + encodeURIComponent(id) + '/events', 2000);
                        events.set(id, items.filter((e) => (e.type || e.event) === 'epoch')
                                .map((e) => Object.assign({}, e.data && typeof e.data === 'object' ? e.data : {}, e)));
                }
                async function load() {
                        const list = await api('GET', '/v1/jobs?limit=100');
                        for (const j of (list && list.data) || [])
                                jobs.set(j.id, j);
                        picker.replaceChildren(h('legend', {}, 'Jobs on the chart'));
                        for (const [id, job] of jobs) {
                                const box = h('input', {type: 'checkbox', id: 'cmp-' + id, checked: chosen.has(id),
                                                        onchange: async (ev) => {
                                                                if (ev.target.checked)
                                                                        chosen.add(id);
                                                                else
                                                                        chosen.delete(id);
                                                                history.replaceState(null, '', '#/compare?ids=' + [...chosen].join(','));
                                                                if (ev.target.checked && !events.has(id))
                                                                        await loadEvents(id).catch(reportError);
                                                                redraw();
                                                        }});
                                picker.append(h('div', {class: 'field check'}, box,
                                                h('label', {for: 'cmp-' + id}, h('span', {class: 'mono'}, id), ' ',
                                                  stateBadge(job.state), ' ', jobStrategy(job), ' · ', jobModel(job) || '')));
                        }
                        if (!jobs.size)
                                picker.append(h('p', {class: 'muted'}, 'No jobs yet.'));
                        await Promise.all([...chosen].map((id) => loadEvents(id).catch(reportError)));
                        redraw();
                }
                metricSel.addEventListener('change', redraw);
                /* Refresh running jobs' curves every few seconds. */
                const stop = every(3000, async () => {
                        if (!jobs.size) {
                                await load();
                                return;
                        }
                        let changed = false;
                        for (const id of chosen) {
                                const job = jobs.get(id);
                                if (job && !TERMINAL.has(job.state)) {
                                        jobs.set(id, await api('GET', '/v1/jobs/' + encodeURIComponent(id)));
                                        await loadEvents(id);
                                        changed = true;
                                }
                        }
                        if (changed)
                                redraw();
                });
                return () => {
                        stop();
                        chart.destroy();
                };
        }

        /* -- the submit form -- */

        /* field(param, label, input, hint): a labelled input whose errors show
         * next to it; param is the job spec path the API names in error.param. */
        function field(param, label, input, hint, extraClass) {
                const id = 'f-' + param.replace(/[^a-z0-9_]/gi, '-');
                input.id = input.id || id;
                input.dataset.param = param;
                input.name = input.name || param;
                const err = h('p', {class: 'field-error', id: 'err-' + id, 'data-error-for': param});
                const describedBy = ['err-' + id];
                let hintEl = null;
                if (hint) {
                        hintEl = h('span', {class: 'hint', id: 'hint-' + id}, hint);
                        describedBy.push('hint-' + id);
                }
                input.setAttribute('aria-describedby', describedBy.join(' '));
                if (input.type === 'checkbox')
                        return h('div', {class: 'field check ' + (extraClass || '')}, input,
                                 h('label', {for: input.id}, label), err);
                return h('div', {class: 'field ' + (extraClass || '')}, h('label', {for: input.id}, label), input, hintEl, err);
        }
        const numInput = (value, attrs) => h('input', Object.assign({type: 'number', value: String(value), step: 'any'}, attrs || {}));
        const select = (options, value) => {
                const s = h('select', {}, options.map((o) => Array.isArray(o) ? h('option', {value: o[0]}, o[1]) : h('option', {value: o}, o)));
                s.value = value;
                return s;
        };

        /* Show an API error next to the field it names; returns true when one matched. */
        function showFieldError(form, e) {
                for (const el of form.querySelectorAll('[aria-invalid="true"]'))
                        el.removeAttribute('aria-invalid');
                for (const el of form.querySelectorAll('.field-error'))
                        el.textContent = '';
                if (!e)
                        return false;
                const formErr = $('.form-error', form);
                let param = e.param;
                while (param) {
                        const input = form.querySelector('[data-param="' + CSS.escape(param) + '"]');
                        if (input) {
                                input.setAttribute('aria-invalid', 'true');
                                const errEl = form.querySelector('[data-error-for="' + CSS.escape(param) + '"]');
                                errEl.textContent = e.message;
                                formErr.textContent = 'the daemon refused the job: see ' + param;
                                input.focus();
                                return true;
                        }
                        /* "strategy.freeze[0]" -> "strategy.freeze" -> "strategy" */
                        const shorter = param.replace(/(\[[^\]]*\]|\.[^.[\]]*)$/, '');
                        param = shorter === param ? '' : shorter;
                }
                formErr.textContent = e.message + (e.param ? ' (' + e.param + ')' : '');
                return false;
        }

        async function uploadDataset(file, labels) {
                if (labels) {
                        const fd = new FormData();
                        fd.append('images', file, file.name);
                        fd.append('labels', labels, labels.name);
                        return api('POST', '/v1/datasets?name=' + encodeURIComponent(file.name), {body: fd});
                }
                const type = /\.csv$/i.test(file.name) ? 'text/csv' : 'application/octet-stream';
                return api('POST', '/v1/datasets?name=' + encodeURIComponent(file.name),
                           {body: file, headers: {'Content-Type': type}});
        }

        function viewSubmit(params) {
                const dsSelect = h('select', {}, h('option', {value: ''}, '— upload a file below —'));
                const valSelect = h('select', {}, h('option', {value: ''}, '— split from the training data —'));
                const modelSelect = h('select', {},
                                      h('optgroup', {label: 'Presets (a new model is created)'},
                                        PRESETS.map((p) => h('option', {value: 'preset:' + p}, p))),
                                      h('optgroup', {label: 'Models', id: 'model-options'}));
                modelSelect.value = 'preset:mlp';
                const upload = h('input', {type: 'file', accept: '.csv,.idx,.gz,.ubyte,text/csv'});
                const uploadLabels = h('input', {type: 'file', accept: '.idx,.gz,.ubyte'});
                const target = h('input', {type: 'text', value: '', placeholder: 'the last column', list: 'target-columns',
                                           autocomplete: 'off'});
                const columns = h('datalist', {id: 'target-columns'});
                const f = {
                        training_file: dsSelect,
                        upload,
                        upload_labels: uploadLabels,
                        validation_file: valSelect,
                        validation_split: numInput(0.2, {min: 0, max: 0.9, step: 0.05}),
                        model: modelSelect,
                        hidden: h('input', {type: 'text', value: '64', inputmode: 'numeric'}),
                        task_type: select(['classification', 'regression'], 'classification'),
                        target,
                        epochs: numInput(10, {min: 1, max: 10000, step: 1}),
                        batch_size: numInput(32, {min: 1, max: 65536, step: 1}),
                        learning_rate: numInput(0.001, {min: 0}),
                        optimizer: select(['adam', 'adamw', 'sgd', 'momentum', 'nesterov', 'gd'], 'adam'),
                        momentum: numInput(0.9, {min: 0, max: 1}),
                        weight_decay: numInput(0, {min: 0}),
                        schedule: select(['cosine', 'constant', 'step', 'linear'], 'cosine'),
                        label_smoothing: numInput(0, {min: 0, max: 1}),
                        warmup_epochs: numInput(0, {min: 0, step: 1}),
                        strategy: select([['full', 'full: every parameter trains'],
                                          ['partial', 'partial: freeze / trainable patterns'],
                                          ['layerwise', 'layerwise: learning rate decays with depth']], 'full'),
                        freeze: h('input', {type: 'text', placeholder: 'conv1.*, layer1.*'}),
                        trainable: h('input', {type: 'text', placeholder: 'fc.*'}),
                        train_batchnorm: h('input', {type: 'checkbox', checked: true}),
                        layer_decay: numInput(0.75, {min: 0, max: 1}),
                        es_metric: select([['', 'off'], 'val_loss', 'val_accuracy', 'val_f1', 'val_precision', 'val_recall',
                                           'val_mse', 'val_rmse', 'val_mae', 'val_r2', 'train_loss'], ''),
                        patience: numInput(3, {min: 1, step: 1}),
                        min_delta: numInput(0, {min: 0}),
                        standardize: h('input', {type: 'checkbox', checked: true}),
                        shuffle: h('input', {type: 'checkbox', checked: true}),
                        dropna: h('input', {type: 'checkbox', checked: false}),
                        seed: numInput(42, {step: 1}),
                };
                const formError = h('p', {class: 'form-error', role: 'alert'});
                const submitBtn = h('button', {type: 'submit', class: 'primary', id: 'submit-job'}, 'Start fine-tuning');
                const form = h('form', {class: 'grid', id: 'job-form', novalidate: true},
                        h('fieldset', {}, h('legend', {}, 'Data'),
                          field('training_file', 'Training data', f.training_file, 'an uploaded dataset'),
                          field('file', 'Upload a dataset', f.upload, 'CSV, or IDX / IDX.gz images'),
                          field('labels', 'IDX labels (for IDX images)', f.upload_labels),
                          field('validation_file', 'Validation data', f.validation_file),
                          field('validation_split', 'Validation split', f.validation_split, 'used when there is no validation data')),
                        h('fieldset', {}, h('legend', {}, 'Model and task'),
                          field('model', 'Base model or preset', f.model),
                          field('config.hidden', 'Hidden layer sizes (mlp preset)', f.hidden, 'comma-separated, e.g. 256, 128'),
                          field('task.type', 'Task', f.task_type),
                          field('task.target', 'Target column', f.target, 'CSV column holding the label or value'), columns),
                        h('fieldset', {}, h('legend', {}, 'Hyperparameters'),
                          field('hyperparameters.epochs', 'Epochs', f.epochs),
                          field('hyperparameters.batch_size', 'Batch size', f.batch_size),
                          field('hyperparameters.learning_rate', 'Learning rate', f.learning_rate),
                          field('hyperparameters.optimizer', 'Optimizer', f.optimizer),
                          field('hyperparameters.momentum', 'Momentum', f.momentum, 'momentum and nesterov optimizers'),
                          field('hyperparameters.weight_decay', 'Weight decay', f.weight_decay),
                          field('hyperparameters.schedule', 'Learning-rate schedule', f.schedule),
                          field('hyperparameters.warmup_epochs', 'Warm-up epochs', f.warmup_epochs),
                          field('hyperparameters.label_smoothing', 'Label smoothing', f.label_smoothing)),
                        h('fieldset', {}, h('legend', {}, 'Strategy'),
                          field('strategy.type', 'Strategy', f.strategy),
                          field('strategy.freeze', 'Frozen parameters (partial)', f.freeze, 'comma-separated name patterns'),
                          field('strategy.trainable', 'Trainable parameters (partial)', f.trainable, 'comma-separated name patterns'),
                          field('strategy.layer_decay', 'Layer decay (layerwise)', f.layer_decay, 'learning rate × decay per layer from the top'),
                          field('strategy.train_batchnorm', 'Train batch-norm layers', f.train_batchnorm)),
                        h('fieldset', {}, h('legend', {}, 'Early stopping, preprocessing, seed'),
                          field('early_stopping.metric', 'Early stopping on', f.es_metric),
                          field('early_stopping.patience', 'Patience (epochs)', f.patience),
                          field('early_stopping.min_delta', 'Minimum improvement', f.min_delta),
                          field('preprocess.standardize', 'Standardize features', f.standardize),
                          field('preprocess.shuffle', 'Shuffle', f.shuffle),
                          field('preprocess.dropna', 'Drop rows with missing values', f.dropna),
                          field('seed', 'Seed', f.seed)),
                        formError,
                        h('div', {class: 'actions'}, submitBtn, h('a', {class: 'button', href: '#/jobs'}, 'Cancel')));
                setView('New job', h('h1', {}, 'New fine-tuning job'), form);

                const datasets = new Map();
                function showColumns() {
                        const ds = datasets.get(dsSelect.value);
                        const cols = datasetColumns(ds);
                        columns.replaceChildren(...cols.map((c) => h('option', {value: c})));
                }
                dsSelect.addEventListener('change', showColumns);
                (async () => {
                        try {
                                const [dss, models] = await Promise.all([listAll('/v1/datasets', 200), listAll('/v1/models', 200)]);
                                const labelHalves = new Set(dss.map((d) => schemaOf(d).labels_dataset).filter(Boolean));
                                for (const d of dss) {
                                        if (labelHalves.has(d.id))
                                                continue;
                                        datasets.set(d.id, d);
                                        const label = (d.name || d.filename || d.id) + ' · ' + d.id;
                                        dsSelect.append(h('option', {value: d.id}, label));
                                        valSelect.append(h('option', {value: d.id}, label));
                                }
                                const group = $('#model-options', form);
                                for (const m of models)
                                        group.append(h('option', {value: m.id}, (m.name || m.id) + ' · ' + m.id));
                                if (params.get('model'))
                                        modelSelect.value = params.get('model');
                                if (params.get('dataset'))
                                        dsSelect.value = params.get('dataset');
                                showColumns();
                        } catch (e) {
                                reportError(e);
                        }
                })();

                const num = (el) => (el.value === '' ? undefined : Number(el.value));
                let lastPost = null;
                form.addEventListener('submit', async (ev) => {
                        ev.preventDefault();
                        showFieldError(form, null);
                        formError.textContent = '';
                        submitBtn.disabled = true;
                        try {
                                let training = dsSelect.value;
                                if (upload.files.length) {
                                        try {
                                                const ds = await uploadDataset(upload.files[0], uploadLabels.files[0]);
                                                training = ds.id;
                                                datasets.set(ds.id, ds);
                                                dsSelect.append(h('option', {value: ds.id}, (ds.name || ds.id) + ' · ' + ds.id));
                                                dsSelect.value = ds.id;
                                                upload.value = '';
                                                uploadLabels.value = '';
                                        } catch (e) {
                                                if (e instanceof ApiError && !e.param)
                                                        e.param = 'file';
                                                throw e;
                                        }
                                }
                                if (!training)
                                        throw new ApiError(400, {error: {message: 'choose a dataset or upload a file', param: 'training_file'}});
                                let model = modelSelect.value;
                                if (model.startsWith('preset:')) {
                                        try {
                                                const preset = model.slice(7);
                                                const config = presetConfig(preset, datasets.get(training), f.task_type.value);
                                                const hidden = f.hidden.value.split(',').map((x) => x.trim()).filter(Boolean);
                                                if (preset === 'mlp')
                                                        config.hidden = hidden.map(Number);
                                                const m = await api('POST', '/v1/models', {json: {
                                                        name: preset + ' for ' + training, preset, config}});
                                                model = m.id;
                                        } catch (e) {
                                                /* "config.hidden[1]" has a field of its own; the rest is the model's */
                                                if (e instanceof ApiError && !/^config\.hidden/.test(e.param || ''))
                                                        e.param = 'model';
                                                throw e;
                                        }
                                }
                                const spec = {
                                        model,
                                        training_file: training,
                                        task: {type: f.task_type.value},
                                        preprocess: {standardize: f.standardize.checked, shuffle: f.shuffle.checked, dropna: f.dropna.checked},
                                        hyperparameters: {
                                                epochs: num(f.epochs), batch_size: num(f.batch_size),
                                                learning_rate: num(f.learning_rate), optimizer: f.optimizer.value,
                                                weight_decay: num(f.weight_decay), schedule: f.schedule.value,
                                                warmup_epochs: num(f.warmup_epochs),
                                        },
                                        strategy: {type: f.strategy.value, train_batchnorm: f.train_batchnorm.checked},
                                        seed: num(f.seed),
                                };
                                if (f.target.value.trim())
                                        spec.task.target = f.target.value.trim();
                                if (f.optimizer.value === 'momentum' || f.optimizer.value === 'nesterov')
                                        spec.hyperparameters.momentum = num(f.momentum);
                                if (num(f.label_smoothing))
                                        spec.hyperparameters.label_smoothing = num(f.label_smoothing);
                                if (valSelect.value)
                                        spec.validation_file = valSelect.value;
                                else
                                        spec.validation_split = num(f.validation_split);
                                const globs = (el) => el.value.split(',').map((x) => x.trim()).filter(Boolean);
                                if (globs(f.freeze).length)
                                        spec.strategy.freeze = globs(f.freeze);
                                if (globs(f.trainable).length)
                                        spec.strategy.trainable = globs(f.trainable);
                                if (f.strategy.value === 'layerwise' && f.layer_decay.value !== '')
                                        spec.strategy.layer_decay = num(f.layer_decay);
                                if (f.es_metric.value)
                                        spec.early_stopping = {metric: f.es_metric.value, patience: num(f.patience), min_delta: num(f.min_delta)};
                                for (const k of Object.keys(spec.hyperparameters))
                                        if (spec.hyperparameters[k] === undefined)
                                                delete spec.hyperparameters[k];
                                /* The same spec sent again (a retry after a lost answer) reuses its
                                 * Idempotency-Key, so the daemon answers with the job it already made. */
                                const body = JSON.stringify(spec);
                                if (!lastPost || lastPost.body !== body)
                                        lastPost = {body, key: 'dash-' + Date.now().toString(36) + '-' +
                                                    Math.random().toString(36).slice(2, 10)};
                                const job = await api('POST', '/v1/jobs', {json: spec, headers: {'Idempotency-Key': lastPost.key}});
                                location.hash = '#/jobs/' + encodeURIComponent(job.id);
                        } catch (e) {
                                if (!(e instanceof ApiError))
                                        reportError(e);
                                else
                                        showFieldError(form, e);
                        } finally {
                                submitBtn.disabled = false;
                        }
                });
                return null;
        }

        /* -- datasets -- */
        const schemaOf = (d) => (d && (d.schema || d.summary)) || {};
        function numClasses(s) {
                return isNum(s.num_classes) ? s.num_classes : Array.isArray(s.classes) ? s.classes.length : isNum(s.classes) ? s.classes : 0;
        }
        function schemaSummary(d) {
                const s = schemaOf(d);
                const parts = [];
                if (s.format || d.format)
                        parts.push(s.format || d.format);
                if (isNum(s.rows))
                        parts.push(s.rows + ' rows');
                if (isNum(s.features))
                        parts.push(s.features + ' features');
                if (Array.isArray(s.image_shape))
                        parts.push('images ' + s.image_shape.join('×'));
                if (s.task)
                        parts.push(s.task);
                if (numClasses(s))
                        parts.push(numClasses(s) + ' classes');
                return parts.join(' · ');
        }
        /* The CSV's columns: features then the target. */
        function datasetColumns(d) {
                const s = schemaOf(d);
                const cols = (s.feature_names || s.columns || []).map((c) => (typeof c === 'string' ? c : c.name));
                if (s.target && !cols.includes(s.target))
                        cols.push(s.target);
                return cols;
        }
        function columnsText(d) {
                const s = schemaOf(d), parts = [];
                const feats = (s.feature_names || []).join(', ');
                if (feats)
                        parts.push(feats);
                if (s.target)
                        parts.push('target: ' + s.target);
                if (Array.isArray(s.classes) && s.classes.length)
                        parts.push('classes: ' + s.classes.map((c) => (c && c.name !== undefined ? c.name + ' (' + c.count + ')' : c)).join(', '));
                return parts.join(' · ');
        }
        /* A preset's config from the dataset it will train on (compute/model.h presets). */
        function presetConfig(preset, d, task) {
                const s = schemaOf(d);
                const outputs = task === 'regression' ? 1 : numClasses(s) || 2;
                const shape = Array.isArray(s.image_shape) ? s.image_shape : null; /* [C, H, W] */
                if (preset === 'mlp')
                        return {inputs: shape ? shape[0] * shape[1] * shape[2] : s.features || 1, outputs};
                if (preset === 'cnn')
                        return {in_channels: shape ? shape[0] : 1, input_size: shape ? [shape[1], shape[2]] : [28, 28], outputs};
                return {num_classes: outputs, in_channels: shape ? shape[0] : 3, input_size: shape ? [shape[1], shape[2]] : [224, 224]};
        }

        function viewDatasets() {
                const tbody = h('tbody');
                const file = h('input', {type: 'file', id: 'ds-file', accept: '.csv,.idx,.gz,.ubyte,text/csv'});
                const labels = h('input', {type: 'file', id: 'ds-labels', accept: '.idx,.gz,.ubyte'});
                const err = h('p', {class: 'field-error', role: 'alert', id: 'ds-error'});
                const form = h('form', {class: 'toolbar', id: 'dataset-form'},
                               h('label', {for: 'ds-file'}, 'Dataset file'), file,
                               h('label', {for: 'ds-labels'}, 'IDX labels (optional)'), labels,
                               h('button', {type: 'submit', class: 'primary'}, 'Upload'), err);
                setView('Datasets', h('h1', {}, 'Datasets'), form,
                        h('div', {class: 'table-wrap'},
                          h('table', {id: 'datasets-table'},
                            h('thead', {}, h('tr', {}, ['Dataset', 'Name', 'Schema', 'Columns and classes', 'Size', 'sha256', 'Created', ''].map(
                                    (t, i) => h('th', {scope: 'col', class: i === 5 || i === 6 ? 'hide-narrow' : null}, t)))),
                            tbody)));
                async function load() {
                        const items = await listAll('/v1/datasets', 500);
                        /* the labels half of an IDX pair: named by its images dataset's schema */
                        const labelsOf = new Map(items.filter((d) => schemaOf(d).labels_dataset)
                                                      .map((d) => [schemaOf(d).labels_dataset, d.id]));
                        tbody.replaceChildren(...items.map((d) => h('tr', {'data-dataset': d.id},
                                h('td', {class: 'mono'}, d.id), h('td', {}, d.name || d.filename || '—'),
                                h('td', {}, labelsOf.has(d.id) ? h('span', {}, 'IDX labels of ', h('span', {class: 'mono'}, labelsOf.get(d.id))) :
                                  schemaSummary(d)),
                                h('td', {class: 'mono'}, columnsText(d)),
                                h('td', {class: 'num'}, fmtBytes(d.size || d.bytes)),
                                h('td', {class: 'mono hide-narrow', title: d.sha256 || ''}, (d.sha256 || '').slice(0, 12)),
                                h('td', {class: 'hide-narrow'}, fmtTime(d.created_at)),
                                h('td', {}, labelsOf.has(d.id) ? null :
                                  h('a', {class: 'button', href: '#/submit?dataset=' + encodeURIComponent(d.id)}, 'Use'), ' ',
                                  h('button', {type: 'button', class: 'danger', 'aria-label': 'delete dataset ' + d.id,
                                               onclick: async () => {
                                                       try {
                                                               await api('DELETE', '/v1/datasets/' + encodeURIComponent(d.id));
                                                               await load();
                                                       } catch (e) {
                                                               reportError(e);
                                                       }
                                               }}, 'Delete')))));
                        if (!items.length)
                                tbody.append(h('tr', {}, h('td', {colspan: 8, class: 'empty'}, 'No datasets yet.')));
                }
                form.addEventListener('submit', async (ev) => {
                        ev.preventDefault();
                        err.textContent = '';
                        if (!file.files.length) {
                                err.textContent = 'choose a file';
                                file.focus();
                                return;
                        }
                        try {
                                await uploadDataset(file.files[0], labels.files[0]);
                                form.reset();
                                await load();
                        } catch (e) {
                                err.textContent = e.message;
                        }
                });
                load().catch(reportError);
                return null;
        }

        /* -- models -- */
        function modelSource(m) {
                const src = m.source || m.provenance || {};
                const job = m.source_job || m.job_id || src.job_id || src.job;
                if (job)
                        return h('span', {}, 'job ', h('a', {href: '#/jobs/' + encodeURIComponent(job), class: 'mono'}, job));
                const kind = typeof src === 'string' ? src : src.type || src.kind;
                if (m.preset || kind === 'preset')
                        return 'preset ' + (m.preset || src.preset || '');
                return kind || 'uploaded';
        }
        function viewModels() {
                const tbody = h('tbody');
                setView('Models', h('h1', {}, 'Models'),
                        h('div', {class: 'table-wrap'},
                          h('table', {id: 'models-table'},
                            h('thead', {}, h('tr', {}, ['Model', 'Name', 'Architecture', 'Produced by', 'Weights', 'Created', ''].map(
                                    (t, i) => h('th', {scope: 'col', class: i === 5 ? 'hide-narrow' : null}, t)))),
                            tbody)));
                async function load() {
                        const items = await listAll('/v1/models', 500);
                        tbody.replaceChildren(...items.map((m) => {
                                const spec = m.spec || {};
                                let arch = spec.preset || m.preset || '';
                if (Array.isArray(spec.layers)) {
                        const kinds = spec.layers.filter((l) => /linear|conv|block/.test(l.type || '')).map((l) => l.type);
                        arch = (arch ? arch + ' · ' : '') + 'input ' + JSON.stringify(spec.input || '?') + ', ' +
                               spec.layers.length + ' layers (' + kinds.length + ' with weights)';
                }
                arch = arch || '—';
                                return h('tr', {'data-model': m.id},
                                         h('td', {class: 'mono'}, m.id), h('td', {}, m.name || '—'), h('td', {}, String(arch)),
                                         h('td', {}, modelSource(m)),
                                         h('td', {class: 'mono', title: m.weights_sha256 || ''}, m.has_weights === false ?
                                           'none: initialised when trained' : 'sha256 ' + (m.weights_sha256 || '').slice(0, 12)),
                                         h('td', {class: 'hide-narrow'}, fmtTime(m.created_at)),
                                         h('td', {},
                                           m.has_weights === false ? null :
                                           h('button', {type: 'button', 'aria-label': 'download weights of ' + m.id,
                                                        onclick: () => download('/v1/models/' + encodeURIComponent(m.id) + '/weights',
                                                                                m.id + '.safetensors').catch(reportError)}, 'Weights'), ' ',
                                           h('a', {class: 'button', href: '#/submit?model=' + encodeURIComponent(m.id)}, 'Fine-tune')));
                        }));
                        if (!items.length)
                                tbody.append(h('tr', {}, h('td', {colspan: 7, class: 'empty'}, 'No models yet.')));
                }
                load().catch(reportError);
                return null;
        }

        /* ---- router ----------------------------------------------------------- */

        const routes = [
                [/^jobs\/([^/?]+)$/, viewJob, 'jobs'],
                [/^jobs$/, viewJobs, 'jobs'],
                [/^submit$/, viewSubmit, 'submit'],
                [/^datasets$/, viewDatasets, 'datasets'],
                [/^models$/, viewModels, 'models'],
                [/^compare$/, viewCompare, 'compare'],
        ];

        function route() {
                if (cleanup) {
                        cleanup();
                        cleanup = null;
                }
                showBanner('');
                const hash = location.hash.replace(/^#\/?/, '') || 'jobs';
                const q = hash.indexOf('?');
                const path = q < 0 ? hash : hash.slice(0, q);
                const params = new URLSearchParams(q < 0 ? '' : hash.slice(q + 1));
                for (const [re, fn, nav] of routes) {
                        const m = re.exec(path);
                        if (!m)
                                continue;
                        for (const a of document.querySelectorAll('nav a'))
                                if (a.dataset.nav === nav)
                                        a.setAttribute('aria-current', 'page');
                                else
                                        a.removeAttribute('aria-current');
                        let args;
                        try {
                                args = m.slice(1).map(decodeURIComponent);
                        } catch (e) {
                                break; /* a malformed %-escape: not a page */
                        }
                        cleanup = fn(params, ...args) || null;
                        return;
                }
                setView('Not found', h('h1', {}, 'Not found'), h('p', {}, 'No page ', h('code', {}, location.hash), '. ',
                                                                 h('a', {href: '#/jobs'}, 'Jobs')));
        }

        window.addEventListener('hashchange', () => {
                route();
                view().focus({preventScroll: true});
        });
        document.addEventListener('DOMContentLoaded', () => {
                if (typeof Chart === 'undefined') {
                        showBanner('the chart library did not load');
                        return;
                }
                route();
                api('GET', '/v1/version').then((v) => {
                        $('#version').textContent = 'finetuned ' + v.version +
                                (v.onednn ? ' · oneDNN ' + v.onednn.version + ' ' + (v.onednn.isa || '') : '');
                }).catch(() => {});
        });
})();
