// Server-Sent Events over fetch(): unlike EventSource it can send the token header, see HTTP status codes
// (401 means "ask for the token") and resume with Last-Event-ID after a dropped connection.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class AuthRequired extends Error {}

/** Parse SSE text into events; feed() returns complete events [{event, data, id}] and keeps the rest. */
export class SseParser {
  constructor() {
    this.buffer = '';
    this.reset();
  }

  reset() {
    this.event = '';
    this.data = [];
    this.id = null;
  }

  feed(text) {
    let pending = this.buffer + text;
    // A chunk ending in CR may be the first half of CRLF: keep it until the next chunk says.
    const hold = pending.endsWith('\r') ? '\r' : '';
    if (hold) pending = pending.slice(0, -1);
    const lines = pending.split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + hold;
    const out = [];
    for (const line of lines) {
      if (line === '') {
        if (this.data.length) out.push({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
        this.reset();
        continue;
      }
      if (line.startsWith(':')) continue;  // comment, e.g. keep-alive
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
      else if (field === 'id' && !value.includes('\0')) this.id = value;
    }
    return out;
  }
}

/**
 * Follow an SSE URL until stop(). Callbacks: onEvent({event, data, id}), onStatus(state, detail),
 * onAuth(status) for 401/403 (the stream then stops), onError(message) for anything else (it retries).
 */
export class EventStream {
  constructor(path, { token = '', handlers = {} } = {}) {
    this.path = path;
    this.token = token;
    this.h = handlers;
    this.lastEventId = null;
    this.controller = null;
    this.stopped = false;
  }

  emit(name, ...args) {
    if (typeof this.h[name] === 'function') this.h[name](...args);
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  /** Connect, read, and reconnect with backoff (resuming from the last event id) until stopped. */
  async run() {
    let backoff = 500;
    while (!this.stopped) {
      this.emit('onStatus', 'connecting');
      try {
        await this.readOnce();
        backoff = 500;
        if (!this.stopped) this.emit('onStatus', 'reconnecting', 'the event stream ended');
      } catch (err) {
        if (this.stopped) break;
        if (err instanceof AuthRequired) {
          this.emit('onAuth', err.message);
          return;
        }
        this.emit('onError', err.message);
        this.emit('onStatus', 'reconnecting', err.message);
      }
      if (!this.stopped) await sleep(backoff);
      backoff = Math.min(backoff * 2, 10000);
    }
    this.emit('onStatus', 'idle');
  }

  async readOnce() {
    const headers = { Accept: 'text/event-stream' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (this.lastEventId !== null) headers['Last-Event-ID'] = this.lastEventId;
    this.controller = new AbortController();
    let resp;
    try {
      resp = await fetch(this.path, { headers, cache: 'no-store', signal: this.controller.signal });
    } catch (err) {
      throw new Error(`cannot reach the server's event stream (${err.message})`);
    }
    if (resp.status === 401 || resp.status === 403) {
      throw new AuthRequired((await resp.text()).trim() || `HTTP ${resp.status}`);
    }
    if (!resp.ok) {
      const body = (await resp.text()).trim().slice(0, 300);
      throw new Error(`event stream failed: HTTP ${resp.status}${body ? ` – ${body}` : ''}`);
    }
    this.emit('onStatus', 'open');
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const ev of parser.feed(value)) {
        if (ev.id !== null) this.lastEventId = ev.id;
        this.emit('onEvent', ev);
      }
    }
  }
}
