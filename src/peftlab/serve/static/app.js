// peftlab web pages: plain JS over the REST API (/api, schema at /openapi.json). No build step.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const state = { config: null, datasets: [], methods: [], models: [], experiments: [], timers: [], page: "" };

// -- token and API --------------------------------------------------------------
(function takeTokenFromUrl() {
  const q = new URLSearchParams(location.search);
  if (q.get("token")) {
    localStorage.setItem("peftlab-token", q.get("token"));
    q.delete("token");
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : "") + location.hash);
  }
})();

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(method, path, body, isForm) {
  const headers = {};
  const token = localStorage.getItem("peftlab-token");
  if (token) headers["Authorization"] = "Bearer " + token;
  let payload;
  if (isForm) payload = body;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const res = await fetch(path, { method, headers, body: payload });
  if (res.status === 401) { $("#token-bar").classList.remove("hidden"); }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
  if (!res.ok) {
    let d = data && data.detail;
    if (Array.isArray(d)) d = d.map((x) => `${(x.loc || []).slice(1).join(".")}: ${x.msg}`).join("\n");
    throw new ApiError(res.status, d || res.statusText);
  }
  return data;
}

function toast(msg, ms = 3500) {
  const t = $("#toast");
  t.textContent = msg;
  t.classList.remove("hidden");
  clearTimeout(toast._t);
  toast._t = setTimeout(() => t.classList.add("hidden"), ms);
}
function showError(el, e) {
  el.textContent = e instanceof Error ? e.message : String(e);
  el.classList.remove("hidden");
}
function hideError(el) { el.classList.add("hidden"); el.textContent = ""; }

async function download(path) {
  let url = path;
  if (localStorage.getItem("peftlab-token")) url = (await api("POST", "/api/tickets", { path })).url;
  const a = document.createElement("a");
  a.href = url;
  a.download = "";
  document.body.appendChild(a);
  a.click();
  a.remove();
}

