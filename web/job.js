/* job.js - reading a job as GET /v1/jobs/{id} sends it (api/jobs.c
 * api_job_json): its states, the strategy and epochs from its echoed spec, how
 * far it is from progress (epoch, batch/batches, step/steps, eta_seconds),
 * and its "best" epoch; plus the small pieces every job view draws from them
 * (state badge, progress bar cell, best text).
 *
 * Not for: fetching jobs (the views do) or dataset/model names (catalog.js). */
import { h } from './dom.js';
import { isNum, fmtNum, fmtDuration } from './format.js';

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
export const STATES = ['queued', 'running', 'cancelling', 'paused', 'succeeded', 'failed', 'cancelled'];
export const isLive = (job) => job.state === 'queued' || job.state === 'running';
/* A cancel reaches it: live, or paused. */
export const isCancellable = (job) => isLive(job) || job.state === 'paused';

export function stateBadge(state) {
        return h('span', {class: 'state state-' + state, 'data-state': state}, state);
}

/* A predictions job (POST /v1/models/{id}/predictions) has no epochs: its spec is {kind, model, dataset, target}
 * and its progress {rows_done, rows, fraction}. */
export const isPredictions = (job) => job.kind === 'predictions';
export const jobStrategy = (job) => (isPredictions(job) ? 'predictions' : job.spec.strategy.type);
export const jobEpochs = (job) => (isPredictions(job) ? 0 : job.spec.hyperparameters.epochs);

/* {frac, within, epoch, epochs, eta}: the run's fraction done, the current
 * epoch's fraction (null before the first report), the epoch being trained,
 * the epochs asked for and the seconds left (null when unknown). */
export function progressOf(job) {
        const p = job.progress || {}, epochs = jobEpochs(job);
        const epoch = isNum(p.epoch) ? p.epoch : 0;
        const within = isNum(p.batch) && p.batches ? Math.min(1, p.batch / p.batches) : null;
        let frac = 0;
        if (isPredictions(job))
                frac = job.state === 'succeeded' ? 1 : isNum(p.fraction) ? p.fraction : 0;
        else if (job.state === 'succeeded')
                frac = 1;
        else if (isNum(p.step) && p.steps)
                frac = Math.min(1, p.step / p.steps);
        else if (epochs)
                frac = Math.min(1, (Math.max(0, epoch - 1) + (within || 0)) / epochs);
        return {frac, within, epoch, epochs, eta: isNum(p.eta_seconds) ? p.eta_seconds : null};
}

/* The jobs list's progress cell: a bar and "epoch 3/10 · ETA 2 min 5 s". */
export function progressCell(job) {
        const pr = progressOf(job), p = job.progress || {};
        let text = job.state === 'queued' ? 'waiting' : pr.epoch ? 'epoch ' + pr.epoch + '/' + pr.epochs : 'starting';
        if (job.state === 'succeeded')
                text = (job.metrics ? job.metrics.epochs_run : pr.epochs) + ' epochs, done';
        else if (TERMINAL.has(job.state))
                text = pr.epoch ? 'stopped in epoch ' + pr.epoch + '/' + pr.epochs : 'stopped before its first epoch';
        else if (pr.eta !== null)
                text += ' · ETA ' + fmtDuration(pr.eta);
        if (isPredictions(job))
                text = job.state === 'succeeded' ? (job.metrics ? job.metrics.rows : p.rows_done) + ' rows predicted' :
                       job.state === 'queued' ? 'waiting' :
                       isNum(p.rows_done) ? 'row ' + p.rows_done + '/' + p.rows : job.state;
        const bar = h('progress', {max: 1, 'aria-label': 'progress of job ' + job.id});
        bar.value = pr.frac;
        return h('div', {class: 'progress'}, bar, h('small', {}, text));
}

/* "val_accuracy 0.9500 (epoch 7)" from the job's "best", or "—" while it has none. */
export function bestText(best) {
        return best ? best.metric + ' ' + fmtNum(best.value) + ' (epoch ' + best.epoch + ')' : '—';
}
