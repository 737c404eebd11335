/* view-submit.js - the new-job form (#/submit, #/submit?dataset=ds_…&model=
 * mdl_…): upload a dataset or pick one, pick a model or a preset (a model is
 * registered for it, sized from the dataset's schema), task, hyperparameters,
 * strategy, early stopping, preprocessing, seed; the defaults are the job
 * spec's (docs/job-spec.md). Datasets and models are listed by name. An API
 * error appears next to the field its param names. A retry of the same spec
 * reuses its Idempotency-Key. "Estimate" posts the same spec to POST
 * /v1/jobs?dry_run=true and shows the daemon's measured estimate (seconds,
 * peak memory, checkpoint bytes, warnings) without queueing anything.
 *
 * Not for: what the spec means (compute/jobspec.c validates it). */
import { api, ApiError, listAll, reportError } from './api.js';
import { h, $, setView } from './dom.js';
import { fmtDuration } from './format.js';
import { datasetColumns, presetConfig, uploadDataset } from './dataset.js';
import { remember, optionLabels } from './catalog.js';

const PRESETS = ['mlp', 'cnn', 'resnet18', 'resnet34'];

/* field(param, label, input, hint): a labelled input whose errors show next
 * to it; param is the job spec path the API names in error.param. */
function field(param, label, input, hint) {
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
                return h('div', {class: 'field check'}, input, h('label', {for: input.id}, label), err);
        return h('div', {class: 'field'}, h('label', {for: input.id}, label), input, hintEl, err);
}
const numInput = (value, attrs) => h('input', Object.assign({type: 'number', value: String(value), step: 'any'}, attrs || {}));
function select(options, value) {
        const s = h('select', {}, options.map((o) => (Array.isArray(o) ? h('option', {value: o[0]}, o[1]) : h('option', {value: o}, o))));
        s.value = value;
        return s;
}

/* Show an API error next to the field it names (or the nearest enclosing
 * one: "strategy.freeze[0]" -> "strategy.freeze" -> "strategy"), else under
 * the form; null clears every error. Returns true when a field matched. */
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
                        form.querySelector('[data-error-for="' + CSS.escape(param) + '"]').textContent = e.message;
                        formErr.textContent = 'the daemon refused the job: see ' + param;
                        input.focus();
                        return true;
                }
                const shorter = param.replace(/(\[[^\]]*\]|\.[^.[\]]*)$/, '');
                param = shorter === param ? '' : shorter;
        }
        formErr.textContent = e.message + (e.param ? ' (' + e.param + ')' : '');
        return false;
}

