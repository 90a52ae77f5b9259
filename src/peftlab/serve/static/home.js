// Experiments home: every experiment with its task, model, data, status, its answer (the
// recommendation of `peftlab.report.recommend`, as on Results: GET /api/overview), runs done of
// planned (counted as Jobs counts them: `planCounts`), and when; open, stop and delete it here.
// Stopping and deleting an experiment (shared with Results) are at the end.
"use strict";

PAGES.home = async function pageHome() {
  await renderHome();
  every(3000, renderHome);
};

function expStatus(e) {
  const has = (s) => e.runs.some((r) => r.status === s);
  if (has("running") || e.driving) return "running";
  if (has("queued")) return "queued";
  if (!e.runs.length) return "empty";
  if (e.runs.some((r) => ["failed", "diverged"].includes(r.status))) return "failed";
  if (has("interrupted")) return "interrupted";
  return "done";
}

function fmtAgo(ts) {
  if (!ts) return "–";
  const s = Date.now() / 1000 - ts;
  return s < 60 ? "just now" : `${fmtSecs(s)} ago`;
}

// The answer: the recommended method and its score; while runs are going, the one leading so far.
function bestCell(b) {
  if (!b || !b.run) return '<span class="small">no answer yet</span>';
  const v = typeof b.value === "number" ? ` ${esc(b.metric)} <b>${b.value.toFixed(2)}</b>` : "";
  const ci = typeof b.ci_low === "number" && typeof b.ci_high === "number"
    ? ` <span class="ci" title="95% confidence interval">[${b.ci_low.toFixed(1)}, ${b.ci_high.toFixed(1)}]</span>` : "";
  const what = b.recommended ? "" : b.final ? '<span class="small">best, not recommended: </span>' : '<span class="small">leading so far: </span>';
  return `<span title="${esc(b.headline || "")}">${what}${swatch(b.method)}<b>${esc(b.run)}</b>${v}${ci}</span>`;
}

function homeRow(e) {
  const c = planCounts(e.runs, e.plan ? { [e.name]: e.plan } : {}, new Set(e.driving ? [e.name] : []));
  const st = expStatus(e);
  const started = e.runs.map((r) => r.started_at).filter(Boolean);
  const ended = e.runs.map((r) => r.finished_at).filter(Boolean);
  const span = started.length ? (st === "running" ? Date.now() / 1000 : Math.max(...ended, ...started)) - Math.min(...started) : null;
  const busy = st === "running" || st === "queued";
  const href = `#/results/${encodeURIComponent(e.name)}`;
  return `<tr data-exp="${esc(e.name)}" data-status="${st}">
    <td data-label="experiment"><a href="${href}"><b>${esc(e.name)}</b></a></td>
    <td data-label="task">${esc(e.task)}</td><td data-label="model">${esc(short(e.model))}</td>
    <td data-label="data" class="wrap">${esc(short(e.data))}</td><td data-label="status">${badge(st)}</td>
    <td data-label="best" class="best">${bestCell(e.best)}</td>
    <td data-label="runs done" class="num runs-done">${c.done} of ${c.total}</td>
    <td data-label="time" class="small" title="how long its runs took, first start to last finish; when it or a run of it last changed">${span !== null ? `ran ${fmtSecs(span)} · ` : ""}changed ${fmtAgo(Math.max(e.updated_at || 0, ...ended, ...started))}</td>
    <td class="actions-cell"><a class="button small secondary" href="${href}">Open</a>
      ${busy ? `<button type="button" class="small danger home-stop">Stop</button>` : ""}
      <button type="button" class="small danger home-delete">Delete</button></td></tr>`;
}

async function renderHome() {
  const list = await api("GET", "/api/overview");
  state.overview = list;
  await loadColors();
  const body = $("#home-table tbody");
  const html = list.map(homeRow).join("")
    || '<tr class="empty"><td colspan="9" class="small">No experiments yet: add a data set, then start one from <a href="#/new">New experiment</a>.</td></tr>';
  if (body._html !== html) { body.innerHTML = html; body._html = html; }
}

function wireHome() {
  $("#home-table").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    const name = b.closest("tr").dataset.exp;
    if (b.classList.contains("home-stop")) await stopExperiment(name);
    else if (b.classList.contains("home-delete")) await deleteExperimentAsked(name);
    await renderHome();
  });
}

// -- stop and delete an experiment (the home page and Results) --------------------------
async function stopExperiment(name) {
  const ok = await confirmDialog(`Stop the experiment ${name}?`, "<p>Its queued runs are cancelled and its running runs stopped; their checkpoints are kept, and Retry on Jobs resumes a run from its last one.</p>", "Stop");
  if (!ok) return false;
  try {
    const r = await api("POST", `/api/experiments/${encodeURIComponent(name)}/cancel`);
    toast(r.cancelled.length ? `Stopped ${r.cancelled.length} run(s) of ${name}` : `Nothing of ${name} was running`);
    return true;
  } catch (e) { toast(e.message, 8000); return false; }
}

// The dialog says what goes; with runs still queued or running it offers to cancel them and delete
// in one step (the service cancels them, then deletes the experiment in one store transaction).
async function deleteExperimentAsked(name) {
  const d = await api("GET", `/api/experiments/${encodeURIComponent(name)}`);
  const busy = d.runs.filter((r) => r.status === "running" || r.status === "queued");
  const driving = d.driver && d.driver.running;
  const n = d.runs.length;
  let body = `<p>Its ${n} run${n === 1 ? "" : "s"} go with it: results, curves, logs, adapters and exports, and its tuning studies. This cannot be undone.</p>`;
  if (busy.length || driving) {
    body += `<p class="note-warn">${busy.length ? `${busy.length} of them ${busy.length === 1 ? "is" : "are"} still running or queued (${esc(busy.map((r) => r.name).join(", "))})` : "Its tuning is still going"}: they are cancelled first, then the experiment is deleted.</p>`;
  }
  const ok = await confirmDialog(`Delete the experiment ${name}?`, body, busy.length || driving ? "Cancel the runs and delete" : "Delete");
  if (!ok) return false;
  try {
    if (busy.length || driving) await api("POST", `/api/experiments/${encodeURIComponent(name)}/cancel-and-delete`);
    else await api("DELETE", `/api/experiments/${encodeURIComponent(name)}`);
    toast(`Deleted ${name}`);
    if (localStorage.getItem("peftlab-exp") === name) localStorage.removeItem("peftlab-exp");
    return true;
  } catch (e) { toast(e.message, 8000); return false; }
}
