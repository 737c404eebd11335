// schema.mjs - what the contract tests share: Ajv for JSON Schema draft
// 2020-12 (the dialect of the OpenAPI 3.1 document) in strict mode, the
// document's components loaded so that their $refs resolve, and the schema an
// operation declares for one status and media type. Not for: the checks
// themselves (test_*.mjs), the daemon and TAP (../browser/harness.mjs).
import Ajv2020 from 'ajv/dist/2020.js';
import { spawnSync } from 'node:child_process';

const DOC_ID = 'urn:finetuned:openapi';

// A strict Ajv: unknown keywords, ignored types and the like are errors, so a
// schema the daemon writes is checked for being well-formed JSON Schema too.
export function newAjv() {
        return new Ajv2020({strict: true, strictRequired: false, allErrors: true, validateFormats: false});
}

// Deep copy with every "#/components/schemas/X" rewritten to point into the
// container registered under DOC_ID ($defs/X).
function relink(v) {
        if (Array.isArray(v))
                return v.map(relink);
        if (v && typeof v === 'object') {
                const out = {};
                for (const [k, x] of Object.entries(v))
                        out[k] = k === '$ref' && typeof x === 'string' && x.startsWith('#/components/schemas/')
                                         ? DOC_ID + '#/$defs/' + x.slice('#/components/schemas/'.length)
                                         : relink(x);
                return out;
        }
        return v;
}

// The document's components/schemas in ajv; returns {ajv, component(name),
// compile(schema)} where compile takes a schema from anywhere in the document.
export function loadDocument(doc) {
        const ajv = newAjv();
        ajv.addSchema({$id: DOC_ID, $defs: relink(doc.components.schemas)});
        const cache = new Map();
        return {
                ajv,
                component(name) {
                        return ajv.getSchema(DOC_ID + '#/$defs/' + name);
                },
                compile(schema) {
                        const key = JSON.stringify(schema);
                        if (!cache.has(key))
                                cache.set(key, ajv.compile(relink(schema)));
                        return cache.get(key);
                },
        };
}

// The response object an operation declares for status (or its default),
// with a components/responses $ref followed.
export function declaredResponse(doc, path, method, status) {
        const op = doc.paths[path] && doc.paths[path][method.toLowerCase()];
        if (!op)
                return null;
        let r = op.responses[String(status)] || null;
        if (r && r.$ref)
                r = doc.components.responses[r.$ref.split('/').pop()];
        return r;
}

// The path template of the document that url (no query) matches.
export function pathTemplate(doc, url) {
        const segs = url.split('?')[0].split('/');
        for (const p of Object.keys(doc.paths)) {
                const ps = p.split('/');
                if (ps.length === segs.length && ps.every((s, i) => /^\{.*\}$/.test(s) ? segs[i] !== '' : s === segs[i]))
                        return p;
        }
        return null;
}

// Run the parser filter (jobspec_check) over specs: one verdict per spec.
export function parserVerdicts(bin, specs) {
        const input = specs.map((s) => (typeof s === 'string' ? s : JSON.stringify(s)) + '\n').join('');
        const r = spawnSync(bin, [], {input, encoding: 'utf8', maxBuffer: 64 << 20});
        if (r.status !== 0)
                throw new Error(`${bin} exited with ${r.status}: ${r.stderr}`);
        return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}

export function jobspecSchema(bin) {
        const r = spawnSync(bin, ['--schema'], {encoding: 'utf8'});
        if (r.status !== 0)
                throw new Error(`${bin} --schema exited with ${r.status}: ${r.stderr}`);
        return JSON.parse(r.stdout);
}

export function errorsText(validate) {
        return (validate.errors || []).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
}
