// The observer view: follows one client's SSE stream (/stream/events/{client_id}) with live boxes and a hazard log.

import { EventStream } from './events.js';
import { clearOverlay, drawDetections, hazardsOf, hazardTest } from './overlay.js';
import { clearErrors, fmt, setPanelState, setText, showError, showHazards } from './ui.js';

const $ = (id) => document.getElementById(id);
const MAX_LOG = 200;
const SNAPSHOT_MS = 200;  // a camera's picture is refreshed at most 5 times a second

/** Ids of the cameras the box watches itself ([] when the list cannot be read). */
export async function cameraIds(token) {
  try {
    const resp = await fetch('/v1/cameras', { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (!resp.ok) return [];
    return (await resp.json()).cameras.filter((c) => c.enabled !== false).map((c) => c.id);
  } catch {
    return [];
  }
}

/** "2× person, bus" */
export function countLabels(detections) {
  const counts = new Map();
  for (const d of detections) counts.set(d.label, (counts.get(d.label) || 0) + 1);
  return [...counts].map(([label, n]) => (n > 1 ? `${n}× ${label}` : label)).join(', ');
}

function freshState(clientId = '', value = 'idle') {
  return { state: value, clientId, last: null, drawn: [], active: [], log: [], camera: false, pictures: 0, picture: null };
}

export class ObserverView {
  constructor({ tokens }) {
    this.tokens = tokens;
    this.section = $('observer');
    this.overlay = $('observer-overlay');
    this.stream = null;
    this.times = [];
    this.state = freshState();  // exposed as edgeViewer.observer
  }

  setState(value, detail = '') {
    setPanelState(this.section, 'observer', this.state, value, detail);
  }

  /** Follow one client id (stops following the previous one). */
  start(clientId) {
    this.stop();
    clearErrors('observer');
    this.state = freshState(clientId, 'connecting');
    $('hazard-log').replaceChildren();
    this.section.dataset.clientId = clientId;
    this.section.dataset.hazards = '';
    $('observer-placeholder').textContent = `Waiting for detections from ${clientId}…`;
    $('observer-placeholder').hidden = false;
    $('btn-observe-stop').disabled = false;
    const stream = new EventStream(`/stream/events/${encodeURIComponent(clientId)}`, {
      token: this.tokens.value,
      handlers: {
        onStatus: (s, detail) => this.setState(s, detail),
        onEvent: (ev) => this.onEvent(ev),
        onError: (message) => showError(`Observer: ${message}`, { key: 'obs:error', group: 'observer' }),
        onAuth: () => this.onAuth(stream, clientId),
      },
    });
    this.stream = stream;
    stream.run();
    this.watchCamera(clientId, stream);
  }

  /** When the id is one of the box's own cameras, show its latest frame under the boxes. */
  async watchCamera(clientId, stream) {
    const ids = await cameraIds(this.tokens.value);
    if (this.stream !== stream || !ids.includes(clientId)) return;
    this.state.camera = true;
    this.section.dataset.camera = clientId;
    const img = $('observer-frame');
    img.onload = () => {
      img.hidden = false;
      this.state.pictures += 1;
      this.state.picture = [img.naturalWidth, img.naturalHeight];
      this.loading = false;
    };
    img.onerror = () => { this.loading = false; };
  }

  refreshPicture(frameId) {
    const now = performance.now();
    if (!this.state.camera || this.loading || now - (this.pictureAt || 0) < SNAPSHOT_MS) return;
    this.loading = true;
    this.pictureAt = now;
    const token = this.tokens.value ? `&token=${encodeURIComponent(this.tokens.value)}` : '';
    $('observer-frame').src = `/v1/cameras/${encodeURIComponent(this.state.clientId)}/snapshot.jpg?f=${frameId}${token}`;
  }

  stop() {
    if (this.stream) this.stream.stop();
    this.stream = null;
    this.times = [];
    clearOverlay(this.overlay);
    $('observer-frame').hidden = true;
    $('observer-frame').removeAttribute('src');
    delete this.section.dataset.camera;
    this.loading = false;
    showHazards($('observer-hazards'), []);
    $('btn-observe-stop').disabled = true;
    this.setState('idle');
  }

  async onAuth(stream, clientId) {
    this.setState('auth', 'access token required');
    const token = await this.tokens.ask('The event stream requires an access token.');
    if (this.stream !== stream) return;
    if (token !== null) {
      this.start(clientId);
    } else {
      showError('Observer not connected: the server requires an access token.', { key: 'obs:auth', group: 'observer' });
    }
  }

  onEvent({ event, data }) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      showError(`The event stream sent a ${event} event that is not JSON.`, { key: 'obs:json', group: 'observer' });
      return;
    }
    setText('obs-last', `${event} · ${new Date().toLocaleTimeString()}`);
    if (event === 'detections') this.onDetections(msg);
    else if (event === 'hazard') this.onHazard(msg);
    else if (event === 'session') {
      const session = msg.session_id ? ` (session ${msg.session_id})` : '';
      this.log('session', `client ${msg.state || 'changed'}${session}${msg.reason ? `: ${msg.reason}` : ''}`);
    } else if (event === 'fps') {
      setText('obs-limit', fmt(msg.fps_limit, 1));
      setText('obs-limit-why', msg.reason || '');
    }
  }

  onDetections(msg) {
    const now = performance.now();
    this.times = this.times.filter((t) => now - t <= 2000).concat(now);
    this.state.last = msg;
    if (Array.isArray(msg.image_size)) this.overlay.parentElement.style.aspectRatio = msg.image_size.join(' / ');
    $('observer-placeholder').hidden = true;
    this.refreshPicture(msg.frame_id);
    this.state.drawn = drawDetections(this.overlay, msg, hazardTest(msg), { frame: true });
    setText('obs-objects', countLabels(msg.detections) || 'none');
    this.section.dataset.labels = msg.detections.map((d) => d.label).join(',');
    const t = this.times;
    setText('obs-fps', t.length > 1 ? fmt((t.length - 1) / ((t[t.length - 1] - t[0]) / 1000), 1) : '–');
    // A dashboard that joins late learns of already active hazards from the replies' rule list.
    const active = hazardsOf(msg).filter((h) => h.active).map((h) => h.rule);
    if (active.some((rule) => !this.state.active.includes(rule))) this.setActive([...this.state.active, ...active]);
  }

  onHazard(msg) {
    const rule = msg.rule || msg.name || 'hazard';
    const active = new Set(this.state.active);
    if (msg.state === 'started') active.add(rule);
    else active.delete(rule);
    this.setActive(active);
    const at = msg.frame_id ? ` at frame ${msg.frame_id}` : '';
    this.log(msg.state === 'started' ? 'started' : 'ended', `${rule} ${msg.state}${at}${msg.reason ? ` (${msg.reason})` : ''}`);
  }

  setActive(rules) {
    this.state.active = [...new Set(rules)];
    this.section.dataset.hazards = this.state.active.join(',');
    showHazards($('observer-hazards'), this.state.active);
  }

  log(kind, text) {
    const item = { time: new Date(), kind, text };
    this.state.log.push(item);
    if (this.state.log.length > MAX_LOG) this.state.log.shift();
    const li = document.createElement('li');
    li.className = kind;
    const time = document.createElement('time');
    time.dateTime = item.time.toISOString();
    time.textContent = item.time.toLocaleTimeString();
    li.append(time, text);
    const list = $('hazard-log');
    list.prepend(li);
    while (list.children.length > MAX_LOG) list.lastChild.remove();
  }

  /** Redraw the last detections (after a resize). */
  redraw() {
    if (this.state.last && this.stream) {
      this.state.drawn = drawDetections(this.overlay, this.state.last, hazardTest(this.state.last), { frame: true });
    }
  }
}
