/* view-models.js - the models page (#/models): every model by name (id
 * beneath) with its architecture from its spec (input shape, layers), where
 * it came from (a preset, an upload, or a link to the job that produced it),
 * its weights (download), a link to fine-tune it and, for an image model with weights, to explain an image
 * with it (view-explain.js).
 *
 * Not for: registering models (the submit form does it for presets). */
import { listAll, download, reportError } from './api.js';
import { h, setView, headRow } from './dom.js';
import { fmtTime } from './format.js';
import { remember, refLabel } from './catalog.js';

const WEIGHTED = /linear|conv|batchnorm|block/; /* layer types that have parameters */

/* "input 1×28×28 · 9 layers (4 with weights)" from the model's canonical spec. */
function architecture(spec) {
        const layers = spec.layers || [];
        return 'input ' + (spec.input || []).join('×') + ' · ' + layers.length + ' layers (' +
               layers.filter((l) => WEIGHTED.test(l.type)).length + ' with weights)';
}

/* source: "preset", "upload" or "job" (source_job names it; the job may be deleted since). */
function origin(m) {
        if (m.source === 'job')
                return h('span', {}, 'job ', h('a', {href: '#/jobs/' + encodeURIComponent(m.source_job), class: 'mono'}, m.source_job));
        return m.source === 'preset' ? 'a preset' : 'an upload';
}

export function viewModels() {
        const tbody = h('tbody');
        setView('Models', h('h1', {}, 'Models'),
                h('div', {class: 'table-wrap'},
                  h('table', {id: 'models-table'},
                    headRow(['Model', 'Architecture', 'Produced by', 'Weights', 'Created', ''], {4: 'hide-narrow'}),
                    tbody)));
        async function load() {
                const items = await listAll('/v1/models', 500);
                remember('model', items);
                tbody.replaceChildren(...items.map((m) => h('tr', {'data-model': m.id},
                        h('td', {}, refLabel('model', m.id)),
                        h('td', {}, architecture(m.spec)),
                        h('td', {}, origin(m)),
                        h('td', {class: 'mono', title: m.weights_sha256 || ''},
                          m.has_weights ? 'sha256 ' + m.weights_sha256.slice(0, 12) : 'none: initialised when trained'),
                        h('td', {class: 'hide-narrow'}, fmtTime(m.created_at)),
                        h('td', {},
                          m.has_weights ? h('button', {type: 'button', 'aria-label': 'download weights of ' + m.name,
                                                      onclick: () => download('/v1/models/' + encodeURIComponent(m.id) + '/weights',
                                                                              m.id + '.safetensors').catch(reportError)}, 'Weights') : null,
                          ' ', h('a', {class: 'button', href: '#/submit?model=' + encodeURIComponent(m.id)}, 'Fine-tune'),
                          m.has_weights && (m.spec.input || []).length === 3
                                  ? [' ', h('a', {class: 'button', href: '#/models/' + encodeURIComponent(m.id) + '/explain',
                                                  'aria-label': 'explain an image with ' + m.name}, 'Explain')]
                                  : null))));
                if (!items.length)
                        tbody.append(h('tr', {}, h('td', {colspan: 6, class: 'empty'}, 'No models yet.')));
        }
        load().catch(reportError);
        return null;
}
