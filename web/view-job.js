/* view-job.js - one job (#/jobs/{id}): train/validation loss and validation
 * metric curves that gain a point as each epoch event arrives on the job's
 * event stream (events.js), progress within the run and the epoch from the
 * job JSON polled every 1.5 s while it is live, its best epoch, the final
 * metrics with the per-class table and the confusion matrix, the setup it
 * was given (base model and data by name), downloads, pause, resume, cancel and delete; the job's
 * `warning` events (training-health guards, class_imbalance, disk_full) as a notice that grows as they
 * arrive; its reproducibility receipt (collapsed), a Replay button that opens the new job, and for a
 * replay whether its result came out identical (or which receipt fields differ).
 *
 * Not for: the event stream's reconnects (events.js) or charts (charts.js). */
import { api, ApiError, download, reportError, poll } from './api.js';
import { h, setView } from './dom.js';
import { isNum, fmtNum, fmtDuration, fmtTime } from './format.js';
import { TERMINAL, isLive, isCancellable, stateBadge, jobStrategy, progressOf, isPredictions } from './job.js';
import { calibrationSection } from './calibration.js';
import { followEvents } from './events.js';
import { PALETTE, lineChart, chartPoint, chartCanvas, chartUpdate } from './charts.js';
import { resolve, lookup, refLabel } from './catalog.js';
import { examplesSection } from './view-examples.js';

const POLL_MS = 1500;
/* Fields of an epoch event that are not a per-epoch number worth a column. */
const NOT_COLUMNS = new Set(['type', 'epochs']);

/* A spec object as a definition list, nested objects flattened to a.b keys. */
function kvList(obj) {
        const dl = h('dl', {class: 'kv'});
        const walk = (o, p) => {
                for (const [k, v] of Object.entries(o || {})) {
                        const key = p ? p + '.' + k : k;
                        if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length)
                                walk(v, key);
                        else
                                dl.append(h('dt', {}, key),
                                          h('dd', {class: 'mono'}, v !== null && typeof v === 'object' ? JSON.stringify(v) : fmtNum(v, 6)));
                }
        };
        walk(obj, '');
        return dl;
}

