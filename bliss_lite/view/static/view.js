// bliss-lite live view: follows scans through the server's event stream (no polling of
// points), draws curves with uPlot and shows server-rendered PNGs for frames, meshes, maps
// and sinograms. Images are asked for one at a time (the next only after the last loaded),
// so a slow page or link never piles requests on the server.
"use strict";

const $ = (id) => document.getElementById(id);
const view = window.blissView = {
  shown: null, desc: null, columns: {}, selected: [], plotselect: {}, frames: 0, frameIndex: null,
  patternsVersion: -1, mapsVersion: -1, connected: false,
};
let curvePlot = null, curveSeries = "", patternPlot = null, grPlot = null;
let reloadTimer = null, lastReload = 0;

// Every string from the data (names of scans, counters, phases) reaches the page as text,
// never as HTML: elements are built and given textContent, so a name holding markup shows it.
function setOptions(select, items) {  // items: [value, text]
  select.replaceChildren(...items.map(([value, text]) => new Option(text, value)));
}

function api(path) { return "/api/scans/" + encodeURIComponent(view.shown) + path; }

// -- the scan list ---------------------------------------------------------------------------
function showScans(msg) {  // items are kept by scan: a new scan adds one, a new state rewrites one
  const list = $("scan-list");
  const items = new Map([...list.children].map((li) => [li.dataset.key, li]));
  msg.scans.forEach((s, i) => {
    let li = items.get(s.key);
    if (!li) {
      li = document.createElement("li");
      li.dataset.key = s.key;
      li.onclick = () => { $("follow").checked = false; load(s.key); };
    }
    items.delete(s.key);
    const where = s.filename ? `${s.filename.split("/").pop()} ${s.entry}` : "not saved";  // numbers are per file
    const text = `#${s.number} ${s.title || s.name} — ${s.end_reason || s.state} — ${where}`;
    if (li.title !== (s.filename || "")) li.title = s.filename || "";
    if (li.textContent !== text) li.textContent = text;
    const shown = s.key === view.shown ? "shown" : "";
    if (li.className !== shown) li.className = shown;
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
  });
  for (const li of items.values()) li.remove();
  if ($("follow").checked && msg.current && msg.current !== view.shown) load(msg.current);
}

// -- one scan ----------------------------------------------------------------------------------
// A snapshot has every point up to the moment the server made it; messages bring the points
// new since the previous message. The two travel on different connections, so a message may
// overlap the snapshot (its known points are skipped) or arrive while the snapshot loads (it
// is kept and applied after). Only a gap (points never received) makes the page load afresh.
async function load(key) {
  view.shown = key;
  view.loading = [];  // messages of this scan that arrive while its snapshot loads
  lastReload = Date.now();
  let snap = null;
  try {
    const reply = await fetch("/api/scans/" + encodeURIComponent(key));
    if (reply.ok) snap = await reply.json();
  } catch (e) { /* the server is away: the event stream reconnects and loads again */ }
  if (view.shown !== key) return;  // another scan was asked for meanwhile: its load goes on
  const waiting = view.loading;
  view.loading = null;
  if (!snap) return;
  view.columns = {};
  for (const [name, values] of Object.entries(snap.columns))  // null (NaN, inf) kept as NaN
    view.columns[name] = Float64Array.from(values, (v) => (v === null ? NaN : v));
  view.stride = snap.stride;
  view.frameIndex = null; view.patternsVersion = -1; view.mapsVersion = -1;
  if (snap.plotselect) view.plotselect[snap.session] = snap.plotselect;
  chooseCounters(snap, true);
  update(snap);
  for (const msg of waiting) onScan(msg);
  for (const li of $("scan-list").children) li.className = li.dataset.key === key ? "shown" : "";
}

function reloadSoon() {  // a long scan or a gap: fresh (decimated) points at most once a second
  if (reloadTimer) return;
  const wait = Math.max(0, 1000 - (Date.now() - lastReload));
  reloadTimer = setTimeout(() => { reloadTimer = null; load(view.shown); }, wait);
}

function onScan(msg) {
  if (msg.key !== view.shown) return;
  if (view.loading) { view.loading.push(msg); return; }
  if (msg.refetch) { view.desc = msg; reloadSoon(); return; }
  for (const [name, d] of Object.entries(msg.deltas || {})) {
    const column = view.columns[name] || new Float64Array(0);
    if (view.stride !== 1 || d.start > column.length) { reloadSoon(); return; }
    view.columns[name] = appended(column, unpacked(d).subarray(column.length - d.start));
  }
  update(msg);
}