export function viewSubmit(params) {
        const dsSelect = h('select', {}, h('option', {value: ''}, '— upload a file below —'));
        const valSelect = h('select', {}, h('option', {value: ''}, '— split from the training data —'));
        const modelSelect = h('select', {},
                              h('optgroup', {label: 'Presets (a new model is created)'},
                                PRESETS.map((p) => h('option', {value: 'preset:' + p}, p))),
                              h('optgroup', {label: 'Models', id: 'model-options'}));
        modelSelect.value = 'preset:mlp';
        const upload = h('input', {type: 'file', accept: '.csv,.idx,.gz,.ubyte,text/csv'});
        const uploadLabels = h('input', {type: 'file', accept: '.idx,.gz,.ubyte'});
        const target = h('input', {type: 'text', value: '', placeholder: 'the last column', list: 'target-columns', autocomplete: 'off'});
        const columns = h('datalist', {id: 'target-columns'});
        const f = {
                validation_split: numInput(0.2, {min: 0, max: 0.9, step: 0.05}),
                hidden: h('input', {type: 'text', value: '64', inputmode: 'numeric'}),
                task_type: select(['classification', 'regression'], 'classification'),
                epochs: numInput(10, {min: 1, max: 100000, step: 1}),
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
        /* the chosen dataset's and model's ids, under their selects (the options show names) */
        const dsId = h('span', {class: 'mono'}), valId = h('span', {class: 'mono'}), modelId = h('span', {class: 'mono'});
        const formError = h('p', {class: 'form-error', role: 'alert'});
        const submitBtn = h('button', {type: 'submit', class: 'primary', id: 'submit-job'}, 'Start fine-tuning');
        const estimateBtn = h('button', {type: 'submit', id: 'estimate-job',
                                         title: 'time a few real batches on the daemon and estimate the whole run'}, 'Estimate');
        const estimateBox = h('section', {class: 'card', id: 'job-estimate', 'aria-live': 'polite', hidden: true});
        const form = h('form', {class: 'grid', id: 'job-form', novalidate: true},
                h('fieldset', {}, h('legend', {}, 'Data'),
                  field('training_file', 'Training data', dsSelect, dsId),
                  field('file', 'Upload a dataset', upload, 'CSV, or IDX / IDX.gz images'),
                  field('labels', 'IDX labels (for IDX images)', uploadLabels),
                  field('validation_file', 'Validation data', valSelect, valId),
                  field('validation_split', 'Validation split', f.validation_split, 'used when there is no validation data')),
                h('fieldset', {}, h('legend', {}, 'Model and task'),
                  field('model', 'Base model or preset', modelSelect, modelId),
                  field('config.hidden', 'Hidden layer sizes (mlp preset)', f.hidden, 'comma-separated, e.g. 256, 128'),
                  field('task.type', 'Task', f.task_type),
                  field('task.target', 'Target column', target, 'CSV column holding the label or value'), columns),
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
                estimateBox,
                h('div', {class: 'actions'}, submitBtn, estimateBtn, h('a', {class: 'button', href: '#/jobs'}, 'Cancel')));

        /* a dry run's answer: {estimate: {seconds, peak_memory_bytes, checkpoint_bytes_total, ...}, warnings} */
        function showEstimate(d) {
                const e = d.estimate || {};
                const mib = (b) => (typeof b !== 'number' ? '—' : b < 1048576 ? (b / 1024).toFixed(1) + ' KiB' : (b / 1048576).toFixed(1) + ' MiB');
                const warnings = Array.isArray(d.warnings) ? d.warnings : [];
                estimateBox.replaceChildren(h('h2', {}, 'Estimate (nothing was queued)'),
                        h('dl', {class: 'kv', id: 'estimate-facts'},
                          h('dt', {}, 'whole run'), h('dd', {id: 'estimate-seconds', 'data-seconds': e.seconds},
                                                      (e.seconds < 60 ? Number(e.seconds).toFixed(e.seconds < 1 ? 3 : 1) + ' s' : fmtDuration(e.seconds)) + ' (' + e.batches_total + ' batches' +
                                                      (e.first_epoch_measured ? ', the first epoch timed whole' : ', ' + e.batches_timed + ' batches timed') + ')'),
                          h('dt', {}, 'peak memory'), h('dd', {id: 'estimate-memory'}, mib(e.peak_memory_bytes)),
                          h('dt', {}, 'checkpoints'), h('dd', {id: 'estimate-checkpoints'},
                                                        mib(e.checkpoint_bytes_total) + ' (' + e.checkpoints_kept + ' × ' + mib(e.checkpoint_bytes) + ')')),
                        warnings.length ? h('ul', {id: 'estimate-warnings'}, warnings.map((w) => h('li', {}, typeof w === 'string' ? w :
                                                                                                   (w.message || JSON.stringify(w)))))
                                        : h('p', {class: 'muted', id: 'estimate-warnings'}, 'no warnings'));
                estimateBox.hidden = false;
        }
        setView('New job', h('h1', {}, 'New fine-tuning job'), form);

        const datasets = new Map(); /* id -> dataset, the ones a job can train on */
        function showChoice() {
                const d = datasets.get(dsSelect.value);
                columns.replaceChildren(...datasetColumns(d).map((c) => h('option', {value: c})));
                dsId.textContent = dsSelect.value ? 'id ' + dsSelect.value : '';
                valId.textContent = valSelect.value ? 'id ' + valSelect.value : '';
                modelId.textContent = modelSelect.value.startsWith('preset:') ? 'a new model from the preset' : 'id ' + modelSelect.value;
        }
        /* Options named by name (with the id where names repeat; the id is each option's title too). */
        function fillDatasets() {
                const keep = [dsSelect.value, valSelect.value];
                const labels = optionLabels([...datasets.values()]);
                const opts = () => [...datasets.values()].map((d) => h('option', {value: d.id, title: d.id}, labels.get(d.id)));
                dsSelect.replaceChildren(dsSelect.options[0], ...opts());
                valSelect.replaceChildren(valSelect.options[0], ...opts());
                [dsSelect.value, valSelect.value] = keep;
        }
        for (const s of [dsSelect, valSelect, modelSelect])
                s.addEventListener('change', showChoice);
        showChoice();
        (async () => {
                try {
                        const [dss, models] = await Promise.all([listAll('/v1/datasets', 500), listAll('/v1/models', 500)]);
                        remember('dataset', dss);
                        remember('model', models);
                        for (const d of dss)
                                datasets.set(d.id, d);
                        fillDatasets();
                        const labels = optionLabels(models);
                        $('#model-options', form).append(...models.map((m) => h('option', {value: m.id, title: m.id}, labels.get(m.id))));
                        if (params.get('model'))
                                modelSelect.value = params.get('model');
                        if (params.get('dataset'))
                                dsSelect.value = params.get('dataset');
                        showChoice();
                } catch (e) {
                        reportError(e);
                }
        })();

        const num = (el) => (el.value === '' ? undefined : Number(el.value));
        const globs = (el) => el.value.split(',').map((x) => x.trim()).filter(Boolean);
        let lastPost = null, lastPreset = null;
        form.addEventListener('submit', async (ev) => {
                ev.preventDefault();
                showFieldError(form, null);
                formError.textContent = '';
                const dry = ev.submitter === estimateBtn;
                submitBtn.disabled = estimateBtn.disabled = true;
                try {
                        let training = dsSelect.value;
                        if (upload.files.length) {
                                try {
                                        const ds = await uploadDataset(upload.files[0], uploadLabels.files[0]);
                                        remember('dataset', ds);
                                        datasets.set(ds.id, ds);
                                        fillDatasets();
                                        dsSelect.value = training = ds.id;
                                        upload.value = '';
                                        uploadLabels.value = '';
                                        showChoice();
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
                                        const preset = model.slice(7), d = datasets.get(training);
                                        const config = presetConfig(preset, d, f.task_type.value);
                                        if (preset === 'mlp')
                                                config.hidden = globs(f.hidden).map(Number);
                                        /* a resubmission after the job was refused reuses the model made for the same preset */
                                        const key = JSON.stringify([preset, config, training]);
                                        if (!lastPreset || lastPreset.key !== key) {
                                                const m = await api('POST', '/v1/models', {json: {
                                                        name: preset + ' for ' + (d ? d.name : training), preset, config}});
                                                remember('model', m);
                                                lastPreset = {key, id: m.id};
                                        }
                                        model = lastPreset.id;
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
                        if (target.value.trim())
                                spec.task.target = target.value.trim();
                        if (f.optimizer.value === 'momentum' || f.optimizer.value === 'nesterov')
                                spec.hyperparameters.momentum = num(f.momentum);
                        if (num(f.label_smoothing))
                                spec.hyperparameters.label_smoothing = num(f.label_smoothing);
                        if (valSelect.value)
                                spec.validation_file = valSelect.value;
                        else
                                spec.validation_split = num(f.validation_split);
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
                        if (dry) {
                                estimateBox.replaceChildren(h('p', {class: 'muted'}, 'Timing a few batches on the daemon…'));
                                estimateBox.hidden = false;
                                showEstimate(await api('POST', '/v1/jobs?dry_run=true', {json: spec}));
                                return;
                        }
                        const body = JSON.stringify(spec);
                        if (!lastPost || lastPost.body !== body)
                                lastPost = {body, key: 'dash-' + Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 10)};
                        const job = await api('POST', '/v1/jobs', {json: spec, headers: {'Idempotency-Key': lastPost.key}});
                        location.hash = '#/jobs/' + encodeURIComponent(job.id);
                } catch (e) {
                        if (dry)
                                estimateBox.hidden = true;
                        if (!(e instanceof ApiError))
                                reportError(e);
                        else
                                showFieldError(form, e);
                } finally {
                        submitBtn.disabled = estimateBtn.disabled = false;
                }
        });
        return null;
}
