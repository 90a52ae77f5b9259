// Jobs: every run in the store, updated in place (rows and their buttons are kept between
// refreshes, so a click is never lost), the experiment's progress and ETA, the live chart (loss or
// the validation metric, per run, with toggles: jobs-chart.js), the run's log (peftlab's messages; the worker's raw output behind a toggle,
// with the expected library messages explained), Cancel, Retry and Delete.
"use strict";

const PHASES = { "": "starting", starting: "starting", "loading data": "loading the data", "loading model": "loading the model",
  tokenizing: "tokenizing", train: "training", evaluating: "evaluating on the test split", done: "done" };

PAGES.jobs = async function pageJobs(exp) {
  await loadColors();
  const sel = $("#jobs-exp");
  state.experiments = await api("GET", "/api/experiments");
  const cur = exp || sel.value || localStorage.getItem("peftlab-exp") || "";
  sel.innerHTML = '<option value="">all</option>' + state.experiments.map((e) => `<option>${esc(e.name)}</option>`).join("");
  sel.value = state.experiments.some((e) => e.name === cur) ? cur : "";
  state.jobRows = state.jobRows || new Map(); // kept across visits: the rows are the same elements
  state.curves = state.curves || {};
  await renderJobs();
  every(1500, renderJobs);
};

function runProgress(r) {
  const p = r.progress || {};
  if (r.status === "done") return { pct: 100, text: "", cls: "ok" };
  if (r.status !== "running") return null;
  if (p.phase === "train" && p.max_steps) return { pct: Math.min(100, (100 * (p.step || 0)) / p.max_steps), text: `${p.step}/${p.max_steps}` };
  return { pct: null, text: PHASES[p.phase || ""] || p.phase };
}

function mainMetric(r, task) {
  const key = { "causal-lm": "rougeL", seq2seq: "rougeL", classification: "macro_f1", "image-classification": "macro_f1" }[task] || "rougeL";
  const v = (r.metrics || {})[key];
  return typeof v === "number" ? `${key} <b>${v.toFixed(2)}</b>` : "";
}

function jobCells(r) {
  const exp = state.experiments.find((e) => e.name === r.experiment) || {};
  const pr = runProgress(r);
  const p = r.progress || {};
  const live = r.status === "running" && p.phase === "train";
  const bar = !pr ? "" : pr.pct === null ? `<span class="bar indeterminate"><i></i></span>${esc(pr.text)}`
    : `<span class="bar"><i style="width:${pr.pct}%${pr.cls ? ";background:var(--ok)" : ""}"></i></span>${esc(pr.text)}`;
  const err = r.error && r.status !== "done" ? `<div class="small">${esc(trunc(r.error, 200))}</div>` : "";
  const took = r.started_at && r.finished_at && r.status === "done" ? fmtSecs(r.finished_at - r.started_at) : "";
  const result = r.status === "done" ? `${mainMetric(r, exp.task)}${took ? ` <span class="small">in ${took}</span>` : ""}` : "";
  const actions = [`<button class="small secondary job-logs" data-id="${r.id}">Logs</button>`];
  if (r.status === "queued" || r.status === "running") actions.push(`<button class="small danger job-cancel" data-id="${r.id}">Cancel</button>`);
  if (["failed", "diverged", "interrupted"].includes(r.status)) actions.push(`<button class="small job-retry" data-id="${r.id}">Retry</button>`);
  if (r.status !== "running") actions.push(`<button class="small danger job-delete" data-id="${r.id}" title="Delete this run and its files">Delete</button>`);
  return {
    id: String(r.id), experiment: esc(r.experiment),
    run: `${swatch(r.method)}<b>${esc(r.name)}</b>${r.name !== r.method ? ` <span class="small">${esc(r.method)}</span>` : ""}`,
    status: badge(r.status) + err, progress: bar,
    loss: live && p.loss !== undefined && p.loss !== null ? fmtNum(p.loss, 3) : "–",
    eta: live && p.eta_seconds !== undefined && p.eta_seconds !== null ? fmtSecs(p.eta_seconds) : "–",
    result, actions: actions.join(" "),
  };
}
const JOB_COLS = ["id", "experiment", "run", "status", "progress", "loss", "eta", "result", "actions"];

