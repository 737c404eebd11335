/* catalog.js - names for the dataset and model ids that jobs carry: a
 * per-page cache of GET /v1/datasets/{id} and /v1/models/{id} answers (names
 * never change), filled by the lists the views load anyway (remember()) and
 * by resolve() for ids not seen yet; a deleted one is remembered as gone.
 * refLabel() draws a reference as its name with the id as small text and
 * tooltip, or the bare id while the name is unknown.
 *
 * Not for: the datasets and models pages themselves (view-datasets.js,
 * view-models.js). */
import { api, ApiError } from './api.js';
import { h } from './dom.js';

const PATHS = {dataset: '/v1/datasets/', model: '/v1/models/'};
const known = {dataset: new Map(), model: new Map()}; /* id -> the object, or null when it is gone */
const pending = {dataset: new Map(), model: new Map()}; /* id -> the request in flight */

/* Keep objects the caller has (a list page, an upload's answer). */
export function remember(kind, ...objs) {
        for (const o of objs.flat())
                known[kind].set(o.id, o);
}

/* The object for id (null when it was deleted, undefined while unknown). */
export const lookup = (kind, id) => known[kind].get(id);

/* Fetch every id of ids not known yet, at most 6 at a time (the browser's
 * connections to one host). Other failures leave the id unknown, to try
 * again on the next call. */
export async function resolve(kind, ids) {
        const todo = [...new Set(ids)].filter((id) => id && !known[kind].has(id));
        const one = (id) => {
                if (!pending[kind].has(id))
                        pending[kind].set(id, api('GET', PATHS[kind] + encodeURIComponent(id))
                                .then((o) => known[kind].set(id, o))
                                .catch((e) => {
                                        if (e instanceof ApiError && e.status === 404)
                                                known[kind].set(id, null);
                                })
                                .finally(() => pending[kind].delete(id)));
                return pending[kind].get(id);
        };
        for (let i = 0; i < todo.length; i += 6)
                await Promise.all(todo.slice(i, i + 6).map(one));
}

/* A reference as its name over its id (both text; the id is the tooltip too).
 * opts.href makes the name a link; a deleted object says so. */
export function refLabel(kind, id, opts) {
        if (!id)
                return h('span', {class: 'muted'}, '—');
        const o = lookup(kind, id);
        const name = o ? o.name : o === null ? kind + ' deleted' : id;
        const main = opts && opts.href ? h('a', {href: opts.href, class: 'ref-name'}, name) :
                                         h('span', {class: 'ref-name'}, name);
        return h('span', {class: 'ref', title: id, 'data-id': id}, main,
                 o !== undefined ? h('small', {class: 'ref-id mono'}, id) : null);
}

/* Option labels for a select of objects: the name, and the id too where two share a name. */
export function optionLabels(objs) {
        const count = new Map();
        for (const o of objs)
                count.set(o.name, (count.get(o.name) || 0) + 1);
        return new Map(objs.map((o) => [o.id, count.get(o.name) > 1 ? o.name + ' · ' + o.id : o.name]));
}
