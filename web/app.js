// Salient's viewer: a page on `salient serve`'s API, nothing else. Maps are drawn here from the raw
// .npy the server keeps, so the overlay controls never run a method again. Every string that comes
// from the model, a file or the user is inserted as text (el() below), never as HTML.

const $ = (id) => document.getElementById(id);

// ---------- DOM, by construction only ----------
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
const svgEl = (tag, attrs = {}) => {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
};

// ---------- state ----------
const state = {
  models: [], model: '', info: null, methods: [], byName: new Map(),
  input: null,          // {kind: 'image'|'npy'|'id', b64, id, name}
  result: null,         // the last /api/explain answer
  base: null,           // the input as the model saw it (ImageBitmap)
  cards: [],            // {key, title, values: Float32Array, w, h, canvas, readout}
  job: null,            // the running job's id
  noise: null, randomisation: null,
  dataOffset: 0,
};

// ---------- the API ----------
function authHeaders() {
  const t = sessionStorage.getItem('salient-token');
  return t ? { Authorization: 'Bearer ' + t } : {};
}
async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  if (res.status === 401) {
    $('token-label').hidden = false;
    throw new Error('this server needs a token: enter it above, then try again');
  }
  if (!res.ok) {
    let message = res.status + ' ' + res.statusText;
    try { message = (await res.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return res;
}
const getJson = async (path) => (await api(path)).json();
const postJson = async (path, body) =>
  (await api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })).json();

function showError(e) {
  const box = $('error');
  if (!e) { box.hidden = true; box.textContent = ''; return; }
  box.textContent = e.message || String(e);
  box.hidden = false;
  status('');
}
const status = (text) => { $('status').textContent = text; };

// ---------- .npy ----------
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== 'NUMPY') throw new Error('not an .npy file');
  const major = bytes[6];
  const view = new DataView(buffer);
  const hlen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.slice(start, start + hlen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)[1]).split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  if (/'fortran_order':\s*True/.test(header)) throw new Error('Fortran-ordered .npy is not read here');
  const n = shape.reduce((a, b) => a * b, 1);
  const off = start + hlen;
  const data = new Float32Array(n);
  const readers = {
    '<f4': (i) => view.getFloat32(off + 4 * i, true), '<f8': (i) => view.getFloat64(off + 8 * i, true),
    '<i8': (i) => Number(view.getBigInt64(off + 8 * i, true)), '<i4': (i) => view.getInt32(off + 4 * i, true),
    '|u1': (i) => view.getUint8(off + i), '|b1': (i) => view.getUint8(off + i),
  };
  const read = readers[descr];
  if (!read) throw new Error('an .npy of dtype ' + descr + ' is not read here');
  for (let i = 0; i < n; i++) data[i] = read(i);
  return { shape, data };
}
const b64ToBuffer = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
function bufferToB64(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// A map as one value per pixel: [C,H,W] summed over channels (sign kept), [H,W] as it is.
export function plane(npy) {
  const s = npy.shape;
  if (s.length === 2) return { w: s[1], h: s[0], values: npy.data };
  if (s.length === 3) {
    const [c, h, w] = s;
    const values = new Float32Array(h * w);
    for (let k = 0; k < c; k++) for (let i = 0; i < h * w; i++) values[i] += npy.data[k * h * w + i];
    return { w, h, values };
  }
  return null;  // not an image map
}

// ---------- colour ----------
const MAPS = {
  viridis: [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]],
  inferno: [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85], [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]],
  jet: [[0, 0, 128], [0, 0, 255], [0, 128, 255], [0, 255, 255], [128, 255, 128], [255, 255, 0], [255, 128, 0], [255, 0, 0], [128, 0, 0]],
  gray: [[0, 0, 0], [255, 255, 255]],
  diverging: [[59, 76, 192], [141, 176, 254], [221, 221, 221], [244, 154, 123], [180, 4, 38]],
};
function colour(name, t) {
  const m = MAPS[name];
  const x = Math.min(Math.max(t, 0), 1) * (m.length - 1);
  const i = Math.min(Math.floor(x), m.length - 2), f = x - i;
  return [0, 1, 2].map((c) => Math.round(m[i][c] + f * (m[i + 1][c] - m[i][c])));
}

function controls() {
  return {
    opacity: Number($('opacity').value), colormap: $('colormap').value, sign: $('sign').value,
    clip: Math.min(100, Math.max(50, Number($('clip').value) || 100)), shared: $('shared').checked,
  };
}
function signed(v, sign) {
  if (sign === 'positive') return Math.max(v, 0);
  if (sign === 'negative') return Math.max(-v, 0);
  if (sign === 'absolute') return Math.abs(v);
  return v;
}
// The value at the clip percentile of |shown values|: the top of the colour scale.
function scaleOf(list, c) {
  const all = [];
  for (const values of list) for (const v of values) all.push(Math.abs(signed(v, c.sign)));
  if (!all.length) return 1;
  const sorted = Float64Array.from(all).sort();
  const s = sorted[Math.min(sorted.length - 1, Math.floor((c.clip / 100) * (sorted.length - 1)))];
  return s > 0 ? s : (sorted[sorted.length - 1] || 1);
}