function appended(column, values) {
  // a column is a view of the first `length` values of a buffer twice as large as needed,
  // so that points are copied in blocks, not pushed one by one
  if (!values.length) return column;
  const length = column.length + values.length;
  let buffer = column.buffer;
  if (column.byteOffset !== 0 || buffer.byteLength < length * 8) {
    buffer = new ArrayBuffer(Math.max(4096, 2 * length) * 8);
    new Float64Array(buffer).set(column);
  }
  const grown = new Float64Array(buffer, 0, length);
  grown.set(values, column.length);
  return grown;
}

const PACKED = {i1: Int8Array, i2: Int16Array, i4: Int32Array, f4: Float32Array, f8: Float64Array};
function unpacked(d) {  // the server's {type, b64}: base64 of little-endian values of that type
  let bytes;
  if (Uint8Array.fromBase64) bytes = Uint8Array.fromBase64(d.b64);
  else {
    const text = atob(d.b64);
    bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  }
  const Type = PACKED[d.type];
  return new Type(bytes.buffer, bytes.byteOffset, bytes.byteLength / Type.BYTES_PER_ELEMENT);
}

// Text, attributes and properties are written only when they change: every write makes the
// browser lay out and paint the page again.
function setText(id, text) { const e = $(id); if (e.textContent !== text) e.textContent = text; }
function setProp(id, name, value) { const e = $(id); if (e[name] !== value) e[name] = value; }

function update(desc) {
  view.desc = desc;
  if (document.hidden) { view.stale = true; return; }  // a hidden page draws when shown again
  scheduleDraw();
  drawMesh(desc);  // images follow their own data versions, one request at a time
  drawFrame(desc);
  drawPatterns(desc);
  drawXrdct(desc);
  drawPdf(desc);
}

// -- header and curves: drawn together, at most twice a second -----------------------------------
// Messages may come faster (a new frame or state goes out at once); each draw shows the newest
// description and every point received so far, and lays out and paints the page once.
let drawTimer = null, lastDraw = 0;
const REDRAW_MS = 500, MAX_DRAWN = 1500;
function scheduleDraw() {
  if (drawTimer) return;
  drawTimer = setTimeout(() => { drawTimer = null; lastDraw = Date.now(); drawHeader(view.desc); drawCurves(view.desc); },
                         Math.max(0, REDRAW_MS - (Date.now() - lastDraw)));
}

function drawHeader(desc) {
  setText("scan-title", `#${desc.number} ${desc.title}`);
  const state = desc.end_reason || desc.state;
  setText("scan-state", state);
  setProp("scan-state", "className", "state " + state);
  setProp("progress", "max", desc.expected || desc.points || 1);
  setProp("progress", "value", desc.points);
  setText("progress-text", `${desc.points} / ${desc.expected ?? "?"}`);
  setText("where", desc.filename ? `${desc.filename} :: ${desc.entry}` : "not saved");
  // stream entries the server could not decode: left out, the scan still followed; why, on hover
  const bad = desc.bad_entries;
  setText("bad-entries", bad ? `${bad} Redis ${bad === 1 ? "entry" : "entries"} left out (undecodable)` : "");
  setProp("bad-entries", "title", Object.values(desc.bad_entry_reasons || {}).join("\n"));
}

function decimated(x, ys, count) {
  // at most MAX_DRAWN points drawn: each group of points keeps its first point and the
  // points where each curve has its minimum and maximum, so no peak is lost at any width
  const plain = (v) => (v === v ? v : null);  // NaN: a gap in the curve
  if (count <= MAX_DRAWN) return [x, ...ys].map((c) => Array.from(c.slice(0, count), plain));
  const group = Math.ceil(count / (MAX_DRAWN / 3)), keep = [];
  const picked = new Array(1 + 2 * ys.length);
  for (let start = 0; start < count; start += group) {
    const end = Math.min(count, start + group);
    let k = 0;
    picked[k++] = start;
    for (const y of ys) {
      let lo = start, hi = start, vlo = y[start], vhi = y[start];
      for (let i = start + 1; i < end; i++) {
        const v = y[i];
        if (v < vlo || vlo !== vlo) { vlo = v; lo = i; }
        if (v > vhi || vhi !== vhi) { vhi = v; hi = i; }
      }
      picked[k++] = lo; picked[k++] = hi;
    }
    for (let i = 1; i < k; i++) {  // a handful of indices: insertion sort, then each once
      const v = picked[i];
      let j = i - 1;
      while (j >= 0 && picked[j] > v) { picked[j + 1] = picked[j]; j--; }
      picked[j + 1] = v;
    }
    for (let i = 0; i < k; i++) if (i === 0 || picked[i] !== picked[i - 1]) keep.push(picked[i]);
  }
  return [x, ...ys].map((c) => { const out = new Array(keep.length); for (let i = 0; i < keep.length; i++) out[i] = plain(c[keep[i]]); return out; });
}

