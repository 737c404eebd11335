/* view-explain.js - the saliency page of an image model (#/models/{id}/explain): choose an image file (anything
 * the browser decodes: PNG, JPEG, ...), which is scaled to the model's input (gray for one channel) and sent to
 * POST /v1/models/{id}/explain as predict takes images; the answer's per-pixel map is drawn over the image on a
 * canvas (red: pixels that pushed towards the class, blue: against, opacity by the square root of strength, scaled to the map's
 * largest magnitude), beside the image alone, with the class explained, the prediction and the method.
 * With ?dataset=ds_..&index=N (the per-example grid's links, view-examples.js) the image is instead that
 * image of the IDX dataset (GET /v1/datasets/{id}/images?indices=N), explained as soon as it has loaded.
 *
 * Not for: the numbers (api/explain.c, compute/explain.c); models' list (view-models.js). */
import { api, reportError, ApiError } from './api.js';
import { h, setView } from './dom.js';
import { refLabel } from './catalog.js';

const SIDE = 280; /* CSS pixels the canvases aim for */

/* The image in `bitmap` as the model takes it: C*H*W values 0..255, channel planes (gray: luminance). */
function pixelsOf(bitmap, c, hgt, wid) {
        const cv = h('canvas', {width: wid, height: hgt});
        const g = cv.getContext('2d');
        g.drawImage(bitmap, 0, 0, wid, hgt);
        const rgba = g.getImageData(0, 0, wid, hgt).data;
        const out = new Array(c * hgt * wid);
        for (let i = 0; i < hgt * wid; i++) {
                const r = rgba[4 * i], gr = rgba[4 * i + 1], b = rgba[4 * i + 2];
                if (c === 1)
                        out[i] = Math.round(0.299 * r + 0.587 * gr + 0.114 * b);
                else
                        for (let k = 0; k < c; k++)
                                out[k * hgt * wid + i] = [r, gr, b][Math.min(k, 2)];
        }
        return out;
}

/* Draw the image (pixels as sent) scaled by `scale` into canvas, and the map over it when given. */
function draw(canvas, pixels, c, hgt, wid, scale, map) {
        canvas.width = wid * scale;
        canvas.height = hgt * scale;
        const g = canvas.getContext('2d');
        const img = g.createImageData(wid, hgt);
        for (let i = 0; i < hgt * wid; i++) {
                const at = (k) => pixels[(c === 1 ? 0 : Math.min(k, c - 1)) * hgt * wid + i];
                img.data.set([at(0), at(1), at(2), 255], 4 * i);
        }
        const src = h('canvas', {width: wid, height: hgt});
        src.getContext('2d').putImageData(img, 0, 0);
        g.imageSmoothingEnabled = false;
        g.drawImage(src, 0, 0, wid * scale, hgt * scale);
        if (!map)
                return;
        let top = 0;
        for (const row of map)
                for (const v of row)
                        top = Math.max(top, Math.abs(v));
        for (let y = 0; y < hgt; y++)
                for (let x = 0; x < wid; x++) {
                        const v = map[y][x], a = top > 0 ? Math.sqrt(Math.min(1, Math.abs(v) / top)) * 0.8 : 0;
                        if (a < 0.02)
                                continue;
                        g.fillStyle = v > 0 ? `rgba(220, 30, 30, ${a})` : `rgba(30, 80, 230, ${a})`;
                        g.fillRect(x * scale, y * scale, scale, scale);
                }
}

