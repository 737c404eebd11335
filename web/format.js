/* format.js - the dashboard's text for numbers and times: metric values,
 * durations, byte sizes and the API's timestamps (Unix seconds). Pure
 * functions over values, no DOM and no API.
 *
 * Not for: building elements (dom.js) or reading API objects (job.js,
 * dataset.js). */

export const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

/* A metric or hyperparameter: integers as they are, tiny and huge values in
 * exponent form, the rest with `digits` decimals (4 unless told). */
export function fmtNum(v, digits) {
        if (!isNum(v))
                return v === undefined || v === null ? '—' : String(v);
        if (Number.isInteger(v))
                return String(v);
        const a = Math.abs(v);
        if (a !== 0 && (a < 1e-3 || a >= 1e6))
                return v.toExponential(2);
        return v.toFixed(digits === undefined ? 4 : digits);
}

/* Seconds as "42 s", "3 min 5 s", "2 h 10 min". */
export function fmtDuration(s) {
        if (!isNum(s) || s < 0)
                return '—';
        s = Math.round(s);
        if (s < 60)
                return s + ' s';
        if (s < 3600)
                return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
        return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}

export function fmtBytes(n) {
        if (!isNum(n))
                return '—';
        const units = ['B', 'KiB', 'MiB', 'GiB'];
        let i = 0;
        while (n >= 1024 && i < units.length - 1) {
                n /= 1024;
                i++;
        }
        return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

/* An API timestamp (Unix seconds; null when it has not happened) in the reader's locale. */
export function fmtTime(t) {
        return isNum(t) ? new Date(t * 1000).toLocaleString() : '—';
}
