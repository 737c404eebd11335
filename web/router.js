/* router.js - the hash router: #/jobs, #/jobs/{id}, #/submit, #/datasets,
 * #/models, #/models/{id}/explain, #/compare (with ?query arguments), #/webhooks each map to one view function,
 * which draws into <main> and may return a teardown (close streams, stop
 * polls, destroy charts) that runs before the next view. Marks the current
 * navigation link; anything else is a "not found" page.
 *
 * Not for: the views themselves (view-*.js). */
import { h, setView, showBanner, view } from './dom.js';
import { viewJobs } from './view-jobs.js';
import { viewJob } from './view-job.js';
import { viewSubmit } from './view-submit.js';
import { viewDatasets } from './view-datasets.js';
import { viewModels } from './view-models.js';
import { viewCompare } from './view-compare.js';
import { viewExplain } from './view-explain.js';
import { viewWebhooks } from './view-webhooks.js';

/* [pattern over the path after "#/", view(params, ...captures), navigation entry] */
const ROUTES = [
        [/^jobs\/([^/?]+)$/, viewJob, 'jobs'],
        [/^jobs$/, viewJobs, 'jobs'],
        [/^submit$/, viewSubmit, 'submit'],
        [/^datasets$/, viewDatasets, 'datasets'],
        [/^models$/, viewModels, 'models'],
        [/^models\/([^/?]+)\/explain$/, viewExplain, 'models'],
        [/^compare$/, viewCompare, 'compare'],
        [/^webhooks$/, viewWebhooks, 'webhooks'],
];

let cleanup = null; /* the current view's teardown */

function markNav(nav) {
        for (const a of document.querySelectorAll('nav a'))
                if (a.dataset.nav === nav)
                        a.setAttribute('aria-current', 'page');
                else
                        a.removeAttribute('aria-current');
}

/* Draw the view for location.hash (the jobs list for none). */
export function route() {
        if (cleanup) {
                cleanup();
                cleanup = null;
        }
        showBanner('');
        const hash = location.hash.replace(/^#\/?/, '') || 'jobs';
        const q = hash.indexOf('?');
        const path = q < 0 ? hash : hash.slice(0, q);
        const params = new URLSearchParams(q < 0 ? '' : hash.slice(q + 1));
        for (const [re, fn, nav] of ROUTES) {
                const m = re.exec(path);
                if (!m)
                        continue;
                let args;
                try {
                        args = m.slice(1).map(decodeURIComponent);
                } catch (e) {
                        break; /* a malformed %-escape: not a page */
                }
                markNav(nav);
                cleanup = fn(params, ...args) || null;
                return;
        }
        markNav(null);
        setView('Not found', h('h1', {}, 'Not found'),
                h('p', {}, 'No page ', h('code', {}, location.hash), '. ', h('a', {href: '#/jobs'}, 'Jobs')));
}

/* Follow the address from now on; focus moves to the new content. */
export function startRouter() {
        window.addEventListener('hashchange', () => {
                route();
                view().focus({preventScroll: true});
        });
        route();
}
