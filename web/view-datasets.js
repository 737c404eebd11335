/* view-datasets.js - the datasets page (#/datasets): every dataset by name
 * (id beneath) with its schema (format, rows, features, target, classes with
 * counts), size (an IDX dataset's images and labels files together), sha256
 * and age; upload (a CSV, or IDX images with their labels file, which make one
 * dataset) and delete.
 *
 * Not for: reading schemas (dataset.js). */
import { api, listAll, reportError } from './api.js';
import { h, setView, headRow } from './dom.js';
import { fmtBytes, fmtTime } from './format.js';
import { schemaSummary, columnsText, uploadDataset, datasetBytes } from './dataset.js';
import { remember, refLabel } from './catalog.js';

export function viewDatasets() {
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
                    headRow(['Dataset', 'Schema', 'Columns and classes', 'Size', 'sha256', 'Created', ''], {4: 'hide-narrow', 5: 'hide-narrow'}),
                    tbody)));

        async function remove(d) {
                try {
                        await api('DELETE', '/v1/datasets/' + encodeURIComponent(d.id));
                        await load();
                } catch (e) {
                        reportError(e);
                }
        }
        async function load() {
                const items = await listAll('/v1/datasets', 500);
                remember('dataset', items);
                tbody.replaceChildren(...items.map((d) => h('tr', {'data-dataset': d.id},
                        h('td', {}, refLabel('dataset', d.id)),
                        h('td', {}, schemaSummary(d)),
                        h('td', {class: 'mono'}, columnsText(d)),
                        h('td', {class: 'num'}, fmtBytes(datasetBytes(d))),
                        h('td', {class: 'mono hide-narrow', title: d.sha256}, d.sha256.slice(0, 12)),
                        h('td', {class: 'hide-narrow'}, fmtTime(d.created_at)),
                        h('td', {}, [
                                h('a', {class: 'button', href: '#/submit?dataset=' + encodeURIComponent(d.id)}, 'Use'), ' ',
                                h('button', {type: 'button', class: 'danger', 'aria-label': 'delete dataset ' + d.name,
                                             onclick: () => remove(d)}, 'Delete')]))));
                if (!items.length)
                        tbody.append(h('tr', {}, h('td', {colspan: 7, class: 'empty'}, 'No datasets yet.')));
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
