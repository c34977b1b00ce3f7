// facegen studio: the tabs and the start (loaded last; docs/studio.md).
"use strict";
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
