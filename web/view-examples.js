/* view-examples.js - a finished classification job's per-example diagnostics on
 * its page (#/jobs/{id}): the counts of mistakes and suspected label errors,
 * the examples sorted by loss, confident mistakes, suspects or dataset order,
 * filtered to one cell of the confusion matrix (view-job.js's cells call
 * pick()), and paged; for an IDX dataset the images themselves in a grid, each
 * with its true and predicted class and their probabilities, for a CSV a table
 * with the line to fix; each image links to the saliency page of the job's result model for it
 * (#/models/{id}/explain?dataset=..&index=N, view-explain.js). Reads GET /v1/jobs/{id}/diagnostics, /examples and
 * GET /v1/datasets/{id}/images (docs/diagnostics.md).
 *
 * Not for: the rest of the job page (view-job.js). */
import { api, ApiError, download, reportError } from './api.js';
import { h } from './dom.js';
import { fmtNum } from './format.js';

const PAGE = 48;
const ORDERS = [['loss', 'highest loss first'], ['confident_mistakes', 'most confident mistakes'],
                ['suspected', 'suspected label errors'], ['index', 'dataset order']];

/* One image (base64 bytes, C planes of H x W) onto a canvas, scaled up without smoothing. */
function imageCanvas(img, c, hgt, w) {
        const scale = Math.max(1, Math.floor(84 / Math.max(hgt, w)));
        const canvas = h('canvas', {width: w, height: hgt, class: 'ex-img', 'aria-hidden': 'true'});
        canvas.style.width = w * scale + 'px';
        canvas.style.height = hgt * scale + 'px';
        const bytes = Uint8Array.from(atob(img.pixels), (ch) => ch.charCodeAt(0));
        const ctx = canvas.getContext('2d');
        const data = ctx.createImageData(w, hgt), plane = hgt * w;
        for (let i = 0; i < plane; i++) {
                const r = bytes[i], g = c === 3 ? bytes[plane + i] : r, b = c === 3 ? bytes[2 * plane + i] : r;
                data.data.set([r, g, b, 255], 4 * i);
        }
        ctx.putImageData(data, 0, 0);
        return canvas;
}

function caption(e) {
        return e.correct ? `${e.label} · p ${fmtNum(e.p_label, 3)}` :
                `true ${e.label} (p ${fmtNum(e.p_label, 3)}) · predicted ${e.predicted} (p ${fmtNum(e.p_predicted, 3)})`;
}

