// WebSocket client of protocol 1 on /stream/detection: sends JPEG frames paced to the session's fps limit.

const MAX_IN_FLIGHT = 2;          // frames sent but not yet answered; more would only queue up latency
const PACE_MARGIN = 1.03;         // stay a little under the limit so jitter never trips the server's rate check
const MAX_BUFFERED = 512 * 1024;  // do not pile frames into a slow socket
const WINDOW = 30;                // replies in the rolling latency window

export const CLOSE_REASONS = {
  1001: 'the server closed the session (idle or shutting down)',
  1003: 'the server refused the data',
  1006: 'the connection was lost',
  1008: 'the access token is missing or wrong',
  1009: 'a message was too large for the server',
  1011: 'the server hit an internal error',
  1013: 'the server is busy (too many sessions); try again later',
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Counters and rolling figures shown under the live picture. */
export class StreamStats {
  constructor() { this.reset(); }

  reset() {
    this.sent = 0;
    this.answered = 0;
    this.processed = 0;
    this.dropped = { backpressure: 0, rate: 0 };
    this.errors = 0;
    this.latencies = [];
    this.serverTimes = [];
    this.doneAt = [];
  }

  get droppedTotal() { return Object.values(this.dropped).reduce((a, b) => a + b, 0); }

  /** Frames processed per second over the last ~2 seconds. */
  get fps() {
    const now = performance.now();
    const recent = this.doneAt.filter((t) => now - t <= 2000);
    if (recent.length < 2) return 0;
    return (recent.length - 1) / ((recent[recent.length - 1] - recent[0]) / 1000);
  }

  static mean(values) { return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null; }
  get latency() { return StreamStats.mean(this.latencies); }
  get serverTime() { return StreamStats.mean(this.serverTimes); }

  record(list, value) {
    list.push(value);
    if (list.length > WINDOW) list.shift();
  }
}

/**
 * One detection session. Callbacks (all optional): onStatus(state, detail), onSession(msg), onReply(msg, rttMs),
 * onDropped(msg), onFrameError(msg), onFps(msg), onConfig(msg), onClose({code, reason, opened}).
 */
export class DetectionClient {
  constructor({ source, clientId = '', token = '', handlers = {} }) {
    this.source = source;
    this.clientId = clientId;
    this.token = token;
    this.h = handlers;
    this.ws = null;
    this.session = null;
    this.fpsLimit = 0;
    this.nextFrame = 1;
    this.inFlight = new Map();    // frame_id -> performance.now() at send
    this.stats = new StreamStats();
    this.running = false;
    this.wake = null;
  }

  url() {
    const u = new URL('/stream/detection', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.clientId) u.searchParams.set('client_id', this.clientId);
    if (this.token) u.searchParams.set('token', this.token);
    return u.toString();
  }

  emit(name, ...args) {
    if (typeof this.h[name] === 'function') this.h[name](...args);
  }

  /** Open the socket and start sending once the server's session message arrives. */
  connect() {
    this.close();
    this.running = true;
    this.session = null;
    this.nextFrame = 1;
    this.inFlight.clear();
    this.emit('onStatus', 'connecting');
    const ws = new WebSocket(this.url());
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (ev) => this.handle(ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      const opened = this.session !== null;
      this.ws = null;
      this.running = false;
      this.poke();
      this.emit('onClose', { code: ev.code, reason: ev.reason || CLOSE_REASONS[ev.code] || '', opened });
    };
  }

  /** Close the socket (normal closure) and stop sending. */
  close() {
    this.running = false;
    this.poke();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'viewer stopped');
    }
  }

  /** Send a control message ({type: 'config', ...} or {type: 'ping'}). */
  control(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  handle(data) {
    if (typeof data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this.emit('onFrameError', { code: 'bad_reply', message: 'the server sent a message that is not JSON', frame_id: null });
      return;
    }
    switch (msg.type) {
      case 'session':
        this.session = msg;
        this.clientId = msg.client_id;
        this.fpsLimit = msg.fps_limit;
        this.emit('onSession', msg);
        this.emit('onStatus', 'streaming');
        this.pump();
        break;
      case 'detections': {
        const rtt = this.settle(msg.frame_id);
        this.stats.processed += 1;
        this.stats.doneAt.push(performance.now());
        if (this.stats.doneAt.length > 4 * WINDOW) this.stats.doneAt.shift();
        if (rtt !== null) this.stats.record(this.stats.latencies, rtt);
        if (msg.timing_ms) this.stats.record(this.stats.serverTimes, msg.timing_ms.total);
        this.emit('onReply', msg, rtt);
        break;
      }
      case 'dropped':
        this.settle(msg.frame_id);
        this.stats.dropped[msg.reason] = (this.stats.dropped[msg.reason] || 0) + 1;
        this.emit('onDropped', msg);
        break;
      case 'error':
        if (msg.frame_id !== null && msg.frame_id !== undefined) this.settle(msg.frame_id);
        this.stats.errors += 1;
        this.emit('onFrameError', msg);
        break;
      case 'fps':
        this.fpsLimit = msg.fps_limit;
        this.emit('onFps', msg);
        break;
      case 'config':
        if (typeof msg.fps_limit === 'number') this.fpsLimit = msg.fps_limit;
        this.emit('onConfig', msg);
        break;
      default:
        break;  // pong and future message types need no action
    }
  }

  /** Mark a frame answered; returns its round-trip time in ms (null if unknown). */
  settle(frameId) {
    this.stats.answered += 1;
    const sentAt = this.inFlight.get(frameId);
    this.inFlight.delete(frameId);
    this.poke();
    return sentAt === undefined ? null : performance.now() - sentAt;
  }

  poke() {
    if (this.wake) {
      const wake = this.wake;
      this.wake = null;
      wake();
    }
  }

  /** Wait until a reply arrives, the client stops, or ms pass. */
  waitReply(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.wake = null; resolve(); }, ms);
      this.wake = () => { clearTimeout(timer); resolve(); };
    });
  }

  async pump() {
    let lastSent = -Infinity;
    const ws = this.ws;
    while (this.running && this.ws === ws) {
      const interval = this.fpsLimit > 0 ? (1000 / this.fpsLimit) * PACE_MARGIN : 1000;
      const wait = lastSent + interval - performance.now();
      if (wait > 0) {
        await sleep(wait);
        continue;  // the limit may have changed while sleeping
      }
      if (this.inFlight.size >= MAX_IN_FLIGHT || ws.bufferedAmount > MAX_BUFFERED) {
        await this.waitReply(1000);
        continue;
      }
      let blob;
      try {
        blob = await this.source.grab();
      } catch (err) {
        this.emit('onFrameError', { code: 'capture', message: err.message, frame_id: null });
        await sleep(1000);
        continue;
      }
      if (!blob) {
        await sleep(50);  // the video has no picture yet
        continue;
      }
      if (!this.running || this.ws !== ws || ws.readyState !== WebSocket.OPEN) break;
      lastSent = performance.now();
      this.inFlight.set(this.nextFrame, lastSent);
      this.nextFrame += 1;
      this.stats.sent += 1;
      ws.send(blob);
    }
  }
}
