// bliss-lite live view: follows scans through the server's event stream (no polling of
// points), draws curves with uPlot and shows server-rendered PNGs for frames, meshes, maps
// and sinograms. Images are asked for one at a time (the next only after the last loaded),
// so a slow page or link never piles requests on the server.
"use strict";

const $ = (id) => document.getElementById(id);
const view = window.blissView = {
  shown: null, desc: null, columns: {}, selected: [], plotselect: {}, frames: 0, frameIndex: null,
  patternsVersion: -1, mapsVersion: -1, connected: false, events: 0,
};
let curvePlot = null, curveSeries = "", patternPlot = null;
let reloadTimer = null, lastReload = 0;

function api(path) { return "/api/scans/" + encodeURIComponent(view.shown) + path; }

// -- the scan list ---------------------------------------------------------------------------
function showScans(msg) {
  const list = $("scan-list");
  list.innerHTML = "";
  for (const s of msg.scans) {
    const li = document.createElement("li");
    li.textContent = `#${s.number} ${s.title || s.name} — ${s.end_reason || s.state}`;
    li.dataset.key = s.key;
    if (s.key === view.shown) li.className = "shown";
    li.onclick = () => { $("follow").checked = false; load(s.key); };
    list.appendChild(li);
  }
  if ($("follow").checked && msg.current && msg.current !== view.shown) load(msg.current);
}

// -- one scan ----------------------------------------------------------------------------------
async function load(key) {
  view.shown = key;
  lastReload = Date.now();
  const reply = await fetch("/api/scans/" + encodeURIComponent(key));
  if (!reply.ok || view.shown !== key) return;
  const snap = await reply.json();
  view.columns = snap.columns;
  view.stride = snap.stride;
  view.frameIndex = null; view.patternsVersion = -1; view.mapsVersion = -1;
  if (snap.plotselect) view.plotselect[snap.session] = snap.plotselect;
  chooseCounters(snap, true);
  update(snap);
  for (const li of $("scan-list").children) li.className = li.dataset.key === key ? "shown" : "";
}

function reloadSoon() {  // a long scan: fresh decimated points at most once a second
  if (reloadTimer) return;
  const wait = Math.max(0, 1000 - (Date.now() - lastReload));
  reloadTimer = setTimeout(() => { reloadTimer = null; load(view.shown); }, wait);
}

function onScan(msg) {
  if (msg.key !== view.shown) return;
  if (msg.refetch) { view.desc = msg; reloadSoon(); return; }
  for (const [name, d] of Object.entries(msg.deltas || {})) {
    const column = view.columns[name] || (view.columns[name] = []);
    if (view.stride !== 1 || d.start !== column.length) { reloadSoon(); return; }
    for (const v of d.values) column.push(v);
  }
  update(msg);
}

function update(desc) {
  view.desc = desc;
  $("scan-title").textContent = `#${desc.number} ${desc.title}`;
  const state = desc.end_reason || desc.state;
  $("scan-state").textContent = state;
  $("scan-state").className = "state " + state;
  const expected = desc.expected || desc.points || 1;
  $("progress").max = expected;
  $("progress").value = desc.points;
  $("progress-text").textContent = `${desc.points} / ${desc.expected ?? "?"}`;
  $("where").textContent = desc.filename ? `${desc.filename} :: ${desc.entry}` : "not saved";
  scheduleCurves();
  drawMesh(desc);
  drawFrame(desc);
  drawPatterns(desc);
  drawXrdct(desc);
}

// -- curves ----------------------------------------------------------------------------------
let curvesTimer = null, curvesDrawn = 0;
const REDRAW_MS = 500, MAX_DRAWN = 1500;
function scheduleCurves() {  // points are kept as they come; the plot is redrawn at most twice a second
  if (curvesTimer) return;
  curvesTimer = setTimeout(() => { curvesTimer = null; curvesDrawn = Date.now(); drawCurves(view.desc); },
                           Math.max(0, REDRAW_MS - (Date.now() - curvesDrawn)));
}

