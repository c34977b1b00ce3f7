// facegen studio: the model and its conditions, Generate, Explore and Edit.
"use strict";
// ---- the model and its conditions: a toggle "unconditional" / each attribute
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
      `seed ${r.seeds[i]} · ${r.sampler} ${r.steps} steps · batch ${r.batch_size}${cond}`, `seed-${r.seeds[i]}`, "gen-status")));
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

function canvasB64(canvas, size) {  // back to the model's size, one canvas pixel per face pixel (no blur)
  const tmp = document.createElement("canvas"); tmp.width = tmp.height = size;
  const ctx = tmp.getContext("2d"); ctx.imageSmoothingEnabled = false; ctx.drawImage(canvas, 0, 0, size, size);
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

