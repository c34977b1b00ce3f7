// facegen studio: plain JS over the JSON API (docs/studio.md). No build step, no CDN.
"use strict";
const $ = (id) => document.getElementById(id);
let MODEL = null;
const inflight = new Set();  // aborted when the page closes, so the server cancels their jobs
window.addEventListener("pagehide", () => inflight.forEach((c) => c.abort()));
const JUDGEMENTS_FILE = "data/studio_judgements.parquet";  // StudioConfig.judgements, under --root

// ---- the API: every non-GET request carries X-Facegen-Studio (the server refuses it otherwise)
async function api(path, body, opts = {}) {
  const ctrl = new AbortController();
  inflight.add(ctrl);
  if (JOB.busy) JOB.ctrls.add(ctrl);
  try {
    const init = { signal: ctrl.signal, ...opts };
    if (body !== undefined) init.method = "POST";
    if ((init.method || "GET") !== "GET") {
      init.headers = { "X-Facegen-Studio": "1" };
      if (body instanceof FormData) init.body = body;
      else if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    }
    let res;
    try { res = await fetch(path, init); }
    catch (e) { throw Object.assign(new Error(e.name === "AbortError" ? "cancelled" : `network error: ${e.message}`), { cancelled: e.name === "AbortError" }); }
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const detail = typeof data.detail === "string" ? data.detail : `HTTP ${res.status}`;
      throw Object.assign(new Error(`${detail} (HTTP ${res.status})`), { status: res.status, cancelled: res.status === 409 || res.status === 499 });
    }
    return data;
  } finally { inflight.delete(ctrl); JOB.ctrls.delete(ctrl); }
}

function status(id, text, error = false) {
  if (!id) return;
  const el = $(id); el.textContent = text; el.classList.toggle("error", error);
}

// ---- busy state: one model job at a time from this page, progress from /api/progress, cancel
const JOB = { busy: false, label: "", started: 0, poll: null, polling: false, ctrls: new Set(), idle: [] };

function setBusy(on) {
  JOB.busy = on;
  document.body.dataset.busy = on ? "1" : "";
  document.querySelectorAll(".job").forEach((el) => { el.disabled = on; });
  $("busy").hidden = !on;
  $("cancel-btn").disabled = false;
  judgeButtons();
}

async function pollProgress() {
  if (JOB.polling || !JOB.busy) return;
  JOB.polling = true;
  try {
    const res = await fetch("/api/progress");
    const p = res.ok ? await res.json() : null;
    if (!JOB.busy) return;
    const secs = `${((performance.now() - JOB.started) / 1000).toFixed(1)} s`;
    const bar = $("progress-bar");
    if (p && p.busy && p.total > 0) {
      bar.max = p.total; bar.value = p.step;
      $("progress-text").textContent = `${p.name || JOB.label}: step ${p.step} of ${p.total} · ${secs}`
        + (p.queued ? ` · ${p.queued} queued` : "");
    } else {
      bar.removeAttribute("value");
      $("progress-text").textContent = `${JOB.label} · ${secs}`;
    }
  } catch (e) { /* the next poll tries again */ } finally { JOB.polling = false; }
}

// Run fn as the page's one job: ignored while another runs (no queue of duplicate clicks);
// its status line says what happened and an error stays there until the next action.
async function job(statusId, label, fn) {
  if (JOB.busy) return undefined;
  status(statusId, `${label}…`);
  JOB.label = label; JOB.started = performance.now();
  setBusy(true);
  $("progress-text").textContent = `${label}…`;
  JOB.poll = setInterval(pollProgress, 330);
  pollProgress();
  try { return await fn(); }
  catch (e) {
    if (e.cancelled) status(statusId, `${label}: cancelled`, false);
    else status(statusId, e.message, true);
    return undefined;
  } finally {
    clearInterval(JOB.poll);
    setBusy(false);
    const next = JOB.idle.splice(0);
    next.forEach((f) => f());
  }
}
function whenIdle(fn) { if (JOB.busy) JOB.idle.push(fn); else fn(); }

$("cancel-btn").addEventListener("click", async () => {
  $("cancel-btn").disabled = true;
  $("progress-text").textContent = `${JOB.label}: cancelling…`;
  try { await fetch("/api/cancel", { method: "POST", headers: { "X-Facegen-Studio": "1" } }).then((r) => { if (!r.ok) throw new Error(); }); }
  catch (e) { JOB.ctrls.forEach((c) => c.abort()); }  // no cancel endpoint: closing the request cancels the job
});

