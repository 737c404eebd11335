/* calibration.js - the calibration section of a classification job's final metrics (metrics.calibration,
 * docs/job-spec.md "calibration"): ECE and MCE before and, with temperature scaling, after, and the 15-bin
 * reliability diagram as a Chart.js bar chart (accuracy per confidence bin, the diagonal of perfect
 * calibration as a line). The canvas's data-points attribute is the number of non-empty bins (what the
 * browser tests watch).
 *
 * Not for: the numbers (the daemon computes them, compute/metrics_curves.c), the other results (view-job.js). */
import { h } from './dom.js';
import { isNum, fmtNum } from './format.js';
import { PALETTE, chartCanvas } from './charts.js';

const pct = (x) => (x * 100).toFixed(0);

/* The reliability diagram of cal (and of cal.temperature_scaling when there is one) on a new canvas; returns
 * {box, chart}. */
function reliabilityChart(cal) {
        const {canvas, box} = chartCanvas('reliability diagram: accuracy per confidence bin', 'reliability-chart');
        const bins = cal.reliability;
        const labels = bins.map((b) => pct(b.lower) + '–' + pct(b.upper) + ' %');
        const datasets = [
                {type: 'bar', label: 'accuracy' + (cal.temperature_scaling ? ' (before scaling)' : ''),
                 data: bins.map((b) => b.accuracy), backgroundColor: PALETTE[0] + 'cc', borderColor: PALETTE[0]},
        ];
        const ts = cal.temperature_scaling;
        if (ts && Array.isArray(ts.reliability))
                datasets.push({type: 'bar', label: 'accuracy (T = ' + fmtNum(ts.temperature, 3) + ')',
                               data: ts.reliability.map((b) => b.accuracy), backgroundColor: PALETTE[2] + 'cc',
                               borderColor: PALETTE[2]});
        datasets.push({type: 'line', label: 'perfect calibration', data: bins.map((b) => (b.lower + b.upper) / 2),
                       borderColor: PALETTE[8], borderDash: [6, 4], pointRadius: 0, borderWidth: 1.5, fill: false});
        const chart = new window.Chart(canvas, {
                type: 'bar',
                data: {labels, datasets},
                options: {
                        animation: false,
                        responsive: true,
                        maintainAspectRatio: false,
                        scales: {
                                x: {title: {display: true, text: 'confidence (top-class probability)'}},
                                y: {min: 0, max: 1, title: {display: true, text: 'accuracy'}},
                        },
                        plugins: {
                                legend: {position: 'bottom'},
                                tooltip: {callbacks: {afterLabel: (item) => {
                                        const src = item.datasetIndex === 1 && ts ? ts.reliability : bins;
                                        const b = src[item.dataIndex];
                                        return b && item.dataset.type === 'bar' ?
                                                b.count + ' samples, mean confidence ' + fmtNum(b.confidence, 3) : '';
                                }}},
                        },
                },
        });
        canvas.setAttribute('data-points', bins.filter((b) => b.count > 0).length);
        return {box, chart};
}

/* The section: a small table (ECE, MCE, temperature, NLL) and the diagram; null without calibration. */
export function calibrationSection(cal) {
        if (!cal || !Array.isArray(cal.reliability))
                return null;
        const ts = cal.temperature_scaling;
        const row = (k, before, after) => h('tr', {}, h('th', {scope: 'row'}, k), h('td', {class: 'num'}, fmtNum(before)),
                                            ts ? h('td', {class: 'num'}, fmtNum(after)) : null);
        const table = h('table', {id: 'calibration-table'},
                        h('caption', {class: 'muted'},
                          'expected calibration error over ' + cal.bins + ' equal-width confidence bins' +
                                  (ts ? '; temperature fitted on the validation split' :
                                   isNum(cal.temperature) && cal.temperature !== 1 ?
                                   ' at the model\'s temperature T = ' + fmtNum(cal.temperature, 4) +
                                           (cal.uncalibrated ? ' (ECE ' + fmtNum(cal.uncalibrated.ece) + ' at T = 1)' : '') : '')),
                        h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, ''), h('th', {scope: 'col', class: 'num'}, ts ? 'before' : 'value'),
                                         ts ? h('th', {scope: 'col', class: 'num'}, 'after (T = ' + fmtNum(ts.temperature, 4) + ')') : null)),
                        h('tbody', {}, row('ECE', cal.ece, ts && ts.ece), row('MCE', cal.mce, ts && ts.mce),
                          ts && isNum(ts.nll_before) ? row('NLL', ts.nll_before, ts.nll_after) : null));
        const {box, chart} = reliabilityChart(cal);
        return {nodes: [h('h3', {}, 'Calibration'), h('div', {class: 'table-wrap'}, table), box], chart};
}
