/* view-compare.js - several jobs' curves on one chart (#/compare?ids=a,b
 * &metric=val_loss): validation loss, train loss, validation accuracy or F1
 * per epoch, from each job's epoch events (GET /v1/jobs/{id}/events, read
 * once and then only the new ones);
 * a picker of the newest 100 jobs (with their base model and data by name);
 * running jobs' curves refresh every 3 s.
 *
 * Not for: one job's live chart (view-job.js). */
import { api, reportError, poll } from './api.js';
import { h, setView } from './dom.js';
import { isNum } from './format.js';
import { TERMINAL, stateBadge, jobStrategy } from './job.js';
import { PALETTE, lineChart, chartSeries, chartCanvas, chartUpdate } from './charts.js';
import { resolve, refLabel } from './catalog.js';

const METRICS = ['val_loss', 'train_loss', 'val_accuracy', 'val_f1'];
const REFRESH_MS = 3000;
const EVENTS_PAGE = 1000; /* the most GET /v1/jobs/{id}/events answers at once */
const MAX_EVENTS = 50000; /* read per refresh of one job's curve */

export function viewCompare(params) {
        const chosen = new Set((params.get('ids') || '').split(',').filter(Boolean));
        const metricSel = h('select', {id: 'compare-metric'}, METRICS.map((m) => h('option', {value: m}, m)));
        metricSel.value = METRICS.includes(params.get('metric')) ? params.get('metric') : 'val_loss';
        const c = chartCanvas('comparison of jobs per epoch', 'compare-chart');
        c.box.classList.add('tall');
        const chart = lineChart(c.canvas, metricSel.value);
        const picker = h('fieldset', {class: 'card'}, h('legend', {}, 'Jobs on the chart'));
        setView('Compare',
                h('div', {class: 'toolbar'}, h('h1', {}, 'Compare jobs'), h('label', {for: 'compare-metric'}, 'Metric '), metricSel),
                c.box, picker);
        const epochs = new Map(); /* job id -> its epoch events' data */
        const jobs = new Map();

        function address() {
                history.replaceState(null, '', '#/compare?ids=' + [...chosen].join(',') + '&metric=' + metricSel.value);
        }
        function redraw() {
                chart.data.datasets = [];
                chart.options.scales.y.title.text = metricSel.value;
                let i = 0;
                for (const id of chosen) {
                        const job = jobs.get(id), evs = epochs.get(id) || [];
                        const hp = job && job.spec.hyperparameters; /* a predictions job has none */
                        const label = id + (job ? ' · ' + jobStrategy(job) + (hp ? ' · ' + hp.optimizer + ' lr ' + hp.learning_rate : '') : '');
                        const ds = chartSeries(chart, label, PALETTE[i++ % PALETTE.length]);
                        ds.data = evs.filter((e) => isNum(e[metricSel.value])).map((e) => ({x: e.epoch, y: e[metricSel.value]}));
                }
                chartUpdate(chart);
        }
        /* A job's epoch events after the last one read (its events only grow): pages of 1000. */
        const lastSeq = new Map();
        async function loadEpochs(id) {
                const list = epochs.get(id) || [];
                let after = lastSeq.get(id) || 0;
                for (let n = 0; n < MAX_EVENTS; n += EVENTS_PAGE) {
                        const page = await api('GET', '/v1/jobs/' + encodeURIComponent(id) + '/events?limit=' + EVENTS_PAGE +
                                               '&after=' + after);
                        for (const e of page.data)
                                if (e.type === 'epoch')
                                        list.push(e.data);
                        if (page.data.length) /* next_after is null on the last page: the last seq read */
                                after = page.data[page.data.length - 1].seq;
                        if (!page.has_more)
                                break;
                }
                lastSeq.set(id, after);
                epochs.set(id, list);
        }
        async function load() {
                const list = await api('GET', '/v1/jobs?limit=100');
                for (const j of list.data)
                        jobs.set(j.id, j);
                /* a job asked for by the address but older than the newest 100 */
                await Promise.all([...chosen].filter((id) => !jobs.has(id)).map((id) =>
                        api('GET', '/v1/jobs/' + encodeURIComponent(id)).then((j) => jobs.set(id, j)).catch(() => {})));
                await Promise.all([resolve('model', [...jobs.values()].map((j) => j.model)),
                                   resolve('dataset', [...jobs.values()].map((j) => j.training_file))]);
                picker.replaceChildren(h('legend', {}, 'Jobs on the chart'));
                for (const [id, job] of jobs) {
                        const box = h('input', {type: 'checkbox', id: 'cmp-' + id, checked: chosen.has(id),
                                                onchange: async (ev) => {
                                                        if (ev.target.checked)
                                                                chosen.add(id);
                                                        else
                                                                chosen.delete(id);
                                                        address();
                                                        if (ev.target.checked && !epochs.has(id))
                                                                await loadEpochs(id).catch(reportError);
                                                        redraw();
                                                }});
                        picker.append(h('div', {class: 'field check'}, box,
                                        h('label', {for: 'cmp-' + id}, h('span', {class: 'mono'}, id), ' ', stateBadge(job.state), ' ',
                                          jobStrategy(job), ' · ', refLabel('model', job.model), ' on ', refLabel('dataset', job.training_file))));
                }
                if (!jobs.size)
                        picker.append(h('p', {class: 'muted'}, 'No jobs yet.'));
                await Promise.all([...chosen].map((id) => loadEpochs(id).catch(reportError)));
                redraw();
        }
        metricSel.addEventListener('change', () => {
                address();
                redraw();
        });
        let loaded = false;
        const stop = poll(REFRESH_MS, async () => {
                if (!loaded) {
                        await load();
                        loaded = true;
                        return;
                }
                let changed = false;
                for (const id of chosen) {
                        const job = jobs.get(id);
                        if (job && !TERMINAL.has(job.state)) {
                                jobs.set(id, await api('GET', '/v1/jobs/' + encodeURIComponent(id)));
                                await loadEpochs(id);
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