// Draws the input and the map over it on `canvas` (the map's own resolution, scaled by CSS).
function draw(canvas, m, c, scale) {
  const size = Math.max(m.w, m.h) < 112 ? Math.max(m.w, m.h) * Math.ceil(224 / Math.max(m.w, m.h)) : Math.max(m.w, m.h);
  canvas.width = Math.round(size * m.w / Math.max(m.w, m.h));
  canvas.height = Math.round(size * m.h / Math.max(m.w, m.h));
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.base) ctx.drawImage(state.base, 0, 0, canvas.width, canvas.height);
  const heat = new ImageData(m.w, m.h);
  const diverging = c.sign === 'signed';
  for (let i = 0; i < m.w * m.h; i++) {
    const v = signed(m.values[i], c.sign) / scale;
    const rgb = diverging ? colour('diverging', (Math.max(-1, Math.min(1, v)) + 1) / 2) : colour(c.colormap, v);
    heat.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * i);
  }
  const off = new OffscreenCanvas(m.w, m.h);
  off.getContext('2d').putImageData(heat, 0, 0);
  ctx.globalAlpha = state.base ? c.opacity : 1;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 1;
}

// Every map on the page drawn again from its values (overlay controls: no request).
function redraw() {
  const c = controls();
  const groups = [state.cards, ...(state.noise ? state.noise.rows.map((r) => r.cards) : []),
    state.randomisation ? state.randomisation.cards : []];
  const shared = c.shared ? scaleOf(groups.flat().map((k) => k.values), c) : null;
  for (const cards of groups)
    for (const k of cards) draw(k.canvas, k, c, shared ?? scaleOf([k.values], c));
  saveUrl();
}

// ---------- hover: the value under the pointer in every main map ----------
function hover(event, card) {
  const r = card.canvas.getBoundingClientRect();
  const x = Math.floor(((event.clientX - r.left) / r.width) * card.w);
  const y = Math.floor(((event.clientY - r.top) / r.height) * card.h);
  if (x < 0 || y < 0 || x >= card.w || y >= card.h) return;
  $('hover').textContent = 'pixel (x ' + x + ', y ' + y + ')';
  for (const k of state.cards) {
    if (k.w !== card.w || k.h !== card.h) { k.readout.textContent = ''; continue; }
    k.readout.textContent = k.title + ' = ' + formatValue(k.values[y * k.w + x]);
  }
}
// A prediction's score: a probability as a percentage, a regression's value as it is.
const scoreText = (p) => (typeof p.probability === 'number' ? (100 * p.probability).toFixed(2) + ' %'
  : typeof p.value === 'number' ? '= ' + formatValue(p.value) : '');
const formatValue = (v) => (Number.isInteger(v) ? String(v) : Math.abs(v) >= 1e-3 ? v.toPrecision(6) : v.toExponential(5));

// ---------- models and methods ----------
async function loadModel(name) {
  state.model = name;
  state.info = await getJson('/v1/models/' + encodeURIComponent(name));
  const labels = state.info.labels || [];
  for (const id of ['f-class', 'f-predicted']) {
    const sel = $(id);
    sel.replaceChildren(el('option', { value: '' }, 'any'));
    labels.forEach((l, i) => sel.append(el('option', { value: String(i) }, i + ': ' + l)));
  }
  // A text model (metadata "tokenizer"): a text box instead of pictures, its methods only, no
  // overlay, data browser or pixel checks.
  state.text = (state.info.metadata || {}).modality === 'text' || !!(state.info.metadata || {}).tokenizer;
  // A tabular model (metadata "features"): rows, not pictures: no resizing, overlay, hovering or
  // pixel-noise panel.
  state.table = Array.isArray((state.info.metadata || {}).features) && state.info.metadata.features.length > 0;
  const imageOnly = new Set(['resize-label', 'controls', 'hover', 'noise-panel']);
  for (const id of ['drop', 'resize-label', 'input-canvas', 'input-row', 'data-browser', 'controls', 'hover', 'noise-panel', 'trust-panel'])
    $(id).hidden = state.text || (id === 'input-row') || (state.table && imageOnly.has(id));
  $('text-input').hidden = !state.text;
  // Another model's data browser is stale: emptied (reloaded when opened).
  $('thumbs').replaceChildren();
  state.dataOffset = 0;
  $('data-browser').open = false;
  // The targets this model takes: a dense output's classes as regions (its first explanation is a
  // region, never "top", which a dense output cannot be), else top, top-3 and the labels.
  const dense = !!state.info.dense;
  const choices = dense ? labels.map((l, i) => ['region:' + i, l])
    : [['top', 'the predicted class'], ['top-3', 'the three most probable']].concat(labels.map((l, i) => [String(i), l]));
  $('target-choices').replaceChildren(...choices.map(([v, l]) => el('option', { value: v }, l)));
  const current = $('target').value;
  if (dense && !current.startsWith('region:')) $('target').value = 'region:' + Math.min(1, Math.max(0, labels.length - 1));
  if (!dense && current.startsWith('region:')) $('target').value = 'top';
  $('target-help').textContent = dense ? 'a region: region:CLASS (the class summed over every pixel)'
    : 'top, top-3, a class number or label, 3+5, above:0.5';
  buildMethods();
}