// -- formatting -----------------------------------------------------------------
function fmtNum(v, digits = 2) {
  if (v === null || v === undefined || v === "") return "–";
  if (typeof v !== "number") return esc(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  return Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(digits);
}
function fmtBytes(b) {
  if (b === null || b === undefined) return "–";
  const u = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
}
function fmtSecs(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}
const badge = (s) => `<span class="badge ${esc(s)}">${esc(s)}</span>`;

// -- routing --------------------------------------------------------------------
function route() {
  const [, page = "datasets", arg = ""] = (location.hash || "#/datasets").split("/");
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.page = page;
  $$(".page").forEach((p) => p.classList.toggle("active", p.id === "page-" + page));
  $$("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  const fn = { datasets: pageDatasets, new: pageNew, jobs: pageJobs, results: pageResults, playground: pagePlayground, export: pageExport }[page];
  if (fn) fn(decodeURIComponent(arg)).catch((e) => toast(e.message));
}
function every(ms, fn) { state.timers.push(setInterval(() => fn().catch(() => {}), ms)); }

async function fillExperimentSelect(sel, chosen) {
  state.experiments = await api("GET", "/api/experiments");
  const cur = chosen || sel.value || localStorage.getItem("peftlab-exp") || (state.experiments[0] || {}).name || "";
  sel.innerHTML = state.experiments.map((e) => `<option value="${esc(e.name)}">${esc(e.name)} (${e.done || 0}/${e.runs} done)</option>`).join("")
    || '<option value="">no experiments yet</option>';
  if (state.experiments.some((e) => e.name === cur)) sel.value = cur;
  return sel.value;
}
function rememberExp(name) { if (name) localStorage.setItem("peftlab-exp", name); }

// -- Datasets -------------------------------------------------------------------
async function pageDatasets(selected) {
  $("#upload-limit").textContent = `Limit: ${state.config.max_upload_mb} MB.`;
  const files = await api("GET", "/api/data-files");
  $("#path-folders").textContent = "Folders: " + (files.folders.join(", ") || "(none)");
  $("#path-select").innerHTML = '<option value="">(choose a file)</option>' +
    files.files.map((f) => `<option value="${esc(f.path)}">${esc(f.relative)} (${fmtBytes(f.bytes)})</option>`).join("");
  await renderDatasets(selected);
}

async function renderDatasets(selected) {
  state.datasets = await api("GET", "/api/datasets");
  const body = $("#datasets-table tbody");
  body.innerHTML = state.datasets.map((d) => {
    const m = d.mapping || {};
    const mp = [m.prompt ? `prompt` : (m.input || []).join(", ") || "?", "→", m.target || m.label || "?"].join(" ");
    return `<tr data-id="${d.id}" class="${d.id === selected ? "selected" : ""}"><td>${esc(d.name)}</td><td>${esc(d.origin)}</td>
      <td>${esc(short(d.files.train))}</td><td>${esc(short(d.files.validation) || "auto")}</td><td>${esc(short(d.files.test) || "auto")}</td>
      <td>${esc(mp)}</td><td><button class="small secondary ds-open" data-id="${d.id}">Check</button>
      <a class="small" href="#/new/${d.id}">use →</a></td></tr>`;
  }).join("") || '<tr><td colspan="7" class="small">No data sets yet: upload one above.</td></tr>';
  $$(".ds-open").forEach((b) => b.addEventListener("click", () => showDataset(b.dataset.id)));
  if (selected) await showDataset(selected);
}
const short = (p) => (p ? p.split("/").slice(-2).join("/") : "");

async function showDataset(id) {
  const d = await api("GET", `/api/datasets/${id}`);
  $$("#datasets-table tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  const a = d.analysis, m = d.mapping || {};
  const opt = (sel) => a.columns.map((c) => `<option ${c === sel ? "selected" : ""}>${esc(c)}</option>`).join("");
  const counts = Object.entries(a.counts).map(([k, v]) => `<b>${fmtNum(v)}</b> ${esc(k.replace(/_/g, " "))}`).join(" · ");
  const problems = a.problems.length ? a.problems.map((p) => `<div class="problem"><b>⚠</b> ${esc(p.message)}${p.lines ? ` <span class="small">(lines ${p.lines.slice(0, 8).join(", ")}${p.lines.length > 8 ? ", …" : ""})</span>` : ""}</div>`).join("")
    : '<div class="ok">No problems found.</div>';
  const skipped = d.info.skipped_count ? `<div class="problem"><b>⚠</b> ${d.info.skipped_count} unreadable rows: ${esc(d.info.skipped.slice(0, 3).join("; "))}</div>` : "";
  const cols = a.columns.map((c) => { const i = a.column_info[c]; return `<tr><td>${esc(c)}</td><td>${esc(i.kind)}</td><td class="num">${fmtNum(i.empty)}</td><td class="num">${fmtNum(i.distinct)}</td><td class="num">${fmtNum(i.mean_chars, 0)}</td><td class="num">${fmtNum(i.max_chars)}</td></tr>`; }).join("");
  const prev = a.preview.map((r) => `<tr>${a.columns.map((c) => `<td>${esc(trunc(typeof r[c] === "string" ? r[c] : JSON.stringify(r[c]), 160))}</td>`).join("")}</tr>`).join("");
  const el = $("#dataset-detail");
  el.classList.remove("hidden");
  el.innerHTML = `<h2>${esc(d.name)}</h2>
    <p>${counts}<br><span class="small">${esc(a.split_note)}</span></p>
    <div class="cards two">
      <div class="card"><h3>Problems</h3>${problems}${skipped}</div>
      <form class="card" id="map-form"><h3>Column mapping</h3>
        <label>Input column(s) <select id="map-input" multiple size="${Math.min(4, a.columns.length)}">${a.columns.map((c) => `<option ${(m.input || []).includes(c) ? "selected" : ""}>${esc(c)}</option>`).join("")}</select></label>
        <label>or a prompt template with {column} placeholders <input id="map-prompt" type="text" value="${esc(m.prompt || "")}" placeholder="Write the title of this table:\n{table}"></label>
        <label>Target column (generation) <select id="map-target"><option value="">–</option>${opt(m.target)}</select></label>
        <label>Label column (classification) <select id="map-label"><option value="">–</option>${opt(m.label)}</select></label>
        <label>Image column (image classification) <select id="map-image"><option value="">–</option>${opt(m.image)}</select></label>
        <div class="actions"><button id="map-save" type="submit">Save mapping</button><a href="#/new/${d.id}">New experiment with this data →</a></div>
        <div id="map-error" class="error hidden"></div>
      </form>
    </div>
    <h3 style="margin-top:16px">Columns</h3>
    <table class="grid"><thead><tr><th>column</th><th>kind</th><th>empty</th><th>distinct</th><th>mean chars</th><th>max chars</th></tr></thead><tbody>${cols}</tbody></table>
    <h3 style="margin-top:16px">First rows</h3>
    <div class="scroll"><table class="grid" id="preview-table"><thead><tr>${a.columns.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>${prev}</tbody></table></div>`;
  $("#map-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {
      input: $$("#map-input option").filter((o) => o.selected).map((o) => o.value),
      prompt: $("#map-prompt").value || null, target: $("#map-target").value || null, label: $("#map-label").value || null,
      image: $("#map-image").value || null,
    };
    try { await api("PUT", `/api/datasets/${id}/mapping`, body); toast("Mapping saved"); await renderDatasets(id); }
    catch (e) { showError($("#map-error"), e); }
  });
}
const trunc = (s, n) => (s && s.length > n ? s.slice(0, n) + "…" : s ?? "");

function wireDatasetForms() {
  $("#upload-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    hideError($("#dataset-error"));
    const f = $("#upload-file").files[0];
    if (!f) return;
    const fd = new FormData();
    fd.append("file", f);
    if ($("#upload-name").value) fd.append("name", $("#upload-name").value);
    $("#upload-btn").disabled = true;
    try {
      const d = await api("POST", "/api/datasets", fd, true);
      toast(`Uploaded ${d.name}`);
      location.hash = `#/datasets/${d.id}`;
    } catch (e) { showError($("#dataset-error"), e); } finally { $("#upload-btn").disabled = false; }
  });
  $("#path-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    hideError($("#dataset-error"));
    const path = $("#path-input").value || $("#path-select").value;
    if (!path) return;
    try {
      const d = await api("POST", "/api/datasets/from-path", { path });
      toast(`Added ${d.name}`);
      location.hash = `#/datasets/${d.id}`;
    } catch (e) { showError($("#dataset-error"), e); }
  });
}