function axisOf(desc) {
  const axis = (desc.plot || {}).axis;
  if (axis && view.columns[axis] && !desc.detector && !(desc.counters || []).includes(axis)) return axis;
  return null;  // point index (continuous scans sweep back and forth)
}

function chooseCounters(desc, fresh) {
  const chosen = (view.plotselect[desc.session] || []).filter((c) => desc.counters.includes(c));
  const signal = (desc.plot || {}).signal;
  if (chosen.length) view.selected = chosen;
  else if (fresh || !view.selected.every((c) => desc.counters.includes(c)))
    view.selected = desc.counters.includes(signal) ? [signal] : desc.counters.slice(0, 1);
  const box = $("counter-choice");
  box.replaceChildren();
  for (const c of desc.counters) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox"; input.checked = view.selected.includes(c); input.value = c;
    input.onchange = () => {
      view.selected = [...box.querySelectorAll("input:checked")].map((i) => i.value);
      curveSeries = ""; drawCurves(view.desc);
    };
    label.append(input, " " + c);
    box.appendChild(label);
  }
  curveSeries = "";
}

function onPlotselect(msg) {
  view.plotselect[msg.session] = msg.counters;
  if (view.desc && view.desc.session === msg.session) { chooseCounters(view.desc, false); drawCurves(view.desc); }
}

const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

function drawCurves(desc) {
  if (desc.mesh) { setProp("curves-panel", "hidden", true); return; }
  setProp("curves-panel", "hidden", false);
  const axis = axisOf(desc);
  const names = view.selected.filter((c) => view.columns[c]);
  const n = Math.min(...names.map((c) => view.columns[c].length), axis ? view.columns[axis].length : Infinity);
  const count = Number.isFinite(n) ? n : 0;
  const x = axis ? view.columns[axis] : Array.from({length: count}, (_, i) => i * (view.stride || 1));
  const data = decimated(x, names.map((c) => view.columns[c]), count);
  const key = axis + "|" + names.join(",");  // the same series in the next scan: the plot is reused
  setText("axis-name", `against ${axis || "point index"}`);
  view.points = count; view.drawnTitle = desc.title;  // drawn together: a test or a benchmark reads both
  if (key !== curveSeries || !curvePlot) {
    if (curvePlot) curvePlot.destroy();
    curveSeries = key;
    const opts = {
      width: 640, height: 320, scales: {x: {time: false}},
      // point markers: uPlot's default, decided at each draw (shown while points are far apart)
      series: [{label: axis || "index"}, ...names.map((c, i) => ({label: c, stroke: COLOURS[i % COLOURS.length], width: 1.5}))],
      axes: [{label: axis || "point"}, {}],
      hooks: {draw: [drawMarkers]},
    };
    curvePlot = new uPlot(opts, data, $("curves"));
  } else {
    curvePlot.setData(data);
  }
  const m = (desc.markers || {})[names[0]];
  setText("markers", m ? `${names[0]}: peak at ${fmt(m.peak)}, cen ${fmt(m.cen)}, fwhm ${fmt(m.fwhm)}` : "");
}

function fmt(v) { return Number(v).toPrecision(5); }

function drawMarkers(u) {  // dashed vertical lines at the peak and the FWHM centre of the first counter
  const desc = view.desc;
  const m = desc && (desc.markers || {})[view.selected[0]];
  if (!m || !axisOf(desc)) return;
  const ctx = u.ctx;
  for (const [where, colour] of [[m.peak, "#d62728"], [m.cen, "#2ca02c"]]) {
    const px = u.valToPos(where, "x", true);
    ctx.save();
    ctx.strokeStyle = colour; ctx.setLineDash([6, 4]); ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke();
    ctx.restore();
  }
}

