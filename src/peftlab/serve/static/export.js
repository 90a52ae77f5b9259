// Export: each run's adapter (with a model card and a portable base model name), or its merged
// model once the merge check passed; "Merge and check" only where the method can merge; GGUF files
// with an Ollama Modelfile, each checked in llama.cpp. The
// recommended run first (the server orders: the one answer of report.recommend), tuning trials
// apart (they keep no adapter, by design). Downloads show their progress (download.js).
"use strict";

PAGES.export = async function pageExport(exp) {
  await loadColors();
  const name = await fillExperimentSelect($("#ex-exp"), exp);
  rememberExp(name);
  await renderExport();
};

function exportRow(s, recommended) {
  const a = s.adapter, m = s.merged;
  const rec = recommended === s.run ? ' <span class="badge done" title="the run the report recommends">★ recommended</span>' : "";
  const adapterCell = a.available ? `<button class="small dl-adapter" data-url="${a.url}" data-run="${esc(s.run)}" data-name="${esc(a.filename)}">Download ${esc(a.kind)} (zip, <span class="dl-size">${fmtFileSize(a.bytes)}</span>)</button><div class="dl-progress hidden"></div>`
    : `<span class="small">${esc(a.why)}</span>`;
  let mergedCell = '<span class="small">–</span>';
  if (a.available && !s.mergeable) {
    mergedCell = `<button class="small secondary merge-btn" disabled title="${esc(s.merge_why)}">Merge and check</button><div class="small why">${esc(s.merge_why)}</div>`;
  } else if (a.available) {
    if (m.state === "passed") mergedCell = `<span class="ok">check passed</span> <button class="small dl-merged" data-url="${m.url}" data-run="${esc(s.run)}" data-name="${esc(m.filename)}">Download merged (zip, <span class="dl-size">${fmtFileSize(m.bytes)}</span>)</button> <button class="small secondary show-check" data-id="${s.run_id}">check</button><div class="dl-progress hidden"></div>`;
    else mergedCell = `${m.state === "failed" ? '<span class="bad">check failed</span> ' : ""}<button class="small secondary merge-btn" data-id="${s.run_id}" data-run="${esc(s.run)}">Merge and check</button>`;
  }
  return `<tr data-run="${esc(s.run)}" class="${recommended === s.run ? "selected" : ""}"><td data-label="run">${swatch(s.method)}<b>${esc(s.run)}</b>${rec}</td><td data-label="method">${esc(s.method)}</td><td data-label="status">${badge(s.status)}</td><td data-label="adapter">${adapterCell}</td><td data-label="merged model">${mergedCell}</td><td data-label="GGUF">${ggufCell(s)}</td></tr>`;
}

// GGUF for llama.cpp, Ollama and LM Studio: each type checked in llama.cpp before it is kept (infer/gguf.py).
const GGUF_TYPES = [["f16", "f16"], ["q8_0", "q8_0"], ["f16,q8_0", "f16 + q8_0"], ["q4_k_m", "q4_k_m"]];

function ggufCell(s) {
  if (!s.adapter.available) return '<span class="small">–</span>';
  if (!s.gguf_ok) return `<button class="small secondary gguf-btn" disabled title="${esc(s.gguf_why)}">Export GGUF</button><div class="small why">${esc(s.gguf_why)}</div>`;
  const g = s.gguf;
  if (g.state === "passed") {
    const files = g.files.map((f) => `<button class="small dl-gguf" data-url="/api/runs/${s.run_id}/gguf/${encodeURIComponent(f)}" data-name="${esc(f)}">${esc(f)}</button>`).join(" ");
    return `<span class="ok">checked in llama.cpp</span> ${files} <button class="small secondary show-gguf" data-id="${s.run_id}">check</button><div class="dl-progress hidden"></div>`;
  }
  const pick = `<select class="gguf-type" aria-label="GGUF type">${GGUF_TYPES.map(([v, l]) => `<option value="${v}">${l}</option>`).join("")}</select>`;
  return `${g.state === "failed" ? '<span class="bad">check failed</span> ' : ""}${pick} <button class="small secondary gguf-btn" data-id="${s.run_id}">Export GGUF</button>`;
}

function showGgufCheck(g) {
  const el = $("#merge-report");
  el.classList.remove("hidden");
  const c = g.check;
  if (!c) { el.innerHTML = `<div class="error">${esc(g.error || "No GGUF export has been made for this run yet.")}</div>`; return; }
  const first = c.types.find((t) => t.passed) || c.types[0];
  el.innerHTML = `<h3>GGUF check for ${esc(c.run)}: ${c.passed ? '<span class="ok">passed</span>' : '<span class="bad">failed</span>'}</h3>
    <p class="small">llama.cpp (llama-cpp-python ${esc(c.llama_cpp_python)}) loaded each file and answered the run's first test inputs, formatted as the Modelfile formats them, beside the run's adapter. Float types must give the same outputs; quantized ones the same prompt tokens and stops. ${c.seconds}s.</p>
    ${g.error ? `<div class="error">${esc(g.error)}</div>` : ""}
    <div class="scroll-x"><table class="grid gguf-types"><thead><tr><th>type</th><th>result</th><th>outputs equal</th><th>stops alike</th><th>mean |Δ log p|</th><th>size</th></tr></thead><tbody>
    ${c.types.map((t) => `<tr><td>${esc(t.type)}</td><td>${t.passed ? '<span class="ok">kept</span>' : `<span class="bad">not kept</span> ${esc(t.why || "")}`}</td><td class="num">${t.same_outputs}/${t.probes}</td><td class="num">${t.same_stops}/${t.probes}</td><td class="num">${t.mean_logprob_gap.toExponential(2)}</td><td class="num">${fmtFileSize(t.bytes)}</td></tr>`).join("")}</tbody></table></div>
    <p class="small">Modelfile template: <code>${esc(c.prompt_template)}</code></p>
    <div class="scroll-x"><table class="grid"><thead><tr><th>input (${esc(first.type)})</th><th>adapter output</th><th>llama.cpp output</th><th>stop (adapter / llama.cpp)</th></tr></thead><tbody>
    ${first.details.map((d) => `<tr><td>${esc(trunc(d.input, 120))}</td><td>${esc(d.adapter_output)}</td><td>${esc(d.gguf_output)}</td><td>${esc(d.adapter_stop)} / ${esc(d.gguf_stop)}</td></tr>`).join("")}</tbody></table></div>`;
}