// -- New experiment -------------------------------------------------------------
async function pageNew(dsId) {
  hideError($("#new-error"));
  const [datasets, models] = await Promise.all([api("GET", "/api/datasets"), api("GET", "/api/models")]);
  state.datasets = datasets;
  state.models = models.models;
  $("#exp-dataset").innerHTML = datasets.map((d) => `<option value="${d.id}">${esc(d.name)}</option>`).join("") || '<option value="">upload a data set first</option>';
  if (dsId) $("#exp-dataset").value = dsId;
  $("#exp-model").innerHTML = models.models.map((m) => `<option value="${esc(m.name)}">${esc(m.name)} (${m.params ? (m.params / 1e6).toFixed(m.params < 1e7 ? 2 : 0) + "M params" : "?"})</option>`).join("");
  $("#exp-task").innerHTML = state.config.tasks.map((t) => `<option>${t}</option>`).join("");
  onDatasetChange();
  if (!$("#exp-name").value) $("#exp-name").value = "exp-" + new Date().toISOString().slice(5, 16).replace(/[-T:]/g, "");
  await renderMethods();
}

function onDatasetChange() {
  const d = state.datasets.find((x) => x.id === $("#exp-dataset").value);
  if (!d) { $("#exp-mapping").textContent = ""; return; }
  const m = d.mapping || {};
  if (m.task) $("#exp-task").value = m.task;
  $("#exp-mapping").innerHTML = `input: <b>${esc(m.prompt || (m.input || []).join(", ") || "?")}</b> · target: <b>${esc(m.target || "–")}</b> · label: <b>${esc(m.label || "–")}</b>${m.image ? ` · image: <b>${esc(m.image)}</b>` : ""} <a href="#/datasets/${d.id}">change</a>`;
}

