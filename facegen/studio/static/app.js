// facegen studio: plain JS over the JSON API (docs/studio.md). No build step, no CDN.
"use strict";
const $ = (id) => document.getElementById(id);
let MODEL = null;
const inflight = new Set();  // aborted when the page closes, so the server cancels their jobs
window.addEventListener("pagehide", () => inflight.forEach((c) => c.abort()));

async function api(path, body, opts = {}) {
  const ctrl = new AbortController();
  inflight.add(ctrl);
  try {
    const init = { signal: ctrl.signal, ...opts };
    if (body !== undefined) {
      init.method = "POST";
      if (body instanceof FormData) init.body = body;
      else { init.headers = { "Content-Type": "application/json" }; init.body = JSON.stringify(body); }
    }
    init.headers = { ...init.headers, "X-Facegen-Studio": "1" };  // the studio refuses posts without it
    const res = await fetch(path, init);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.detail || `HTTP ${res.status}`);
    return data;
  } finally { inflight.delete(ctrl); }
}

function status(id, text, error = false) {
  const el = $(id); el.textContent = text; el.classList.toggle("error", error);
}

function tile(b64, caption, title = caption) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = "data:image/png;base64," + b64; img.title = title;
  const cap = document.createElement("figcaption"); cap.textContent = caption;
  fig.append(img, cap); return fig;
}

function settings(prefix) {
  const s = {};
  const sampler = $(prefix + "-sampler"); if (sampler && sampler.value) s.sampler = sampler.value;
  const steps = $(prefix + "-steps"); if (steps && steps.value) s.steps = Number(steps.value);
  return s;
}

function conditionValues() {
  const cond = {};
  document.querySelectorAll("#conditions input[data-name]").forEach((el) => { cond[el.dataset.name] = Number(el.value); });
  return cond;
}

async function loadModel() {
  MODEL = await api("/api/model");
  $("model-info").textContent = `model ${MODEL.id}` + (MODEL.run_id ? ` (run ${MODEL.run_id.slice(0, 8)}, epoch ${MODEL.epoch})` : "")
    + ` · ${MODEL.size}px · max ${MODEL.limits.max_images} images, ${MODEL.limits.max_steps} steps`;
  document.querySelectorAll("select.sampler").forEach((sel) => {
    sel.innerHTML = MODEL.samplers.map((s) => `<option ${s === MODEL.defaults.sampler ? "selected" : ""}>${s}</option>`).join("");
  });
  document.querySelectorAll("input.steps").forEach((el) => { el.value = MODEL.defaults.steps || ""; });
  $("gen-n").max = MODEL.limits.max_images;
  const box = $("conditions");
  box.innerHTML = "";
  box.hidden = MODEL.conditions.length === 0;  // sliders only when the model folder declares conditions
  for (const c of MODEL.conditions) {
    const step = (c.max - c.min) / 100;
    box.insertAdjacentHTML("beforeend", `<label>${c.name} <input type="range" data-name="${c.name}" min="${c.min}" max="${c.max}" step="${step}" value="${c.default}"></label>`);
  }
  if (MODEL.conditions.length) box.insertAdjacentHTML("beforeend", `<label>guidance <input id="guidance" type="number" min="0" step="0.5" value="2"></label>`);
}

$("generate-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { seed: Number($("gen-seed").value), n: Number($("gen-n").value), ...settings("gen") };
  if (MODEL.conditions.length) { body.condition = conditionValues(); body.guidance = Number($("guidance").value); }
  status("gen-status", "generating…");
  const t0 = performance.now();
  try {
    const r = await api("/api/generate", body);
    $("gen-images").replaceChildren(...r.images.map((b, i) => tile(b, `seed ${r.seeds[i]}`, `seed ${r.seeds[i]} · ${r.sampler} ${r.steps} steps · batch ${r.batch_size}`)));
    status("gen-status", `${r.images.length} images in ${((performance.now() - t0) / 1000).toFixed(2)} s · model ${r.model}`
      + ` · batch ${r.batch_size}: facegen sample with sample.seed=${body.seed} draws the same images`);
  } catch (e) { status("gen-status", e.message, true); }
});

