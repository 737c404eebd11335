/* dom.js - building the page: h() makes elements (every string becomes a
 * text node, never HTML, so nothing from the API is parsed as markup), $
 * finds them, setView() replaces the content area, showBanner() shows or
 * clears the error line under the header.
 *
 * Not for: talking to the API (api.js) or any one view (view-*.js). */

/* h('a', {href: '#'}, 'text', child...): attributes, "class", "text",
 * on<event> listeners and DOM properties (for non-string values); children
 * are nodes or strings, nested arrays flattened, null/undefined/false skipped. */
export function h(tag, attrs, ...children) {
        const el = document.createElement(tag);
        for (const [k, v] of Object.entries(attrs || {})) {
                if (v === undefined || v === null || v === false)
                        continue;
                if (k === 'class')
                        el.className = v;
                else if (k === 'text')
                        el.textContent = v;
                else if (k.startsWith('on'))
                        el.addEventListener(k.slice(2), v);
                else if (k in el && typeof v !== 'string')
                        el[k] = v;
                else
                        el.setAttribute(k, v === true ? '' : String(v));
        }
        for (const c of children.flat()) {
                if (c === undefined || c === null || c === false)
                        continue;
                el.append(c instanceof Node ? c : document.createTextNode(String(c)));
        }
        return el;
}

export const $ = (sel, root) => (root || document).querySelector(sel);

/* The content area every view draws into (index.html's <main id="view">). */
export const view = () => $('#view');

export function setView(title, ...children) {
        document.title = title + ' · finetuned';
        view().replaceChildren(...children);
}

export function showBanner(message) {
        const b = $('#banner');
        b.textContent = message || '';
        b.hidden = !message;
}

/* A table's header row: names, with optional classes per column ({i: 'hide-narrow'}). */
export function headRow(names, classes) {
        return h('thead', {}, h('tr', {}, names.map((t, i) => h('th', {scope: 'col', class: (classes || {})[i] || null}, t))));
}