const DEFAULT_METHODS = ["zero-shot", "lora", "ia3"];
async function renderMethods() {
  const task = $("#exp-task").value;
  state.methods = await api("GET", `/api/methods?task=${encodeURIComponent(task)}`);
  $("#methods-table tbody").innerHTML = state.methods.map((m) => {
    const opts = Object.entries(m.options).map(([k, o]) => {
      const t = o.type, d = o.default;
      const title = esc(o.description || t);
      if (t === "bool") return `<label class="opt" title="${title}">${k}<input type="checkbox" data-opt="${k}" data-kind="bool" ${d ? "checked" : ""}></label>`;
      const kind = t === "int" ? "int" : t === "float" ? "float" : t.includes("list") ? "list" : "str";
      const val = d === null || d === undefined ? "" : Array.isArray(d) ? d.join(",") : d;
      return `<label class="opt" title="${title}">${k}<input type="${kind === "int" || kind === "float" ? "number" : "text"}" step="any" data-opt="${k}" data-kind="${kind}" value="${esc(val)}" placeholder="${d === null ? "default" : ""}"></label>`;
    }).join("");
    return `<tr class="${m.applicable ? "" : "na"}" data-method="${m.name}"><td><input type="checkbox" class="method-check" data-method="${m.name}" ${m.applicable && DEFAULT_METHODS.includes(m.name) ? "checked" : ""} ${m.applicable ? "" : "disabled"}></td>
      <td><b>${m.name}</b><div class="small">${esc(m.summary)}${m.applicable ? "" : " — not for this task"}</div></td>
      <td>${m.trains ? `<input class="lr" type="number" step="any" value="${m.learning_rate}" style="width:100px">` : '<span class="small">no training</span>'}</td>
      <td>${opts || '<span class="small">no options</span>'}</td></tr>`;
  }).join("");
}

function collectExperiment() {
  const ds = $("#exp-dataset").value;
  const methods = [];
  for (const cb of $$(".method-check")) {
    if (!cb.checked) continue;
    const m = state.methods.find((x) => x.name === cb.dataset.method);
    const row = cb.closest("tr");
    const spec = { name: m.name, options: {} };
    const lr = $(".lr", row);
    if (lr && lr.value && Number(lr.value) !== m.learning_rate) spec.learning_rate = Number(lr.value);
    for (const inp of $$("[data-opt]", row)) {
      const k = inp.dataset.opt, o = m.options[k];
      let v;
      if (inp.dataset.kind === "bool") v = inp.checked;
      else if (inp.value === "") continue;
      else if (inp.dataset.kind === "int") v = parseInt(inp.value, 10);
      else if (inp.dataset.kind === "float") v = parseFloat(inp.value);
      else if (inp.dataset.kind === "list") v = inp.value.split(",").map((s) => s.trim()).filter(Boolean);
      else v = inp.value;
      if (JSON.stringify(v) !== JSON.stringify(o.default)) spec.options[k] = v;
    }
    methods.push(spec);
  }
  const num = (id) => ($(id).value ? Number($(id).value) : null);
  return {
    name: $("#exp-name").value.trim(), dataset: ds || null, task: $("#exp-task").value,
    model: $("#exp-model-custom").value.trim() || $("#exp-model").value, methods,
    max_steps: num("#max-steps"), max_train_examples: num("#max-train"), max_eval_examples: num("#max-eval"), batch_size: num("#batch-size"),
  };
}

