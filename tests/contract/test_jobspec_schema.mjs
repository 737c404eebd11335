// test_jobspec_schema.mjs - the job spec's JSON Schema (jobspec_schema(),
// generated from the parser's field table) against the parser itself
// (jobspec_parse through tests/contract/jobspec_check), with Ajv as the JSON
// Schema validator: the schema is well-formed draft 2020-12; every default is
// valid and is what leaving the field out means; the documented examples pass
// both; and for values generated from the schema at every field (its bounds,
// enums, types, an unknown sibling) the schema and the parser give the same
// verdict, except where one of the documented rules between fields decides.
//   node test_jobspec_schema.mjs JOBSPEC_CHECK SOURCE_ROOT
// Not for: the OpenAPI document (test_openapi.mjs), the prose (test_jobspec_docs.mjs).
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ok, diag, doneTesting } from '../browser/harness.mjs';
import { newAjv, parserVerdicts, jobspecSchema, errorsText } from './schema.mjs';

const [bin, root] = process.argv.slice(2);
const schema = jobspecSchema(bin);
const ajv = newAjv();
let validate;
try {
        validate = ajv.compile(schema);
        ok(true, 'the job spec schema compiles as JSON Schema 2020-12 in strict mode');
} catch (e) {
        ok(false, 'the job spec schema compiles as JSON Schema 2020-12 in strict mode', e.message);
        process.exit(doneTesting() ? 0 : 1);
}
ok(schema.additionalProperties === false && JSON.stringify(schema.required) === '["model","training_file"]',
   'the top level refuses unknown fields and requires model and training_file');

// ---- every field of the schema ------------------------------------------------
// [{path: ['hyperparameters', 'epochs'], schema, parent}] for every property, depth first.
function walk(s, prefix, out) {
        for (const [k, v] of Object.entries(s.properties || {})) {
                const path = [...prefix, k];
                out.push({path, schema: v, parent: s});
                if (v.properties)
                        walk(v, path, out);
        }
        return out;
}
const fields = walk(schema, [], []);
const name = (path) => path.join('.');
ok(fields.length >= 50, `the schema has ${fields.length} fields`);
const objects = fields.filter((f) => f.schema.properties);
ok(objects.every((f) => f.schema.additionalProperties === false),
   'every nested object refuses unknown fields (additionalProperties: false)', objects.map((f) => name(f.path)));
const leaves = fields.filter((f) => !f.schema.properties);
const required = (f) => (f.parent.required || []).includes(f.path[f.path.length - 1]);
const undocumented = fields.filter((f) => !f.schema.description).map((f) => name(f.path));
ok(undocumented.length === 0, 'every field has a description', undocumented);
const noDefault = leaves.filter((f) => !required(f) && !('default' in f.schema)).map((f) => name(f.path));
ok(noDefault.length === 0, 'every field but the required ones has a default', noDefault);
const badDefault = fields.filter((f) => 'default' in f.schema && !ajv.validate(f.schema, f.schema.default));
ok(badDefault.length === 0, 'every default is valid for its own field', badDefault.map((f) => name(f.path)));

// ---- the parser ----------------------------------------------------------------
const MIN = {model: 'cnn', training_file: 'train.csv'};
const byName = new Map(fields.map((f) => [name(f.path), f]));
// MIN with value at path; the objects on the way are created, with their
// other required members (normalize's mean and std) at a valid value.
function withValue(path, value) {
        const spec = structuredClone(MIN);
        let o = spec;
        for (let d = 0; d < path.length - 1; d++) {
                const k = path[d];
                if (!o[k] || typeof o[k] !== 'object') {
                        o[k] = {};
                        const parent = byName.get(name(path.slice(0, d + 1)));
                        for (const r of parent.schema.required || [])
                                o[k][r] = sample(parent.schema.properties[r]);
                }
                o = o[k];
        }
        o[path[path.length - 1]] = value;
        return spec;
}
function get(obj, path) {
        return path.reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), obj);
}

