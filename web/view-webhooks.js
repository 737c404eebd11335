/* view-webhooks.js - the webhooks page (#/webhooks): every endpoint (URL, the
 * events it receives, when it was made) with Test, Deliveries and Delete; a
 * form to register one (URL, event checkboxes with job.epoch unticked, a
 * description), after which its signing secret is shown once, to copy; an
 * endpoint's delivery log (state, attempts, last status or error) on demand.
 *
 * Not for: signing or verifying (the daemon signs; docs/api.md shows how a
 * receiver verifies). */
import { api, listAll, reportError, ApiError } from './api.js';
import { h, setView, headRow } from './dom.js';
import { fmtTime } from './format.js';

const TYPES = ['job.queued', 'job.running', 'job.paused', 'job.succeeded', 'job.failed', 'job.cancelled',
               'job.warning', 'job.epoch'];
const OPT_IN = new Set(['job.epoch']); /* not ticked by default, as the API's default set */

function deliveriesTable(items) {
        if (!items.length)
                return h('p', {class: 'empty'}, 'No deliveries yet.');
        return h('table', {class: 'deliveries'},
                 headRow(['Delivery', 'Event', 'Job', 'State', 'Attempts', 'Last answer', 'Next attempt', 'Created']),
                 h('tbody', {}, items.map((d) => h('tr', {'data-delivery': d.id, 'data-state': d.state},
                         h('td', {class: 'mono'}, d.id),
                         h('td', {}, d.event_type),
                         h('td', {}, d.job ? h('a', {href: '#/jobs/' + encodeURIComponent(d.job), class: 'mono'}, d.job) : '—'),
                         h('td', {class: 'state-' + d.state}, d.state),
                         h('td', {class: 'num'}, String(d.attempts)),
                         h('td', {}, d.last_error ? d.last_error : d.last_status ? 'HTTP ' + d.last_status : '—'),
                         h('td', {}, d.next_attempt_at ? fmtTime(d.next_attempt_at) : '—'),
                         h('td', {}, fmtTime(d.created_at))))));
}

export function viewWebhooks() {
        const tbody = h('tbody');
        const url = h('input', {type: 'url', id: 'wh-url', required: true, size: 48, maxlength: 2048,
                                placeholder: 'https://ci.example.com/hooks/finetuned', 'aria-describedby': 'wh-error'});
        const desc = h('input', {type: 'text', id: 'wh-desc', maxlength: 256});
        const boxes = TYPES.map((t) => h('label', {class: 'check'},
                                         h('input', {type: 'checkbox', name: 'event_types', value: t, checked: !OPT_IN.has(t)}), ' ', t));
        const err = h('p', {class: 'field-error', role: 'alert', id: 'wh-error'});
        const secret = h('div', {id: 'wh-secret', class: 'notice', role: 'status', hidden: true});
        const form = h('form', {id: 'webhook-form'},
                       h('div', {class: 'toolbar'},
                         h('label', {for: 'wh-url'}, 'URL'), url,
                         h('label', {for: 'wh-desc'}, 'Description'), desc),
                       h('fieldset', {class: 'toolbar'}, h('legend', {}, 'Events'), boxes),
                       h('div', {class: 'toolbar'}, h('button', {type: 'submit', class: 'primary'}, 'Add webhook'), err));
        const log = h('section', {id: 'wh-deliveries', 'aria-live': 'polite'});
        setView('Webhooks', h('h1', {}, 'Webhooks'),
                h('p', {}, 'Signed job events (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature) are ' +
                           'POSTed to these URLs and retried for a day; see docs/api.md for how a receiver verifies them.'),
                form, secret,
                h('div', {class: 'table-wrap'},
                  h('table', {id: 'webhooks-table'},
                    headRow(['URL', 'Events', 'Description', 'Created', ''], {2: 'hide-narrow', 3: 'hide-narrow'}),
                    tbody)),
                log);

        async function showDeliveries(w) {
                const page = await api('GET', '/v1/webhooks/' + encodeURIComponent(w.id) + '/deliveries?limit=50');
                log.dataset.webhook = w.id;
                log.replaceChildren(h('h2', {}, 'Deliveries to ', h('span', {class: 'mono'}, w.url)),
                                    h('button', {type: 'button', onclick: () => showDeliveries(w).catch(reportError)}, 'Refresh'),
                                    deliveriesTable(page.data));
        }
        async function test(w) {
                await api('POST', '/v1/webhooks/' + encodeURIComponent(w.id) + '/test', {json: {}});
                await showDeliveries(w);
        }
        async function remove(w) {
                await api('DELETE', '/v1/webhooks/' + encodeURIComponent(w.id));
                if (log.dataset.webhook === w.id)
                        log.replaceChildren();
                await load();
        }
        async function load() {
                const items = await listAll('/v1/webhooks', 100);
                tbody.replaceChildren(...items.map((w) => h('tr', {'data-webhook': w.id},
                        h('td', {class: 'mono', title: w.id}, w.url),
                        h('td', {}, w.event_types.join(', ')),
                        h('td', {class: 'hide-narrow'}, w.description || '—'),
                        h('td', {class: 'hide-narrow'}, fmtTime(w.created_at)),
                        h('td', {},
                          h('button', {type: 'button', 'aria-label': 'send a test event to ' + w.url,
                                       onclick: () => test(w).catch(reportError)}, 'Test'), ' ',
                          h('button', {type: 'button', 'aria-label': 'deliveries to ' + w.url,
                                       onclick: () => showDeliveries(w).catch(reportError)}, 'Deliveries'), ' ',
                          h('button', {type: 'button', class: 'danger', 'aria-label': 'delete webhook ' + w.url,
                                       onclick: () => remove(w).catch(reportError)}, 'Delete')))));
                if (!items.length)
                        tbody.append(h('tr', {}, h('td', {colspan: 5, class: 'empty'}, 'No webhooks yet.')));
        }
        form.addEventListener('submit', async (ev) => {
                ev.preventDefault();
                err.textContent = '';
                url.removeAttribute('aria-invalid');
                const types = boxes.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
                try {
                        const w = await api('POST', '/v1/webhooks', {json: {url: url.value, event_types: types,
                                                                            description: desc.value || undefined}});
                        secret.replaceChildren(
                                h('p', {}, 'Webhook added. Its signing secret is shown only now: give it to the receiver.'),
                                h('code', {id: 'wh-secret-value'}, w.secret));
                        secret.hidden = false;
                        url.value = '';
                        desc.value = '';
                        await load();
                } catch (e) {
                        if (!(e instanceof ApiError))
                                return reportError(e);
                        err.textContent = e.message;
                        if (e.param === 'url')
                                url.setAttribute('aria-invalid', 'true');
                }
        });
        load().catch(reportError);
        return null;
}