function trialsPart(trials) {
  if (!trials.length) return "";
  const finals = [...new Set(trials.map((s) => s.final_run))];
  return `<details class="card ex-trials"><summary>${trials.length} tuning trial${trials.length === 1 ? "" : "s"}: no adapter to download, by design</summary>
    <p class="small">A tuning trial only scores a setting on the validation split; its weights are not kept. The best
    setting of each method was trained again as its final run (${finals.map((f) => `<b>${esc(f)}</b>`).join(", ")}), listed above with its adapter.</p>
    <ul class="small">${trials.map((s) => `<li data-run="${esc(s.run)}">${esc(s.run)} (${esc(s.method)}, ${esc(s.status)}): trial of <b>${esc(s.final_run)}</b></li>`).join("")}</ul></details>`;
}

async function renderExport() {
  const name = $("#ex-exp").value;
  if (!name) return;
  $("#export-table tbody").innerHTML = `<tr><td colspan="6">${spinner("reading the runs…")}</td></tr>`;
  const ex = await api("GET", `/api/experiments/${encodeURIComponent(name)}/exports`);
  const finals = ex.runs.filter((s) => !s.trial), trials = ex.runs.filter((s) => s.trial);
  $("#export-table tbody").innerHTML = finals.map((s) => exportRow(s, ex.recommended)).join("") || '<tr><td colspan="6" class="small">No runs.</td></tr>';
  $("#ex-trials").innerHTML = trialsPart(trials);
  const pick = finals.find((s) => s.run === ex.recommended && s.adapter.available) || finals.find((s) => s.adapter.available && s.mergeable);
  $("#export-cli").textContent = pick ? pick.cli : `peftlab export ${name} RUN -o DIR`;
  $$(".dl-adapter, .dl-merged, .dl-gguf").forEach((b) => b.addEventListener("click", async () => {
    b.disabled = true;
    try { await downloadWithProgress(b.dataset.url, b.dataset.name, b.parentElement.querySelector(".dl-progress")); }
    catch (err) { toast(err.message); } finally { b.disabled = false; }
  }));
  $$(".show-check").forEach((b) => b.addEventListener("click", async () => showCheck((await api("GET", `/api/runs/${b.dataset.id}/export`)).merged)));
  $$(".show-gguf").forEach((b) => b.addEventListener("click", async () => showGgufCheck((await api("GET", `/api/runs/${b.dataset.id}/export`)).gguf)));
  $$(".gguf-btn:not([disabled])").forEach((b) => b.addEventListener("click", async () => {
    const quant = b.parentElement.querySelector(".gguf-type").value.split(",");
    b.disabled = true;
    b.innerHTML = spinner("converting and checking in llama.cpp…");
    try { showGgufCheck(await api("POST", `/api/runs/${b.dataset.id}/export/gguf`, {quant})); }
    catch (err) { const el = $("#merge-report"); el.classList.remove("hidden"); el.innerHTML = `<div class="error">${esc(err.message)}</div>`; }
    await renderExport();
  }));
  $$(".merge-btn:not([disabled])").forEach((b) => b.addEventListener("click", async () => {
    b.disabled = true;
    b.innerHTML = spinner("merging and checking…");
    try { showCheck(await api("POST", `/api/runs/${b.dataset.id}/export/merged`, {})); }
    catch (err) { const el = $("#merge-report"); el.classList.remove("hidden"); el.innerHTML = `<div class="error">${esc(err.message)}</div>`; }
    await renderExport();
  }));
}

function showCheck(m) {
  const el = $("#merge-report");
  el.classList.remove("hidden");
  const c = m.check;
  if (!c) { el.innerHTML = `<div class="error">${esc(m.error || "No merge check has been run for this run yet.")}</div>`; return; }
  el.innerHTML = `<h3>Merge check for ${esc(c.run)}: ${c.passed ? '<span class="ok">passed</span>' : '<span class="bad">failed</span>'}</h3>
    <p>${c.probes} probe inputs · greedy outputs ${c.same_greedy_outputs ? "identical" : "<b>differ</b>"} · max |logit difference| ${c.max_abs_logit_diff.toExponential(2)} (tolerance ${c.tolerance.toExponential(2)}) · ${c.seconds}s</p>
    ${m.error ? `<div class="error">${esc(m.error)}</div>` : ""}
    <div class="scroll-x"><table class="grid"><thead><tr><th>probe input</th><th>adapter output</th><th>merged output</th><th>max |Δ logit|</th></tr></thead><tbody>
    ${c.details.map((d) => `<tr><td>${esc(trunc(d.input, 120))}</td><td>${esc(d.adapter_output)}</td><td>${esc(d.merged_output)}</td><td class="num">${d.max_abs_logit_diff.toExponential(2)}</td></tr>`).join("")}</tbody></table></div>`;
}
