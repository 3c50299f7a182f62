// Entry point: wires the live view (camera/file -> /stream/detection) and the observer view (SSE) to the page.

import { FrameSource } from './source.js';
import { DetectionClient } from './stream.js';
import { EventStream } from './events.js';
import { clearOverlay, drawDetections } from './overlay.js';
import { showError, clearErrors, setText, Tokens, fmt } from './ui.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const tokens = new Tokens($('token-dialog'), $('token-input'), $('token-reason'), $('token-cancel'));

// State the page exposes for dashboards, scripts and tests.
const state = {
  info: null,
  live: { state: 'idle', session: null, clientId: params.get('client_id') || '', last: null, drawn: [], stats: null },
  observer: { state: 'idle', clientId: '', last: null, drawn: [], active: [], log: [] },
};
window.edgeViewer = state;

/** Rules a reply triggers: {rule, active, detections: [index…]} (plain names are accepted too). */
function hazardsOf(reply) {
  return (reply.hazards || []).map((h) => (typeof h === 'string' ? { rule: h, active: true, detections: [] } : h));
}

function hazardTest(reply) {
  const hits = new Set(hazardsOf(reply).flatMap((h) => h.detections || []));
  return (_det, i) => hits.has(i);
}

function showHazards(el, names) {
  el.hidden = names.length === 0;
  el.textContent = names.length ? `⚠ Hazard: ${names.join(', ')}` : '';
}

function setState(section, key, value, detail = '') {
  state[key].state = value;
  section.dataset.state = value;
  setText(`${key}-state`, value);
  $(`${key}-state`).title = detail;
}

function describeModel(model) {
  if (!model) return '–';
  const size = Array.isArray(model.input_size) ? ` · ${model.input_size.join('×')}` : '';
  const labels = Array.isArray(model.labels) ? ` · ${model.labels.length} classes` : '';
  return `${model.name}${size}${labels}`;
}

/** The device as a string, or as {selected, executing, fallback, reason}. */
function describeDevice(device) {
  if (!device) return '–';
  if (typeof device === 'string') return device;
  const executing = Array.isArray(device.executing) && device.executing.length ? device.executing.join(', ') : '';
  const name = device.selected || device.name || executing || JSON.stringify(device);
  const runs = executing && executing !== name ? ` (runs on ${executing})` : '';
  return `${name}${runs}${device.fallback && device.reason ? ` · fallback: ${device.reason}` : ''}`;
}

function showServerFacts(device, model) {
  setText('info-device', describeDevice(device));
  setText('info-model', describeModel(model));
}

// ---------------------------------------------------------------- live view

const live = {
  section: $('live'),
  overlay: $('live-overlay'),
  source: new FrameSource($('live-video'), $('live-image')),
  client: null,
  retry: null,
  retryDelay: 1000,
};

function liveHandlers() {
  return {
    onStatus: (s) => setState(live.section, 'live', s),
    onSession: (msg) => {
      state.live.session = msg;
      state.live.clientId = msg.client_id;
      live.retryDelay = 1000;
      setText('stat-client', msg.client_id);
      setText('stat-limit', fmt(msg.fps_limit, 1));
      setText('stat-limit-why', 'session start');
      live.client.control({ type: 'config' });  // the reply carries the effective confidence for the slider
      showServerFacts({ selected: msg.device, executing: msg.executing }, msg.model);
      $('confidence').disabled = false;
      $('btn-observe-own').disabled = false;
      if (!$('observe-id').value) $('observe-id').value = msg.client_id;
      clearErrors('live');
    },
    onReply: (msg) => {
      state.live.last = msg;
      state.live.drawn = drawDetections(live.overlay, msg, hazardTest(msg));
      live.section.dataset.labels = msg.detections.map((d) => d.label).join(',');
      live.section.dataset.boxes = String(state.live.drawn.length);
      live.section.dataset.frames = String(live.client.stats.processed);
      showHazards($('live-hazards'), hazardsOf(msg).filter((h) => h.active).map((h) => h.rule));
    },
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
    onClose: (ev) => onLiveClosed(ev),
  };
}

async function onLiveClosed({ code, reason, opened }) {
  state.live.session = null;
  $('confidence').disabled = true;
  if (!live.source.kind) return setState(live.section, 'live', 'idle');
  const tokenProblem = code === 1008 && (!reason || /token/i.test(reason));
  if (tokenProblem || (!opened && code === 1006 && (await needsToken()))) {
    setState(live.section, 'live', 'auth', 'access token required');
    const token = await tokens.ask(tokens.value ? 'The server rejected the token. Enter the right one.'
      : 'This server requires an access token.');
    if (token !== null) return connectLive();
    showError('Not connected: the server requires an access token.', { key: 'live:auth', group: 'live' });
    return stopLive('auth');
  }
  setState(live.section, 'live', 'error', `closed (${code})`);
  clearOverlay(live.overlay);
  if (code === 1008 || /replaced/i.test(reason)) {
    // Retrying cannot help (e.g. a bad client id, or another viewer took over this client id).
    showError(`Detection stream closed (code ${code}): ${reason || 'refused by the server'}.`, { key: 'live:closed', group: 'live' });
    return stopLive('error');
  }
  showError(`Detection stream closed (code ${code})${reason ? `: ${reason}` : ''}. Reconnecting in `
    + `${Math.round(live.retryDelay / 1000)} s…`, { key: 'live:closed', group: 'live' });
  live.retry = setTimeout(connectLive, live.retryDelay);
  live.retryDelay = Math.min(live.retryDelay * 2, 10000);
}

