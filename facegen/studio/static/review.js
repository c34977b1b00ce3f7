// facegen studio: Runs, Judge and Dataset.
"use strict";
// ---- runs: curves with axes (inline SVG), grids with their epoch, switch checkpoints
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
    status("judge-result", `${r.correct ? "right" : "wrong"}: it was ${r.truth}` + (r.logged_to_mlflow ? " · logged to MLflow" : ""));
    showSummary(r.summary);
  } catch (e) { status("judge-result", e.message, true); }
  if (GAME.answered >= GAME.rounds) endGame(); else nextJudge();
}
async function endGame() {
  const [lo, hi] = wilson(GAME.wrong, GAME.answered);
  let where;  // the server's file (GET /api/judge/summary saved_to), never a guess of this page
  try { where = `Your answers are saved in ${(await api("/api/judge/summary")).saved_to}`; }
  catch (e) { where = `Where your answers are saved could not be read (${e.message})`; }
  $("judge-play").hidden = true; $("judge-end").hidden = false;
  $("judge-end").textContent = `Game over after ${GAME.answered} rounds: ${GAME.wrong} wrong, error rate `
    + `${pct(GAME.wrong / GAME.answered)} (95 % Wilson interval ${pct(lo)}–${pct(hi)}). 50 % means the model's faces `
    + `could not be told from real ones. ${where}`
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