async function renderJobs() {
  const exp = $("#jobs-exp").value;
  const [runs, w, detail] = await Promise.all([
    api("GET", "/api/runs" + (exp ? `?experiment=${encodeURIComponent(exp)}` : "")), api("GET", "/api/worker"),
    exp ? api("GET", `/api/experiments/${encodeURIComponent(exp)}`).catch(() => null) : null]);
  $("#jobs-worker").textContent = w.running ? `Worker: ${w.active.length} of ${w.concurrency} slot(s) busy.` : "This service was started without a worker: queued runs wait until a worker runs this store's queue.";
  renderSummary(runs, w, detail);
  const body = $("#jobs-table tbody");
  const ordered = runs.slice().reverse();
  const seen = new Set();
  let prev = null;
  for (const r of ordered) {
    seen.add(r.id);
    const cells = jobCells(r);
    let tr = state.jobRows.get(r.id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.id = r.id;
      tr.innerHTML = JOB_COLS.map((c) => `<td data-col="${c}" class="${["loss", "eta"].includes(c) ? "num" : ""}"></td>`).join("");
      state.jobRows.set(r.id, tr);
    }
    tr.dataset.run = r.name;
    tr.dataset.status = r.status;
    for (const c of JOB_COLS) {
      const td = tr.querySelector(`td[data-col="${c}"]`);
      if (td._html !== cells[c]) { td.innerHTML = cells[c]; td._html = cells[c]; }
    }
    const want = prev ? prev.nextSibling : body.firstChild;
    if (want !== tr) body.insertBefore(tr, want);
    prev = tr;
  }
  for (const [id, tr] of state.jobRows) if (!seen.has(id)) { tr.remove(); state.jobRows.delete(id); }
  const empty = body.querySelector("tr.empty");
  const drivers = exp ? (detail && detail.driver ? [detail.driver] : []) : (w.drivers || []);
  const why = drivers.some((d) => d.error) ? "No runs: the tuning driver failed before it made any (its error is above)."
    : drivers.some((d) => d.running) ? "No runs yet: the tuning driver is checking the data and the model; its trials appear here as they are queued."
    : "No runs yet: launch one from New experiment.";
  if (!ordered.length && (!empty || empty.textContent !== why)) body.innerHTML = `<tr class="empty"><td colspan="9" class="small">${esc(why)}</td></tr>`;
  else if (ordered.length && empty) empty.remove();
  state.lastRuns = runs;
  await renderLossChart(exp, runs);
  if (state.logsFor) await showLogs(state.logsFor, true);
}

// A tuning driver: running, or the error it ended with, whole (it may have failed before making any run).
function driverLine(d, named) {
  const who = named ? `tuning driver of <b>${esc(d.experiment)}</b>` : "tuning driver";
  if (d.running) return `<span title="process ${esc(d.pid)}">${who} <b>running</b></span>${d.log_tail && d.log_tail.length ? `: <span class="small mono">${esc(d.log_tail[d.log_tail.length - 1])}</span>` : ""}`;
  if (d.error) return `<span class="bad">${who} failed${d.exit_code !== undefined && d.exit_code !== null ? ` (exit code ${d.exit_code})` : ""}:</span><pre class="small mono driver-error">${esc(d.error)}</pre>`;
  return `${who} finished`;
}