function wireNewForm() {
  $("#exp-dataset").addEventListener("change", onDatasetChange);
  $("#exp-task").addEventListener("change", () => renderMethods());
  $("#estimate-btn").addEventListener("click", async () => {
    hideError($("#new-error"));
    $("#estimate-btn").disabled = true;
    try {
      const e = await api("POST", "/api/estimate", collectExperiment());
      $("#estimate").classList.remove("hidden");
      $("#estimate-table tbody").innerHTML = e.methods.map((m) => `<tr><td>${esc(m.name)}</td><td class="num">${fmtNum(m.trainable_params)}</td>
        <td class="num">${m.memory_mb === null ? "–" : fmtNum(m.memory_mb) + " MB"}</td><td class="num">${m.seconds === null ? "–" : "~" + fmtSecs(m.seconds)}</td></tr>`).join("");
      $("#estimate-how").textContent = `Base model: ${fmtNum(e.base_params)} parameters (${e.shape_source}); ${e.steps} steps; ~${e.sequence_tokens} tokens per example; throughput ${(e.flops_per_second / 1e9).toFixed(1)} GFLOP/s (${e.throughput_source}); data ${JSON.stringify(e.data)}.\n\n${e.how}`;
    } catch (err) { showError($("#new-error"), err); } finally { $("#estimate-btn").disabled = false; }
  });
  $("#exp-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    hideError($("#new-error"));
    $("#launch-btn").disabled = true;
    try {
      const r = await api("POST", "/api/experiments", collectExperiment());
      rememberExp(r.experiment);
      toast(`Queued ${r.runs.length} runs of ${r.experiment}`);
      location.hash = `#/jobs/${encodeURIComponent(r.experiment)}`;
    } catch (err) { showError($("#new-error"), err); } finally { $("#launch-btn").disabled = false; }
  });
}

// -- Jobs -----------------------------------------------------------------------
async function pageJobs(exp) {
  const sel = $("#jobs-exp");
  state.experiments = await api("GET", "/api/experiments");
  const cur = exp || sel.value;
  sel.innerHTML = '<option value="">all</option>' + state.experiments.map((e) => `<option>${esc(e.name)}</option>`).join("");
  sel.value = state.experiments.some((e) => e.name === cur) ? cur : "";
  await renderJobs();
  every(1500, renderJobs);
}

async function renderJobs() {
  const exp = $("#jobs-exp").value;
  const [runs, w] = await Promise.all([api("GET", "/api/runs" + (exp ? `?experiment=${encodeURIComponent(exp)}` : "")), api("GET", "/api/worker")]);
  $("#jobs-worker").textContent = w.running ? `Worker: ${w.active.length} of ${w.concurrency} slot(s) busy.` : "No worker in this service: queued runs wait for `python -m peftlab.queue STORE`.";
  const rows = runs.slice().reverse().map((r) => {
    const p = r.progress || {};
    const pct = p.max_steps ? Math.min(100, (100 * (p.step || 0)) / p.max_steps) : r.status === "done" ? 100 : 0;
    const prog = r.status === "running" ? `<span class="bar"><i style="width:${pct}%"></i></span>${p.step !== undefined ? `${p.step}/${p.max_steps}` : esc(p.phase || "starting")}`
      : r.status === "done" ? '<span class="bar"><i style="width:100%;background:var(--ok)"></i></span>' : "";
    const err = r.error ? `<div class="small">${esc(trunc(r.error, 200))}</div>` : "";
    const actions = [`<button class="small secondary job-logs" data-id="${r.id}">Logs</button>`];
    if (r.status === "queued" || r.status === "running") actions.push(`<button class="small danger job-cancel" data-id="${r.id}">Cancel</button>`);
    if (["failed", "diverged", "interrupted"].includes(r.status)) actions.push(`<button class="small job-retry" data-id="${r.id}">Retry</button>`);
    return `<tr data-run="${esc(r.name)}" data-status="${r.status}"><td>${r.id}</td><td>${esc(r.experiment)}</td><td><b>${esc(r.name)}</b>${r.name !== r.method ? ` <span class="small">${esc(r.method)}</span>` : ""}</td>
      <td>${badge(r.status)}${err}</td><td>${prog}</td><td class="num">${p.loss !== undefined && p.loss !== null ? fmtNum(p.loss, 3) : "–"}</td>
      <td class="num">${r.status === "running" && p.eta_seconds !== undefined ? fmtSecs(p.eta_seconds) : "–"}</td><td>${actions.join(" ")}</td></tr>`;
  });
  $("#jobs-table tbody").innerHTML = rows.join("") || '<tr><td colspan="8" class="small">No runs yet: launch one from New experiment.</td></tr>';
  $$(".job-logs").forEach((b) => b.addEventListener("click", () => showLogs(b.dataset.id)));
  $$(".job-cancel").forEach((b) => b.addEventListener("click", async () => {
    b.disabled = true;
    try { await api("POST", `/api/runs/${b.dataset.id}/cancel`); toast("Cancelled"); } catch (e) { toast(e.message); }
    renderJobs();
  }));
  $$(".job-retry").forEach((b) => b.addEventListener("click", async () => {
    try { await api("POST", `/api/runs/${b.dataset.id}/retry`); toast("Queued again"); } catch (e) { toast(e.message); }
    renderJobs();
  }));
  if (state.logsFor) await showLogs(state.logsFor, true);
}