// The defaults are what an absent field means: setting each to its default
// changes nothing in what the parser makes of the spec (with its object given
// empty: an empty early_stopping turns early stopping on, with its defaults).
const [base] = parserVerdicts(bin, [MIN]);
ok(base.ok, 'the minimal spec parses', base);
const withDefaults = fields.filter((f) => 'default' in f.schema);
const baseOf = (f) => (f.path.length > 1 ? withValue(f.path.slice(0, -1), {}) : MIN);
const dv = parserVerdicts(bin, withDefaults.flatMap((f) => [withValue(f.path, f.schema.default), baseOf(f)]));
const differ = withDefaults.filter((f, i) => !dv[2 * i].ok || !dv[2 * i + 1].ok ||
                                             JSON.stringify(dv[2 * i].spec) !== JSON.stringify(dv[2 * i + 1].spec));
ok(differ.length === 0, `the ${withDefaults.length} schema defaults equal jobspec_init's (a field set to its default ` +
   'parses as the field left out)', differ.map((f) => name(f.path)));

// Every field the parser writes out is in the schema, and every field of the
// schema is in what the parser writes out: the echo of a spec with every
// object given validates, and names every schema path.
const full = {...MIN, early_stopping: {}, from_checkpoint: {job: 'job_000000000000000000000001', checkpoint: '1'}, preprocess: {normalize: {mean: [0.5], std: [0.5]}, resize: [8, 8],
                                                       channels: 3}};
const [fv] = parserVerdicts(bin, [full]);
ok(fv.ok && validate(fv.spec), 'the parser\'s echo of a full spec validates against the schema',
   fv.ok ? errorsText(validate) : fv);
const missing = fields.filter((f) => get(fv.spec, f.path) === undefined).map((f) => name(f.path));
ok(fv.ok && missing.length === 0, 'the parser\'s echo has every field of the schema', missing);

// ---- documented examples ------------------------------------------------------------
const examples = [];
const ARCH_EXAMPLE = {
        model: 'mdl_abc', training_file: 'ds_1', validation_file: 'ds_2', validation_split: 0.2,
        task: {type: 'classification', target: 'label'},
        preprocess: {dropna: true, standardize: true, shuffle: true, resize: [64, 64], channels: 3,
                     normalize: {mean: [0.5], std: [0.5]}, augment: {random_crop_padding: 4, hflip: false}},
        hyperparameters: {epochs: 10, batch_size: 64, learning_rate: 0.001, optimizer: 'adam', momentum: 0.9,
                          betas: [0.9, 0.999], weight_decay: 0.0, schedule: 'cosine', warmup_epochs: 0},
        strategy: {type: 'full', freeze: ['conv1.*', 'layer1.*'], train_batchnorm: true, layer_decay: 0.8,
                   lr_multipliers: {'fc.*': 10.0}},
        early_stopping: {metric: 'val_f1', patience: 3, min_delta: 0.0},
        seed: 42, device: 'auto',
};
examples.push(['ARCHITECTURE.md', ARCH_EXAMPLE]);
for (const doc of ['docs/job-spec.md', 'README.md', 'examples/tabular/README.md', 'examples/transfer/README.md']) {
        if (!existsSync(join(root, doc)))
                continue;
        const text = readFileSync(join(root, doc), 'utf8');
        let n = 0;
        for (const m of text.matchAll(/```json\n([\s\S]*?)```/g)) {
                let v;
                try {
                        v = JSON.parse(m[1]);
                } catch {
                        continue; /* NDJSON events, elided examples */
                }
                if (v && typeof v === 'object' && 'model' in v && 'training_file' in v)
                        examples.push([`${doc} example ${++n}`, v]);
        }
}
for (const dir of ['examples/tabular', 'examples/transfer'])
        for (const f of readdirSync(join(root, dir)).filter((f) => f.endsWith('.json')))
                examples.push([`${dir}/${f}`, JSON.parse(readFileSync(join(root, dir, f), 'utf8'))]);
