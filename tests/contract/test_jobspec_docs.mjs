// test_jobspec_docs.mjs - docs/job-spec.md against the job spec's schema
// (jobspec_schema(), from the parser's table): every field of the schema has
// its row (top-level fields in "Top level", `a.b.c` as row `b.c` of section
// `a`), every row names a field of the schema, and each row's default is the
// schema's default (jobspec_init's).
//   node test_jobspec_docs.mjs JOBSPEC_CHECK SOURCE_ROOT
// Not for: whether the parser and the schema agree (test_jobspec_schema.mjs).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { ok, doneTesting } from '../browser/harness.mjs';
import { jobspecSchema } from './schema.mjs';

const [bin, root] = process.argv.slice(2);
const schema = jobspecSchema(bin);
const text = readFileSync(join(root, 'docs/job-spec.md'), 'utf8');

// section name -> Map(row key -> cells), for "## Top level" and "### `name`" sections.
const sections = new Map();
let current = null;
for (const line of text.split('\n')) {
        let m;
        if ((m = /^##+ (.*)$/.exec(line))) {
                const t = m[1].trim();
                current = t === 'Top level' ? '' : (/^`([a-z_]+)`$/.exec(t) || [])[1] ?? null;
                if (current !== null && !sections.has(current))
                        sections.set(current, new Map());
        } else if (current !== null && (m = /^\| `([^`]+)` \|(.*)$/.exec(line))) {
                sections.get(current).set(m[1], m[2].split('|').map((c) => c.trim()));
        }
}
ok(sections.has('') && sections.size > 5, `docs/job-spec.md has the top-level table and ${sections.size - 1} sections`);

const fields = [];
(function walk(s, prefix) {
        for (const [k, v] of Object.entries(s.properties || {})) {
                fields.push({path: [...prefix, k], schema: v});
                if (v.properties)
                        walk(v, [...prefix, k]);
        }
})(schema, []);

function row(path) {
        const [section, key] = path.length === 1 ? ['', path[0]] : [path[0], path.slice(1).join('.')];
        const rows = sections.get(section);
        return rows ? rows.get(key) : undefined;
}
const where = (path) => (path.length === 1 ? `'Top level' row \`${path[0]}\`` :
                         `section \`${path[0]}\` row \`${path.slice(1).join('.')}\``);

for (const f of fields) {
        const name = f.path.join('.');
        const cells = row(f.path);
        ok(cells !== undefined, `${name} is documented (${where(f.path)})`);
        if (!cells || !('default' in f.schema) || f.schema.properties)
                continue;
        // cells: [type, default, meaning]; the default is the first `...` of its cell, as JSON
        const m = /`([^`]*)`/.exec(cells[1] || '');
        let documented;
        try {
                documented = m ? JSON.parse(m[1]) : undefined;
        } catch {
                documented = undefined;
        }
        ok(m && isDeepStrictEqual(documented, f.schema.default),
           `${name}: the documented default ${m ? m[1] : '(none)'} is the schema's ${JSON.stringify(f.schema.default)}`);
}

// and no row names a field the schema does not have
const known = new Set(fields.map((f) => (f.path.length === 1 ? ':' + f.path[0] :
                                         f.path[0] + ':' + f.path.slice(1).join('.'))));
const stale = [];
for (const [section, rows] of sections)
        for (const key of rows.keys())
                if (!known.has(section + ':' + key))
                        stale.push(section ? `${section}.${key}` : key);
ok(stale.length === 0, 'every row of docs/job-spec.md names a field of the schema', stale.join(', '));

process.exit(doneTesting() ? 0 : 1);