// ---- images: each tile can be downloaded or used as the Edit tab's input
function pngUrl(b64) { return "data:image/png;base64," + b64; }
function tile(b64, caption, title, name) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = pngUrl(b64); img.title = title || caption; img.alt = caption;
  const cap = document.createElement("figcaption"); cap.textContent = caption;
  const actions = document.createElement("div"); actions.className = "tile-actions";
  const dl = document.createElement("a"); dl.href = img.src; dl.download = `${name}.png`; dl.textContent = "download"; dl.title = `download ${name}.png`;
  const use = document.createElement("button"); use.type = "button"; use.textContent = "edit"; use.title = "use as the Edit tab's input";
  use.addEventListener("click", () => { drawFace(b64); showTab("edit"); status("edit-status", `input: ${caption}`); });
  actions.append(dl, use);
  fig.append(img, cap, actions); return fig;
}

function settings(prefix) {
  const s = {};
  const sampler = $(prefix + "-sampler"); if (sampler && sampler.value) s.sampler = sampler.value;
  const steps = $(prefix + "-steps"); if (steps && steps.value) s.steps = Number(steps.value);
  return s;
}

function showValue(input, output, format) {
  const update = () => { $(output).textContent = format(Number($(input).value)); };
  $(input).addEventListener("input", update); update();
}
showValue("var-amount", "var-amount-value", (v) => `${v.toFixed(2)} of the way (slerp)`);
showValue("edit-strength", "edit-strength-value", (v) => `${Math.round(v * 100)} % of the noise schedule`);
showValue("brush-size", "brush-size-value", (v) => `${v} px`);

// ---- the model and its conditions: a toggle "unconditional" / each attribute
function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3); }
function conditionButtons() { return [...document.querySelectorAll("#condition-toggle button")]; }
function activeConditions() { return conditionButtons().filter((b) => b.dataset.name && b.getAttribute("aria-pressed") === "true").map((b) => b.dataset.name); }
function syncConditions() {
  const on = activeConditions();
  conditionButtons().forEach((b) => { if (!b.dataset.name) b.setAttribute("aria-pressed", String(on.length === 0)); });
  document.querySelectorAll("#condition-sliders label").forEach((l) => { l.hidden = !on.includes(l.dataset.name); });
  $("guidance-label").hidden = on.length === 0;
}
function buildConditions() {
  const toggle = $("condition-toggle"), sliders = $("condition-sliders");
  toggle.replaceChildren(); sliders.replaceChildren();
  $("conditions").hidden = MODEL.conditions.length === 0;  // only when the model folder declares conditions
  if (!MODEL.conditions.length) return;
  const add = (name, text) => {
    const b = document.createElement("button"); b.type = "button"; b.textContent = text; b.setAttribute("aria-pressed", "false");
    if (name) b.dataset.name = name;
    b.addEventListener("click", () => {
      if (!name) conditionButtons().forEach((x) => x.setAttribute("aria-pressed", "false"));
      else b.setAttribute("aria-pressed", String(b.getAttribute("aria-pressed") !== "true"));
      syncConditions();
    });
    toggle.append(b);
  };
  add(null, "unconditional");
  for (const c of MODEL.conditions) {
    add(c.name, c.name);
    const unit = c.unit ? ` ${c.unit}` : "";
    const label = document.createElement("label"); label.dataset.name = c.name;
    label.innerHTML = `${c.name} <input type="range" data-name="${c.name}" min="${c.min}" max="${c.max}" step="${(c.max - c.min) / 100}" value="${c.default}"> <output></output>`
      + `<small class="help">the ${c.name} asked for, ${fmt(c.min)}–${fmt(c.max)}${unit} (the training set's range)</small>`;
    const input = label.querySelector("input"), out = label.querySelector("output");
    const update = () => { out.textContent = `${fmt(Number(input.value))}${unit}`; };
    input.addEventListener("input", update); update();
    sliders.append(label);
  }
  const g = MODEL.defaults.guidance;
  $("guidance").placeholder = g != null ? `default ${g}` : "default";
  syncConditions();
}