// -- images: one request at a time per image ------------------------------------------------------
function refresh(img, url, onload, onerror) {
  // one image load at a time: the newest request waits, with its own callbacks (those of the
  // load in flight belong to what was shown when it was asked for: another scan, perhaps)
  if (img.dataset.busy === "1") { img.pendingLoad = {url, onload, onerror}; return; }
  img.dataset.busy = "1";
  img.onload = () => { img.dataset.busy = "0"; if (onload) onload(); next(); };
  img.onerror = () => { img.dataset.busy = "0"; if (onerror) onerror(url); next(); };
  function next() {
    const pending = img.pendingLoad;
    if (pending) { img.pendingLoad = null; refresh(img, pending.url, pending.onload, pending.onerror); }
  }
  img.src = url;
}

function drawMesh(desc) {
  setProp("mesh-panel", "hidden", !desc.mesh);
  if (!desc.mesh) return;
  const select = $("mesh-counter");
  if (select.dataset.key !== desc.key) {
    select.dataset.key = desc.key;
    setOptions(select, desc.counters.map((c) => [c, c]));
    select.value = view.selected[0] || desc.counters[0];
    select.onchange = () => drawMesh(view.desc);
  }
  setText("mesh-axes", `${desc.mesh.fast} across, ${desc.mesh.slow} down, ${desc.mesh.shape.join(" x ")}`);
  refresh($("mesh-img"), api(`/mesh.png?counter=${encodeURIComponent(select.value)}&v=${desc.versions.points}`));
}

function drawFrame(desc) {
  setProp("frame-panel", "hidden", !desc.detector);
  if (!desc.detector || desc.frame_index === null || desc.frame_index === view.frameIndex) return;
  view.frameIndex = desc.frame_index;
  refresh($("frame-img"), api(`/frame.png?i=${desc.frame_index}`), () => {
    view.frames += 1;
    $("frame-info").textContent = `${desc.detector}, frame ${view.frameIndex}`;
  });
}

async function drawPatterns(desc) {
  setProp("pattern-panel", "hidden", !desc.patterns);
  if (!desc.patterns || desc.versions.patterns === view.patternsVersion || view.patternsBusy) return;
  view.patternsVersion = desc.versions.patterns;
  view.patternsBusy = true;
  try {
    const reply = await fetch(api("/patterns"));
    if (!reply.ok) return;
    const p = await reply.json();
    const mean = p.sum.map((v) => v / p.count);
    const data = [p.radial, p.last, mean];
    if (!patternPlot || patternPlot.key !== desc.key) {
      if (patternPlot) patternPlot.destroy();
      patternPlot = new uPlot({
        width: 640, height: 260, scales: {x: {time: false}},
        series: [{label: p.unit}, {label: "latest", stroke: "#1f77b4"}, {label: "mean of all", stroke: "#d62728"}],
        axes: [{label: p.unit}, {}],
      }, data, $("patterns"));
      patternPlot.key = desc.key;
    } else {
      patternPlot.setData(data);
    }
    $("pattern-info").textContent = `${p.count} integrated, latest frame ${p.last_index}`;
    view.patternCount = p.count;
  } finally {
    view.patternsBusy = false;
  }
}

