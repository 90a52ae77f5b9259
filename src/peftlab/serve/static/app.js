// peftlab web pages: start. The shared parts are in core.js, each page in its own file
// (datasets.js, new.js, jobs.js, results.js with Compare, playground.js, export.js), all plain JS
// over the REST API (/api: /api/datasets, /api/experiments, /api/runs, /api/playground, ...;
// schema at /openapi.json). No build step, nothing from a CDN.
"use strict";

async function refreshWorker() {
  try {
    const w = await api("GET", "/api/worker");
    $("#worker-state").textContent = w.running ? `worker: ${w.active.length}/${w.concurrency} busy` : "no worker";
  } catch (e) { $("#worker-state").textContent = ""; }
}

async function start() {
  $("#token-save").addEventListener("click", () => { localStorage.setItem("peftlab-token", $("#token-input").value); location.reload(); });
  wireDatasetForms();
  wireNewForm();
  wireJobs();
  wireResults();
  wireHome();
  wireJobsChart();
  wirePlayground();
  $("#ex-exp").addEventListener("change", () => { rememberExp($("#ex-exp").value); renderExport(); });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("#modal").classList.contains("hidden")) $("#modal-cancel").click(); });
  try { state.config = await api("GET", "/api/config"); } catch (e) { toast(e.message, 8000); return; }
  window.addEventListener("hashchange", route);
  route();
  refreshWorker();
  setInterval(refreshWorker, 5000);
}
start();