function renderSummary(runs, w, detail) {
  const el = $("#jobs-summary");
  const exp = $("#jobs-exp").value;
  const drivers = exp ? (detail && detail.driver ? [detail.driver] : []) : (w.drivers || []).filter((d) => d.running || d.error);
  const driverHtml = drivers.map((d) => driverLine(d, !exp)).join("<br>");
  const plans = exp ? (detail && detail.plan ? { [exp]: detail.plan } : {}) : (w.plans || {});
  const c = planCounts(runs, plans, new Set(drivers.filter((d) => d.running).map((d) => d.experiment)));
  if (!c.total) { el.innerHTML = driverHtml; return; }
  const count = (s) => runs.filter((r) => r.status === s).length;
  const running = count("running"), queued = count("queued");
  const bad = runs.filter((r) => ["failed", "diverged", "interrupted"].includes(r.status)).length;
  // ETA: the running runs' own, then the queued and the planned runs not made yet (the tuner makes
  // its trials one at a time) at the mean duration of this list's finished runs
  const durations = runs.filter((r) => r.status === "done" && r.started_at && r.finished_at).map((r) => r.finished_at - r.started_at);
  const mean = durations.length ? durations.reduce((a, b) => a + b, 0) / durations.length : null;
  const runningEta = runs.filter((r) => r.status === "running").map((r) => (r.progress || {}).eta_seconds).filter((x) => typeof x === "number");
  const slots = Math.max(1, w.concurrency || 1);
  const waiting = queued + c.pending;
  let eta = null;
  if (running + waiting === 0) eta = 0;
  else if (mean !== null || (waiting === 0 && runningEta.length === running)) {
    eta = (Math.max(0, ...runningEta, 0) + (waiting * (mean || 0)) / slots);
  }
  // a run's own ETA covers its training only: at 0 it is still evaluating, not finished
  const etaText = eta === null ? "after the first run finishes" : eta < 1 ? "finishing the current run" : "~" + fmtSecs(eta);
  const driver = driverHtml ? ` · ${driverHtml}` : "";
  el.innerHTML = `<b>${c.done} of ${c.total}</b> run${c.total === 1 ? "" : "s"} done${running ? ` · ${running} running` : ""}${queued ? ` · ${queued} queued` : ""}${c.pending ? ` · ${c.pending} still to make` : ""}${bad ? ` · <span class="bad">${bad} failed or interrupted</span>` : ""}`
    + (running + waiting ? ` · ETA ${etaText}` : "") + driver;
}

// "n of N": an experiment with a plan (the runs its launch makes: tuning trials, final runs per
// seed, baselines) counts the plan, made or not; one without counts the runs there are. `pending`:
// the planned runs not made yet of the experiments still going (a driver running, or runs queued or
// running), which the ETA waits for.
function planCounts(runs, plans, driving) {
  const byExp = new Map();
  for (const r of runs) { if (!byExp.has(r.experiment)) byExp.set(r.experiment, []); byExp.get(r.experiment).push(r); }
  for (const e of Object.keys(plans)) if (!byExp.has(e)) byExp.set(e, []);
  let total = 0, done = 0, pending = 0;
  for (const [e, rs] of byExp) {
    const plan = plans[e];
    if (plan && plan.runs) {
      const names = new Set(rs.map((r) => r.name));
      const planned = new Set(plan.runs);
      total += plan.runs.length;
      done += rs.filter((r) => planned.has(r.name) && r.status === "done").length;
      const going = driving.has(e) || rs.some((r) => r.status === "running" || r.status === "queued");
      if (going) pending += plan.runs.filter((n) => !names.has(n)).length;
    } else {
      total += rs.length;
      done += rs.filter((r) => r.status === "done").length;
    }
  }
  return { total, done, pending };
}

// -- logs -------------------------------------------------------------------------
// Messages the libraries print that look alarming and are expected, explained.
const EXPECTED = [
  [/MISSING|newly initialized|were not initialized from the model checkpoint/i,
    "Expected: a classification head starts untrained (random weights, MISSING from the checkpoint); it trains with every method, and zero-shot scores it untrained (chance level)."],
  [/UNEXPECTED|were not used when initializing/i,
    "Expected: the checkpoint holds weights this task does not use (e.g. a pretraining or pooling head); they are left out."],
  [/LOAD REPORT|Key\s*\|\s*Status/i, "transformers' table of the weights it loaded: see the notes on MISSING and UNEXPECTED keys."],
  [/deprecat|FutureWarning/i, "A library's deprecation notice: harmless, it does not change the run."],
  [/train_runtime|train_samples_per_second/i, "The trainer's summary at the end of training."],
  [/Xet Storage|hf_xet|HF_HUB_OFFLINE|offline mode/i, "The hub cannot be reached here: models and data are read from the local folders."],
  [/pad_token|padding side|attention mask/i, "A tokenizer note: peftlab sets padding itself (right for training, left for generation)."],
];
const TQDM = /\d+%\|[^|]*\|\s*\d+\/\d+|it\/s\]|s\/it\]|batch\/s\]/;

