// facegen studio, shared by every tab: the API wrapper, the busy state, image tiles.
// Plain JS over the JSON API (docs/studio.md): no build step, no CDN; the scripts share one scope.
"use strict";
const $ = (id) => document.getElementById(id);
let MODEL = null;
const inflight = new Set();  // aborted when the page closes, so the server cancels their jobs
window.addEventListener("pagehide", () => inflight.forEach((c) => c.abort()));

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
function tile(b64, caption, title, name, statusId) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = pngUrl(b64); img.title = title || caption; img.alt = caption;
  const cap = document.createElement("figcaption"); cap.textContent = caption;
  const actions = document.createElement("div"); actions.className = "tile-actions";
  const dl = document.createElement("a"); dl.href = img.src; dl.download = `${name}.png`; dl.textContent = "download"; dl.title = `download ${name}.png`;
  const use = document.createElement("button"); use.type = "button"; use.textContent = "edit"; use.title = "use as the Edit tab's input";
  use.addEventListener("click", () => { drawFace(b64); showTab("edit"); status("edit-status", `input: ${caption}`); });
  actions.append(dl, use);
  fig.append(img, cap, actions);
  if (statusId) fig.append(nearestButton(fig, b64, caption, statusId));
  return fig;
}

// ---- memorization: a generated face's nearest training face (POST /api/nearest); flagged tiles are marked
function nearestButton(fig, b64, caption, statusId) {
  const btn = document.createElement("button"); btn.type = "button"; btn.className = "job nearest-btn";
  btn.textContent = "nearest training face"; btn.title = "the closest accepted training face and whether this is a near copy";
  btn.addEventListener("click", () => job(statusId, `nearest training face of ${caption}`, async () => {
    const r = await api("/api/nearest", { image: b64 });
    showNearest(fig, r);
    status(statusId, `${caption}: nearest training face ${r.face_id} · feature distance ${fmt(r.feature_distance)}`
      + ` (threshold ${fmt(r.feature_threshold)}) · pixel distance ${fmt(r.pixel_distance)} (threshold ${fmt(r.pixel_threshold)})`
      + (r.flagged ? " · FLAGGED: a near copy of a training face" : " · not a copy") + ` · thresholds: ${r.source}`);
  }));
  return btn;
}
function showNearest(fig, r) {
  fig.querySelector(".nearest")?.remove();
  const box = document.createElement("div"); box.className = "nearest";
  const img = document.createElement("img"); img.src = pngUrl(r.face_image); img.alt = `training face ${r.face_id}`;
  img.title = `nearest training face ${r.face_id} (${r.path})`;
  const text = document.createElement("span");
  text.textContent = `${r.face_id} · feat ${fmt(r.feature_distance)} / ${fmt(r.feature_threshold)} · px ${fmt(r.pixel_distance)} / ${fmt(r.pixel_threshold)}`;
  box.append(img, text);
  fig.classList.toggle("flagged", r.flagged);
  fig.querySelector(".flag")?.remove();
  if (r.flagged) {
    const flag = document.createElement("strong"); flag.className = "flag"; flag.textContent = "⚠ near copy of a training face";
    box.prepend(flag);
  }
  fig.append(box);
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

function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3); }  // 3 significant digits
function esc(s) { return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }  // text -> HTML