const FAMILY_ORDER = ['gradient', 'layer/CAM', 'modified backprop', 'perturbation', 'intrinsic'];
function buildMethods() {
  const box = $('methods');
  const chosen = new Set(chosenMethods());
  box.replaceChildren();
  const families = [...new Set(state.methods.map((m) => m.family))]
    .sort((a, b) => (FAMILY_ORDER.indexOf(a) + 99) % 99 - (FAMILY_ORDER.indexOf(b) + 99) % 99);
  const onnx = state.info && state.info.backend === 'onnx';
  const only = state.info && Array.isArray(state.info.methods) ? new Set(state.info.methods) : null;  // a text model's
  for (const family of families) {
    const group = el('div', { class: 'group', role: 'group', 'aria-label': family }, el('h3', {}, family));
    for (const m of state.methods.filter((x) => x.family === family)) {
      const id = 'm-' + m.name;
      const check = el('input', { type: 'checkbox', id, value: m.name, class: 'method-check', disabled: (onnx && m.access !== 'black-box') || (only && !only.has(m.name)) });
      check.checked = chosen.has(m.name);
      const opts = optionsFieldset(m);
      opts.hidden = !check.checked;
      check.addEventListener('change', () => { opts.hidden = !check.checked; updateTrustMethods(); saveUrl(); });
      const badges = [m.scope, m.access, m.stage, m.specificity].map((b) => el('span', { class: 'badge' }, b));
      // One line a method (its summary as a tooltip); summary and paper shown once it is chosen.
      opts.prepend(el('div', { class: 'paper' }, m.summary, m.paper ? ' — ' + m.paper : ''));
      group.append(el('div', { class: 'method', title: m.summary + (m.paper ? ' — ' + m.paper : '') },
        el('label', { for: id }, check, ' ', m.title), ' ', badges, opts));
    }
    box.append(group);
  }
  updateTrustMethods();
}

// One field per option, from /v1/methods: types, defaults, bounds; a layer picker for CAMs. A
// model's own defaults (a text model's pad baseline and token features) replace the methods'.
function optionsFieldset(m) {
  const fs = el('fieldset', { class: 'options', 'aria-label': m.title + ' options' });
  const own = (state.info && state.info.option_defaults && state.info.option_defaults[m.name]) || {};
  for (const spec of m.options) {
    const o = Object.prototype.hasOwnProperty.call(own, spec.name) ? { ...spec, default: own[spec.name] } : spec;
    const id = 'o-' + m.name + '-' + o.name;
    let input;
    if (o.type === 'bool') {
      input = el('input', { type: 'checkbox', id });
      input.checked = !!o.default;
    } else if (o.type === 'choice') {
      input = el('select', { id }, o.choices.map((c) => el('option', { value: c }, c)));
      input.value = o.default;
    } else if (o.name === 'layer' && state.info && state.info.layers && state.info.layers.length) {
      input = el('select', { id }, el('option', { value: '' }, '(default: the last convolution)'),
        state.info.layers.filter((l) => Array.isArray(l.shape) && l.shape.length === 4)
          .map((l) => el('option', { value: l.path }, l.path + ' ' + l.type + ' [' + l.shape.join('×') + ']')));
    } else if (o.type === 'int' || o.type === 'double') {
      input = el('input', { type: 'number', id, step: o.type === 'int' ? 1 : 'any', min: o.min, max: o.max, required: true });
      input.value = String(o.default);
      if (o.min_open) input.dataset.minOpen = String(o.min);
    } else if (o.type === 'int|auto') {
      input = el('input', { type: 'text', id, size: 6, pattern: '[1-9][0-9]*|auto', required: true });
      input.value = String(o.default);
    } else {
      input = el('input', { type: 'text', id, size: 10 });
      input.value = o.default === null || o.default === undefined ? '' : String(o.default);
    }
    input.dataset.method = m.name;
    input.dataset.option = o.name;
    input.dataset.type = o.type;
    input.dataset.default = JSON.stringify(o.default);
    input.title = o.help;
    fs.append(el('label', { for: id, title: o.help }, o.name + ' ', input));
  }
  if (!m.options.length) fs.append(el('span', { class: 'paper' }, 'no options'));
  return fs;
}

