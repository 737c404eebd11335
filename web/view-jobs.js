/* view-jobs.js - the jobs list (#/jobs, #/jobs?state=running): every job,
 * newest first, with its state, base model and training data by name, the
 * strategy, a progress bar with the ETA and its best epoch by the job's own
 * metric (the job JSON's "best": no events are read), refreshed every 1.5 s;
 * a state filter; tick two or more to compare them.
 *
 * Not for: one job (view-job.js) or the comparison itself (view-compare.js). */
import { api, poll } from './api.js';
import { h, setView, showBanner } from './dom.js';
import { fmtTime } from './format.js';
import { STATES, stateBadge, jobStrategy, progressCell, bestText } from './job.js';
import { resolve, lookup, refLabel } from './catalog.js';

const POLL_MS = 1500;
const PAGE = 100;
const CLIPPED = new Set([1, 3, 4]); /* job id, model, data: long, cut with an ellipsis (the id is the title) */

export function viewJobs(params) {
        const selected = new Set();
        const tbody = h('tbody');
        const filter = h('select', {id: 'state-filter'},
                         h('option', {value: ''}, 'all'), STATES.map((s) => h('option', {value: s}, s)));
        filter.value = params.get('state') || '';
        const compareBtn = h('button', {type: 'button', disabled: true, id: 'compare-selected',
                                        onclick: () => {
                                                location.hash = '#/compare?ids=' + [...selected].join(',');
                                        }},
                             'Compare selected');
        const more = h('p', {class: 'muted', hidden: true}, 'Showing the newest ' + PAGE + ' jobs; filter by state to see others.');
        const empty = h('p', {class: 'empty', hidden: true}, 'No jobs yet. ', h('a', {href: '#/submit'}, 'Start one'), '.');
        const COLS = [['Compare', null], ['Job', null], ['State', null], ['Model', null], ['Training data', null],
                      ['Strategy', null], ['Progress', null], ['Best metric', 'num'], ['Created', null]];
        const table = h('table', {id: 'jobs-table'},
                        h('caption', {class: 'sr-only'}, 'Fine-tuning jobs, newest first'),
                        h('thead', {}, h('tr', {}, COLS.map(([t, cls], i) =>
                                h('th', {scope: 'col', class: cls}, i === 0 ? h('span', {class: 'sr-only'}, t) : t)))),
                        tbody);
        setView('Jobs',
                h('div', {class: 'toolbar'}, h('h1', {}, 'Jobs'),
                  h('label', {for: 'state-filter'}, 'State '), filter, compareBtn,
                  h('a', {class: 'button', href: '#/submit'}, 'New job')),
                h('div', {class: 'table-wrap'}, table, empty), more);

        const rows = new Map(); /* job id -> {tr, cells}: rows are kept, so a ticked box stays ticked */
        function rowFor(job) {
                let r = rows.get(job.id);
                if (r)
                        return r;
                const box = h('input', {type: 'checkbox', id: 'sel-' + job.id, 'aria-label': 'select job ' + job.id + ' to compare',
                                        onchange: (ev) => {
                                                if (ev.target.checked)
                                                        selected.add(job.id);
                                                else
                                                        selected.delete(job.id);
                                                compareBtn.disabled = selected.size < 2;
                                        }});
                /* data-label: the column name, shown beside each cell when a narrow window stacks the rows */
                const cells = COLS.map(([t, cls], i) => h('td', {'data-label': t,
                                                                  class: [cls, CLIPPED.has(i) && 'clip'].filter(Boolean).join(' ')}));
                cells[0].append(box);
                r = {tr: h('tr', {'data-job': job.id}, cells), cells, key: null};
                rows.set(job.id, r);
                return r;
        }
        function fill(r, job) {
                const c = r.cells;
                c[1].replaceChildren(h('a', {href: '#/jobs/' + encodeURIComponent(job.id), class: 'mono', title: job.id}, job.id));
                c[2].replaceChildren(stateBadge(job.state));
                /* the references are drawn again only when their names arrive */
                const known = (kind, id) => (lookup(kind, id) === undefined ? '?' : '=');
                const key = known('model', job.model) + known('dataset', job.training_file);
                if (r.key !== key) {
                        r.key = key;
                        c[3].replaceChildren(refLabel('model', job.model));
                        c[4].replaceChildren(refLabel('dataset', job.training_file));
                }
                c[5].textContent = jobStrategy(job);
                c[6].replaceChildren(progressCell(job));
                c[7].textContent = bestText(job.best);
                c[8].textContent = fmtTime(job.created_at);
        }
        const stop = poll(POLL_MS, async () => {
                const q = filter.value ? '&state=' + encodeURIComponent(filter.value) : '';
                const page = await api('GET', '/v1/jobs?limit=' + PAGE + q);
                const jobs = page.data;
                /* names for the ids (asked once each; the answer is kept for the page's life) */
                await Promise.all([resolve('model', jobs.map((j) => j.model)),
                                   resolve('dataset', jobs.map((j) => j.training_file))]);
                const seen = new Set();
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
                more.hidden = !page.has_more;
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