async function showLogs(id, quiet) {
  state.logsFor = id;
  const l = await api("GET", `/api/runs/${id}/logs?tail=80`);
  $("#logs-panel").classList.remove("hidden");
  $("#logs-title").textContent = `Logs of run ${id}`;
  const lines = l.logs.map((x) => `${new Date(x.ts * 1000).toLocaleTimeString()} ${x.level.padEnd(7)} ${x.message}`);
  if (l.worker_output.length) lines.push("", "— worker output —", ...l.worker_output.slice(-25));
  const v = $("#logs-view");
  const atEnd = v.scrollTop + v.clientHeight >= v.scrollHeight - 8;
  v.textContent = lines.join("\n");
  if (!quiet || atEnd) v.scrollTop = v.scrollHeight;
}

// -- Results ----------------------------------------------------------------------
// The page is the HTML report of `peftlab report` (GET /api/experiments/{name}/report.html),
// re-fetched whenever a run of the experiment changes state (the leaderboard's fingerprint).
async function pageResults(exp) {
  const name = await fillExperimentSelect($("#results-exp"), exp);
  rememberExp(name);
  state.reportFp = null;
  if (!name) return;
  await renderResults();
  every(3000, async () => { if (state.resultsLive) await renderResults(); });
}

async function renderResults() {
  const name = $("#results-exp").value;
  if (!name) return;
  const lb = await api("GET", `/api/experiments/${encodeURIComponent(name)}/leaderboard`);
  const rec = lb.recommendation;
  state.resultsLive = !rec.final;
  $("#results-live").textContent = rec.final ? "" : "updating while runs finish…";
  const r = $("#recommendation");
  r.classList.toggle("pending", !rec.run);
  const pending = rec.pending && rec.pending.length ? `<p class="small">${rec.pending.length} run(s) still going (${esc(rec.pending.join(", "))}); this may change.</p>` : "";
  // the first paragraph here; the full reasoning is in the report's Recommendation section below
  const first = rec.html ? (rec.html.match(/<p>[\s\S]*?<\/p>/) || [""])[0] : `<p>${esc(rec.text.split("\n\n")[0])}</p>`;
  const body = first + pending;
  r.innerHTML = `<b>Recommendation${rec.run ? `: ${esc(rec.run)}` : ""}</b>${body}`;
  if (lb.fingerprint === state.reportFp) return;
  state.reportFp = lb.fingerprint;
  const frame = $("#report-frame");
  try {
    const html = await apiText(`/api/experiments/${encodeURIComponent(name)}/report.html`);
    $("#results-fallback").classList.add("hidden");
    frame.classList.remove("hidden");
    const y = frame.contentWindow ? frame.contentWindow.scrollY : 0;
    frame.onload = () => {
      const doc = frame.contentDocument;
      frame.style.height = Math.max(600, doc.documentElement.scrollHeight + 20) + "px";
      if (y) frame.contentWindow.scrollTo(0, y);
    };
    frame.srcdoc = html;
  } catch (e) {
    state.reportFp = null;
    const fb = $("#results-fallback");
    fb.classList.remove("hidden");
    fb.innerHTML = `<div class="error">The report could not be rendered: ${esc(e.message)}</div>`;
  }
}