function explainWorkerOutput(lines) {
  const kept = [], notes = new Map();
  let bars = 0;
  for (const ln of lines) {
    if (TQDM.test(ln)) { bars++; continue; }
    kept.push(ln);
    for (const [re, why] of EXPECTED) if (re.test(ln)) { notes.set(why, (notes.get(why) || 0) + 1); break; }
  }
  return { kept, notes, bars };
}

async function showLogs(id, quiet) {
  state.logsFor = id;
  const l = await api("GET", `/api/runs/${id}/logs?tail=200`);
  const tr = state.jobRows && state.jobRows.get(Number(id));
  $("#logs-panel").classList.remove("hidden");
  $("#logs-title").textContent = `Log of run ${id}${tr ? ` (${tr.dataset.run})` : ""}`;
  const lines = l.logs.slice(-80).map((x) => `${new Date(x.ts * 1000).toLocaleTimeString()} ${x.level.padEnd(7)} ${x.message}`);
  const v = $("#logs-view");
  const atEnd = v.scrollTop + v.clientHeight >= v.scrollHeight - 8;
  const text = lines.join("\n") || "(nothing logged yet)";
  if (v.textContent !== text) v.textContent = text;
  if (!quiet || atEnd) v.scrollTop = v.scrollHeight;
  const w = explainWorkerOutput(l.worker_output);
  $("#worker-notes").innerHTML = w.notes.size || w.bars
    ? `<ul>${[...w.notes].map(([why, n]) => `<li>${esc(why)}${n > 1 ? ` <span class="small">(${n} lines)</span>` : ""}</li>`).join("")}${w.bars ? `<li>${w.bars} progress-bar lines hidden: the progress column shows the same.</li>` : ""}</ul>`
    : '<p class="small">Nothing from the libraries needs explaining.</p>';
  $("#worker-toggle").textContent = `${$("#worker-raw").classList.contains("hidden") ? "Show" : "Hide"} the worker's raw output (${l.worker_output.length} lines)`;
  const raw = l.worker_output.slice(-120).join("\n") || "(no output)";
  if ($("#worker-raw").textContent !== raw) $("#worker-raw").textContent = raw;
}

function wireJobs() {
  $("#jobs-exp").addEventListener("change", () => {
    const exp = $("#jobs-exp").value;
    state.logsFor = null;
    rememberExp(exp);
    history.pushState(null, "", `#/jobs${exp ? "/" + encodeURIComponent(exp) : ""}`); // a reload shows this one
    renderJobs();
  });
  $("#worker-toggle").addEventListener("click", () => { $("#worker-raw").classList.toggle("hidden"); if (state.logsFor) showLogs(state.logsFor, true); });
  $("#jobs-table").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    const id = b.dataset.id;
    if (b.classList.contains("job-logs")) return showLogs(id);
    if (b.classList.contains("job-cancel")) {
      b.disabled = true;
      try { await api("POST", `/api/runs/${id}/cancel`); toast("Cancelled: Retry resumes it from its last checkpoint"); } catch (e) { toast(e.message); }
    } else if (b.classList.contains("job-retry")) {
      try { await api("POST", `/api/runs/${id}/retry`); toast("Queued again"); } catch (e) { toast(e.message); }
    } else if (b.classList.contains("job-delete")) {
      const tr = b.closest("tr");
      const ok = await confirmDialog(`Delete run ${tr.dataset.run}?`, `<p>Its results, curves, logs, adapter and exports are deleted from the store. This cannot be undone.</p>`);
      if (!ok) return;
      try { await api("DELETE", `/api/runs/${id}`); toast(`Deleted ${tr.dataset.run}`); if (state.logsFor === id) { state.logsFor = null; $("#logs-panel").classList.add("hidden"); } } catch (e) { toast(e.message); }
    }
    renderJobs();
  });
}