/** A WebSocket refused before the upgrade shows up as code 1006; ask the server whether a token is needed. */
async function needsToken() {
  try {
    const headers = tokens.value ? { Authorization: `Bearer ${tokens.value}` } : {};
    const resp = await fetch('/stream/detection', { headers, cache: 'no-store' });
    return resp.status === 401 || resp.status === 403;
  } catch {
    return false;
  }
}

function connectLive() {
  clearTimeout(live.retry);
  if (live.client) live.client.close();
  const clientId = state.live.clientId;
  live.client = new DetectionClient({ source: live.source, clientId, token: tokens.value, handlers: liveHandlers() });
  state.live.stats = live.client.stats;
  live.client.connect();
}

async function startLive(open) {
  clearErrors('live');
  try {
    await open();
  } catch (err) {
    showError(err.message, { key: 'live:source', group: 'live' });
    return;
  }
  live.section.dataset.source = live.source.kind;
  $('live-stage').classList.add('has-picture');
  $('live-placeholder').hidden = true;
  $('btn-stop').disabled = false;
  clearOverlay(live.overlay);
  connectLive();
}

function stopLive(reason = 'stopped') {
  clearTimeout(live.retry);
  if (live.client) live.client.close();
  live.source.close();
  clearOverlay(live.overlay);
  $('live-stage').classList.remove('has-picture');
  $('live-placeholder').hidden = false;
  $('btn-stop').disabled = true;
  showHazards($('live-hazards'), []);
  setState(live.section, 'live', reason === 'stopped' ? 'idle' : reason);
}

function refreshLiveStats() {
  const s = live.client && live.client.stats;
  if (!s) return;
  setText('stat-fps', fmt(s.fps, 1));
  setText('stat-latency', s.latency === null ? '–' : `${fmt(s.latency, 0)} ms`);
  setText('stat-server', s.serverTime === null ? '–' : `${fmt(s.serverTime, 0)} ms`);
  setText('stat-frames', String(s.processed));
  setText('stat-sent', `of ${s.sent} sent`);
  setText('stat-dropped', String(s.droppedTotal));
  setText('stat-dropped-why', `rate ${s.dropped.rate || 0} · backpressure ${s.dropped.backpressure || 0}`);
  setText('stat-errors', String(s.errors));
  live.section.dataset.dropped = String(s.droppedTotal);
}

// ---------------------------------------------------------------- observer view

const observer = { section: $('observer'), overlay: $('observer-overlay'), stream: null, times: [] };

function logEntry(kind, text) {
  const item = { time: new Date(), kind, text };
  state.observer.log.push(item);
  if (state.observer.log.length > 200) state.observer.log.shift();
  const li = document.createElement('li');
  li.className = kind;
  const time = document.createElement('time');
  time.dateTime = item.time.toISOString();
  time.textContent = item.time.toLocaleTimeString();
  li.append(time, text);
  const log = $('hazard-log');
  log.prepend(li);
  while (log.children.length > 200) log.lastChild.remove();
  observer.section.dataset.logCount = String(state.observer.log.length);
}

/** "2× person, bus" */
function countLabels(detections) {
  const counts = new Map();
  for (const d of detections) counts.set(d.label, (counts.get(d.label) || 0) + 1);
  return [...counts].map(([label, n]) => (n > 1 ? `${n}× ${label}` : label)).join(', ');
}

function setActiveHazards(rules) {
  state.observer.active = [...new Set(rules)];
  observer.section.dataset.hazards = state.observer.active.join(',');
  showHazards($('observer-hazards'), state.observer.active);
}

