/* view-models.js - the models page (#/models): every model by name (id
 * beneath) with its architecture from its spec (input shape, layers), where
 * it came from (a preset, an upload, or a link to the job that produced it),
 * its weights (download), a link to fine-tune it and, for an image model with weights, to explain an image
 * with it (view-explain.js); and a form that runs a model with weights over a whole dataset
 * (POST /v1/models/{id}/predictions, issue 18), opening the predictions job it queues; and one that
 * evaluates a model on a labelled dataset while the reader waits (POST /v1/models/{id}/evaluate) and
 * shows accuracy, log loss, macro ROC-AUC and the calibration ECE (regression: MSE, RMSE, MAE, R²).
 *
 * Not for: registering models (the submit form does it for presets). */
import { api, ApiError, listAll, download, reportError } from './api.js';
import { h, setView, headRow } from './dom.js';
import { fmtTime, fmtNum } from './format.js';
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

/* The "predict a dataset" form: models with weights, every dataset, an error line for the API's refusal. */
function predictForm() {
        const modelSel = h('select', {id: 'predict-model', name: 'model'});
        const dsSel = h('select', {id: 'predict-dataset', name: 'dataset'});
        const err = h('p', {class: 'field-error', id: 'predict-error', role: 'alert'});
        const button = h('button', {type: 'submit', id: 'predict-run'}, 'Predict');
        const form = h('form', {class: 'card', id: 'predict-form', 'aria-labelledby': 'predict-title',
                                onsubmit: async (e) => {
                                        e.preventDefault();
                                        err.textContent = '';
                                        button.disabled = true;
                                        try {
                                                const job = await api('POST', '/v1/models/' + encodeURIComponent(modelSel.value) + '/predictions',
                                                                      {json: {dataset: dsSel.value}});
                                                location.hash = '#/jobs/' + encodeURIComponent(job.id);
                                        } catch (ex) {
                                                if (ex instanceof ApiError)
                                                        err.textContent = ex.message;
                                                else
                                                        reportError(ex);
                                        } finally {
                                                button.disabled = false;
                                        }
                                }},
                         h('h2', {id: 'predict-title'}, 'Predict a dataset'),
                         h('p', {class: 'muted'}, 'Runs the model over every row as a job: predictions.csv to download and, ' +
                                                  'when the dataset has labels, the evaluation (ROC-AUC, calibration).'),
                         h('div', {class: 'toolbar'},
                           h('label', {for: 'predict-model'}, 'Model'), modelSel,
                           h('label', {for: 'predict-dataset'}, 'Dataset'), dsSel, button),
                         err);
        return {form, fill(models, datasets) {
                modelSel.replaceChildren(...models.filter((m) => m.has_weights).map((m) =>
                        h('option', {value: m.id}, m.name + ' (' + m.id + ')')));
                dsSel.replaceChildren(...datasets.map((d) => h('option', {value: d.id}, d.name + ' (' + d.id + ')')));
                form.hidden = !modelSel.options.length || !dsSel.options.length;
        }};
}

/* The "evaluate on a dataset" form: the same choices as predict, the answer's headline numbers in a table. */
function evaluateForm() {
        const modelSel = h('select', {id: 'evaluate-model', name: 'model'});
        const dsSel = h('select', {id: 'evaluate-dataset', name: 'dataset'});
        const err = h('p', {class: 'field-error', id: 'evaluate-error', role: 'alert'});
        const out = h('div', {id: 'evaluate-result', 'aria-live': 'polite'});
        const button = h('button', {type: 'submit', id: 'evaluate-run'}, 'Evaluate');
        const show = (ev) => {
                const m = ev.metrics || {};
                const rows = m.mse !== undefined ?
                        [['MSE', m.mse], ['RMSE', m.rmse], ['MAE', m.mae], ['R²', m.r2]] :
                        [['accuracy', m.accuracy], ['log loss', m.log_loss], ['ROC-AUC (macro)', m.roc_auc ? m.roc_auc.macro : null],
                         ['calibration ECE', m.calibration ? m.calibration.ece : null]];
                out.replaceChildren(h('table', {id: 'evaluate-table'},
                        h('caption', {}, ev.samples + ' rows of ', refLabel('dataset', ev.dataset), ' by ', refLabel('model', ev.model)),
                        headRow(['Metric', 'Value'], {1: 'num'}),
                        h('tbody', {}, rows.map(([k, v]) => h('tr', {'data-metric': k}, h('th', {scope: 'row'}, k),
                                                              h('td', {class: 'num'}, v === null || v === undefined ? '—' : fmtNum(v)))))));
        };
        const form = h('form', {class: 'card', id: 'evaluate-form', 'aria-labelledby': 'evaluate-title',
                                onsubmit: async (e) => {
                                        e.preventDefault();
                                        err.textContent = '';
                                        out.replaceChildren(h('p', {class: 'muted'}, 'Evaluating…'));
                                        button.disabled = true;
                                        try {
                                                show(await api('POST', '/v1/models/' + encodeURIComponent(modelSel.value) + '/evaluate',
                                                               {json: {dataset: dsSel.value, curve_points: 2}}));
                                        } catch (ex) {
                                                out.replaceChildren();
                                                if (ex instanceof ApiError)
                                                        err.textContent = ex.message;
                                                else
                                                        reportError(ex);
                                        } finally {
                                                button.disabled = false;
                                        }
                                }},
                         h('h2', {id: 'evaluate-title'}, 'Evaluate on a dataset'),
                         h('p', {class: 'muted'}, 'Runs the model over every row of a labelled dataset now, without a job.'),
                         h('div', {class: 'toolbar'},
                           h('label', {for: 'evaluate-model'}, 'Model'), modelSel,
                           h('label', {for: 'evaluate-dataset'}, 'Dataset'), dsSel, button),
                         err, out);
        return {form, fill(models, datasets) {
                modelSel.replaceChildren(...models.filter((m) => m.has_weights).map((m) =>
                        h('option', {value: m.id}, m.name + ' (' + m.id + ')')));
                dsSel.replaceChildren(...datasets.filter((d) => d.labels !== null || !(d.schema && d.schema.image_shape))
                        .map((d) => h('option', {value: d.id}, d.name + ' (' + d.id + ')')));
                form.hidden = !modelSel.options.length || !dsSel.options.length;
        }};
}

export function viewModels() {
        const tbody = h('tbody');
        const predict = predictForm();
        predict.form.hidden = true;
        const evaluate = evaluateForm();
        evaluate.form.hidden = true;
        setView('Models', h('h1', {}, 'Models'), predict.form, evaluate.form,
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
                const datasets = await listAll('/v1/datasets', 500);
                predict.fill(items, datasets);
                evaluate.fill(items, datasets);
        }
        load().catch(reportError);
        return null;
}