const chosenMethods = () => [...document.querySelectorAll('#methods input.method-check:checked')].map((c) => c.value);

// The chosen methods' options that differ from their defaults, as {"method.option": value};
// fields are validated first (the browser's own checks plus open lower bounds).
function chosenOptions() {
  const out = {};
  for (const name of chosenMethods()) {
    for (const input of document.querySelectorAll('.options [data-method="' + CSS.escape(name) + '"]')) {
      const type = input.dataset.type;
      input.setCustomValidity('');
      if (input.dataset.minOpen !== undefined && Number(input.value) <= Number(input.dataset.minOpen))
        input.setCustomValidity('must be more than ' + input.dataset.minOpen);
      if (!input.checkValidity()) {
        input.reportValidity();
        throw new Error(name + ': option ' + input.dataset.option + ': ' + input.validationMessage);
      }
      let v;
      if (type === 'bool') v = input.checked;
      else if (type === 'int' || type === 'double') v = Number(input.value);
      else if (type === 'int|auto' && /^\s*\d+\s*$/.test(input.value)) v = Number(input.value);
      else v = input.value.trim();
      if (JSON.stringify(v) === input.dataset.default || (v === '' && type !== 'choice')) continue;
      out[name + '.' + input.dataset.option] = v;
    }
  }
  return out;
}

function updateTrustMethods() {
  const sel = $('trust-method');
  const keep = sel.value;
  sel.replaceChildren(...(chosenMethods().length ? chosenMethods() : ['saliency']).map((n) => el('option', { value: n }, n)));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

// ---------- input ----------
function inputFields() {
  const i = state.input;
  if (!i) throw new Error('choose an input first: upload an image or an .npy, or pick a data item');
  const fields = i.kind === 'id' ? { id: i.id } : i.kind === 'npy' ? { npy: i.b64 } : { image: i.b64 };
  if (i.kind === 'image') fields.resize = $('resize').value;
  return fields;
}
async function takeFile(file) {
  if (!file) return;
  showError(null);
  const buffer = await file.arrayBuffer();
  const npy = file.name.toLowerCase().endsWith('.npy') || (new Uint8Array(buffer))[0] === 0x93;
  state.input = { kind: npy ? 'npy' : 'image', b64: bufferToB64(buffer), name: file.name };
  $('input-name').textContent = file.name + (npy ? ' (array)' : '');
  if (!npy) {
    try { showInput(await createImageBitmap(file)); } catch (_) { clearInput(); }
  } else {
    clearInput();
  }
  saveUrl();
  if (chosenMethods().length) await explain();
}
function clearInput() {
  const c = $('input-canvas');
  c.getContext('2d').clearRect(0, 0, c.width, c.height);
}
// A tabular row (/api/data/{id} answers JSON): its columns as a table instead of a picture.
function showRow(row) {
  $('input-canvas').hidden = true;
  $('input-row').hidden = false;
  $('input-row').replaceChildren(...(row.features || []).map((f) => el('tr', {}, el('th', {}, f.name), el('td', {}, String(f.value)))));
}
function showInput(bitmap) {
  $('input-canvas').hidden = false;
  $('input-row').hidden = true;
  const c = $('input-canvas');
  const m = { w: bitmap.width, h: bitmap.height };
  const size = Math.max(m.w, m.h) < 112 ? Math.max(m.w, m.h) * Math.ceil(224 / Math.max(m.w, m.h)) : Math.max(m.w, m.h);
  c.width = Math.round(size * m.w / Math.max(m.w, m.h));
  c.height = Math.round(size * m.h / Math.max(m.w, m.h));
  const ctx = c.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, 0, 0, c.width, c.height);
}
async function bitmapOf(path) {
  const blob = await (await api(path)).blob();
  return createImageBitmap(blob);
}
async function pickData(id) {
  showError(null);
  state.input = { kind: 'id', id, name: id };
  $('input-name').textContent = id;
  const r = await api('/api/data/' + encodeURIComponent(id));
  if ((r.headers.get('content-type') || '').includes('json')) showRow(await r.json());
  else showInput(await createImageBitmap(await r.blob()));
  saveUrl();
  if (chosenMethods().length) await explain();
}