/* The section for job (succeeded, classification); dataset: the id its examples index. Returns {node, pick}. */
export function examplesSection(job, dataset) {
        const path = '/v1/jobs/' + encodeURIComponent(job.id);
        const node = h('section', {id: 'examples', 'aria-labelledby': 'examples-title', hidden: true});
        const summary = h('p', {id: 'ex-summary'});
        const order = h('select', {id: 'ex-order'}, ORDERS.map(([v, t]) => h('option', {value: v}, t)));
        const filterText = h('span', {id: 'ex-filter'});
        const clear = h('button', {type: 'button', id: 'ex-clear', hidden: true, onclick: () => pick(null, null)}, 'Show every class');
        const more = h('button', {type: 'button', id: 'ex-more', hidden: true, onclick: () => load(false)}, 'More');
        const list = h('div', {id: 'ex-list', 'aria-live': 'polite'});
        const csv = h('button', {type: 'button', id: 'download-examples',
                                 onclick: () => download(path + '/artifacts/examples.csv', job.id + '-examples.csv').catch(reportError)},
                      'Download examples.csv');
        let label = null, predicted = null, after = null, images = null, seq = 0;

        order.addEventListener('change', () => load(true));

        /* the image as a link to its saliency map under the job's result model (none: the image alone) */
        function explainLink(index, canvas) {
                if (!job.result_model)
                        return canvas;
                const q = new URLSearchParams({dataset, index: String(index)});
                return h('a', {href: '#/models/' + encodeURIComponent(job.result_model) + '/explain?' + q, class: 'ex-explain',
                               title: 'explain #' + index + ' (saliency map)'}, canvas);
        }

        function pick(l, p) {
                label = l;
                predicted = p;
                if (l !== null)
                        order.value = l === p ? 'loss' : 'confident_mistakes';
                node.scrollIntoView({block: 'start'});
                load(true);
        }

        async function load(fresh) {
                const mine = ++seq;
                if (fresh) {
                        after = null;
                        list.replaceChildren();
                }
                const q = new URLSearchParams({order: order.value, limit: String(PAGE)});
                if (label !== null)
                        q.set('label', label);
                if (predicted !== null)
                        q.set('predicted', predicted);
                if (after !== null)
                        q.set('after', String(after));
                filterText.textContent = label === null ? '' : `true class ${label}, predicted ${predicted}`;
                clear.hidden = label === null;
                try {
                        const page = await api('GET', path + '/examples?' + q);
                        let pix = null;
                        if (images && page.data.length)
                                pix = await api('GET', '/v1/datasets/' + encodeURIComponent(dataset) + '/images?indices=' +
                                                page.data.map((e) => e.index).join(','));
                        if (mine !== seq)
                                return;
                        show(page, pix);
                        after = page.has_more ? page.next_after : null;
                        more.hidden = !page.has_more;
                        list.dataset.total = page.total;
                } catch (e) {
                        reportError(e);
                }
        }

        function show(page, pix) {
                if (!page.data.length && !list.childElementCount) {
                        list.replaceChildren(h('p', {class: 'muted', id: 'ex-empty'}, 'No example here.'));
                        return;
                }
                if (pix) {
                        let grid = list.querySelector('.ex-grid');
                        if (!grid)
                                list.append(grid = h('ul', {class: 'ex-grid', id: 'ex-grid'}));
                        const byIndex = new Map(pix.images.map((i) => [i.index, i]));
                        for (const e of page.data) {
                                const img = byIndex.get(e.index);
                                grid.append(h('li', {class: 'ex-tile' + (e.correct ? '' : ' wrong') + (e.suspected ? ' suspect' : ''),
                                                     'data-index': e.index, 'data-label': e.label, 'data-predicted': e.predicted},
                                        h('figure', {}, img ? explainLink(e.index, imageCanvas(img, pix.channels, pix.height, pix.width)) : null,
                                          h('figcaption', {}, h('span', {class: 'mono'}, '#' + e.index), ' ', caption(e),
                                            e.suspected ? h('span', {class: 'suspect-note'}, ' · label suspected, maybe ' + e.suggested) : null))));
                        }
                        return;
                }
                let body = list.querySelector('tbody');
                if (!body) {
                        body = h('tbody');
                        const cols = ['#', 'line', 'true', 'predicted', 'p(true)', 'p(predicted)', 'loss', 'suspected'];
                        list.append(h('div', {class: 'table-wrap'}, h('table', {id: 'ex-table'},
                                h('thead', {}, h('tr', {}, cols.map((c) => h('th', {scope: 'col'}, c)))), body)));
                }
                for (const e of page.data)
                        body.append(h('tr', {class: e.correct ? null : 'wrong', 'data-index': e.index, 'data-label': e.label, 'data-predicted': e.predicted},
                                      h('td', {class: 'num'}, String(e.index)), h('td', {class: 'num'}, e.line === null ? '' : String(e.line)),
                                      h('td', {}, e.label), h('td', {}, e.predicted), h('td', {class: 'num'}, fmtNum(e.p_label, 4)),
                                      h('td', {class: 'num'}, fmtNum(e.p_predicted, 4)), h('td', {class: 'num'}, fmtNum(e.loss, 4)),
                                      h('td', {}, e.suspected ? 'maybe ' + e.suggested : '')));
        }

        (async () => {
                let d;
                try {
                        d = await api('GET', path + '/diagnostics');
                } catch (e) {
                        if (!(e instanceof ApiError && e.status === 404)) /* 404: a regression job has none */
                                reportError(e);
                        return;
                }
                try {
                        const ds = await api('GET', '/v1/datasets/' + encodeURIComponent(dataset));
                        images = ds.labels !== null && Array.isArray(ds.schema.image_shape);
                } catch (e) {
                        images = false; /* the dataset is gone: the table still shows every example */
                }
                summary.textContent = `${d.examples_count} ${d.split} examples · ${d.mistakes} mistakes · ` +
                        `${d.suspected_label_errors} suspected label errors (confident learning: an example is suspected ` +
                        `when the model gives another class at least that class's mean self-confidence)`;
                node.replaceChildren(h('h2', {id: 'examples-title'}, 'Examples'), summary,
                                     h('div', {class: 'toolbar'}, h('label', {for: 'ex-order'}, 'Show'), order, filterText, clear, csv),
                                     h('p', {class: 'muted'}, 'Click a cell of the confusion matrix to see its examples.'),
                                     list, more);
                node.hidden = false;
                load(true);
        })();

        return {node, pick};
}