async function apiText(path) {
  const headers = {};
  const token = localStorage.getItem("peftlab-token");
  if (token) headers["Authorization"] = "Bearer " + token;
  const res = await fetch(path, { headers });
  if (!res.ok) throw new ApiError(res.status, await res.text());
  return res.text();
}

// -- Playground -----------------------------------------------------------------
async function pagePlayground(exp) {
  const name = await fillExperimentSelect($("#pg-exp"), exp);
  rememberExp(name);
  await renderPgRuns();
}

async function renderPgRuns() {
  const name = $("#pg-exp").value;
  if (!name) { $("#pg-runs").innerHTML = '<span class="small">No experiments yet.</span>'; return; }
  const [info, e] = await Promise.all([api("GET", `/api/playground/${encodeURIComponent(name)}/runs`), api("GET", `/api/experiments/${encodeURIComponent(name)}`)]);
  $("#pg-runs").innerHTML = info.runs.map((r) => `<label class="chip ${r.available ? "" : "off"}" title="${esc(r.why || "")}"><input type="checkbox" class="pg-run" value="${esc(r.name)}" ${r.available ? "checked" : "disabled"}>${esc(r.name)}</label>`).join("");
  const d = e.config.data || {};
  $("#pg-template").innerHTML = d.prompt ? `Prompt template: <code>${esc(d.prompt)}</code> — type the value of <b>${esc((d.prompt.match(/\{(\w+)\}/g) || []).join(", "))}</b>.`
    : `Input column: <b>${esc(d.input || "")}</b>`;
}

function wirePlayground() {
  $("#pg-exp").addEventListener("change", () => { rememberExp($("#pg-exp").value); renderPgRuns(); });
  $("#pg-go").addEventListener("click", async () => {
    hideError($("#pg-error"));
    const runs = $$(".pg-run").filter((c) => c.checked).map((c) => c.value);
    $("#pg-go").disabled = true;
    $("#pg-results").innerHTML = runs.map((n) => `<div class="card pg-card"><h3>${esc(n)}</h3><div class="out small">generating…</div></div>`).join("");
    try {
      const r = await api("POST", "/api/playground", { experiment: $("#pg-exp").value, runs, text: $("#pg-input").value, max_new_tokens: Number($("#pg-max-tokens").value) || null });
      $("#pg-results").innerHTML = r.outputs.map((o) => `<div class="card pg-card" data-run="${esc(o.run)}"><h3><span>${esc(o.run)}</span><span class="small">${esc(o.method)} · ${o.seconds}s</span></h3>
        <div class="out">${esc(o.output) || '<span class="small">(empty output)</span>'}</div>
        <div class="small">${o.stopped === false ? "hit max new tokens" : o.stopped ? "stopped at end-of-sequence" : ""}${o.confidence !== undefined ? `confidence ${o.confidence}` : ""}</div></div>`).join("");
    } catch (e) { showError($("#pg-error"), e); $("#pg-results").innerHTML = ""; } finally { $("#pg-go").disabled = false; }
  });
}

// -- Export ---------------------------------------------------------------------
async function pageExport(exp) {
  const name = await fillExperimentSelect($("#ex-exp"), exp);
  rememberExp(name);
  await renderExport();
}

