// test_openapi.mjs - GET /v1/openapi.json of the real daemon (loopback, a
// temporary state directory) checked with a real OpenAPI validator
// (@seriousme/openapi-schema-validator: the document is valid OpenAPI 3.1 and
// its $refs resolve), its schemas compiled by Ajv in strict mode, and then a
// user's session (upload, register, train, follow, predict, cancel, delete,
// errors) in which every request body is checked against the document's
// request schema and every answer against the schema the document declares
// for its path, method, status and media type.
//   node test_openapi.mjs FINETUNED SOURCE_ROOT
// Not for: the job spec's own agreement with its parser (test_jobspec_schema.mjs).
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { ok, diag, doneTesting, startDaemon, TMP, cleanup, bailOut } from '../browser/harness.mjs';
import { loadDocument, declaredResponse, pathTemplate, errorsText } from './schema.mjs';

const [bin] = process.argv.slice(2);
const FMNIST = '/usr/share/datasets/fashion-mnist';

async function main() {
        const d = await startDaemon(bin, join(TMP, 'state'));
        const B = d.base;

        // ---- the document ---------------------------------------------------------------
        const res = await fetch(B + '/v1/openapi.json');
        ok(res.status === 200 && res.headers.get('content-type') === 'application/json',
           'GET /v1/openapi.json answers JSON without a token');
        const doc = await res.json();
        const v = new Validator();
        const verdict = await v.validate(structuredClone(doc));
        ok(verdict.valid && v.version === '3.1', `the document is valid OpenAPI ${v.version} ` +
           '(@seriousme/openapi-schema-validator)', verdict.errors);
        let resolved = null;
        try {
                resolved = v.resolveRefs();
        } catch (e) {
                diag(e.message);
        }
        ok(resolved && resolved.paths, 'every $ref of the document resolves');
        ok(doc.jsonSchemaDialect === 'https://json-schema.org/draft/2020-12/schema', 'schemas are JSON Schema 2020-12');
        let D;
        try {
                D = loadDocument(doc);
                for (const name of Object.keys(doc.components.schemas))
                        D.component(name);
                ok(true, `the ${Object.keys(doc.components.schemas).length} component schemas compile with Ajv in ` +
                   'strict mode');
        } catch (e) {
                ok(false, 'the component schemas compile with Ajv in strict mode', e.message);
                return;
        }
        for (const name of ['JobSpec', 'Job', 'JobList', 'Dataset', 'Model', 'Event', 'EventList', 'Error',
                            'Prediction', 'Checkpoint', 'Deleted'])
                ok(name in doc.components.schemas, `components/schemas has ${name}`);
        const codes = doc.components.schemas.Error.properties.error.properties.code.enum;
        ok(codes.includes('invalid_request') && codes.includes('rate_limited') && codes.length >= 11,
           `the Error schema's codes are the error table's (${codes.length})`);
        // Every operation: a schema for each request body and each JSON answer, no placeholders.
        const ops = [];
        for (const [p, item] of Object.entries(doc.paths))
                for (const [m, op] of Object.entries(item))
                        ops.push([m.toUpperCase() + ' ' + p, op]);
        const vague = ops.filter(([, op]) => Object.entries(op.responses).some(([st, r]) => {
                if (r.$ref || st === 'default')
                        return false;
                const j = r.content && r.content['application/json'];
                return !r.content || (j && !j.schema.$ref && !j.schema.properties && !j.schema.allOf &&
                                      j.schema.type !== 'object');
        }));
        ok(vague.length === 0, `every answer of the ${ops.length} operations has a schema`, vague.map((o) => o[0]));
        const jobsPost = doc.paths['/v1/jobs'].post.requestBody.content['application/json'].schema;
        ok(jobsPost.allOf && jobsPost.allOf[0].$ref === '#/components/schemas/JobCreate',
           'POST /v1/jobs takes the JobCreate schema (narrowed to ids)');
        const specSchema = doc.components.schemas.JobSpec, create = doc.components.schemas.JobCreate;
        ok(Object.keys(specSchema.properties).every((k) => k in create.properties) && create.properties.metadata &&
                   create.properties.suffix && !specSchema.properties.metadata && create.additionalProperties === false,
           'JobCreate is the JobSpec plus metadata and suffix (issue 18), which finetuned train does not take');
        ok(!JSON.stringify(doc).includes('see docs/job-spec.md"'), 'no request body is a pointer to prose');

        // ---- a session, every exchange checked against the document ------------------------------
        let checked = 0;
        async function call(method, url, {json, body, headers = {}, expect} = {}) {
                const h = {...headers};
                if (json !== undefined) {
                        h['Content-Type'] = 'application/json';
                        body = typeof json === 'string' ? json : JSON.stringify(json);
                }
                const r = await fetch(B + url, {method, headers: h, body});
                const ctype = (r.headers.get('content-type') || '').split(';')[0];
                const buf = Buffer.from(await r.arrayBuffer());
                const text = buf.toString('utf8');
                const out = {status: r.status, headers: r.headers, ctype, text, buf, json: null};
                if (ctype === 'application/json') {
                        try {
                                out.json = JSON.parse(text);
                        } catch {
                                /* checked below */
                        }
                }
                const what = `${method} ${url.split('?')[0]} ${r.status}`;
                const tmpl = pathTemplate(doc, url);
                const declared = tmpl && declaredResponse(doc, tmpl, method, r.status);
                if (!declared) {
                        ok(false, `${what}: the document declares this status`, text.slice(0, 300));
                        return out;
                }
                const media = declared.content && declared.content[ctype];
                if (!media) {
                        ok(false, `${what}: the document declares ${ctype}`, Object.keys(declared.content || {}));
                        return out;
                }
                if (ctype === 'application/json') {
                        const validate = D.compile(media.schema);
                        ok(out.json !== null && validate(out.json),
                           `${what}: the answer validates against ${schemaName(media.schema)}`,
                           out.json === null ? text.slice(0, 300) : errorsText(validate) + ' in ' + text.slice(0, 600));
                } else {
                        ok(true, `${what}: ${ctype} as declared`);
                }
                if (expect !== undefined && expect !== r.status)
                        ok(false, `${what}: expected ${expect}`, text.slice(0, 300));
                checked++;
                return out;
        }
        function schemaName(schema) {
                const r = schema.$ref || (schema.allOf && schema.allOf[0].$ref);
                const code = schema.allOf && schema.allOf[1].properties.error.properties.code;
                return r ? r.split('/').pop() + (code ? ` (${code.const})` : '') : 'the declared schema';
        }
        // A JSON request body: the document's schema for it must agree with the daemon.
        function requestSchema(method, path) {
                return D.compile(doc.paths[path][method.toLowerCase()].requestBody.content['application/json'].schema);
        }

        await call('GET', '/healthz');
        await call('GET', '/v1/version');

        let csv = 'x1,x2,species\n';
        for (let i = 1; i <= 30; i++)
                csv += `0.${i},0.${i},setosa\n2.${i},3.${i},versicolor\n4.${i},0.${i},virginica\n`;
        const ds = await call('POST', '/v1/datasets?name=iris', {body: csv, headers: {'Content-Type': 'text/csv'}});
        const DS = ds.json && ds.json.id;
        const fd = new FormData();
        fd.append('file', new Blob([csv]), 'iris.csv');
        await call('POST', '/v1/datasets?name=iris2', {body: fd});
        let IMG = null;
        if (existsSync(FMNIST)) {
                const pair = new FormData();
                pair.append('images', new Blob([readFileSync(join(FMNIST, 't10k-images-idx3-ubyte.gz'))]), 'i.gz');
                pair.append('labels', new Blob([readFileSync(join(FMNIST, 't10k-labels-idx1-ubyte.gz'))]), 'l.gz');
                const img = await call('POST', '/v1/datasets?name=fashion', {body: pair});
                IMG = img.json && img.json.id;
        } else {
                diag(`${FMNIST} is missing (tools/setup.sh installs dataset-fashion-mnist): no IDX upload`);
        }
        await call('POST', '/v1/datasets', {body: '', headers: {'Content-Type': 'text/csv'}});
        await call('POST', '/v1/datasets', {json: {}});
        await call('GET', '/v1/datasets?limit=1');
        await call('GET', `/v1/datasets/${DS}`);
        await call('GET', '/v1/datasets/ds_nothere');
        await call('GET', '/v1/datasets?bogus=1');

        const modelBody = {name: 'iris-mlp', preset: 'mlp', config: {inputs: 2, hidden: [16], outputs: 3}};
        const modelReq = requestSchema('POST', '/v1/models');
        ok(modelReq(modelBody), 'the model request validates against the document', errorsText(modelReq));
        const mdl = await call('POST', '/v1/models', {json: modelBody});
        const MDL = mdl.json && mdl.json.id;
        for (const [bad, why] of [[{preset: 'mlp', colour: 1}, 'an unknown field'], [{preset: 'gpt'}, 'an unknown preset'],
                                  [{name: 5, preset: 'mlp'}, 'a numeric name']]) {
                const r = await call('POST', '/v1/models', {json: bad});
                ok(!modelReq(bad) && r.status === 400, `${why}: the document's schema and the daemon refuse it`);
        }
        await call('GET', '/v1/models');
        await call('GET', `/v1/models/${MDL}`);
        await call('GET', `/v1/models/${MDL}/weights`);

        const spec = {model: MDL, training_file: DS, task: {type: 'classification', target: 'species'},
                      hyperparameters: {epochs: 3, batch_size: 16, learning_rate: 0.05}, checkpoint: {every_epochs: 1}};
        const jobReq = requestSchema('POST', '/v1/jobs');
        ok(jobReq(spec), 'the job spec validates against the document', errorsText(jobReq));
        const job = await call('POST', '/v1/jobs', {json: spec, headers: {'Idempotency-Key': 'contract-1'}, expect: 201});
        const JOB = job.json && job.json.id;
        const replay = await call('POST', '/v1/jobs', {json: spec, headers: {'Idempotency-Key': 'contract-1'},
                                                      expect: 200});
        ok(replay.json && replay.json.id === JOB && replay.headers.get('idempotent-replayed') === 'true',
           'a replay answers the original job');
        await call('POST', '/v1/jobs', {json: {...spec, seed: 7}, headers: {'Idempotency-Key': 'contract-1'},
                                       expect: 422});
        const badSpecs = [
                [{...spec, hyperparameters: {epochs: 0}}, 'hyperparameters.epochs', 'zero epochs'],
                [{...spec, hyperparameters: {learning_rat: 0.1}}, 'hyperparameters.learning_rat', 'an unknown field'],
                [{...spec, model: 'resnet18'}, 'model', 'a preset name instead of a model id'],
                [{...spec, training_file: [DS, DS]}, 'training_file', 'a file pair instead of a dataset id'],
                [{...spec, preprocess: {resize: [0, 4]}}, 'preprocess.resize[0]', 'a zero resize'],
                [{...spec, device: 'tpu'}, 'device', 'an unknown device'],
        ];
        for (const [bad, param, why] of badSpecs) {
                const r = await call('POST', '/v1/jobs', {json: bad, expect: 400});
                ok(!jobReq(bad) && r.json && r.json.error && r.json.error.param === param,
                   `${why}: the document's schema refuses it and the daemon answers 400 naming ${param}`,
                   r.json);
        }
        await call('POST', '/v1/jobs', {body: JSON.stringify(spec), headers: {'Content-Type': 'text/plain'},
                                       expect: 415});
        await call('POST', '/v1/jobs', {json: '{"model": ', expect: 400});

        // follow the job to its end, checking every answer on the way
        let state = job.json && job.json.state, polls = 0;
        const deadline = Date.now() + 300000;
        while (!['succeeded', 'failed', 'cancelled'].includes(state) && Date.now() < deadline) {
                await new Promise((r) => setTimeout(r, polls++ < 3 ? 50 : 300));
                const g = await call('GET', `/v1/jobs/${JOB}`);
                state = g.json && g.json.state;
        }
        ok(state === 'succeeded', `the job succeeded (${state}, ${polls} polls)`);
        const done = await call('GET', `/v1/jobs/${JOB}`);
        const events = await call('GET', `/v1/jobs/${JOB}/events?limit=1000`);
        ok(events.json && events.json.data.some((e) => e.type === 'epoch'), 'the event list has epochs');
        await call('GET', `/v1/jobs/${JOB}/events?after=2&limit=2`);
        const sse = await call('GET', `/v1/jobs/${JOB}/events?stream=true`);
        const frames = sse.text.split('\n\n').filter((f) => /^id: /m.test(f));
        ok(frames.length > 0 && frames.every((f) => /^id: \d+$/m.test(f) && /^event: [a-z_]+$/m.test(f) &&
                                                       JSON.parse(/^data: (.*)$/m.exec(f)[1]) !== undefined),
           `the event stream's ${frames.length} events are id/event/JSON data as the document says`);
        await call('GET', `/v1/jobs/${JOB}/checkpoints`);
        await call('GET', `/v1/jobs?state=succeeded&limit=5`);
        await call('GET', `/v1/jobs?state=sleeping`);
        await call('GET', `/v1/jobs/${JOB}/artifacts/metrics.json`);
        const weights = await call('GET', `/v1/jobs/${JOB}/artifacts/model.safetensors`);
        await call('GET', `/v1/jobs/${JOB}/artifacts/other.bin`);
        await call('POST', `/v1/jobs/${JOB}/cancel`, {expect: 409});

        const RESULT = done.json && done.json.result_model;
        const predReq = requestSchema('POST', '/v1/models/{id}/predict');
        const rows = {rows: [[0.5, 0.5], [2.5, 3.5], [4.5, 0.2]]};
        ok(predReq(rows), 'the predict request validates against the document', errorsText(predReq));
        const pred = await call('POST', `/v1/models/${RESULT}/predict`, {json: rows});
        ok(pred.json && pred.json.predictions.length === 3, 'three predictions');
        await call('POST', `/v1/models/${RESULT}/predict`, {json: {rows: [['a']]}, expect: 400});
        await call('POST', `/v1/models/${MDL}/predict`, {json: rows, expect: 409});
        // explain: a tabular model is refused; an image model answers its map (an Explanation)
        const explReq = requestSchema('POST', '/v1/models/{id}/explain');
        const oneImage = {images: [Array(784).fill(7)], method: 'integrated_gradients', steps: 4, target: 0,
                          baseline: 'black'};
        ok(explReq(oneImage) && !explReq({...oneImage, steps: 0}) && !explReq({...oneImage, images: [[1], [2]]}),
           'the explain request validates against the document (and 0 steps or two images do not)',
           errorsText(explReq));
        await call('POST', `/v1/models/${RESULT}/explain`, {json: {images: [[1, 2]]}, expect: 400});
        await call('POST', `/v1/models/${MDL}/explain`, {json: {images: [[1, 2]]}, expect: 409});
        await call('POST', '/v1/models/mdl_nothere/explain', {json: {images: [[1, 2]]}, expect: 404});
        if (IMG) {
                const cnn = await call('POST', '/v1/models', {json: {preset: 'cnn', config: {channels: [4, 8], hidden: 16}},
                                                            expect: 201});
                const ij = await call('POST', '/v1/jobs', {json: {model: cnn.json.id, training_file: IMG,
                                                                  hyperparameters: {epochs: 1}}, expect: 201});
                let st = ij.json.state, tuned = null;
                for (let i = 0; i < 600 && !['succeeded', 'failed', 'cancelled'].includes(st); i++) {
                        await new Promise((r) => setTimeout(r, 300));
                        const g = await fetch(`${B}/v1/jobs/${ij.json.id}`).then((r) => r.json());
                        st = g.state;
                        tuned = g.result_model;
                }
                ok(st === 'succeeded', `an image model to explain trained (${st})`);
                const ex = await call('POST', `/v1/models/${tuned}/explain`, {json: oneImage, expect: 200});
                ok(ex.json && ex.json.map.length === 28 && ex.json.target.index === 0 && ex.json.steps === 4,
                   'explain answers a 28x28 map for class 0');
                await call('POST', `/v1/models/${tuned}/explain`, {json: {...oneImage, method: 'gradient_x_input'},
                                                                 expect: 200});
                await call('POST', `/v1/models/${tuned}/explain`, {json: {...oneImage, target: 'nope'}, expect: 400});
        }
        // evaluate and a predictions job (issue 18), every answer against the document
        const evReq = requestSchema('POST', '/v1/models/{id}/evaluate');
        ok(evReq({dataset: DS, curve_points: 5}), 'the evaluate request validates against the document', errorsText(evReq));
        const ev = await call('POST', `/v1/models/${RESULT}/evaluate`, {json: {dataset: DS, curve_points: 5}, expect: 200});
        ok(ev.json && ev.json.metrics.calibration.bins === 15 && ev.json.metrics.roc_auc.per_class.length > 0,
           'evaluate answers ROC-AUC and the 15-bin calibration');
        await call('POST', `/v1/models/${RESULT}/evaluate`, {json: {dataset: DS, curve_points: 0}, expect: 400});
        await call('POST', `/v1/models/${MDL}/evaluate`, {json: {dataset: DS}, expect: 409});
        const pj = await call('POST', `/v1/models/${RESULT}/predictions`, {json: {dataset: DS}, expect: 201});
        const PJ = pj.json && pj.json.id;
        let pstate = pj.json && pj.json.state;
        for (let i = 0; i < 600 && !['succeeded', 'failed', 'cancelled'].includes(pstate); i++) {
                await new Promise((r) => setTimeout(r, 100));
                pstate = (await call('GET', `/v1/jobs/${PJ}`)).json?.state;
        }
        ok(pstate === 'succeeded', `the predictions job succeeded (${pstate})`);
        const pcsv = await call('GET', `/v1/jobs/${PJ}/artifacts/predictions.csv`, {expect: 200});
        ok(pcsv.ctype === 'text/csv' && pcsv.text.startsWith('row,label,prediction,'), 'predictions.csv is text/csv');
        await call('GET', `/v1/jobs/${JOB}/artifacts/predictions.csv`, {expect: 404});
        await call('POST', `/v1/models/${RESULT}/predictions`, {json: {dataset: 'ds_000000000000000000000000'}, expect: 400});
        if (weights.status === 200) {
                const up = new FormData();
                up.append('weights', new Blob([weights.buf]), 'model.safetensors');
                up.append('name', 'uploaded');
                up.append('spec', JSON.stringify(mdl.json.spec));
                await call('POST', '/v1/models', {body: up, expect: 201});
                const bad = new FormData();
                bad.append('colour', 'red');
                await call('POST', '/v1/models', {body: bad, expect: 400});
        }

        // webhooks (issue 18): create (with its secret), list, get, test-send, deliveries, delete; labels on jobs
        const hook = await call('POST', '/v1/webhooks', {json: {url: 'https://example.com/hook',
                                                                 event_types: ['job.succeeded', 'job.epoch']},
                                                          expect: 201});
        const WH = hook.json && hook.json.id;
        ok(requestSchema('POST', '/v1/webhooks')({url: 'https://example.com/hook', event_types: ['job.failed']}) &&
           !requestSchema('POST', '/v1/webhooks')({url: 'https://example.com/hook', secret: 'x'}),
           'POST /v1/webhooks: the request schema takes url and event_types, no secret');
        await call('POST', '/v1/webhooks', {json: {url: 'http://127.0.0.1/hook'}, expect: 400});
        await call('GET', '/v1/webhooks');
        await call('GET', `/v1/webhooks/${WH}`);
        await call('POST', `/v1/webhooks/${WH}/test`, {expect: 202});
        await call('GET', `/v1/webhooks/${WH}/deliveries?limit=5`);
        await call('GET', '/v1/webhooks/wh_nothere/deliveries', {expect: 404});
        const labelled = {...spec, metadata: {team: 'vision'}, suffix: 'contract'};
        ok(requestSchema('POST', '/v1/jobs')(labelled) &&
           !requestSchema('POST', '/v1/jobs')({...spec, metadata: {team: 3}}),
           'POST /v1/jobs: the request schema takes metadata of strings and a suffix');
        await call('POST', '/v1/jobs', {json: labelled, expect: 201});
        await call('GET', '/v1/jobs?metadata%5Bteam%5D=vision&limit=5');
        await call('DELETE', `/v1/webhooks/${WH}`);

        // a long job, cancelled; deletes
        const long = await call('POST', '/v1/jobs', {json: {...spec, hyperparameters: {epochs: 100000}}});
        const LONG = long.json && long.json.id;
        await call('POST', `/v1/jobs/${LONG}/cancel`, {json: {}});
        await call('DELETE', `/v1/models/${MDL}`);
        await call('DELETE', `/v1/jobs/${JOB}`);
        await call('GET', `/v1/jobs/${JOB}`, {expect: 404});
        // a method the path does not have: the document has no operation to declare the 405 in; the answer
        // is the error envelope, and Allow lists the path's operations
        const put = await fetch(B + '/v1/jobs', {method: 'PUT'});
        const envelope = D.component('Error');
        const allow = (put.headers.get('allow') || '').split(', ').sort().join(',');
        ok(put.status === 405 && envelope(await put.json()) &&
           allow === Object.keys(doc.paths['/v1/jobs']).map((m) => m.toUpperCase()).sort().join(','),
           `PUT /v1/jobs 405: the error envelope, Allow: ${allow} (the document's operations)`);
        await call('GET', '/v1/jobs/job_nothere/events');
        if (IMG)
                await call('DELETE', `/v1/datasets/${IMG}`);

        // the schemas are strict: a member added or removed is a failure, so a
        // builder that changes without its table fails this test
        const jobSchema = D.component('Job');
        const tampered = {...done.json, surprise: 1};
        const partial = {...done.json};
        delete partial.progress;
        ok(done.json && jobSchema(done.json) && !jobSchema(tampered) && !jobSchema(partial),
           'the Job schema refuses an answer with a member more or less');
        ok(checked >= 50, `${checked} exchanges checked against the document`);
        const code = await d.stop();
        ok(code === 0, 'the daemon stops cleanly');
}

main().catch((e) => {
        bailOut(e.stack);
        ok(false, 'no exception', e.message);
}).finally(async () => {
        await cleanup();
        process.exit(doneTesting() ? 0 : 1);
});