async function loadModel() {
  MODEL = await api("/api/model");
  const text = `model ${MODEL.id}` + (MODEL.run_id ? ` (run ${MODEL.run_id.slice(0, 8)}, epoch ${MODEL.epoch})` : "")
    + ` · ${MODEL.size} px · max ${MODEL.limits.max_images} images, ${MODEL.limits.max_steps} steps`;
  $("model-info").textContent = text; $("model-info").title = text;
  document.querySelectorAll("select.sampler").forEach((sel) => {
    sel.innerHTML = MODEL.samplers.map((s) => `<option ${s === MODEL.defaults.sampler ? "selected" : ""}>${s}</option>`).join("");
  });
  document.querySelectorAll("input.steps").forEach((el) => { el.value = MODEL.defaults.steps || ""; });
  $("gen-n").max = MODEL.limits.max_images;
  buildConditions();
}

// ---- generate
$("generate-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const body = { seed: Number($("gen-seed").value), n: Number($("gen-n").value), ...settings("gen") };
  const on = activeConditions();
  if (on.length) {  // unconditional: no condition field at all (the sample stage's images)
    body.condition = {};
    on.forEach((name) => { body.condition[name] = Number(document.querySelector(`#condition-sliders input[data-name="${name}"]`).value); });
    if ($("guidance").value.trim() !== "") body.guidance = Number($("guidance").value);  // empty: the server's default
  }
  job("gen-status", "generating", async () => {
    $("gen-reproduce").hidden = true;
    const t0 = performance.now();
    const r = await api("/api/generate", body);
    const cond = r.condition && Object.keys(r.condition).length
      ? ` · ${Object.entries(r.condition).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")}, guidance ${r.guidance}` : " · unconditional";
    $("gen-images").replaceChildren(...r.images.map((b, i) => tile(b, `seed ${r.seeds[i]}`,
      `seed ${r.seeds[i]} · ${r.sampler} ${r.steps} steps · batch ${r.batch_size}${cond}`, `seed-${r.seeds[i]}`)));
    status("gen-status", `${r.images.length} images in ${((performance.now() - t0) / 1000).toFixed(2)} s · model ${r.model}`
      + ` · ${r.sampler} ${r.steps} steps${cond}`);
    $("gen-command").textContent = r.reproduce || "";
    $("gen-reproduce").hidden = !r.reproduce;  // said only when a command writes these very bytes
  });
});

// ---- explore
$("interp-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const body = { seed_a: Number($("interp-a").value), seed_b: Number($("interp-b").value),
                 frames: Number($("interp-frames").value), ...settings("interp") };
  job("interp-status", "interpolating", async () => {
    const r = await api("/api/interpolate", body);
    $("interp-images").replaceChildren(...r.images.map((b, i) => tile(b, `t=${r.t[i].toFixed(2)}`, undefined, `slerp-${body.seed_a}-${body.seed_b}-${i}`)));
    status("interp-status", `slerp ${body.seed_a} → ${body.seed_b}, ${r.sampler} ${r.steps} steps`);
  });
});

$("var-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const body = { seed: Number($("var-seed").value), n: Number($("var-n").value), amount: Number($("var-amount").value),
                 ...settings("var") };
  job("var-status", "variations", async () => {
    const r = await api("/api/variations", body);
    $("var-images").replaceChildren(...r.images.map((b, i) => tile(b, `seed ${body.seed} ~${i + 1}`, undefined, `variation-${body.seed}-${i + 1}`)));
    status("var-status", `variations of seed ${body.seed}, amount ${body.amount}, ${r.sampler} ${r.steps} steps`);
  });
});

// ---- edit: the face canvas with the mask drawn over it (red = repaint), undo, result as input
const faceCtx = $("edit-canvas").getContext("2d");
const maskCtx = $("mask-canvas").getContext("2d");
const history = [];
faceCtx.fillStyle = "#bbb"; faceCtx.fillRect(0, 0, 256, 256);
let lastResult = null;