async function renderExport() {
  const name = $("#ex-exp").value;
  if (!name) return;
  const e = await api("GET", `/api/experiments/${encodeURIComponent(name)}`);
  const states = await Promise.all(e.runs.map((r) => api("GET", `/api/runs/${r.id}/export`)));
  $("#export-table tbody").innerHTML = states.map((s) => {
    const a = s.adapter, m = s.merged;
    const adapterCell = a.available ? `<button class="small dl-adapter" data-url="${a.url}" data-run="${esc(s.run)}">Download ${esc(a.kind)} (zip, ${fmtBytes(a.bytes)})</button>` : `<span class="small">${esc(a.why)}</span>`;
    let mergedCell = '<span class="small">–</span>';
    if (a.available && s.method !== "full") {
      if (m.state === "passed") mergedCell = `<span class="ok">check passed</span> <button class="small dl-merged" data-url="${m.url}">Download merged (zip)</button> <button class="small secondary show-check" data-id="${s.run_id}">check</button>`;
      else mergedCell = `${m.state === "failed" ? '<span class="bad">check failed</span> ' : ""}<button class="small secondary merge-btn" data-id="${s.run_id}" data-run="${esc(s.run)}">Merge and check</button>`;
    }
    return `<tr data-run="${esc(s.run)}"><td><b>${esc(s.run)}</b></td><td>${esc(s.method)}</td><td>${adapterCell}</td><td>${mergedCell}</td></tr>`;
  }).join("") || '<tr><td colspan="4" class="small">No runs.</td></tr>';
  $("#export-cli").textContent = `peftlab export ${name} RUN --merge -o DIR`;
  $$(".dl-adapter, .dl-merged").forEach((b) => b.addEventListener("click", () => download(b.dataset.url).catch((err) => toast(err.message))));
  $$(".show-check").forEach((b) => b.addEventListener("click", async () => showCheck((await api("GET", `/api/runs/${b.dataset.id}/export`)).merged)));
  $$(".merge-btn").forEach((b) => b.addEventListener("click", async () => {
    b.disabled = true;
    b.textContent = "merging and checking…";
    try { showCheck(await api("POST", `/api/runs/${b.dataset.id}/export/merged`, {})); }
    catch (err) { const el = $("#merge-report"); el.classList.remove("hidden"); el.innerHTML = `<div class="error">${esc(err.message)}</div>`; }
    await renderExport();
  }));
}

function showCheck(m) {
  const el = $("#merge-report");
  el.classList.remove("hidden");
  const c = m.check;
  if (!c) { el.innerHTML = `<div class="error">${esc(m.error || "no check")}</div>`; return; }
  el.innerHTML = `<h3>Merge check for ${esc(c.run)}: ${c.passed ? '<span class="ok">passed</span>' : '<span class="bad">failed</span>'}</h3>
    <p>${c.probes} probe inputs · greedy outputs ${c.same_greedy_outputs ? "identical" : "<b>differ</b>"} · max |logit difference| ${c.max_abs_logit_diff.toExponential(2)} (tolerance ${c.tolerance.toExponential(2)}) · ${c.seconds}s</p>
    ${m.error ? `<div class="error">${esc(m.error)}</div>` : ""}
    <table class="grid"><thead><tr><th>probe input</th><th>adapter output</th><th>merged output</th><th>max |Δ logit|</th></tr></thead><tbody>
    ${c.details.map((d) => `<tr><td>${esc(trunc(d.input, 120))}</td><td>${esc(d.adapter_output)}</td><td>${esc(d.merged_output)}</td><td class="num">${d.max_abs_logit_diff.toExponential(2)}</td></tr>`).join("")}</tbody></table>`;
}

// -- start ----------------------------------------------------------------------
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
  wirePlayground();
  $("#jobs-exp").addEventListener("change", () => { state.logsFor = null; renderJobs(); });
  $("#results-exp").addEventListener("change", () => { rememberExp($("#results-exp").value); state.reportFp = null; renderResults(); });
  $("#report-open").addEventListener("click", async () => {
    const html = await apiText(`/api/experiments/${encodeURIComponent($("#results-exp").value)}/report.html`);
    window.open(URL.createObjectURL(new Blob([html], { type: "text/html" })), "_blank");
  });
  $("#ex-exp").addEventListener("change", () => { rememberExp($("#ex-exp").value); renderExport(); });
  try { state.config = await api("GET", "/api/config"); } catch (e) { toast(e.message, 8000); return; }
  window.addEventListener("hashchange", route);
  route();
  refreshWorker();
  setInterval(refreshWorker, 5000);
}
start();
