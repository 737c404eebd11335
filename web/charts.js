/* charts.js - per-epoch line charts on Debian's Chart.js (loaded by
 * index.html as a classic script before the modules, as window.Chart):
 * lineChart() makes one, chartPoint() adds or replaces a point of a named
 * series, chartUpdate() redraws and records the point count in the canvas's
 * data-points attribute (what the browser tests watch).
 *
 * Not for: where the numbers come from (view-job.js, view-compare.js). */
import { h } from './dom.js';
import { isNum } from './format.js';

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf',
                        '#7f7f7f', '#bcbd22'];

export function lineChart(canvas, yTitle) {
        return new window.Chart(canvas, {
                type: 'line',
                data: {datasets: []},
                options: {
                        animation: false,
                        responsive: true,
                        maintainAspectRatio: false,
                        parsing: false,
                        normalized: true,
                        interaction: {mode: 'nearest', intersect: false},
                        scales: {
                                x: {type: 'linear', title: {display: true, text: 'epoch'}, ticks: {precision: 0}},
                                y: {title: {display: true, text: yTitle}},
                        },
                        plugins: {legend: {position: 'bottom'}},
                },
        });
}

/* The series called label, created (empty, in color) when missing. */
export function chartSeries(chart, label, color) {
        let ds = chart.data.datasets.find((d) => d.label === label);
        if (!ds) {
                ds = {label, data: [], borderColor: color, backgroundColor: color, pointRadius: 3, borderWidth: 2, tension: 0};
                chart.data.datasets.push(ds);
        }
        return ds;
}

/* Add or replace the point at x; keeps points sorted by x. Skips non-numbers. */
export function chartPoint(chart, label, color, x, y) {
        if (!isNum(x) || !isNum(y))
                return;
        const ds = chartSeries(chart, label, color);
        const i = ds.data.findIndex((p) => p.x === x);
        if (i >= 0)
                ds.data[i] = {x, y};
        else {
                ds.data.push({x, y});
                ds.data.sort((a, b) => a.x - b.x);
        }
}

/* A canvas (an image to assistive technology, named label) in a sized box. */
export function chartCanvas(label, id) {
        const canvas = h('canvas', {role: 'img', 'aria-label': label, 'data-points': 0, id});
        return {canvas, box: h('div', {class: 'chart-box'}, canvas)};
}

export function chartUpdate(chart) {
        chart.update('none');
        const n = chart.data.datasets.reduce((m, d) => Math.max(m, d.data.length), 0);
        chart.canvas.setAttribute('data-points', n);
}