function snapshot() {
  history.push({ face: faceCtx.getImageData(0, 0, 256, 256), mask: maskCtx.getImageData(0, 0, 256, 256) });
  if (history.length > 40) history.shift();
  $("undo-btn").disabled = false;
}
$("undo-btn").addEventListener("click", () => {
  const s = history.pop(); if (!s) return;
  faceCtx.putImageData(s.face, 0, 0); maskCtx.putImageData(s.mask, 0, 0);
  $("undo-btn").disabled = history.length === 0;
});
$("clear-mask-btn").addEventListener("click", () => { snapshot(); maskCtx.clearRect(0, 0, 256, 256); });
function drawFace(b64) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => { snapshot(); faceCtx.imageSmoothingEnabled = false; faceCtx.drawImage(img, 0, 0, 256, 256); resolve(); };
    img.src = pngUrl(b64);
  });
}
let drawing = false;
function paint(ev) {
  if (!drawing) return;
  const r = $("mask-canvas").getBoundingClientRect();
  const x = (ev.clientX - r.left) * 256 / r.width, y = (ev.clientY - r.top) * 256 / r.height;
  const size = Number($("brush-size").value);
  const ctx = $("brush").value === "mask" ? maskCtx : faceCtx;
  ctx.fillStyle = $("brush").value === "mask" ? "#ff0000" : $("brush-colour").value;
  ctx.beginPath(); ctx.arc(x, y, $("brush").value === "mask" ? size : Math.max(1, size / 2), 0, 7); ctx.fill();
}
$("mask-canvas").addEventListener("pointerdown", (ev) => { snapshot(); drawing = true; paint(ev); });
$("mask-canvas").addEventListener("pointermove", paint);
window.addEventListener("pointerup", () => { drawing = false; });
$("edit-download").addEventListener("click", () => { $("edit-download").href = $("edit-canvas").toDataURL("image/png"); });

$("upload-file").addEventListener("change", () => {
  const file = $("upload-file").files[0]; if (!file) return;
  const fd = new FormData(); fd.append("file", file);
  job("edit-status", "detecting and aligning", async () => {
    const r = await api("/api/upload", fd);
    await drawFace(r.image);
    status("edit-status", `aligned face of ${file.name} (detection score ${r.detection.score.toFixed(2)})`);
  }).finally(() => { $("upload-file").value = ""; });
});
$("use-sample-btn").addEventListener("click", () => {
  const seed = Number($("edit-seed").value);
  job("edit-status", `generating seed ${seed}`, async () => {
    const r = await api("/api/generate", { seed, n: 1 });
    await drawFace(r.images[0]);
    status("edit-status", `generated face of seed ${r.seeds[0]} (SDEdit at strength 1 with seed ${r.seeds[0]} gives it back)`);
  });
});
$("use-result-btn").addEventListener("click", () => { if (lastResult) { drawFace(lastResult); status("edit-status", "the result is the input now"); } });

function canvasB64(canvas, size) {
  const tmp = document.createElement("canvas"); tmp.width = tmp.height = size;
  const ctx = tmp.getContext("2d"); ctx.drawImage(canvas, 0, 0, size, size);
  return tmp.toDataURL("image/png").split(",")[1];
}
function maskB64(size) {  // the drawn overlay as the API's mask: white = repaint, black = keep
  const src = maskCtx.getImageData(0, 0, 256, 256);
  const out = new ImageData(256, 256);
  let any = false;
  for (let i = 0; i < src.data.length; i += 4) {
    const v = src.data[i + 3] > 0 ? 255 : 0; any = any || v > 0;
    out.data[i] = out.data[i + 1] = out.data[i + 2] = v; out.data[i + 3] = 255;
  }
  if (!any) return null;
  const full = document.createElement("canvas"); full.width = full.height = 256;
  full.getContext("2d").putImageData(out, 0, 0);
  return canvasB64(full, size);
}

$("edit-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const mode = $("edit-mode").value;
  const body = { image: canvasB64($("edit-canvas"), MODEL.size), mode, strength: Number($("edit-strength").value),
                 seed: Number($("edit-seed").value), ...settings("edit") };
  if (mode === "repaint") {
    body.mask = maskB64(MODEL.size);
    if (!body.mask) { status("edit-status", "repaint needs a mask: choose brush 'mask' and draw over the face", true); return; }
  }
  job("edit-status", mode, async () => {
    const r = await api("/api/edit", body);
    lastResult = r.image;
    $("edit-result").src = pngUrl(r.image);
    $("result-download").href = pngUrl(r.image); $("result-download").hidden = false;
    $("result-download").download = `${r.mode}-seed-${r.seed}.png`;
    $("use-result-btn").disabled = false;
    $("edit-caption").textContent = `${r.mode} · ${r.sampler} ${r.steps} steps · seed ${r.seed}` + (r.mode === "sdedit" ? ` · strength ${r.strength}` : "");
    status("edit-status", `${r.mode} done`);
  });
});

