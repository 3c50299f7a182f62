// Drawing of detection boxes, labels and hazard highlights on a transparent canvas.

export const HAZARD_COLOR = '#ff3b30';
const PALETTE = ['#4f9cf9', '#34c759', '#ffcc00', '#af52de', '#5ac8fa', '#ff9500', '#64d2ff', '#bf5af2'];
const LINE_WIDTH = 3;
const FONT = '600 13px system-ui, sans-serif';

/** Colour of a non-hazard box of this class. */
export function colorFor(classId) {
  return PALETTE[Math.abs(classId | 0) % PALETTE.length];
}

/** Size the canvas backing store to its CSS box and return a context that draws in CSS pixels. */
export function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const height = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/** Erase the overlay. */
export function clearOverlay(canvas) {
  const ctx = fitCanvas(canvas);
  ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
}

/** Where an image of size [w, h] sits inside the canvas when fitted ("contain"), in CSS pixels. */
function imageRect(canvas, [iw, ih]) {
  const cw = canvas.clientWidth;
  const ch = canvas.clientHeight;
  const scale = Math.min(cw / iw, ch / ih);
  return { x: (cw - iw * scale) / 2, y: (ch - ih * scale) / 2, scale, w: iw * scale, h: ih * scale };
}

function drawLabel(ctx, text, color, x, y, bounds) {
  ctx.font = FONT;
  const w = ctx.measureText(text).width + 8;
  const h = 18;
  // Above the box when there is room, otherwise just inside its top edge.
  const top = y - h >= bounds.y ? y - h : y;
  const left = Math.min(x, bounds.x + bounds.w - w);
  ctx.fillStyle = color;
  ctx.fillRect(left, top, w, h);
  ctx.fillStyle = color === '#ffcc00' ? '#000' : '#fff';
  ctx.textBaseline = 'middle';
  ctx.fillText(text, left + 4, top + h / 2 + 0.5);
}

/**
 * Draw one `detections` message. `isHazard(det, index)` says which boxes trigger a hazard rule.
 * Returns the boxes as drawn, in CSS pixels of the canvas: [{label, color, x1, y1, x2, y2}].
 */
export function drawDetections(canvas, reply, isHazard, { frame = false } = {}) {
  const ctx = fitCanvas(canvas);
  ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
  const size = reply.image_size;
  if (!Array.isArray(size) || !(size[0] > 0 && size[1] > 0)) return [];
  const r = imageRect(canvas, size);
  if (frame) {
    ctx.strokeStyle = '#3a3f45';
    ctx.lineWidth = 1;
    ctx.strokeRect(r.x + 0.5, r.y + 0.5, r.w - 1, r.h - 1);
  }
  const drawn = [];
  (reply.detections || []).forEach((det, i) => {
    const [bx1, by1, bx2, by2] = det.box;
    const x1 = r.x + Math.max(0, bx1) * r.scale;
    const y1 = r.y + Math.max(0, by1) * r.scale;
    const x2 = r.x + Math.min(size[0], bx2) * r.scale;
    const y2 = r.y + Math.min(size[1], by2) * r.scale;
    const hazard = isHazard(det, i);
    const color = hazard ? HAZARD_COLOR : colorFor(det.class_id);
    ctx.strokeStyle = color;
    ctx.lineWidth = hazard ? LINE_WIDTH + 1 : LINE_WIDTH;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    drawLabel(ctx, `${det.label} ${Math.round(det.confidence * 100)}%`, color, x1 - ctx.lineWidth / 2, y1 - ctx.lineWidth / 2, r);
    drawn.push({ label: det.label, hazard, color, x1, y1, x2, y2 });
  });
  return drawn;
}

/** Rules a reply triggers: [{rule, active, detections: [index…], confidence}] (plain names are accepted too). */
export function hazardsOf(reply) {
  return (reply.hazards || []).map((h) => (typeof h === 'string' ? { rule: h, active: true, detections: [] } : h));
}

/** A predicate (det, index) => true for the detections that trigger a hazard rule in this reply. */
export function hazardTest(reply) {
  const hits = new Set(hazardsOf(reply).flatMap((h) => h.detections || []));
  return (_det, i) => hits.has(i);
}