function drawXrdct(desc) {
  const x = desc.xrdct;
  setProp("xrdct-panel", "hidden", !x);
  if (!x) return;
  const what = $("recon-what"), zs = $("recon-z"), binInput = $("recon-bin");
  const options = [...desc.phases.map((p) => "phase:" + p), ...(desc.residual ? ["residual"] : []),
                   ...(x.sinograms ? ["bin"] : [])];
  const signature = desc.key + options.join(",");
  if (what.dataset.signature !== signature) {  // phases appear with the first live maps
    const before = what.value;
    what.dataset.signature = signature;
    const label = (o) => o === "bin" ? "q bin" : o === "residual" ? "fit residual (not a phase)" : o.replace(":", " ");
    setOptions(what, options.map((o) => [o, label(o)]));
    if (what.dataset.user === "1" && options.includes(before)) what.value = before;
    if (zs.options.length !== x.nz) setOptions(zs, Array.from({length: x.nz}, (_, i) => [String(i), String(i)]));
    const again = () => { view.mapsVersion = -1; view.xrdctPatterns = -1; view.xrdctAt = 0; drawXrdct(view.desc); };
    what.onchange = () => { what.dataset.user = "1"; again(); };
    zs.onchange = again;
    binInput.onchange = () => { binInput.dataset.user = "1"; again(); };
  }
  if (desc.nq) binInput.max = desc.nq - 1;
  if (binInput.dataset.user !== "1" && desc.strongest_bin !== null) binInput.value = desc.strongest_bin;
  const chosen = what.value || "";
  const z = zs.value || 0, bin = binInput.value || 0;
  const now = Date.now();
  const map = chosen.startsWith("phase:") ? chosen.slice(6) : chosen === "residual" ? "residual" : null;
  if (map !== null && desc.versions.maps !== view.mapsVersion) {
    view.mapsVersion = desc.versions.maps;
    showRecon(api(`/map.png?phase=${encodeURIComponent(map)}&z=${z}&v=${desc.versions.maps}`), chosen === "residual"
      ? `fit residual, z ${z}: RMS misfit of the phase fit (high where no phase explains the pattern)`
      : `phase ${map}, z ${z}`);
  }
  // sinograms and q-bin reconstructions follow the patterns, at most once a second
  if (x.sinograms && desc.versions.patterns !== view.xrdctPatterns && now - (view.xrdctAt || 0) > 1000) {
    view.xrdctPatterns = desc.versions.patterns;
    view.xrdctAt = now;
    refresh($("sino-img"), api(`/sinogram.png?bin=${bin}&z=${z}&v=${desc.versions.patterns}`));
    $("sino-caption").textContent = `sinogram of q bin ${bin} (omega down, x across)`;
    if (chosen === "bin") showRecon(api(`/qmap.png?bin=${bin}&z=${z}&v=${desc.versions.patterns}`),
                                    `q bin ${bin}, z ${z}: from the projections so far`);
  }
}

function showRecon(url, caption) {
  // a map the server cannot give (its file damaged, not there yet) shows the server's reason,
  // as text, in the caption: only that of the newest image asked for
  view.recon = {url, caption};
  setText("recon-caption", caption);
  refresh($("recon-img"), url, () => setText("recon-caption", view.recon.caption), (failed) => {
    fetch(failed).then((r) => (r.ok ? "" : r.text())).then((text) => {
      if (text && view.recon.url === failed) setText("recon-caption", text);
    });
  });
}

// -- PDF-CT: a map of G(r) averaged over an r window; a clicked voxel's G(r) ----------------------
// The results are read from the scan's file by the server once the pdf hook (or a pdf_scan job)
// wrote them; desc.pdf says their shape, r grid, units and the configured windows.
const UNIT_TEXT = {"A": "Å", "A^-2": "Å⁻²", "A^-1": "Å⁻¹"};
const unitText = (u) => UNIT_TEXT[u] || u;

function drawPdf(desc) {
  const p = desc.pdf;
  setProp("pdf-panel", "hidden", !p && !desc.pdf_error);
  if (!p) {  // none, or a results file there but damaged: the server's line naming it
    setText("pdf-error", desc.pdf_error || "");
    return;
  }
  const zs = $("pdf-z"), lo = $("pdf-rmin"), hi = $("pdf-rmax"), img = $("pdf-map-img");
  const signature = desc.key + "|" + desc.versions.pdf;
  if (zs.dataset.signature === signature) return;  // drawn for these results: inputs redraw it
  zs.dataset.signature = signature;
  setOptions(zs, Array.from({length: p.nz}, (_, i) => [String(i), String(i)]));
  const windows = Object.entries(p.windows);
  const first = windows.length ? windows[0][1] : [p.r_min, Math.min(p.r_max, p.r_min + 1)];
  for (const input of [lo, hi]) { input.min = p.r_min; input.max = p.r_max; input.step = p.r_step || "any"; }
  lo.value = first[0]; hi.value = first[1];
  setText("pdf-window-names", windows.length ? "windows: " + windows.map(([n, w]) => `${n} ${w[0]}–${w[1]}`).join(", ") : "");
  $("pdf-rmin-label").textContent = $("pdf-rmax-label").textContent = unitText(p.units.r);
  view.pdfVoxel = null; view.pdfMap = null;
  if (grPlot) { grPlot.destroy(); grPlot = null; }
  setText("pdf-curve-caption", "click a voxel of the map for its G(r)");
  zs.onchange = () => { drawPdfMap(); if (view.pdfVoxel) showVoxel(+zs.value, view.pdfVoxel.row, view.pdfVoxel.col); };
  lo.onchange = hi.onchange = drawPdfMap;
  img.onclick = (e) => {
    const d = view.desc.pdf;
    if (!d || !img.clientWidth) return;
    const col = Math.min(d.nx - 1, Math.max(0, Math.floor(e.offsetX / img.clientWidth * d.nx)));
    const row = Math.min(d.ny - 1, Math.max(0, Math.floor(e.offsetY / img.clientHeight * d.ny)));
    showVoxel(+zs.value, row, col);
  };
  drawPdfMap();
}

