/* events.js - a job's event stream (GET /v1/jobs/{id}/events?stream=true) read
 * over fetch rather than EventSource, so it can send the bearer token and
 * Last-Event-ID: it replays the events after the last one seen, pushes new
 * ones as they come, reconnects with back-off whenever the stream drops before
 * the job's terminal status event, and stops after it.
 *
 * Not for: what the events mean (view-job.js) or the JSON event list
 * (view-compare.js pages it with listAll). */
import { api, ApiError } from './api.js';
import { TERMINAL } from './job.js';

const MAX_LINE = 1 << 20;

/* followEvents(jobId, onEvent, onEnd): onEvent(data, type) gets each event's
 * JSON data and its type (the SSE "event:" name: status, epoch, checkpoint,
 * early_stopping, metrics, runtime); onEnd() runs once after the terminal
 * status event (or when the job is gone). Returns {close(), nudge()}: nudge()
 * says the daemon answers again (a poll succeeded), so a stream waiting to
 * reconnect does it now rather than after its back-off (up to 8 s). */
export function followEvents(jobId, onEvent, onEnd) {
        const ctl = new AbortController();
        let lastId = null, closed = false, delay = 500, waiting = null;

        /* Read one connection to its end; true when the terminal event came. */
        async function readStream(res) {
                const reader = res.body.getReader();
                const decoder = new TextDecoder();
                let buf = '', ev = {data: []};
                for (;;) {
                        const {value, done} = await reader.read();
                        if (done)
                                return false;
                        buf += decoder.decode(value, {stream: true});
                        if (buf.length > MAX_LINE)
                                throw new Error('an event stream line longer than 1 MiB');
                        let nl, ended = false;
                        while ((nl = buf.indexOf('\n')) >= 0) {
                                const line = buf.slice(0, nl).replace(/\r$/, '');
                                buf = buf.slice(nl + 1);
                                if (line === '') { /* the end of one event */
                                        if (ev.data.length && ev.event) {
                                                if (ev.id !== undefined)
                                                        lastId = ev.id;
                                                let data = null;
                                                try {
                                                        data = JSON.parse(ev.data.join('\n'));
                                                } catch (e) {
                                                        data = null;
                                                }
                                                if (data) {
                                                        onEvent(data, ev.event);
                                                        if (ev.event === 'status' && TERMINAL.has(data.state))
                                                                ended = true;
                                                }
                                        }
                                        ev = {data: []};
                                } else if (!line.startsWith(':')) { /* ":" starts a keep-alive comment */
                                        const c = line.indexOf(':');
                                        const field = c < 0 ? line : line.slice(0, c);
                                        const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
                                        if (field === 'data')
                                                ev.data.push(val);
                                        else if (field === 'id')
                                                ev.id = val;
                                        else if (field === 'event')
                                                ev.event = val;
                                }
                        }
                        if (ended) {
                                reader.cancel().catch(() => {});
                                return true;
                        }
                }
        }

        async function run() {
                while (!closed) {
                        let ended = false;
                        try {
                                const headers = {Accept: 'text/event-stream'};
                                if (lastId !== null)
                                        headers['Last-Event-ID'] = String(lastId);
                                const res = await api('GET', '/v1/jobs/' + encodeURIComponent(jobId) + '/events?stream=true',
                                                      {headers, raw: true, signal: ctl.signal});
                                delay = 500;
                                /* The server ends the stream after the terminal event; any other end is a drop. */
                                ended = await readStream(res);
                        } catch (e) {
                                if (closed || e.name === 'AbortError')
                                        return;
                                if (e instanceof ApiError && e.status === 404)
                                        ended = true; /* the job was deleted */
                        }
                        if (ended) {
                                closed = true;
                                if (onEnd)
                                        onEnd();
                                return;
                        }
                        await new Promise((r) => {
                                const t = setTimeout(r, delay);
                                waiting = () => {
                                        clearTimeout(t);
                                        delay = 250;
                                        r();
                                };
                        });
                        waiting = null;
                        delay = Math.min(delay * 2, 8000);
                }
        }
        run();
        return {
                close() {
                        closed = true;
                        ctl.abort();
                        if (waiting)
                                waiting();
                },
                nudge() {
                        if (waiting)
                                waiting();
                },
        };
}