function onObserverEvent({ event, data }) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    showError(`The event stream sent a ${event} event that is not JSON.`, { key: 'obs:json', group: 'observer' });
    return;
  }
  setText('obs-last', `${event} · ${new Date().toLocaleTimeString()}`);
  if (event === 'detections') {
    const now = performance.now();
    observer.times = observer.times.filter((t) => now - t <= 2000).concat(now);
    state.observer.last = msg;
    if (Array.isArray(msg.image_size)) $('observer-overlay').parentElement.style.aspectRatio = msg.image_size.join(' / ');
    $('observer-placeholder').hidden = true;
    state.observer.drawn = drawDetections(observer.overlay, msg, hazardTest(msg), { frame: true });
    setText('obs-objects', countLabels(msg.detections) || 'none');
    // A dashboard that joins late learns of already active hazards from the replies' rule list.
    const active = hazardsOf(msg).filter((h) => h.active).map((h) => h.rule);
    if (active.some((rule) => !state.observer.active.includes(rule))) setActiveHazards([...state.observer.active, ...active]);
    observer.section.dataset.labels = msg.detections.map((d) => d.label).join(',');
    const t = observer.times;
    setText('obs-fps', t.length > 1 ? fmt((t.length - 1) / ((t[t.length - 1] - t[0]) / 1000), 1) : '–');
  } else if (event === 'hazard') {
    const rule = msg.rule || msg.name || 'hazard';
    const active = new Set(state.observer.active);
    if (msg.state === 'started') active.add(rule); else active.delete(rule);
    setActiveHazards(active);
    logEntry(msg.state === 'started' ? 'started' : 'ended',
      `${rule} ${msg.state}${msg.frame_id ? ` at frame ${msg.frame_id}` : ''}${msg.reason ? ` (${msg.reason})` : ''}`);
  } else if (event === 'session') {
    logEntry('session', `client ${msg.state || msg.event || 'changed'}${msg.session_id ? ` (session ${msg.session_id})` : ''}`);
  } else if (event === 'fps') {
    setText('obs-limit', fmt(msg.fps_limit, 1));
    setText('obs-limit-why', msg.reason || '');
  }
}

function startObserver(clientId) {
  stopObserver();
  clearErrors('observer');
  state.observer = { state: 'connecting', clientId, last: null, drawn: [], active: [], log: [] };
  $('hazard-log').replaceChildren();
  observer.section.dataset.clientId = clientId;
  $('observer-placeholder').textContent = `Waiting for detections from ${clientId}…`;
  $('observer-placeholder').hidden = false;
  $('btn-observe-stop').disabled = false;
  const stream = new EventStream(`/stream/events/${encodeURIComponent(clientId)}`, {
    token: tokens.value,
    handlers: {
      onStatus: (s, detail) => setState(observer.section, 'observer', s, detail),
      onEvent: onObserverEvent,
      onError: (message) => showError(`Observer: ${message}`, { key: 'obs:error', group: 'observer' }),
      onAuth: async () => {
        setState(observer.section, 'observer', 'auth', 'access token required');
        const token = await tokens.ask('The event stream requires an access token.');
        if (token !== null && observer.stream === stream) startObserver(clientId);
        else if (token === null) showError('Observer not connected: the server requires an access token.', { key: 'obs:auth', group: 'observer' });
      },
    },
  });
  observer.stream = stream;
  stream.run();
}

function stopObserver() {
  if (observer.stream) observer.stream.stop();
  observer.stream = null;
  observer.times = [];
  clearOverlay(observer.overlay);
  showHazards($('observer-hazards'), []);
  $('btn-observe-stop').disabled = true;
  setState(observer.section, 'observer', 'idle');
}

// ---------------------------------------------------------------- wiring

async function loadInfo() {
  try {
    const resp = await fetch('/v1/info', { cache: 'no-store' });
    if (!resp.ok) return;
    state.info = await resp.json();
    if (!state.live.session) showServerFacts({ selected: state.info.device, executing: state.info.executing }, state.info.model);
  } catch {
    // The facts also arrive with the session message; nothing to report here.
  }
}

function wire() {
  $('btn-camera').addEventListener('click', () => startLive(() => live.source.openCamera()));
  $('file-input').addEventListener('change', (ev) => {
    const file = ev.target.files && ev.target.files[0];
    if (file) startLive(() => live.source.openFile(file));
    ev.target.value = '';
  });
  $('btn-stop').addEventListener('click', () => stopLive());
  let timer = null;
  $('confidence').addEventListener('input', (ev) => {
    const value = Number(ev.target.value);
    setText('confidence-value', value.toFixed(2));
    clearTimeout(timer);
    timer = setTimeout(() => live.client && live.client.control({ type: 'config', confidence: value }), 150);
  });
  $('observe-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $('observe-id').value.trim();
    if (id) startObserver(id);
  });
  $('btn-observe-own').addEventListener('click', () => {
    $('observe-id').value = state.live.clientId;
    startObserver(state.live.clientId);
  });
  $('btn-observe-stop').addEventListener('click', () => stopObserver());
  window.addEventListener('resize', () => {
    if (state.live.last) state.live.drawn = drawDetections(live.overlay, state.live.last, hazardTest(state.live.last));
  });
  setInterval(refreshLiveStats, 500);
}

wire();
loadInfo();
if (params.get('observe')) {
  $('observe-id').value = params.get('observe');
  startObserver(params.get('observe'));
}
if (params.get('source') === 'camera') startLive(() => live.source.openCamera());
document.body.dataset.ready = 'true';