$("interp-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { seed_a: Number($("interp-a").value), seed_b: Number($("interp-b").value),
                 frames: Number($("interp-frames").value), ...settings("interp") };
  status("interp-status", "interpolating…");
  try {
    const r = await api("/api/interpolate", body);
    $("interp-images").replaceChildren(...r.images.map((b, i) => tile(b, `t=${r.t[i].toFixed(2)}`)));
    status("interp-status", `slerp ${body.seed_a} → ${body.seed_b}, ${r.sampler} ${r.steps} steps`);
  } catch (e) { status("interp-status", e.message, true); }
});

$("var-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { seed: Number($("var-seed").value), n: Number($("var-n").value), amount: Number($("var-amount").value),
                 ...settings("interp") };
  status("interp-status", "variations…");
  try {
    const r = await api("/api/variations", body);
    $("var-images").replaceChildren(...r.images.map((b, i) => tile(b, `seed ${body.seed} ~${i + 1}`)));
    status("interp-status", `variations of seed ${body.seed}, amount ${body.amount}`);
  } catch (e) { status("interp-status", e.message, true); }
});

// ---- edit: a face canvas (paint on it) and a mask canvas (white = repaint)
const faceCtx = $("edit-canvas").getContext("2d");
const maskCtx = $("mask-canvas").getContext("2d");
function clearMask() { maskCtx.fillStyle = "#000"; maskCtx.fillRect(0, 0, 256, 256); }
clearMask();
faceCtx.fillStyle = "#bbb"; faceCtx.fillRect(0, 0, 256, 256);
$("clear-mask-btn").addEventListener("click", clearMask);
function drawImage(b64) {
  const img = new Image();
  img.onload = () => { faceCtx.imageSmoothingEnabled = false; faceCtx.drawImage(img, 0, 0, 256, 256); };
  img.src = "data:image/png;base64," + b64;
}
let drawing = false;
function paint(ev) {
  if (!drawing) return;
  const r = ev.target.getBoundingClientRect();
  const x = (ev.clientX - r.left) * 256 / r.width, y = (ev.clientY - r.top) * 256 / r.height;
  if ($("brush").value === "mask") { maskCtx.fillStyle = "#fff"; maskCtx.beginPath(); maskCtx.arc(x, y, 14, 0, 7); maskCtx.fill(); }
  else { faceCtx.fillStyle = $("brush-colour").value; faceCtx.beginPath(); faceCtx.arc(x, y, 6, 0, 7); faceCtx.fill(); }
}
$("edit-canvas").addEventListener("pointerdown", (ev) => { drawing = true; paint(ev); });
$("edit-canvas").addEventListener("pointermove", paint);
window.addEventListener("pointerup", () => { drawing = false; });

$("upload-file").addEventListener("change", async () => {
  const file = $("upload-file").files[0]; if (!file) return;
  const fd = new FormData(); fd.append("file", file);
  status("edit-status", "detecting and aligning…");
  try { const r = await api("/api/upload", fd); drawImage(r.image); status("edit-status", `aligned face (score ${r.detection.score.toFixed(2)})`); }
  catch (e) { status("edit-status", e.message, true); }
});
$("use-sample-btn").addEventListener("click", async () => {
  try { const r = await api("/api/generate", { seed: Number($("edit-seed").value), n: 1 }); drawImage(r.images[0]); status("edit-status", `seed ${r.seeds[0]}`); }
  catch (e) { status("edit-status", e.message, true); }
});

function canvasB64(canvas, size) {
  const tmp = document.createElement("canvas"); tmp.width = tmp.height = size;
  const ctx = tmp.getContext("2d"); ctx.drawImage(canvas, 0, 0, size, size);
  return tmp.toDataURL("image/png").split(",")[1];
}

$("edit-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const mode = $("edit-mode").value;
  const body = { image: canvasB64($("edit-canvas"), MODEL.size), mode, strength: Number($("edit-strength").value),
                 seed: Number($("edit-seed").value), ...settings("edit") };
  if (mode === "repaint") body.mask = canvasB64($("mask-canvas"), MODEL.size);
  status("edit-status", mode + "…");
  try {
    const r = await api("/api/edit", body);
    $("edit-result").src = "data:image/png;base64," + r.image;
    $("edit-caption").textContent = `${r.mode} · ${r.sampler} ${r.steps} steps` + (r.mode === "sdedit" ? ` · strength ${r.strength}` : "");
    status("edit-status", "done");
  } catch (e) { status("edit-status", e.message, true); }
});

