// The live view: a camera or file source streamed to /stream/detection, with boxes, hazards and figures.

import { FrameSource } from './source.js';
import { DetectionClient } from './stream.js';
import { clearOverlay, drawDetections, hazardsOf, hazardTest } from './overlay.js';
import { clearErrors, fmt, setPanelState, setText, showError, showHazards } from './ui.js';

const $ = (id) => document.getElementById(id);
const MAX_RETRY_MS = 10000;

export class LiveView {
  /** tokens: the page's Tokens; onSession(msg) tells the page about the server (device, model, client id). */
  constructor({ tokens, clientId = '', onSession = () => {} }) {
    this.tokens = tokens;
    this.onSession = onSession;
    this.section = $('live');
    this.overlay = $('live-overlay');
    this.source = new FrameSource($('live-video'), $('live-image'));
    this.client = null;
    this.retry = null;
    this.retryDelay = 1000;
    // Exposed as edgeViewer.live for dashboards, scripts and tests.
    this.state = { state: 'idle', session: null, clientId, last: null, drawn: [], stats: null };
  }

  setState(value, detail = '') {
    setPanelState(this.section, 'live', this.state, value, detail);
  }

  /** Open a source (a function returning a promise), then connect. */
  async start(open) {
    clearErrors('live');
    try {
      await open();
    } catch (err) {
      showError(err.message, { key: 'live:source', group: 'live' });
      return;
    }
    this.section.dataset.source = this.source.kind;
    $('live-stage').classList.add('has-picture');
    $('live-placeholder').hidden = true;
    $('btn-stop').disabled = false;
    clearOverlay(this.overlay);
    this.connect();
  }

  /** Close the session and release the source; `why` is the state shown afterwards. */
  stop(why = 'idle') {
    clearTimeout(this.retry);
    if (this.client) this.client.close();
    this.source.close();
    clearOverlay(this.overlay);
    $('live-stage').classList.remove('has-picture');
    $('live-placeholder').hidden = false;
    $('btn-stop').disabled = true;
    $('confidence').disabled = true;
    showHazards($('live-hazards'), []);
    this.setState(why);
  }

  /** Ask the server for a different confidence threshold. */
  setConfidence(value) {
    if (this.client) this.client.control({ type: 'config', confidence: value });
  }

  connect() {
    clearTimeout(this.retry);
    if (this.client) this.client.close();
    this.client = new DetectionClient({
      source: this.source, clientId: this.state.clientId, token: this.tokens.value, handlers: this.handlers(),
    });
    this.state.stats = this.client.stats;
    this.client.connect();
  }

  handlers() {
    return {
      onStatus: (s) => this.setState(s),
      onSession: (msg) => this.onSessionMsg(msg),
      onReply: (msg) => this.onReply(msg),
      onFrameError: (msg) => {
        const where = msg.frame_id ? ` (frame ${msg.frame_id})` : '';
        showError(`Server error ${msg.code}${where}: ${msg.message}`, { key: `live:${msg.code}`, group: 'live' });
      },
      onFps: (msg) => {
        setText('stat-limit', fmt(msg.fps_limit, 1));
        setText('stat-limit-why', msg.reason || '');
      },
      onConfig: (msg) => {
        if (typeof msg.fps_limit === 'number') setText('stat-limit', fmt(msg.fps_limit, 1));
        if (typeof msg.confidence === 'number') {
          $('confidence').value = String(msg.confidence);
          setText('confidence-value', msg.confidence.toFixed(2));
        }
      },
      onClose: (ev) => this.onClosed(ev),
    };
  }

  onSessionMsg(msg) {
    this.state.session = msg;
    this.state.clientId = msg.client_id;
    this.retryDelay = 1000;
    setText('stat-client', msg.client_id);
    setText('stat-limit', fmt(msg.fps_limit, 1));
    setText('stat-limit-why', 'session start');
    this.client.control({ type: 'config' });  // the reply carries the effective confidence for the slider
    $('confidence').disabled = false;
    clearErrors('live');
    this.onSession(msg);
  }

  onReply(msg) {
    this.state.last = msg;
    this.state.drawn = drawDetections(this.overlay, msg, hazardTest(msg));
    this.section.dataset.labels = msg.detections.map((d) => d.label).join(',');
    this.section.dataset.boxes = String(this.state.drawn.length);
    this.section.dataset.frames = String(this.client.stats.processed);
    showHazards($('live-hazards'), hazardsOf(msg).filter((h) => h.active).map((h) => h.rule));
  }

  /** Redraw the last reply (after a resize). */
  redraw() {
    if (this.state.last && this.source.kind) this.state.drawn = drawDetections(this.overlay, this.state.last, hazardTest(this.state.last));
  }

  async onClosed({ code, reason, opened }) {
    this.state.session = null;
    $('confidence').disabled = true;
    if (!this.source.kind) return this.setState('idle');
    const tokenProblem = code === 1008 && (!reason || /token/i.test(reason));
    if (tokenProblem || (!opened && code === 1006 && (await this.needsToken()))) {
      this.setState('auth', 'access token required');
      const token = await this.tokens.ask(this.tokens.value ? 'The server rejected the token. Enter the right one.'
        : 'This server requires an access token.');
      if (token !== null) return this.connect();
      showError('Not connected: the server requires an access token.', { key: 'live:auth', group: 'live' });
      return this.stop('auth');
    }
    this.setState('error', `closed (${code})`);
    clearOverlay(this.overlay);
    if (code === 1008 || /replaced/i.test(reason)) {
      // Retrying cannot help (e.g. a bad client id, or another viewer took over this client id).
      showError(`Detection stream closed (code ${code}): ${reason || 'refused by the server'}.`, { key: 'live:closed', group: 'live' });
      return this.stop('error');
    }
    showError(`Detection stream closed (code ${code})${reason ? `: ${reason}` : ''}. Reconnecting in `
      + `${Math.round(this.retryDelay / 1000)} s…`, { key: 'live:closed', group: 'live' });
    this.retry = setTimeout(() => this.connect(), this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, MAX_RETRY_MS);
    return undefined;
  }

  /** A WebSocket refused before the upgrade (e.g. by a proxy) shows up as code 1006: is a token the reason? */
  async needsToken() {
    try {
      const headers = this.tokens.value ? { Authorization: `Bearer ${this.tokens.value}` } : {};
      const resp = await fetch('/stream/detection', { headers, cache: 'no-store' });
      return resp.status === 401 || resp.status === 403;
    } catch {
      return false;
    }
  }

  /** Refresh the figures under the picture. */
  refreshStats() {
    const s = this.client && this.client.stats;
    if (!s) return;
    setText('stat-fps', fmt(s.fps, 1));
    setText('stat-latency', s.latency === null ? '–' : `${fmt(s.latency, 0)} ms`);
    setText('stat-server', s.serverTime === null ? '–' : `${fmt(s.serverTime, 0)} ms`);
    setText('stat-frames', String(s.processed));
    setText('stat-sent', `of ${s.sent} sent`);
    setText('stat-dropped', String(s.droppedTotal));
    setText('stat-dropped-why', `rate ${s.dropped.rate || 0} · backpressure ${s.dropped.backpressure || 0}`);
    setText('stat-errors', String(s.errors));
    this.section.dataset.dropped = String(s.droppedTotal);
  }
}