async function loadData(more) {
  if (!more) { state.dataOffset = 0; $('thumbs').replaceChildren(); }
  const q = new URLSearchParams({ offset: state.dataOffset, limit: 24 });
  if ($('f-class').value) q.set('class', $('f-class').value);
  if ($('f-predicted').value) q.set('predicted', $('f-predicted').value);
  if ($('f-correct').value) q.set('correct', $('f-correct').value);
  if (Number($('f-confidence').value) > 0) q.set('min_confidence', $('f-confidence').value);
  const page = await getJson('/api/data?' + q);
  for (const item of page.items) {
    const img = el('img', { alt: item.id });
    // {class, name} objects: their names (they printed as "[object Object]").
    const named = (v) => (v && typeof v === 'object' ? (v.name !== undefined ? v.name : String(v.class)) : String(v));
    const label = item.id + (item.label !== undefined ? ' (true ' + named(item.label) + ')' : '') +
      (item.predicted !== undefined ? ', predicted ' + named(item.predicted) : '');
    $('thumbs').append(el('button', { type: 'button', role: 'listitem', title: label, 'aria-label': label, dataset: { id: item.id },
      onclick: () => pickData(item.id).catch(showError) }, img));
    api(item.url).then(async (r) => {
      if ((r.headers.get('content-type') || '').includes('json')) img.replaceWith(el('span', { class: 'row-id' }, item.id));  // a tabular row
      else img.src = URL.createObjectURL(await r.blob());
    }).catch(() => {});
  }
  state.dataOffset += page.items.length;
  $('more').hidden = state.dataOffset >= page.total;
}

