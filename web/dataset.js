/* dataset.js - reading a dataset as the API sends it (api/datasets.c:
 * id, name, format, bytes, sha256, labels, schema) and uploading one. The
 * schema is the readers' summary: format, rows, features + feature_names +
 * target for a CSV, image_shape [C, H, W] for IDX images, task, num_classes,
 * classes [{name, count}], missing_values, rows_dropped. An IDX pair is one
 * dataset: format, bytes and sha256 are its images file's, labels {format,
 * sha256, bytes} its labels file's (null for a CSV).
 *
 * Not for: the datasets page (view-datasets.js) or names in other views
 * (catalog.js). */
import { api } from './api.js';
import { isNum } from './format.js';

/* Both files of a dataset together. */
export const datasetBytes = (d) => d.bytes + (d.labels ? d.labels.bytes : 0);

/* "csv · 3000 rows · 16 features · classification · 3 classes". */
export function schemaSummary(d) {
        const s = d.schema, parts = [s.format];
        if (isNum(s.rows))
                parts.push(s.rows + ' rows');
        if (isNum(s.features))
                parts.push(s.features + ' features');
        if (Array.isArray(s.image_shape))
                parts.push('images ' + s.image_shape.join('×'));
        if (d.labels)
                parts.push('labels ' + d.labels.format);
        if (s.task)
                parts.push(s.task);
        if (isNum(s.num_classes))
                parts.push(s.num_classes + ' classes');
        if (s.missing_values)
                parts.push(s.missing_values + ' missing values');
        return parts.filter(Boolean).join(' · ');
}

/* "f0, f1 · target: label · classes: a (10), b (12)". */
export function columnsText(d) {
        const s = d.schema, parts = [];
        if (Array.isArray(s.feature_names) && s.feature_names.length)
                parts.push(s.feature_names.join(', '));
        if (s.target)
                parts.push('target: ' + s.target);
        if (Array.isArray(s.classes) && s.classes.length)
                parts.push('classes: ' + s.classes.map((c) => c.name + ' (' + c.count + ')').join(', '));
        return parts.join(' · ');
}

/* A CSV's columns, features then the target (what task.target may name). */
export function datasetColumns(d) {
        if (!d || !Array.isArray(d.schema.feature_names))
                return [];
        return d.schema.target ? [...d.schema.feature_names, d.schema.target] : [...d.schema.feature_names];
}

/* A preset's config sized to the dataset it will train on (compute/presets.c). */
export function presetConfig(preset, d, task) {
        const s = d ? d.schema : {};
        const outputs = task === 'regression' ? 1 : s.num_classes || 2;
        const shape = Array.isArray(s.image_shape) ? s.image_shape : null; /* [C, H, W] */
        if (preset === 'mlp')
                return {inputs: shape ? shape[0] * shape[1] * shape[2] : s.features || 1, outputs};
        if (preset === 'cnn')
                return {in_channels: shape ? shape[0] : 1, input_size: shape ? [shape[1], shape[2]] : [28, 28], outputs};
        return {num_classes: outputs, in_channels: shape ? shape[0] : 3, input_size: shape ? [shape[1], shape[2]] : [224, 224]};
}

/* POST /v1/datasets: a CSV (or one IDX file) as the body, or IDX images with
 * their labels as multipart; named after the file. Returns the dataset. */
export function uploadDataset(file, labels) {
        const path = '/v1/datasets?name=' + encodeURIComponent(file.name);
        if (labels) {
                const fd = new FormData();
                fd.append('images', file, file.name);
                fd.append('labels', labels, labels.name);
                return api('POST', path, {body: fd});
        }
        const type = /\.csv$/i.test(file.name) ? 'text/csv' : 'application/octet-stream';
        return api('POST', path, {body: file, headers: {'Content-Type': type}});
}