// ---- runs: curves with axes (inline SVG), grids with their epoch, switch checkpoints
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }
function curveSvg(points, label) {
  if (!points.length) return "";
  const W = 320, H = 170, L = 48, R = 10, T = 18, B = 30;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => L + (W - L - R) * (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0));
  const sy = (y) => H - B - (H - T - B) * (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0));
  const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
  const yt = y1 === y0 ? [y0] : [0, 1, 2, 3].map((i) => y0 + (y1 - y0) * i / 3);
  const xt = [...new Set(x1 === x0 ? [x0] : [0, 1, 2, 3, 4].map((i) => Math.round(x0 + (x1 - x0) * i / 4)))];
  const last = points[points.length - 1];
  return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(label)} per epoch">`
    + `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#888"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#888"/>`
    + yt.map((y) => `<line x1="${L - 3}" x2="${L}" y1="${sy(y)}" y2="${sy(y)}" stroke="#888"/><text x="${L - 5}" y="${sy(y) + 3}" font-size="9" text-anchor="end">${fmt(y)}</text>`).join("")
    + xt.map((x) => `<line x1="${sx(x)}" x2="${sx(x)}" y1="${H - B}" y2="${H - B + 3}" stroke="#888"/><text x="${sx(x)}" y="${H - B + 12}" font-size="9" text-anchor="middle">${x}</text>`).join("")
    + `<text x="${(L + W - R) / 2}" y="${H - 4}" font-size="10" text-anchor="middle">epoch</text>`
    + `<text x="${L}" y="11" font-size="10">${esc(label)} · last ${fmt(last[1])} (epoch ${last[0]}) · min ${fmt(y0)}</text>`
    + `<path d="${d}" fill="none" stroke="#5a63d8" stroke-width="1.5"/>`
    + points.map((p) => `<circle cx="${sx(p[0])}" cy="${sy(p[1])}" r="2.5" fill="#5a63d8"><title>epoch ${p[0]}: ${label} ${fmt(p[1])}</title></circle>`).join("")
    + `</svg>`;
}

async function loadRuns() {
  status("runs-status", "loading runs…");
  try {
    const r = await api("/api/runs");
    status("runs-status", r.runs.length ? `${r.runs.length} runs of experiment ${r.experiment} · current model ${r.current}`
      : `no runs in experiment ${r.experiment} (${r.tracking_uri || "no MLflow store"})`);
    $("runs").innerHTML = r.runs.map((run) => `<div class="run" data-run="${esc(run.run_id)}"><b>${esc(run.run_name)}</b> <code>${esc(run.run_id)}</code> ${esc(run.status)}
      ${run.metric ? `· best ${esc(run.metric)} ${fmt(Number(run.best_value))} at epoch ${run.best_epoch}` : ""}
      ${run.human_error_rate != null ? `· human error rate ${(100 * run.human_error_rate).toFixed(1)} %` : ""}
      <div class="curves">${Object.entries(run.curves).map(([k, v]) => curveSvg(v, k)).join("")}</div>
      <div>sample grids: ${run.grids.map((e) => `<a href="#" data-grid="${esc(run.run_id)}" data-epoch="${e}">epoch ${e}</a>`).join(" ") || "none"}</div>
      <div class="grid-view"></div>
      <div class="checkpoints">load a checkpoint: ${run.checkpoints.map((c) => `<button type="button" class="job" data-load="${esc(c)}"${c === r.current ? " aria-current=\"true\"" : ""}>${esc(c.split(":").slice(2).join(" ") || "best")}</button>`).join(" ") || "none on this machine"}</div>
      </div>`).join("");
    setBusy(JOB.busy);
  } catch (e) { status("runs-status", e.message, true); }
}
$("runs").addEventListener("click", (ev) => {
  const t = ev.target;
  if (t.dataset.grid) {
    ev.preventDefault();
    const run = t.closest(".run"), src = `/api/runs/${encodeURIComponent(t.dataset.grid)}/grid/${t.dataset.epoch}`;
    run.querySelector(".grid-view").innerHTML = `<figure><img src="${src}" alt="sample grid of epoch ${t.dataset.epoch}">`
      + `<figcaption>sample grid of epoch ${t.dataset.epoch} · <a href="${src}" download="grid-${esc(t.dataset.grid.slice(0, 8))}-epoch-${t.dataset.epoch}.png">download</a></figcaption></figure>`;
  } else if (t.dataset.load) {
    const id = t.dataset.load;
    job("runs-status", `loading ${id}`, async () => {
      await api("/api/model", { id });
      await loadModel();
      status("runs-status", `generator is now ${id}: Generate, Explore, Edit and Judge use it`);
      document.querySelectorAll("#runs button[data-load]").forEach((b) => b.toggleAttribute("aria-current", b.dataset.load === id));
    });
  }
});