export function viewExplain(params, id) {
        const status = h('p', {id: 'explain-status', class: 'muted', role: 'status'}, 'Loading the model…');
        const file = h('input', {type: 'file', id: 'explain-file', accept: 'image/*', disabled: true});
        const method = h('select', {id: 'explain-method'},
                         h('option', {value: 'integrated_gradients'}, 'integrated gradients'),
                         h('option', {value: 'gradient_x_input'}, 'gradient × input'));
        const steps = h('input', {type: 'number', id: 'explain-steps', min: 1, max: 256, value: 32});
        const target = h('input', {type: 'text', id: 'explain-target', placeholder: 'the predicted class',
                                   autocomplete: 'off'});
        const baseline = h('select', {id: 'explain-baseline'},
                           h('option', {value: 'zeros'}, 'zeros (after preprocessing)'),
                           h('option', {value: 'black'}, 'a black image'));
        const run = h('button', {type: 'submit', id: 'explain-run', disabled: true}, 'Explain');
        const input = h('canvas', {id: 'explain-input', class: 'saliency', 'aria-label': 'the image as the model sees it'});
        const overlay = h('canvas', {id: 'explain-overlay', class: 'saliency', role: 'img',
                                     'aria-label': 'saliency map over the image'});
        const result = h('dl', {id: 'explain-result', class: 'kv'});
        const legend = h('p', {class: 'muted', id: 'explain-legend'});
        const source = h('p', {id: 'explain-source', hidden: true});
        let shape = null, pixels = null;
        const form = h('form', {id: 'explain-form', class: 'card explain-form'},
                h('div', {class: 'explain-fields'},
                  h('label', {}, 'Image ', file),
                  h('label', {}, 'Method ', method),
                  h('label', {}, 'Steps ', steps),
                  h('label', {}, 'Baseline ', baseline),
                  h('label', {}, 'Class (name or index) ', target)),
                run);
        setView('Explain', h('h1', {}, 'Explain an image'),
                h('p', {}, 'Model ', refLabel('model', id), ': which pixels drive its score for a class.'),
                source, form, status,
                h('div', {class: 'saliency-pair'}, h('figure', {}, input, h('figcaption', {}, 'input')),
                  h('figure', {}, overlay, h('figcaption', {}, 'saliency over the input'))),
                legend, result);
        const scale = () => Math.max(1, Math.floor(SIDE / Math.max(shape[1], shape[2])));
        file.addEventListener('change', async () => {
                const f = file.files && file.files[0];
                if (!f)
                        return;
                try {
                        const bmp = await createImageBitmap(f);
                        pixels = pixelsOf(bmp, shape[0], shape[1], shape[2]);
                        draw(input, pixels, shape[0], shape[1], shape[2], scale(), null);
                        overlay.getContext('2d').clearRect(0, 0, overlay.width, overlay.height);
                        run.disabled = false;
                        status.textContent = `${f.name}: scaled to ${shape[2]}×${shape[1]}` +
                                             (shape[0] === 1 ? ', gray' : '') + '.';
                } catch (e) {
                        status.textContent = `${f.name}: not an image the browser can decode`;
                }
        });
        form.addEventListener('submit', async (ev) => {
                ev.preventDefault();
                if (!pixels)
                        return;
                const body = {images: [pixels], method: method.value};
                if (method.value === 'integrated_gradients') {
                        body.steps = Number(steps.value);
                        body.baseline = baseline.value;
                }
                const t = target.value.trim();
                if (t)
                        body.target = /^\d+$/.test(t) ? Number(t) : t;
                run.disabled = true;
                status.textContent = 'Explaining…';
                try {
                        const e = await api('POST', `/v1/models/${encodeURIComponent(id)}/explain`, {json: body});
                        draw(overlay, pixels, shape[0], shape[1], shape[2], scale(), e.map);
                        const top = Math.max(Math.abs(e.min), Math.abs(e.max));
                        legend.textContent = `red: towards "${e.target.label}", blue: against; full colour at ` +
                                             `|${top.toPrecision(3)}| (the map's largest magnitude).`;
                        const pct = (p) => (100 * p).toFixed(1) + '%';
                        result.replaceChildren(
                                h('dt', {}, 'Explained'), h('dd', {id: 'explain-target-label'},
                                                            `${e.target.label} (${pct(e.target.probability)})`),
                                h('dt', {}, 'Predicted'), h('dd', {}, `${e.prediction.label} (${pct(e.prediction.probability)})`),
                                h('dt', {}, 'Method'), h('dd', {}, e.method === 'integrated_gradients'
                                        ? `integrated gradients, ${e.steps} steps, ${e.baseline} baseline`
                                        : 'gradient × input'),
                                h('dt', {}, 'Completeness'), h('dd', {}, `map sum ${e.completeness.sum.toPrecision(4)}, ` +
                                        `logit difference ${e.completeness.score_difference.toPrecision(4)}`));
                        status.textContent = 'Done.';
                } catch (e) {
                        status.textContent = e instanceof ApiError ? e.message : String(e);
                        if (!(e instanceof ApiError))
                                reportError(e);
                } finally {
                        run.disabled = false;
                }
        });
        api('GET', `/v1/models/${encodeURIComponent(id)}`).then((m) => {
                const inp = (m.spec && m.spec.input) || [];
                if (inp.length !== 3) {
                        status.textContent = 'This model takes feature rows, not images: nothing to explain.';
                        return;
                }
                if (!m.has_weights) {
                        status.textContent = 'This model has no weights yet: train it with a job first.';
                        return;
                }
                shape = inp;
                file.disabled = false;
                status.textContent = `Choose an image; it is scaled to the model's input, ${inp.join('×')}.`;
                const ds = params.get('dataset'), index = params.get('index');
                if (ds && index !== null)
                        return fromDataset(ds, index);
        }).catch(reportError);

        /* image `index` of dataset `ds` as the model takes it, then explained */
        async function fromDataset(ds, index) {
                status.textContent = `Loading image #${index} of ${ds}…`;
                let pix;
                try {
                        pix = await api('GET', `/v1/datasets/${encodeURIComponent(ds)}/images?indices=${encodeURIComponent(index)}`);
                } catch (e) {
                        status.textContent = e instanceof ApiError ? e.message : String(e);
                        if (!(e instanceof ApiError))
                                reportError(e);
                        return;
                }
                const img = pix.images[0], c = pix.channels, hh = pix.height, ww = pix.width;
                const bytes = Array.from(atob(img.pixels), (ch) => ch.charCodeAt(0));
                if (c === shape[0] && hh === shape[1] && ww === shape[2]) {
                        pixels = bytes;
                } else { /* another size or channel count: scaled as a chosen file would be */
                        const cv = h('canvas', {width: ww, height: hh});
                        const g = cv.getContext('2d'), data = g.createImageData(ww, hh), plane = hh * ww;
                        for (let i = 0; i < plane; i++) {
                                const r = bytes[i], gr = c === 3 ? bytes[plane + i] : r, b = c === 3 ? bytes[2 * plane + i] : r;
                                data.data.set([r, gr, b, 255], 4 * i);
                        }
                        g.putImageData(data, 0, 0);
                        pixels = pixelsOf(cv, shape[0], shape[1], shape[2]);
                }
                draw(input, pixels, shape[0], shape[1], shape[2], scale(), null);
                source.replaceChildren('Image ', h('span', {class: 'mono'}, '#' + index), ' of ', refLabel('dataset', ds),
                                       img.label !== undefined && img.label !== null ? ' (labelled ' + img.label + ')' : '');
                source.hidden = false;
                run.disabled = false;
                form.requestSubmit();
        }
        return null;
}