const ev = parserVerdicts(bin, examples.map((e) => e[1]));
examples.forEach(([what, spec], i) => {
        const s = validate(spec);
        ok(s && ev[i].ok, `${what}: the schema and the parser accept it`, s ? ev[i] : errorsText(validate));
});

// ---- agreement on values generated from the schema --------------------------------------
// Rules between fields, which the schema states only in prose: where they
// decide, the parser refuses what the schema allows, and names one of these.
const CROSS = new Set(['preprocess.normalize.std', 'early_stopping.metric', 'hyperparameters.warmup_epochs',
                       'hyperparameters.min_lr', 'hyperparameters.label_smoothing', 'strategy.trainable']);

function typesOf(s) {
        if (s.anyOf)
                return s.anyOf.flatMap(typesOf);
        return Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
}
// A valid value of a schema (no anyOf at the top), or undefined.
function sample(s) {
        if (s.anyOf)
                return sample(s.anyOf[0]);
        if (s.enum)
                return s.enum[0];
        const t = typesOf(s)[0];
        if (t === 'string')
                return 'x'.repeat(Math.max(1, s.minLength || 0));
        if (t === 'integer')
                return s.minimum ?? 1;
        if (t === 'number')
                return s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 0.5 *
                                     ((s.maximum ?? s.exclusiveMaximum ?? s.exclusiveMinimum + 1) - s.exclusiveMinimum)
                                   : 0.5);
        if (t === 'boolean')
                return true;
        if (t === 'array')
                return Array.from({length: s.minItems || 0}, () => sample(s.items));
        if (t === 'object')
                return {};
        return null;
}
// Candidate values for one field: inside and outside every bound the schema states.
function candidates(s) {
        const out = [true, false, 0, 1, -1, 2.5, 'zz', '', {}, [], null, {zz: 1}, ['zz'], [1, 2]];
        for (const b of s.anyOf || [s]) {
                if (b.enum)
                        out.push(...b.enum, 'not_a_' + String(b.enum[0]));
                for (const k of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'])
                        if (typeof b[k] === 'number' && Math.abs(b[k]) < 2 ** 52) {
                                const step = typesOf(b).includes('integer') ? 1 : Math.max(1e-9, Math.abs(b[k]) * 1e-6);
                                out.push(b[k], b[k] - step, b[k] + step);
                        }
                if (b.maxLength !== undefined)
                        out.push('y'.repeat(b.maxLength), 'y'.repeat(b.maxLength + 1));
                if (b.type === 'array' || (Array.isArray(b.type) && b.type.includes('array'))) {
                        const item = sample(b.items);
                        for (const n of [b.minItems || 0, (b.minItems || 0) - 1, b.maxItems, (b.maxItems ?? 4) + 1])
                                if (n !== undefined && n >= 0 && n <= 100)
                                        out.push(Array.from({length: n}, () => item));
                        for (const bad of candidates(b.items).slice(0, 14))
                                out.push(Array.from({length: Math.max(1, b.minItems || 0)}, () => bad));
                }
                if (b.additionalProperties && typeof b.additionalProperties === 'object') {
                        const v = sample(b.additionalProperties);
                        out.push({'fc.*': v}, {'': v}, {['z'.repeat(b.propertyNames.maxLength + 1)]: v},
                                 Object.fromEntries(Array.from({length: b.maxProperties + 1}, (_, i) => ['g' + i, v])));
                        for (const bad of [-1, 'x', null, 1e5])
                                out.push({'fc.*': bad});
                }
        }
        return out;
}

let total = 0;
for (const f of fields) {
        const values = f.schema.properties ? [null, 1, 'x', [], {zz_unknown: 1}] : candidates(f.schema);
        const specs = values.map((v) => withValue(f.path, v));
        const pv = parserVerdicts(bin, specs);
        const disagree = [], cross = [];
        specs.forEach((spec, i) => {
                const s = validate(spec);
                if (s === pv[i].ok) {
                        if (!s && !(pv[i].param || '').startsWith(name(f.path)))
                                disagree.push({value: values[i], why: `param ${pv[i].param} does not name the field`});
                        return;
                }
                if (s && !pv[i].ok && CROSS.has(pv[i].param))
                        cross.push(values[i]);
                else
                        disagree.push({value: values[i], schema: s, parser: pv[i].ok ? 'accepts' : pv[i].message,
                                       ajv: s ? '' : errorsText(validate)});
        });
        total += specs.length;
        ok(disagree.length === 0, `${name(f.path)}: the schema and the parser agree on ${specs.length - cross.length} ` +
           `values${cross.length ? ` (${cross.length} decided by a rule between fields)` : ''}`, disagree);
}
diag(`${total} generated specs`);

// An unknown field at every level is refused by both, and named.
for (const level of [[], ...objects.map((f) => f.path)]) {
        const spec = level.length ? withValue([...level, 'zz_unknown'], 1) : {...MIN, zz_unknown: 1};
        const [pv] = parserVerdicts(bin, [spec]);
        ok(!validate(spec) && !pv.ok && pv.param === name([...level, 'zz_unknown']),
           `an unknown field in ${level.length ? name(level) : 'the top level'} is refused by both`, pv);
}

// ---- hand-written cases: the JSON Schema notion of an integer, and the rules between fields ----
const raw = [
        ['{"model":"cnn","training_file":"t.csv","hyperparameters":{"epochs":2.0}}', true, null, 'epochs 2.0 is an integer'],
        ['{"model":"cnn","training_file":"t.csv","seed":7.0}', true, null, 'seed 7.0 is an integer'],
        ['{"model":"cnn","training_file":["a.idx","b.idx"]}', true, null, 'an IDX pair'],
        ['{"model":{"preset":"mlp"},"training_file":"t.csv"}', true, null, 'an inline model spec'],
        ['{"model":"cnn","training_file":"t.csv","preprocess":{"normalize":{"mean":0.5,"std":0.25}}}', true, null,
         'normalize with bare numbers'],
        ['{"model":"cnn","training_file":"t.csv","strategy":{"freeze":"conv1.*"}}', true, null, 'one glob as a string'],
        ['{"model":"cnn","training_file":"t.csv","preprocess":{"normalize":{"mean":[0.5,0.5],"std":[0.5]}}}', false,
         'preprocess.normalize.std', 'rule: std as long as mean'],
        ['{"model":"cnn","training_file":"t.csv","early_stopping":{"metric":"val_r2"}}', false, 'early_stopping.metric',
         'rule: a regression metric on classification'],
        ['{"model":"cnn","training_file":"t.csv","validation_split":0,"early_stopping":{}}', false,
         'early_stopping.metric', 'rule: val_loss without validation data'],
        ['{"model":"cnn","training_file":"t.csv","hyperparameters":{"epochs":2,"warmup_epochs":3}}', false,
         'hyperparameters.warmup_epochs', 'rule: warmup longer than training'],
        ['{"model":"cnn","training_file":"t.csv","hyperparameters":{"learning_rate":0.01,"min_lr":0.1}}', false,
         'hyperparameters.min_lr', 'rule: min_lr above learning_rate'],
        ['{"model":"cnn","training_file":"t.csv","task":{"type":"regression"},"hyperparameters":{"label_smoothing":0.1}}',
         false, 'hyperparameters.label_smoothing', 'rule: label smoothing on regression'],
        ['{"model":"cnn","training_file":"t.csv","strategy":{"freeze":["a"],"trainable":["b"]}}', false,
         'strategy.trainable', 'rule: freeze and trainable together'],
];
const rv = parserVerdicts(bin, raw.map((r) => r[0]));
raw.forEach(([text, parses, param, what], i) => {
        const s = validate(JSON.parse(text));
        if (parses)
                ok(s && rv[i].ok, `${what}: both accept`, s ? rv[i] : errorsText(validate));
        else
                ok(s && !rv[i].ok && rv[i].param === param,
                   `${what}: the schema allows it, the parser refuses it naming ${param}`, rv[i]);
});

process.exit(doneTesting() ? 0 : 1);