// ---- judge: a game of N rounds; buttons off while the next face loads (no dropped clicks)
const GAME = { rounds: 10, answered: 0, wrong: 0, token: null, loading: false, logged: false, started: false };
function judgeButtons() {
  const off = !GAME.token || GAME.loading || GAME.answered >= GAME.rounds;
  $("judge-real").disabled = off; $("judge-fake").disabled = off;
}
function roundText() {
  $("judge-round").textContent = `round ${Math.min(GAME.answered + 1, GAME.rounds)} of ${GAME.rounds}`
    + (GAME.loading ? " · loading the face…" : "");
}
function wilson(k, n) {
  const z = 1.96, p = k / n, den = 1 + z * z / n;
  const mid = (p + z * z / (2 * n)) / den, half = z * Math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den;
  return [Math.max(0, mid - half), Math.min(1, mid + half)];
}
function pct(x) { return `${(100 * x).toFixed(1)} %`; }
function startGame() {
  Object.assign(GAME, { rounds: Math.max(1, Number($("judge-rounds").value) || 10), answered: 0, wrong: 0, token: null, logged: false, started: true });
  $("judge-end").hidden = true; $("judge-play").hidden = false;
  status("judge-result", "");
  nextJudge();
}
function nextJudge() {
  GAME.token = null; GAME.loading = true; roundText(); judgeButtons();
  whenIdle(() => job(null, `loading face ${GAME.answered + 1} of ${GAME.rounds}`, async () => {
    const r = await api("/api/judge/next");
    $("judge-image").src = pngUrl(r.image);
    GAME.token = r.token;
  }).then(() => {
    GAME.loading = false; roundText(); judgeButtons();
    if (!GAME.token) status("judge-result", "could not load a face: press New game to try again", true);
  }));
}
function showSummary(s) {
  $("judge-summary").textContent = s.n ? `this model so far: human error rate ${pct(s.error_rate)} `
    + `(95 % CI ${pct(s.ci_low)}–${pct(s.ci_high)}) over ${s.n} judgements` : "no judgements of this model yet";
}
async function answer(a) {
  if (!GAME.token || GAME.loading) return;
  const token = GAME.token; GAME.token = null; judgeButtons();
  try {
    const r = await api("/api/judge", { token, answer: a });
    GAME.answered += 1; GAME.wrong += r.correct ? 0 : 1; GAME.logged = GAME.logged || r.logged_to_mlflow;
    GAME.savedTo = r.saved_to || GAME.savedTo;
    status("judge-result", `${r.correct ? "right" : "wrong"}: it was ${r.truth}` + (r.logged_to_mlflow ? " · logged to MLflow" : ""));
    showSummary(r.summary);
  } catch (e) { status("judge-result", e.message, true); }
  if (GAME.answered >= GAME.rounds) endGame(); else nextJudge();
}
function endGame() {
  const [lo, hi] = wilson(GAME.wrong, GAME.answered);
  $("judge-play").hidden = true; $("judge-end").hidden = false;
  $("judge-end").textContent = `Game over after ${GAME.answered} rounds: ${GAME.wrong} wrong, error rate `
    + `${pct(GAME.wrong / GAME.answered)} (95 % Wilson interval ${pct(lo)}–${pct(hi)}). 50 % means the model's faces `
    + `could not be told from real ones. Your answers are saved in ${GAME.savedTo || JUDGEMENTS_FILE}`
    + (GAME.logged ? " and logged to the model's MLflow run (human_error_rate)." : ".");
}
$("judge-real").addEventListener("click", () => answer("real"));
$("judge-fake").addEventListener("click", () => answer("fake"));
$("judge-restart").addEventListener("click", startGame);