function drawPdfMap() {
  const desc = view.desc, p = desc.pdf;
  const z = $("pdf-z").value || 0, lo = $("pdf-rmin").value, hi = $("pdf-rmax").value;
  const query = `z=${z}&r_min=${encodeURIComponent(lo)}&r_max=${encodeURIComponent(hi)}`;
  const url = api(`/gr_map.png?${query}&v=${desc.versions.pdf}`);
  view.pdfMap = {url, query, z};
  const key = desc.key;
  refresh($("pdf-map-img"), url, () => {  // onload: of the newest map asked for (one may wait while another loads)
    setText("pdf-error", "");
    const {query, z} = view.pdfMap;
    fetch(api(`/gr_map?${query}&values=0`)).then((r) => (r.ok ? r.json() : null)).then((m) => {
      if (!m || view.desc.key !== key || view.pdfMap.query !== query) return;
      const r = (v) => String(Number(v.toPrecision(6)));  // 2.5, not 2.5000000000000004
      setText("pdf-map-caption", `mean G(r) over r ${r(m.r_used[0])}–${r(m.r_used[1])} ${unitText(p.units.r)}, z ${z}: `
              + `colour from ${fmt(m.min)} to ${fmt(m.max)} ${unitText(p.units.G)}; click a voxel`);
    });
    if (view.desc.key === key) view.pdfMaps = (view.pdfMaps || 0) + 1;  // maps of the scan shown
  }, (failed) => {  // refused (a bad window): the server's message, as text, unless newer bounds came
    fetch(failed).then((r) => (r.ok ? "" : r.text())).then((text) => {
      if (view.pdfMap && view.pdfMap.url === failed) setText("pdf-error", text);
    });
  });
}

async function showVoxel(z, row, col) {
  const p = view.desc.pdf, key = view.desc.key;
  view.pdfVoxel = {z, row, col};
  const reply = await fetch(api(`/gr?z=${z}&row=${row}&col=${col}`));
  if (!reply.ok) { setText("pdf-error", await reply.text()); return; }
  const v = await reply.json();
  if (view.desc.key !== key) return;
  const data = [v.r, v.G];
  const labels = [`r (${unitText(v.units.r)})`, `G(r) (${unitText(v.units.G)})`];
  if (!grPlot) {
    grPlot = new uPlot({
      width: 520, height: 300, scales: {x: {time: false}},
      series: [{label: labels[0]}, {label: "G(r)", stroke: "#1f77b4", width: 1.5}],
      axes: [{label: labels[0]}, {label: labels[1]}],
    }, data, $("pdf-curve"));
  } else {
    grPlot.setData(data);
  }
  view.pdfCurve = {z, row, col, r: v.r, G: v.G, labels};
  setText("pdf-curve-caption", `G(r) of voxel z ${z}, row ${row}, column ${col} `
          + `(x ${fmt(v.x_mm)} mm, y ${fmt(v.y_mm)} mm, z ${fmt(v.z_mm)} mm)`);
  setText("pdf-error", "");
}

// -- the event stream ---------------------------------------------------------------------------
function connect() {
  const source = new EventSource("/events");
  source.onopen = () => {
    view.connected = true; $("connection").textContent = "live"; $("connection").className = "state";
    if (view.shown) load(view.shown);  // after a reconnect: events were missed, start afresh
  };
  source.onerror = () => { view.connected = false; $("connection").textContent = "reconnecting"; $("connection").className = "state lost"; };
  const on = (name, handler) => source.addEventListener(name, (e) => handler(JSON.parse(e.data)));
  on("scans", showScans);
  on("scan", onScan);
  on("plotselect", onPlotselect);
  on("status", (s) => {
    $("connection").textContent = s.redis === "ok" ? "live" : "Redis lost: " + s.error;
    $("connection").className = "state " + (s.redis === "ok" ? "" : "lost");
  });
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && view.stale && view.desc) { view.stale = false; update(view.desc); }
});
$("follow").onchange = () => { if ($("follow").checked) fetch("/api/scans").then((r) => r.json()).then(showScans); };
connect();