// ---------- explaining (as a job: progress and cancel) ----------
async function explain(target) {
  showError(null);
  const methods = chosenMethods();
  if (!methods.length) throw new Error('choose at least one method');
  if (target !== undefined) $('target').value = String(target);
  if (state.text) {  // one request: a text's explanation takes milliseconds
    const text = $('text').value;
    if (!text.trim()) throw new Error('write a text first');
    status('explaining…');
    const t0 = performance.now();
    const result = await postJson('/api/explain', { model: state.model, text, methods, options: chosenOptions(), target: $('target').value || 'top' });
    await show(result);
    status('done in ' + ((performance.now() - t0) / 1000).toFixed(2) + ' s');
    return;
  }
  const body = { model: state.model, methods, options: chosenOptions(), target: $('target').value || 'top', ...inputFields() };
  if (state.job) await cancel();
  status('explaining…');
  const job = await postJson('/api/jobs', body);
  state.job = job.id;
  const bars = new Map();
  const cancelButton = el('button', { type: 'button', id: 'cancel', onclick: () => cancel().catch(showError) }, 'Cancel');
  const line = el('div', { class: 'progress', dataset: { job: job.id } }, cancelButton);
  $('jobs').replaceChildren(line);
  for (const m of methods) {
    const bar = el('progress', { max: 1, value: 0, 'aria-label': m + ' progress' });
    bars.set(m, bar);
    line.append(el('label', {}, m + ' ', bar));
  }
  for (;;) {
    const j = await getJson('/api/jobs/' + job.id);
    if (state.job !== job.id) return;  // superseded by a newer request: that one owns the page
    for (const [m, f] of Object.entries(j.progress || {})) if (bars.has(m)) bars.get(m).value = f;
    if (j.status === 'done') {
      state.job = null;
      $('jobs').replaceChildren();
      await show(j.result);
      status('done in ' + j.seconds.toFixed(2) + ' s');
      return;
    }
    if (j.status === 'failed' || j.status === 'cancelled' || j.status === 'timed-out') {
      state.job = null;
      $('jobs').replaceChildren(el('p', { id: 'job-status', dataset: { job: job.id, status: j.status } },
        'The job was ' + j.status + (j.error ? ': ' + j.error : '')));
      status(j.status);
      if (j.status === 'failed') throw new Error(j.error);
      return;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}
async function cancel() {
  if (!state.job) return;
  const id = state.job;
  await api('/api/jobs/' + id, { method: 'DELETE' });
}

// A tabular method's card: the columns' attributions as signed bars (the 12 largest, then the rest
// summed), and where they start and end: the base value and f(x).
function featureCard(key, r, result) {
  const method = key.replace(/_c\d+$/, '');
  const title = state.byName.get(method)?.title || method;
  const top = r.features.slice(0, 12);
  const rest = r.features.slice(12).reduce((s, f) => s + f.attribution, 0);
  const rows = top.map((f) => ({ label: f.name + ' = ' + f.value, a: f.attribution }));
  if (r.features.length > 12) rows.push({ label: (r.features.length - 12) + ' others', a: rest });
  const most = Math.max(1e-300, ...rows.map((x) => Math.abs(x.a)));
  const bars = rows.map((x) => {
    const bar = el('span', { class: 'bar ' + (x.a >= 0 ? 'pos' : 'neg') });
    bar.style.width = (50 * Math.abs(x.a) / most).toFixed(2) + '%';  // CSSOM: allowed by the page's CSP, a style attribute is not
    bar.style[x.a >= 0 ? 'left' : 'right'] = '50%';
    return el('div', { class: 'bar-row', dataset: { testid: 'bar', name: x.label } },
      el('span', { class: 'bar-label' }, x.label), el('span', { class: 'bar-track' }, bar), el('span', { class: 'bar-value' }, formatValue(x.a)));
  });
  const base = r.base_value !== undefined ? r.base_value_of + ' = ' + formatValue(r.base_value) + ' → ' : '';
  return el('div', { class: 'card wide', dataset: { key } },
    el('h3', {}, title), el('div', { class: 'meta' }, base + 'f(x) = ' + formatValue(r['f(x)']) + ' · ' + r.seconds.toFixed(3) + ' s'),
    ...bars,
    el('div', {}, el('a', { href: r.map, download: key + '.npy' }, '.npy'),
      el('a', { href: result.explanation, download: 'explanation.json' }, 'explanation.json')));
}

// A text method's card: the tokens as the tokenizer made them, each on a background green (positive)
// or red (negative) by |score| / max |score|, its score on hover; tokens are text, colours CSSOM.
function tokenCard(key, r, result) {
  const method = key.replace(/_c\d+$/, '');
  const cls = /_c(\d+)$/.exec(key);
  const title = (state.byName.get(method)?.title || method) + (cls ? ' · class ' + cls[1] : '');
  const most = Math.max(1e-300, ...r.scores.map((v) => Math.abs(v)));
  const tokens = result.input.tokens.map((t, i) => {
    const v = r.scores[i];
    const span = el('span', { class: 'tok', title: t + ': ' + formatValue(v), dataset: { testid: 'token', score: String(v) } }, t);
    span.style.backgroundColor = (v >= 0 ? 'rgba(0, 160, 60, ' : 'rgba(220, 30, 30, ') + (Math.abs(v) / most).toFixed(3) + ')';
    return [span, ' '];
  });
  const diag = Object.entries(r.diagnostics || {}).filter(([, v]) => typeof v === 'number' || typeof v === 'string')
    .map(([k, v]) => ' · ' + k + ' ' + (typeof v === 'number' ? formatValue(v) : v)).join('');
  return el('div', { class: 'card wide', dataset: { key } },
    el('h3', {}, title), el('p', { class: 'tokens' }, tokens.flat()),
    el('div', { class: 'meta' }, 'sum ' + formatValue(r.sum) + ' · ' + r.seconds.toFixed(3) + ' s' + diag),
    el('div', {}, el('a', { href: r.html, target: '_blank', rel: 'noopener' }, '.html'),
      el('a', { href: r.png, download: key + '.png' }, '.png'), el('a', { href: r.npy, download: key + '.npy' }, '.npy'),
      el('a', { href: result.explanation, download: 'explanation.json' }, 'explanation.json')));
}

async function show(result) {
  state.result = result;
  // A picture of the input exists for images only (a tabular row's columns are shown as a table).
  state.base = result.input.shape && result.input.shape.length >= 2 ? await bitmapOf('/api/results/' + result.id + '/input.png').catch(() => null) : null;
  if (state.base) showInput(state.base);
  // Prediction: the top five; a click explains that class.
  const explainedClasses = new Set(result.explained.map((e) => e.class));
  $('predictions').replaceChildren(...result.predictions.slice(0, 5).map((p) =>
    el('li', {}, el('button', { type: 'button', 'aria-pressed': String(explainedClasses.has(p.class)), dataset: { class: p.class },
      onclick: () => explain(state.info.dense ? 'region:' + p.class : p.class).catch(showError) },  // a dense output: its region
    p.label + ' — ' + scoreText(p) + ' (class ' + p.class + ')'))));
  // A function target (a region, classes summed) has no class nor probability: its name alone.
  $('explained').textContent = 'Explaining: ' + result.explained.map((e) =>
    e.class === null || e.class === undefined ? e.label : e.label + ' (class ' + e.class + ', ' + scoreText(e) + ')').join('; ');
  // One card per map; a tabular row's methods as bars of its columns.
  const cards = [], nodes = [];
  for (const [key, r] of Object.entries(result.results)) {
    if (r.features) {
      nodes.push(featureCard(key, r, result));
      continue;
    }
    if (result.input.tokens) {
      nodes.push(tokenCard(key, r, result));
      continue;
    }
    const npy = parseNpy(await (await api(r.map)).arrayBuffer());
    const m = plane(npy);
    if (!m) continue;
    const method = key.replace(/_c\d+$/, '');
    const cls = /_c(\d+)$/.exec(key);
    const title = (state.byName.get(method)?.title || method) + (cls ? ' · class ' + cls[1] : '');
    const canvas = el('canvas', { 'aria-label': title + ' map', dataset: { key } });
    const readout = el('div', { class: 'value', dataset: { testid: 'value-' + key } });
    const card = { key, title, ...m, canvas, readout };
    canvas.addEventListener('mousemove', (e) => hover(e, card));
    // The method's scalar diagnostics (IG's completeness gap, SmoothGrad's noise, ...), as text.
    const diag = Object.entries(r.diagnostics || {}).filter(([, v]) => typeof v === 'number' || typeof v === 'string')
      .map(([k, v]) => ' · ' + k + ' ' + (typeof v === 'number' ? formatValue(v) : v)).join('');
    cards.push(card);
    nodes.push(card.node = el('div', { class: 'card', dataset: { key } },
      el('h3', {}, title), canvas, readout,
      el('div', { class: 'meta' }, 'min ' + formatValue(r.min) + ' · max ' + formatValue(r.max) + ' · ' + r.seconds.toFixed(3) + ' s' + diag),
      el('div', {}, el('a', { href: r.map, download: key + '.npy' }, '.npy'),
        r.overlay ? el('a', { href: r.overlay, download: key + '.png' }, '.png') : null,
        el('a', { href: result.explanation, download: 'explanation.json' }, 'explanation.json'))));
  }
  state.cards = cards;
  $('maps').replaceChildren(...nodes);
  redraw();
}

// ---------- "Is it noisy?" ----------
async function runNoise() {
  showError(null);
  if (!state.result) await explain();
  const target = state.result.explained[0].class;
  status('noisy copies…');
  const j = await postJson('/api/checks', {
    check: 'noise', model: state.model, methods: ['saliency', 'smoothgrad'], target: String(target),
    copies: Number($('noise-copies').value), sigma: Number($('noise-sigma').value), ...inputFields(),
  });
  const labels = state.info.labels || [];
  const rows = [];
  for (const [method, r] of Object.entries(j.methods)) {
    const cards = r.maps.map((mj, i) => {
      const m = plane(parseNpy(b64ToBuffer(mj.npy)));
      const canvas = el('canvas', { 'aria-label': method + (i ? ' copy ' + i : ' input') });
      return { ...m, canvas, title: method, caption: (i ? 'copy ' + i : 'input') + ': ' + (labels[j.predicted[i]] ?? j.predicted[i]) };
    });
    rows.push({ method, cards, sensitivity: r.max_sensitivity });
  }
  state.noise = { rows };
  $('noise-rows').replaceChildren(...rows.map((row) => el('div', { class: 'row', dataset: { method: row.method } },
    el('div', { class: 'label' }, el('strong', {}, state.byName.get(row.method)?.title || row.method), el('br'),
      'max-sensitivity ', el('span', { dataset: { testid: 'maxsens-' + row.method } }, row.sensitivity.toFixed(4))),
    row.cards.map((c) => el('div', { class: 'small' }, c.canvas, c.caption)))));
  redraw();
  status('σ = ' + j.sigma.toPrecision(3) + ' (' + (100 * j.sigma_fraction).toFixed(1) + ' % of the range)');
}

// ---------- "Can I trust it?" ----------
// Curves of a score: a probability in [0, 1], or a value (a regression's, a region's) on the range
// of its curves, the axis' ends labelled.
function chart(title, curves) {
  const W = 320, H = 200, P = 30;
  const svg = svgEl('svg', { width: W, height: H + 40, role: 'img', 'aria-label': title });
  const t = svgEl('text', { x: P, y: 14, class: 'legend' });
  t.textContent = title;
  svg.append(t);
  svg.append(svgEl('rect', { x: P, y: 20, width: W - 2 * P, height: H - 20 - P, fill: 'none', stroke: '#999' }));
  const all = curves.flatMap((c) => c.score).filter(Number.isFinite);
  let lo = Math.min(0, ...all), hi = Math.max(1, ...all);
  if (all.some((v) => v < 0 || v > 1)) { lo = Math.min(...all); hi = Math.max(...all); }
  if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
  const y = (v) => H - P - ((v - lo) / (hi - lo)) * (H - 20 - P);
  for (const [v, at] of [[hi, 20], [lo, H - P]]) {
    const tick = svgEl('text', { x: P - 2, y: at + 4, class: 'legend axis', 'text-anchor': 'end' });
    tick.textContent = Number(v.toPrecision(4)).toString();
    svg.append(tick);
  }
  curves.forEach((c, k) => {
    const pts = c.fraction.map((f, i) => (P + f * (W - 2 * P)).toFixed(1) + ',' + y(c.score[i]).toFixed(1));
    svg.append(svgEl('polyline', { points: pts.join(' '), fill: 'none', stroke: c.colour, 'stroke-width': 2, 'stroke-dasharray': c.dash || '' }));
    const l = svgEl('text', { x: P, y: H + 4 + 14 * k, fill: c.colour, class: 'legend' });
    l.textContent = c.name + ' — AUC ' + c.auc.toFixed(3);
    svg.append(l);
  });
  return svg;
}
async function runTrust() {
  showError(null);
  if (!state.result) await explain();
  const method = $('trust-method').value;
  const e = state.result.explained[0];  // a class, or a function target (a region) by its text
  const target = e.class === null || e.class === undefined ? e.label : String(e.class);
  const body = { model: state.model, method, target, options: chosenOptions(), ...inputFields() };
  status('deletion and insertion…');
  const f = await postJson('/api/checks', { ...body, check: 'faithfulness' });
  $('curves').replaceChildren(
    chart('Deletion: ' + method + ' (' + f.score + ', lower is better)', [
      { name: method, colour: '#c33', ...f.deletion }, { name: 'random order', colour: '#777', dash: '4 3', ...f.random.deletion }]),
    chart('Insertion: ' + method + ' (' + f.score + ', higher is better)', [
      { name: method, colour: '#36c', ...f.insertion }, { name: 'random order', colour: '#777', dash: '4 3', ...f.random.insertion }]));
  status('randomising the layers…');
  const r = await postJson('/api/checks', { ...body, check: 'randomisation' });
  const cards = [{ ...plane(parseNpy(b64ToBuffer(r.original.npy))), caption: 'trained model' }]
    .concat(r.steps.map((s) => ({ ...plane(parseNpy(b64ToBuffer(s.map.npy))), caption: '…' + s.layer + ' randomised: ρ = ' + s.spearman.toFixed(3) })));
  for (const c of cards) c.canvas = el('canvas', { 'aria-label': c.caption });
  state.randomisation = { cards };
  $('randomisation').replaceChildren(...cards.map((c) => el('div', { class: 'small card' }, c.canvas, c.caption)));
  redraw();
  status('checked ' + method);
}

// ---------- the URL holds the view ----------
const CONTROL_IDS = ['opacity', 'colormap', 'sign', 'clip', 'shared'];
function saveUrl() {
  const q = new URLSearchParams();
  if (state.model) q.set('model', state.model);
  if (state.input && state.input.kind === 'id') q.set('id', state.input.id);
  const methods = chosenMethods();
  if (methods.length) q.set('methods', methods.join(','));
  try {
    const o = chosenOptions();
    if (Object.keys(o).length) q.set('options', JSON.stringify(o));
  } catch (_) { /* an invalid field is not saved */ }
  if ($('target').value && $('target').value !== 'top') q.set('target', $('target').value);
  for (const id of CONTROL_IDS) q.set(id, id === 'shared' ? String($(id).checked) : $(id).value);
  history.replaceState(null, '', '#' + q.toString());
}
function readUrl() {
  const q = new URLSearchParams(location.hash.slice(1));
  for (const id of CONTROL_IDS) if (q.has(id)) { if (id === 'shared') $(id).checked = q.get(id) === 'true'; else $(id).value = q.get(id); }
  if (q.has('target')) $('target').value = q.get('target');
  return q;
}
function applyMethods(q) {
  const methods = (q.get('methods') || '').split(',').filter(Boolean);
  for (const m of methods) {
    const box = $('m-' + m);
    if (box) { box.checked = true; box.dispatchEvent(new Event('change')); }
  }
  if (q.has('options')) {
    const o = JSON.parse(q.get('options'));
    for (const [k, v] of Object.entries(o)) {
      const [m, name] = [k.slice(0, k.indexOf('.')), k.slice(k.indexOf('.') + 1)];
      const input = document.getElementById('o-' + m + '-' + name);
      if (!input) continue;
      if (input.type === 'checkbox') input.checked = !!v; else input.value = String(v);
    }
  }
}

// ---------- start ----------
async function start() {
  const q = readUrl();
  $('token').addEventListener('change', () => { sessionStorage.setItem('salient-token', $('token').value); start().catch(showError); });
  const [models, methods] = await Promise.all([getJson('/v1/models'), getJson('/v1/methods')]);
  state.models = models.models;
  state.methods = methods;
  state.byName = new Map(methods.map((m) => [m.name, m]));
  $('model').replaceChildren(...state.models.map((m) => el('option', { value: m.name }, m.name)));
  $('model').value = q.get('model') && state.models.some((m) => m.name === q.get('model')) ? q.get('model') : models.default;
  await loadModel($('model').value);
  applyMethods(q);
  status('ready');
  document.body.dataset.ready = 'true';
  if (q.has('id')) await pickData(q.get('id')).catch(showError);
}

function wire() {
  $('model').addEventListener('change', () => loadModel($('model').value).then(saveUrl).catch(showError));
  $('file').addEventListener('change', (e) => takeFile(e.target.files[0]).catch(showError));
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); takeFile(e.dataTransfer.files[0]).catch(showError); });
  document.addEventListener('paste', (e) => {
    const f = [...(e.clipboardData?.files || [])][0];
    if (f) takeFile(f).catch(showError);
  });
  $('methods-form').addEventListener('submit', (e) => { e.preventDefault(); explain().catch(showError); });
  $('data-browser').addEventListener('toggle', () => { if ($('data-browser').open && !$('thumbs').childElementCount) loadData(false).catch(showError); });
  $('data-filters').addEventListener('submit', (e) => { e.preventDefault(); loadData(false).catch(showError); });
  $('more').addEventListener('click', () => loadData(true).catch(showError));
  for (const id of CONTROL_IDS) $(id).addEventListener('input', redraw);
  $('noise-run').addEventListener('click', () => runNoise().catch(showError));
  $('trust-run').addEventListener('click', () => runTrust().catch(showError));
}

wire();
start().catch(showError);
