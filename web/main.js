/* main.js - the dashboard's entry point, the one module index.html loads
 * (after Debian's Chart.js, a classic script): starts the router and shows
 * the daemon's version in the header. Every other file is imported from
 * here, directly or not; each says what it is for:
 *
 *   api.js       API client: token, errors, lists, downloads, polling
 *   events.js    a job's event stream (SSE over fetch, Last-Event-ID)
 *   job.js       reading a job: states, progress, best epoch
 *   dataset.js   reading a dataset's schema, uploading
 *   catalog.js   dataset and model names for ids
 *   charts.js    per-epoch line charts (Chart.js)
 *   dom.js       building elements, the view area, the banner
 *   format.js    numbers, durations, sizes, times as text
 *   router.js    #/routes to views
 *   view-*.js    one per page: jobs, job, submit, datasets, models, compare
 *
 * Every string from the API is put into the page as text, never as HTML.
 * Not for: looks (app.css) or the page skeleton (index.html). */
import { api } from './api.js';
import { $, showBanner } from './dom.js';
import { startRouter } from './router.js';

/* Modules run after the document is parsed and after the deferred Chart.js. */
if (typeof window.Chart !== 'function') {
        showBanner('the chart library did not load');
} else {
        startRouter();
        api('GET', '/v1/version').then((v) => {
                $('#version').textContent = 'finetuned ' + v.version + ' · oneDNN ' + v.onednn.version + ' ' + v.onednn.isa;
        }).catch(() => {});
}