/* The scalar final metrics, one level of nesting flattened: macro_avg.f1. */
function metricsTable(metrics) {
        const rows = [];
        const row = (k, v) => rows.push(h('tr', {}, h('th', {scope: 'row'}, k), h('td', {class: 'num'}, fmtNum(v))));
        for (const [k, v] of Object.entries(metrics)) {
                if (isNum(v))
                        row(k, v);
                else if (v && typeof v === 'object' && !Array.isArray(v) && k !== 'confusion_matrix' && k !== 'calibration' &&
                         k !== 'curves')
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

/* per_class: [{class, precision, recall, f1, support}] (classification only). */
function perClassTable(perClass) {
        if (!Array.isArray(perClass) || !perClass.length)
                return null;
        const cols = ['precision', 'recall', 'f1', 'support'];
        return h('table', {id: 'per-class'}, h('caption', {class: 'sr-only'}, 'Per-class metrics'),
                 h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Class'), cols.map((c) => h('th', {scope: 'col', class: 'num'}, c)))),
                 h('tbody', {}, perClass.map((r) => h('tr', {}, h('th', {scope: 'row'}, r.class),
                                                       cols.map((c) => h('td', {class: 'num'}, fmtNum(r[c])))))));
}

/* confusion_matrix: {labels, matrix}, rows the true classes; a heat map whose colours only add to the numbers.
 * onPick(true, predicted), when given, makes each cell a button that shows its examples (view-examples.js). */
function confusionTable(cm, onPick) {
        if (!cm || !Array.isArray(cm.matrix) || !cm.matrix.length)
                return null;
        const names = cm.labels, m = cm.matrix;
        const max = Math.max(1, ...m.map((row) => Math.max(...row)));
        return h('table', {class: 'confusion', id: 'confusion-matrix'},
                 h('caption', {class: 'muted'}, 'rows: true class · columns: predicted class'),
                 h('thead', {}, h('tr', {}, h('th', {class: 'corner', scope: 'col'}, 'true \\ pred'),
                                   names.map((n) => h('th', {scope: 'col'}, n)))),
                 h('tbody', {}, m.map((row, i) => h('tr', {}, h('th', {scope: 'row'}, names[i]),
                         row.map((v, j) => {
                                 const t = v / max;
                                 const bg = i === j ? 'rgba(26,127,55,' + (0.08 + 0.85 * t) + ')' :
                                                      'rgba(207,34,46,' + (t > 0 ? 0.1 + 0.85 * t : 0.03) + ')';
                                 const text = onPick ? h('button', {type: 'button', class: 'cell-pick',
                                                                    'data-true': names[i], 'data-pred': names[j],
                                                                    onclick: () => onPick(names[i], names[j])}, fmtNum(v)) : fmtNum(v);
                                 return h('td', {style: 'background:' + bg + ';color:' + (t > 0.55 ? '#fff' : 'inherit'),
                                                 title: 'true ' + names[i] + ', predicted ' + names[j] + ': ' + v}, text);
                         })))));
}

export function viewJob(params, id) {
        let job = null, stream = null, stopPoll = null, resultsShown = false, left = false, calChart = null;
        const path = '/v1/jobs/' + encodeURIComponent(id);
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
        /* Pause (a queued or running job; a running one checkpoints within one batch) and resume (a paused one,
         * or a pause its worker has not reached yet): POST .../pause | .../resume, the answer drawn at once. */
        const action = (btn, verb) => async () => {
                btn.disabled = true;
                try {
                        job = await api('POST', path + '/' + verb);
                        render();
                } catch (e) {
                        reportError(e);
                        btn.disabled = false;
                }
        };
        const pauseBtn = h('button', {type: 'button', id: 'pause-job', hidden: true}, 'Pause');
        pauseBtn.onclick = action(pauseBtn, 'pause');
        const resumeBtn = h('button', {type: 'button', id: 'resume-job', hidden: true}, 'Resume');
        resumeBtn.onclick = action(resumeBtn, 'resume');
        /* Clone: a dialog with a partial job spec (JSON) merged over this job's (POST .../clone, RFC 7386:
         * null resets a field to its default); the new job's page opens. */
        const clonePatch = h('textarea', {id: 'clone-patch', rows: 8, spellcheck: 'false', class: 'mono',
                                          'aria-describedby': 'clone-help'},
                             '{\n  "hyperparameters": {"learning_rate": 0.001}\n}');
        const cloneError = h('p', {class: 'field-error', id: 'clone-error', role: 'alert'});
        const cloneDialog = h('dialog', {id: 'clone-dialog', 'aria-labelledby': 'clone-title'},
                h('form', {method: 'dialog', onsubmit: async (ev) => {
                        ev.preventDefault();
                        let patch;
                        try {
                                patch = JSON.parse(clonePatch.value.trim() || '{}');
                        } catch (e) {
                                cloneError.textContent = 'not JSON: ' + e.message;
                                return;
                        }
                        try {
                                const made = await api('POST', path + '/clone', {json: patch});
                                cloneDialog.close();
                                location.hash = '#/jobs/' + encodeURIComponent(made.id);
                        } catch (e) {
                                cloneError.textContent = e.message + (e.param ? ' (' + e.param + ')' : '');
                        }
                }},
                  h('h2', {id: 'clone-title'}, 'Clone job'),
                  h('p', {id: 'clone-help'}, 'A new job with this job\'s spec; the fields below replace its own ' +
                    '(objects merge, null restores a default).'),
                  h('label', {for: 'clone-patch'}, 'Changes (partial job spec, JSON)'), clonePatch, cloneError,
                  h('div', {class: 'actions'},
                    h('button', {type: 'submit', class: 'primary', id: 'clone-submit'}, 'Clone'),
                    h('button', {type: 'button', onclick: () => cloneDialog.close()}, 'Close'))));
        const cloneBtn = h('button', {type: 'button', id: 'clone-job', onclick: () => {
                cloneError.textContent = '';
                cloneDialog.showModal();
        }}, 'Clone…');
        const dlModel = h('button', {type: 'button', id: 'download-model', hidden: true,
                                     onclick: () => download(path + '/artifacts/model.safetensors', id + '.safetensors').catch(reportError)},
                          'Download model');
        const dlMetrics = h('button', {type: 'button', id: 'download-metrics', hidden: true,
                                       onclick: () => download(path + '/artifacts/metrics.json', id + '-metrics.json').catch(reportError)},
                            'Download metrics');
        const dlPredictions = h('button', {type: 'button', id: 'download-predictions', hidden: true,
                                           onclick: () => download(path + '/artifacts/predictions.csv', id + '-predictions.csv').catch(reportError)},
                                'Download predictions.csv');
        const replayBtn = h('button', {type: 'button', id: 'replay-job', hidden: true,
                                       title: 'queue the same spec on the same model and data as a new job',
                                       onclick: async () => {
                                               replayBtn.disabled = true;
                                               try {
                                                       const r = await api('POST', path + '/replay');
                                                       location.hash = '#/jobs/' + encodeURIComponent(r.id);
                                               } catch (e) {
                                                       reportError(e);
                                                       replayBtn.disabled = false;
                                               }
                                       }}, 'Replay');
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
        const bestLine = h('p', {id: 'job-best'});
        const errorBox = h('div', {class: 'error-box', id: 'job-error', role: 'alert', hidden: true});

        const loss = chartCanvas('loss per epoch', 'loss-chart');
        const metric = chartCanvas('validation metrics per epoch', 'metric-chart');
        const lossChart = lineChart(loss.canvas, 'loss');
        const metricChart = lineChart(metric.canvas, 'validation metric');
        const epochRows = h('tbody');
        const epochCols = new Set(['epoch']);
        const epochTable = h('table', {id: 'epoch-table'}, h('thead'), epochRows);
        const epochs = new Map(); /* epoch -> its event's data */

        const setup = h('section', {class: 'card', id: 'job-setup'});
        /* warning events, one item each (a reconnected stream may send one again: shown once) */
        const warnList = h('ul', {id: 'job-warning-list'});
        const warnings = h('section', {class: 'card warning-box', id: 'job-warnings', role: 'status', hidden: true,
                                       'aria-labelledby': 'warnings-title'},
                           h('h2', {id: 'warnings-title'}, 'Warnings'), warnList);
        const warnSeen = new Set();
        const replayLine = h('p', {id: 'job-replay', hidden: true});
        const receipt = h('details', {id: 'job-receipt', hidden: true}, h('summary', {}, 'Reproducibility receipt'));
        /* per-epoch curves and numbers: hidden for a predictions job, which has no epochs */
        const curves = h('div', {id: 'job-curves'}, h('h2', {}, 'Curves'),
                         h('div', {class: 'charts'}, loss.box, metric.box),
                         h('details', {}, h('summary', {}, 'Per-epoch numbers'), h('div', {class: 'table-wrap'}, epochTable)));
        const results = h('section', {id: 'results', 'aria-labelledby': 'results-title'});

        setView('Job ' + id,
                h('div', {class: 'toolbar'}, h('h1', {}, 'Job ', h('span', {class: 'mono'}, id)), badge,
                  pauseBtn, resumeBtn, cancelBtn, cloneBtn, replayBtn, dlModel, dlPredictions, dlMetrics, compareLink, deleteBtn),
                cloneDialog,
                errorBox,
                warnings,
                replayLine,
                h('section', {class: 'card progress-card', id: 'job-progress'}, h('h2', {}, 'Progress'),
                  h('div', {class: 'progress'}, epochText, epochBar),
                  h('div', {class: 'progress'}, stepText, stepBar), etaText, bestLine),
                curves,
                results,
                h('h2', {}, 'Setup'),
                setup,
                receipt);

        /* A warning event: {code, message, ...} (epoch, class, ... by code). */
        function onWarning(w) {
                const key = JSON.stringify(w);
                if (warnSeen.has(key))
                        return;
                warnSeen.add(key);
                warnList.append(h('li', {'data-code': w.code || ''}, h('span', {class: 'mono'}, w.code || 'warning'), ': ',
                                  w.message || '', isNum(w.epoch) && w.epoch > 0 ? ' (epoch ' + w.epoch + ')' : ''));
                warnings.hidden = false;
        }

        /* An epoch event: {epoch, epochs, step, train_loss, val_loss, val_accuracy, ..., lr, seconds, samples_per_sec}. */
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
                        if (isNum(v) && !NOT_COLUMNS.has(k))
                                epochCols.add(k);
                const cols = [...epochCols];
                epochTable.tHead.replaceChildren(h('tr', {}, cols.map((k) => h('th', {scope: 'col', class: 'num'}, k))));
                epochRows.replaceChildren(...[...epochs.keys()].sort((a, b) => a - b).map((k) =>
                        h('tr', {'data-epoch': k}, cols.map((col) => h('td', {class: 'num'}, fmtNum(epochs.get(k)[col]))))));
        }

        function onEvent(data, type) {
                if (type === 'epoch')
                        onEpoch(data);
                else if (type === 'warning')
                        onWarning(data);
                else if (type === 'status' && job) {
                        job.state = data.state;
                        if (isNum(data.attempt))
                                job.attempt = data.attempt;
                        render();
                        if (TERMINAL.has(data.state))
                                refresh().catch(reportError); /* the final metrics and the result model */
                }
        }

        function renderProgress() {
                const pr = progressOf(job), p = job.progress || {};
                if (isPredictions(job)) {
                        epochBar.value = stepBar.value = pr.frac;
                        epochText.textContent = job.state === 'succeeded' ? 'all rows' : job.state === 'queued' ? 'queued' :
                                isNum(p.rows_done) ? 'row ' + p.rows_done + ' of ' + p.rows : job.state;
                        stepText.textContent = 'rows';
                        etaText.textContent = '';
                        return;
                }
                const run = job.metrics ? job.metrics.epochs_run : null;
                epochBar.value = pr.frac;
                epochText.textContent =
                        job.state === 'succeeded' ? (run && run < pr.epochs ? run + ' of ' + pr.epochs + ' epochs (stopped early)' :
                                                     'all ' + pr.epochs + ' epochs') :
                        TERMINAL.has(job.state) ? job.state + (pr.epoch ? ' in epoch ' + pr.epoch + ' of ' + pr.epochs : ' before its first epoch') :
                        job.state === 'queued' ? 'queued: ' + pr.epochs + ' epochs' :
                        job.state === 'paused' ? 'paused' + (pr.epoch ? ' in epoch ' + pr.epoch + ' of ' + pr.epochs : '') :
                        pr.epoch ? 'epoch ' + pr.epoch + ' of ' + pr.epochs : 'starting: ' + pr.epochs + ' epochs';
                stepBar.value = job.state === 'succeeded' ? 1 : pr.within || 0;
                stepText.textContent = isNum(p.batch) && p.batches && !TERMINAL.has(job.state) ?
                        'batch ' + p.batch + ' of ' + p.batches + ' in this epoch' : 'within the epoch';
                const parts = [];
                if (!TERMINAL.has(job.state) && pr.eta !== null)
                        parts.push('ETA ' + fmtDuration(pr.eta));
                if (isNum(p.train_loss) && !TERMINAL.has(job.state))
                        parts.push('running train loss ' + fmtNum(p.train_loss));
                if (job.attempt > 1)
                        parts.push('attempt ' + job.attempt + ' of ' + job.max_attempts);
                etaText.textContent = parts.join(' · ');
                const b = job.best;
                bestLine.textContent = b ? 'Best ' + b.metric + ' ' + fmtNum(b.value) + ' at epoch ' + b.epoch +
                                           (b.mode === 'max' ? ' (higher is better)' : ' (lower is better)') :
                        job.state === 'queued' || isLive(job) ? 'No best epoch yet.' : 'No epoch reported a validation metric.';
        }

        function renderResults() {
                if (resultsShown || job.state !== 'succeeded' || !job.metrics)
                        return;
                resultsShown = true;
                const r = job.metrics, m = r.metrics || {};
                const scalar = metricsTable(m);
                const overall = [h('h3', {}, 'Overall'),
                                 scalar ? h('div', {class: 'table-wrap'}, scalar) : h('p', {class: 'muted'}, 'no metrics recorded')];
                const byClass = [];
                const pc = perClassTable(m.per_class);
                if (pc)
                        byClass.push(h('h3', {}, 'Per class'), h('div', {class: 'table-wrap'}, pc));
                /* per-example diagnostics of a classification job: the matrix's cells pick their examples */
                const ex = m.confusion_matrix && !isPredictions(job) /* a predictions job has no per-example diagnostics */
                        ? examplesSection(job, job.validation_file || job.training_file) : null;
                const cm = confusionTable(m.confusion_matrix, ex ? ex.pick : null);
                if (cm)
                        byClass.push(h('h3', {}, 'Confusion matrix'), h('div', {class: 'table-wrap'}, cm));
                const cal = calibrationSection(m.calibration);
                if (cal) {
                        overall.push(...cal.nodes);
                        calChart = cal.chart;
                }
                if (isPredictions(job)) {
                        results.replaceChildren(h('h2', {id: 'results-title'}, r.labelled ?
                                                          'Evaluation on the dataset (' + r.rows + ' rows)' :
                                                          r.rows + ' rows predicted (the dataset has no labels)'),
                                                r.labelled ? h('div', {class: 'results-grid'}, h('div', {}, ...overall),
                                                               h('div', {}, ...byClass)) : '');
                        return;
                }
                const where = [r.split + ' data'];
                if (isNum(r.best_epoch))
                        where.push('weights of epoch ' + r.best_epoch);
                if (r.stopped_early)
                        where.push('stopped early after ' + r.epochs_run + ' epochs');
                results.replaceChildren(h('h2', {id: 'results-title'}, 'Final metrics (' + where.join(', ') + ')'),
                                        h('div', {class: 'results-grid'}, h('div', {}, ...overall), h('div', {}, ...byClass)));
                if (ex)
                        results.append(ex.node);
        }

        function render() {
                badge.replaceChildren(stateBadge(job.state));
                cancelBtn.hidden = cancelBtn.disabled = !isCancellable(job);
                const pausable = isLive(job) && !job.pause_requested;
                pauseBtn.hidden = pauseBtn.disabled = !pausable;
                const resumable = job.state === 'paused' || (job.state === 'running' && !!job.pause_requested);
                resumeBtn.hidden = resumeBtn.disabled = !resumable;
                resumeBtn.textContent = job.state === 'paused' ? 'Resume' : 'Resume (pausing…)';
                dlModel.hidden = dlMetrics.hidden = job.state !== 'succeeded';
                dlPredictions.hidden = !isPredictions(job) || job.state !== 'succeeded';
                curves.hidden = isPredictions(job);
                if (isPredictions(job))
                        dlModel.hidden = true;
                if (isPredictions(job)) /* metrics.json exists for a labelled dataset only */
                        dlMetrics.hidden = dlMetrics.hidden || !(job.metrics && job.metrics.labelled);
                deleteBtn.hidden = !TERMINAL.has(job.state);
                replayBtn.hidden = job.state !== 'succeeded' || !job.receipt || isPredictions(job);
                renderProgress();
                renderReplay();
                if (job.error) {
                        errorBox.hidden = false;
                        errorBox.textContent = 'failed: ' + job.error.message + (job.error.param ? ' (' + job.error.param + ')' : '');
                }
                /* The setup changes only when the result model or a name arrives: drawn again then, not on
                 * every poll, so a reader's open <details> stays open. */
                const named = (kind, ref) => (ref && lookup(kind, ref) !== undefined ? '=' : '?');
                const key = [job.result_model, job.attempt, named('model', job.model), named('dataset', job.training_file),
                             named('dataset', job.validation_file), named('model', job.result_model)].join('/');
                if (setup.dataset.key !== key) {
                        setup.dataset.key = key;
                        renderSetup();
                }
                renderResults();
        }

        /* the receipt (drawn once it is there: an open <details> stays open) and a replay's verdict */
        function renderReplay() {
                if (job.receipt && receipt.dataset.sha !== String(job.receipt.result_sha256)) {
                        receipt.dataset.sha = String(job.receipt.result_sha256);
                        receipt.replaceChildren(h('summary', {}, 'Reproducibility receipt'), kvList(job.receipt));
                        receipt.hidden = false;
                }
                const r = job.replay;
                if (!r) {
                        replayLine.hidden = true;
                        return;
                }
                const of = h('a', {href: '#/jobs/' + encodeURIComponent(r.of), class: 'mono'}, r.of);
                const diffs = Array.isArray(r.differences) ? r.differences : [];
                let verdict;
                if (r.identical === true)
                        verdict = ': the result is bit-identical.';
                else if (r.identical === false)
                        verdict = ': the result differs' + (diffs.length ? '; receipt fields that differ: ' + diffs.join(', ') : '') + '.';
                else
                        verdict = r.expect_identical === false ? ': not expected to be identical (' + (r.reasons || []).join('; ') + ').' :
                                                                 ': the comparison comes when it has succeeded.';
                replayLine.dataset.identical = String(r.identical);
                replayLine.replaceChildren('Replay of ', of, verdict);
                replayLine.hidden = false;
        }

        function renderSetup() {
                const spec = job.spec;
                if (isPredictions(job)) {
                        setup.replaceChildren(h('dl', {class: 'kv'},
                                h('dt', {}, 'kind'), h('dd', {}, 'predictions of a whole dataset'),
                                h('dt', {}, 'model'), h('dd', {id: 'job-model'}, refLabel('model', job.model)),
                                h('dt', {}, 'dataset'), h('dd', {id: 'job-dataset'}, refLabel('dataset', job.training_file)),
                                h('dt', {}, 'target column'), h('dd', {}, spec.target || 'the last column, or none'),
                                h('dt', {}, 'created'), h('dd', {}, fmtTime(job.created_at)),
                                h('dt', {}, 'finished'), h('dd', {}, fmtTime(job.finished_at))));
                        return;
                }
                const split = spec.validation_split ? Math.round(spec.validation_split * 100) + ' % of the training data' : 'none';
                const facts = h('dl', {class: 'kv'},
                                h('dt', {}, 'base model'), h('dd', {id: 'job-model'}, refLabel('model', job.model)),
                                h('dt', {}, 'training data'), h('dd', {id: 'job-dataset'}, refLabel('dataset', job.training_file)),
                                h('dt', {}, 'validation data'), h('dd', {id: 'job-validation'},
                                                                   job.validation_file ? refLabel('dataset', job.validation_file) : split),
                                h('dt', {}, 'strategy'), h('dd', {}, jobStrategy(job)),
                                h('dt', {}, 'created'), h('dd', {}, fmtTime(job.created_at)),
                                h('dt', {}, 'started'), h('dd', {}, fmtTime(job.started_at)),
                                h('dt', {}, 'finished'), h('dd', {}, fmtTime(job.finished_at)));
                const labels = Object.entries(job.metadata || {});
                facts.append(h('dt', {}, 'labels'),
                             h('dd', {id: 'job-metadata'},
                               labels.length ? h('ul', {class: 'labels'},
                                                 labels.map(([k, v]) => h('li', {'data-key': k}, k + ' = ' + v)))
                                             : '—'));
                if (job.suffix)
                        facts.append(h('dt', {}, 'model suffix'), h('dd', {id: 'job-suffix', class: 'mono'}, job.suffix));
                if (job.result_model)
                        facts.append(h('dt', {}, 'produced model'),
                                     h('dd', {id: 'result-model'}, refLabel('model', job.result_model, {href: '#/models'})));
                const rest = {};
                for (const k of ['task', 'preprocess', 'early_stopping', 'checkpoint', 'seed', 'device'])
                        rest[k] = spec[k];
                setup.replaceChildren(h('div', {class: 'setup-grid'},
                                        h('div', {}, h('h3', {}, 'Job'), facts),
                                        h('div', {}, h('h3', {}, 'Hyperparameters'), kvList(spec.hyperparameters),
                                          h('h3', {}, 'Strategy'), kvList(spec.strategy)),
                                        h('div', {}, h('details', {}, h('summary', {}, 'Data, task and the rest'), kvList(rest)))));
        }

        async function refresh() {
                const fresh = await api('GET', path);
                if (left)
                        return;
                if (stream) /* the daemon answers: a dropped stream reconnects now */
                        stream.nudge();
                job = fresh;
                render();
                /* names for the setup: drawn again when they arrive */
                Promise.all([resolve('model', [job.model, job.result_model]),
                             resolve('dataset', [job.training_file, job.validation_file])])
                        .then(() => {
                                if (!left)
                                        render();
                        })
                        .catch(() => {});
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
                        stopPoll = poll(POLL_MS, refresh);
        })();

        return () => {
                left = true;
                if (stream)
                        stream.close();
                if (stopPoll)
                        stopPoll();
                lossChart.destroy();
                metricChart.destroy();
                if (calChart)
                        calChart.destroy();
        };
}