function decimated(x, ys, count) {
  // at most MAX_DRAWN points drawn: each group of points keeps its first point and the
  // points where each curve has its minimum and maximum, so no peak is lost at any width
  if (count <= MAX_DRAWN) return [x.slice(0, count), ...ys.map((y) => y.slice(0, count))];
  const group = Math.ceil(count / (MAX_DRAWN / 3)), keep = [];
  for (let start = 0; start < count; start += group) {
    const end = Math.min(count, start + group), picked = new Set([start]);
    for (const y of ys) {
      let lo = start, hi = start;
      for (let i = start + 1; i < end; i++) { if (y[i] < y[lo]) lo = i; if (y[i] > y[hi]) hi = i; }
      picked.add(lo); picked.add(hi);
    }
    keep.push(...[...picked].sort((a, b) => a - b));
  }
  return [keep.map((i) => x[i]), ...ys.map((y) => keep.map((i) => y[i]))];
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
  box.innerHTML = "";
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
  const panel = $("curves-panel");
  if (desc.mesh || !desc.counters.length) { panel.hidden = !!desc.mesh; if (desc.mesh) return; }
  panel.hidden = false;
  const axis = axisOf(desc);
  const names = view.selected.filter((c) => view.columns[c]);
  const n = Math.min(...names.map((c) => view.columns[c].length), axis ? view.columns[axis].length : Infinity);
  const count = Number.isFinite(n) ? n : 0;
  const x = axis ? view.columns[axis] : Array.from({length: count}, (_, i) => i * (view.stride || 1));
  const data = decimated(x, names.map((c) => view.columns[c]), count);
  const key = axis + "|" + names.join(",");  // the same series in the next scan: the plot is reused
  $("axis-name").textContent = `against ${axis || "point index"}`;
  view.points = count;
  if (key !== curveSeries || !curvePlot) {
    if (curvePlot) curvePlot.destroy();
    curveSeries = key;
    const opts = {
      width: 640, height: 320, scales: {x: {time: false}},
      series: [{label: axis || "index"}, ...names.map((c, i) => ({label: c, stroke: COLOURS[i % COLOURS.length], width: 1.5,
                                                                  points: {show: count < 200}}))],
      axes: [{label: axis || "point"}, {}],
      hooks: {draw: [drawMarkers]},
    };
    curvePlot = new uPlot(opts, data, $("curves"));
  } else {
    curvePlot.setData(data);
  }
  const m = (desc.markers || {})[names[0]];
  $("markers").textContent = m ? `${names[0]}: peak at ${fmt(m.peak)}, cen ${fmt(m.cen)}, fwhm ${fmt(m.fwhm)}` : "";
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
function refresh(img, url, onload) {
  if (img.dataset.busy === "1") { img.dataset.next = url; return; }
  img.dataset.busy = "1";
  img.onload = () => { img.dataset.busy = "0"; if (onload) onload(); next(); };
  img.onerror = () => { img.dataset.busy = "0"; next(); };
  function next() {
    const pending = img.dataset.next;
    if (pending) { img.dataset.next = ""; refresh(img, pending, onload); }
  }
  img.src = url;
}

function drawMesh(desc) {
  const panel = $("mesh-panel");
  panel.hidden = !desc.mesh;
  if (!desc.mesh) return;
  const select = $("mesh-counter");
  if (select.dataset.key !== desc.key) {
    select.dataset.key = desc.key;
    select.innerHTML = desc.counters.map((c) => `<option>${c}</option>`).join("");
    select.value = view.selected[0] || desc.counters[0];
    select.onchange = () => drawMesh(view.desc);
  }
  $("mesh-axes").textContent = `${desc.mesh.fast} across, ${desc.mesh.slow} down, ${desc.mesh.shape.join(" x ")}`;
  refresh($("mesh-img"), api(`/mesh.png?counter=${encodeURIComponent(select.value)}&v=${desc.versions.points}`));
}

function drawFrame(desc) {
  $("frame-panel").hidden = !desc.detector;
  if (!desc.detector || desc.frame_index === null || desc.frame_index === view.frameIndex) return;
  view.frameIndex = desc.frame_index;
  refresh($("frame-img"), api(`/frame.png?i=${desc.frame_index}`), () => {
    view.frames += 1;
    $("frame-info").textContent = `${desc.detector}, frame ${view.frameIndex}`;
  });
}

async function drawPatterns(desc) {
  $("pattern-panel").hidden = !desc.patterns;
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
  $("xrdct-panel").hidden = !x;
  if (!x) return;
  const what = $("recon-what"), zs = $("recon-z"), binInput = $("recon-bin");
  const options = [...desc.phases.map((p) => "phase:" + p), ...(x.sinograms ? ["bin"] : [])];
  const signature = desc.key + options.join(",");
  if (what.dataset.signature !== signature) {  // phases appear with the first live maps
    const before = what.value;
    what.dataset.signature = signature;
    what.innerHTML = options.map((o) => `<option value="${o}">${o === "bin" ? "q bin" : o.replace(":", " ")}</option>`).join("");
    if (what.dataset.user === "1" && options.includes(before)) what.value = before;
    if (zs.options.length !== x.nz) zs.innerHTML = Array.from({length: x.nz}, (_, i) => `<option>${i}</option>`).join("");
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
  if (chosen.startsWith("phase:") && desc.versions.maps !== view.mapsVersion) {
    view.mapsVersion = desc.versions.maps;
    refresh($("recon-img"), api(`/map.png?phase=${encodeURIComponent(chosen.slice(6))}&z=${z}&v=${desc.versions.maps}`));
    $("recon-caption").textContent = `phase ${chosen.slice(6)}, z ${z}`;
  }
  // sinograms and q-bin reconstructions follow the patterns, at most once a second
  if (x.sinograms && desc.versions.patterns !== view.xrdctPatterns && now - (view.xrdctAt || 0) > 1000) {
    view.xrdctPatterns = desc.versions.patterns;
    view.xrdctAt = now;
    refresh($("sino-img"), api(`/sinogram.png?bin=${bin}&z=${z}&v=${desc.versions.patterns}`));
    $("sino-caption").textContent = `sinogram of q bin ${bin} (omega down, x across)`;
    if (chosen === "bin") {
      refresh($("recon-img"), api(`/qmap.png?bin=${bin}&z=${z}&v=${desc.versions.patterns}`));
      $("recon-caption").textContent = `q bin ${bin}, z ${z}: from the projections so far`;
    }
  }
}

// -- the event stream ---------------------------------------------------------------------------
function connect() {
  const source = new EventSource("/events");
  source.onopen = () => {
    view.connected = true; $("connection").textContent = "live"; $("connection").className = "state";
    if (view.shown) load(view.shown);  // after a reconnect: events were missed, start afresh
  };
  source.onerror = () => { view.connected = false; $("connection").textContent = "reconnecting"; $("connection").className = "state lost"; };
  const on = (name, handler) => source.addEventListener(name, (e) => { view.events += 1; handler(JSON.parse(e.data)); });
  on("scans", showScans);
  on("scan", onScan);
  on("plotselect", onPlotselect);
  on("status", (s) => {
    $("connection").textContent = s.redis === "ok" ? "live" : "Redis lost: " + s.error;
    $("connection").className = "state " + (s.redis === "ok" ? "" : "lost");
  });
}

$("follow").onchange = () => { if ($("follow").checked) fetch("/api/scans").then((r) => r.json()).then(showScans); };
connect();