// ---- dataset: the aligned faces, reject / restore into curation.csv
const DS = { offset: 0, limit: 48, total: 0 };
function faceTile(f) {
  const fig = document.createElement("figure"); fig.dataset.face = f.face_id;
  const effective = f.decision ? (f.decision === "reject" ? "rejected" : "accepted") : (f.status === "ok" ? "accepted" : "rejected");
  fig.className = effective;
  const src = `/api/dataset/${encodeURIComponent(f.face_id)}/image`;
  const why = f.status === "ok" ? `accepted · ${f.split || ""}` : f.reason;
  const decided = f.decision ? `${f.decision === "reject" ? "rejected" : "restored"} by hand${f.applied ? "" : " · pending dvc repro"}` : "";
  fig.innerHTML = `<img loading="lazy" src="${src}" alt="face ${esc(f.face_id)}" title="${esc(f.face_id)}${f.note ? " · " + esc(f.note) : ""}">`
    + `<figcaption><span class="reason">${esc(why)}</span><span class="reason pending">${esc(decided)}</span></figcaption>`;
  const actions = document.createElement("div"); actions.className = "tile-actions";
  const dl = document.createElement("a"); dl.href = src; dl.download = `${f.face_id}.png`; dl.textContent = "download";
  actions.append(dl);
  if (effective === "accepted" || !f.face_id.endsWith("_none")) {
    const b = document.createElement("button"); b.type = "button";
    b.dataset.decision = effective === "accepted" ? "reject" : "restore"; b.textContent = b.dataset.decision;
    b.addEventListener("click", () => decide(f.face_id, b.dataset.decision));
    actions.append(b);
  }
  fig.append(actions);
  return fig;
}
async function loadDataset() {
  const q = new URLSearchParams({ status: $("ds-status").value, offset: DS.offset, limit: DS.limit });
  if ($("ds-reason").value) q.set("reason", $("ds-reason").value);
  try {
    const r = await api(`/api/dataset?${q}`);
    DS.total = r.total;
    const keep = $("ds-reason").value;
    $("ds-reason").innerHTML = `<option value="">any</option>` + Object.entries(r.reasons)
      .map(([k, n]) => `<option value="${esc(k)}"${k === keep ? " selected" : ""}>${esc(k)} (${n})</option>`).join("");
    $("ds-faces").replaceChildren(...r.faces.map(faceTile));
    const end = Math.min(r.offset + r.faces.length, r.total);
    status("ds-status-line", `faces ${r.total ? r.offset + 1 : 0}–${end} of ${r.total} · the set: ${r.counts.accepted} accepted, `
      + `${r.counts.rejected} rejected · decisions go to ${r.curation}`);
    $("ds-prev").disabled = DS.offset === 0; $("ds-next").disabled = end >= r.total;
  } catch (e) { status("ds-status-line", e.message, true); }
}
async function decide(faceId, decision) {
  try {
    const r = await api(`/api/dataset/${encodeURIComponent(faceId)}`, { decision, note: $("ds-note").value.trim() });
    $("ds-note").value = "";
    const old = document.querySelector(`#ds-faces figure[data-face="${faceId}"]`);
    if (old) old.replaceWith(faceTile(r.face));
    status("ds-status-line", r.message);
  } catch (e) { status("ds-status-line", e.message, true); }
}
$("ds-status").addEventListener("change", () => { DS.offset = 0; loadDataset(); });
$("ds-reason").addEventListener("change", () => { DS.offset = 0; loadDataset(); });
$("ds-prev").addEventListener("click", () => { DS.offset = Math.max(0, DS.offset - DS.limit); loadDataset(); });
$("ds-next").addEventListener("click", () => { DS.offset += DS.limit; loadDataset(); });

// ---- tabs
function showTab(name) {
  document.querySelectorAll("nav button").forEach((x) => x.classList.toggle("active", x.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.id === "tab-" + name));
  if (name === "runs") loadRuns();
  if (name === "dataset") loadDataset();
  if (name === "judge") {
    if (!GAME.started) startGame();
    api("/api/judge/summary").then((s) => showSummary(s.model)).catch(() => {});
  }
}
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));

loadModel().then(() => { document.body.dataset.ready = "1"; })
  .catch((e) => { $("model-info").textContent = "no model: " + e.message; });