// ---- runs: curves (inline SVG), grids, switch checkpoints
function curveSvg(points, label) {
  if (!points.length) return "";
  const w = 260, h = 90, xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || 1, y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => 4 + (w - 8) * (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0));
  const sy = (y) => h - 12 - (h - 20) * (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0));
  const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
  return `<svg width="${w}" height="${h}"><path d="${d}" fill="none" stroke="#5a63d8" stroke-width="1.5"/>`
    + points.map((p) => `<circle cx="${sx(p[0])}" cy="${sy(p[1])}" r="2" fill="#5a63d8"><title>epoch ${p[0]}: ${p[1].toPrecision(4)}</title></circle>`).join("")
    + `<text x="4" y="${h - 1}" font-size="10">${label} (min ${y0.toPrecision(3)})</text></svg>`;
}

async function loadRuns() {
  status("runs-status", "loading runs…");
  try {
    const r = await api("/api/runs");
    status("runs-status", r.runs.length ? `${r.runs.length} runs of experiment ${r.experiment} · current model ${r.current}`
      : `no runs in experiment ${r.experiment} (${r.tracking_uri || "no MLflow store"})`);
    $("runs").innerHTML = r.runs.map((run) => `<div class="run"><b>${run.run_name}</b> <code>${run.run_id}</code> ${run.status}
      ${run.metric ? `· best ${run.metric} ${Number(run.best_value).toPrecision(4)} at epoch ${run.best_epoch}` : ""}
      ${run.human_error_rate != null ? `· human error rate ${(100 * run.human_error_rate).toFixed(1)}%` : ""}
      <div>${Object.entries(run.curves).map(([k, v]) => curveSvg(v, k)).join(" ")}</div>
      <div>grids: ${run.grids.map((e) => `<a href="#" data-grid="${run.run_id}/${e}">epoch ${e}</a>`).join(" ") || "none"}</div>
      <div class="grid-view"></div>
      <div>checkpoints: ${run.checkpoints.map((c) => `<button type="button" data-load="${c}">${c.split(":").slice(2).join(" ") || "best"}</button>`).join(" ") || "none on this machine"}</div>
      </div>`).join("");
  } catch (e) { status("runs-status", e.message, true); }
}
$("runs").addEventListener("click", async (ev) => {
  const t = ev.target;
  if (t.dataset.grid) {
    ev.preventDefault();
    t.closest(".run").querySelector(".grid-view").innerHTML = `<img src="/api/runs/${t.dataset.grid.replace("/", "/grid/")}" alt="grid">`;
  } else if (t.dataset.load) {
    status("runs-status", `loading ${t.dataset.load}…`);
    try { await api("/api/model", { id: t.dataset.load }); await loadModel(); status("runs-status", `generator is now ${t.dataset.load}`); }
    catch (e) { status("runs-status", e.message, true); }
  }
});

// ---- judge
let judgeToken = null;
async function nextJudge() {
  try { const r = await api("/api/judge/next"); judgeToken = r.token; $("judge-image").src = "data:image/png;base64," + r.image; }
  catch (e) { status("judge-result", e.message, true); }
}
function showSummary(s) {
  $("judge-summary").textContent = s.n ? `human error rate ${(100 * s.error_rate).toFixed(1)}% `
    + `(95% CI ${(100 * s.ci_low).toFixed(1)}–${(100 * s.ci_high).toFixed(1)}%) over ${s.n} judgements` : "no judgements yet";
}
async function answer(a) {
  if (!judgeToken) return;
  const token = judgeToken; judgeToken = null;
  try {
    const r = await api("/api/judge", { token, answer: a });
    status("judge-result", `${r.correct ? "right" : "wrong"}: it was ${r.truth}` + (r.logged_to_mlflow ? " · logged to MLflow" : ""));
    showSummary(r.summary);
  } catch (e) { status("judge-result", e.message, true); }
  nextJudge();
}
$("judge-real").addEventListener("click", () => answer("real"));
$("judge-fake").addEventListener("click", () => answer("fake"));

// ---- tabs
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => {
  document.querySelectorAll("nav button").forEach((x) => x.classList.toggle("active", x === b));
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.id === "tab-" + b.dataset.tab));
  if (b.dataset.tab === "runs") loadRuns();
  if (b.dataset.tab === "judge") { if (!judgeToken) nextJudge(); api("/api/judge/summary").then((s) => showSummary(s.model)).catch(() => {}); }
}));

loadModel().then(() => { document.body.dataset.ready = "1"; })
  .catch((e) => { $("model-info").textContent = "no model: " + e.message; });
