// Entry point: the server facts header and the wiring of the live and observer views to the page's controls.

import { RecentHazards } from './hazards.js';
import { LiveView } from './live.js';
import { ObserverView, cameraIds } from './observer.js';
import { Tokens, setText } from './ui.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const tokens = new Tokens($('token-dialog'), $('token-input'), $('token-reason'), $('token-cancel'));

function describeModel(model) {
  if (!model) return '–';
  const size = Array.isArray(model.input_size) ? ` · ${model.input_size.join('×')}` : '';
  const labels = Array.isArray(model.labels) ? ` · ${model.labels.length} classes` : '';
  const precision = model.precision ? ` · ${String(model.precision).toUpperCase()}` : '';
  return `${model.name}${precision}${size}${labels}`;
}

/** The device as a string, or as {selected, executing}: "GPU", "AUTO (runs on GPU.0, CPU)". */
function describeDevice(device) {
  if (!device) return '–';
  if (typeof device === 'string') return device;
  const executing = Array.isArray(device.executing) ? device.executing.join(', ') : '';
  const name = device.selected || executing || '–';
  return executing && executing !== name ? `${name} (runs on ${executing})` : name;
}

function showServerFacts(facts) {
  setText('info-device', describeDevice({ selected: facts.device, executing: facts.executing }));
  setText('info-model', describeModel(facts.model));
}

const live = new LiveView({
  tokens,
  clientId: params.get('client_id') || '',
  onSession: (msg) => {
    showServerFacts(msg);
    $('btn-observe-own').disabled = false;
    if (!$('observe-id').value) $('observe-id').value = msg.client_id;
  },
});
const observer = new ObserverView({ tokens });
const recent = new RecentHazards({ tokens, list: $('recent-list') });

// State the page exposes for dashboards, scripts and tests.
const exposed = { info: null };
Object.defineProperty(exposed, 'live', { get: () => live.state, enumerable: true });
Object.defineProperty(exposed, 'observer', { get: () => observer.state, enumerable: true });
Object.defineProperty(exposed, 'recent', { get: () => recent.state, enumerable: true });
window.edgeViewer = exposed;

async function loadInfo() {
  try {
    // With server.health_requires_token /v1/info needs the token too.
    const headers = tokens.value ? { Authorization: `Bearer ${tokens.value}` } : {};
    const resp = await fetch('/v1/info', { headers, cache: 'no-store' });
    if (!resp.ok) return;
    exposed.info = await resp.json();
    if (!live.state.session) showServerFacts(exposed.info);
  } catch {
    // The same facts arrive with the session message; nothing to report here.
  }
}

/** Offer the box's own cameras in the observer's client id field. */
async function listCameras() {
  const ids = await cameraIds(tokens.value);
  $('camera-ids').replaceChildren(...ids.map((id) => Object.assign(document.createElement('option'), { value: id })));
  exposed.cameras = ids;
}

function wire() {
  $('btn-camera').addEventListener('click', () => live.start(() => live.source.openCamera()));
  $('file-input').addEventListener('change', (ev) => {
    const file = ev.target.files && ev.target.files[0];
    if (file) live.start(() => live.source.openFile(file));
    ev.target.value = '';
  });
  $('btn-stop').addEventListener('click', () => live.stop());
  let timer = null;
  $('confidence').addEventListener('input', (ev) => {
    const value = Number(ev.target.value);
    setText('confidence-value', value.toFixed(2));
    clearTimeout(timer);
    timer = setTimeout(() => live.setConfidence(value), 150);
  });
  $('observe-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $('observe-id').value.trim();
    if (id) observer.start(id);
  });
  $('btn-observe-own').addEventListener('click', () => {
    $('observe-id').value = live.state.clientId;
    observer.start(live.state.clientId);
  });
  $('btn-observe-stop').addEventListener('click', () => observer.stop());
  window.addEventListener('resize', () => {
    live.redraw();
    observer.redraw();
  });
  setInterval(() => live.refreshStats(), 500);
}

wire();
loadInfo();
recent.start();
listCameras();
if (params.get('observe')) {
  $('observe-id').value = params.get('observe');
  observer.start(params.get('observe'));
}
if (params.get('source') === 'camera') live.start(() => live.source.openCamera());
document.body.dataset.ready = 'true';
