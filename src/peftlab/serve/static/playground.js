// Playground: one input (a value per input column), the outputs of the chosen runs side by side;
// greedy (as at test time), beam search or sampling; a test example with its reference; the prompt as
// the model sees it. Runs trained on conversations get a conversation each (their own replies:
// playground_chat.js); checks in the user's words before a request (playground_checks.js); the
// OpenAI-compatible endpoint with a snippet (playground_code.js).
// The engine behind /api/playground is peftlab.infer.playground (sampling and conversations through
// the serving engine, peftlab.infer.engine).
"use strict";

PAGES.playground = async function pagePlayground(exp) {
  await loadColors();
  const name = await fillExperimentSelect($("#pg-exp"), exp);
  rememberExp(name);
  await renderPgRuns();
};

async function renderPgRuns() {
  const name = $("#pg-exp").value;
  $("#pg-results").innerHTML = "";
  $("#pg-reference").classList.add("hidden");
  $("#pg-prompt").classList.add("hidden");
  if (!name) { $("#pg-runs").innerHTML = '<span class="small">No experiments yet.</span>'; return; }
  const [info, e] = await Promise.all([api("GET", `/api/playground/${encodeURIComponent(name)}/runs`), api("GET", `/api/experiments/${encodeURIComponent(name)}`)]);
  state.pgExp = e;
  const methodOf = Object.fromEntries(e.runs.map((r) => [r.name, r.method]));
  $("#pg-runs").innerHTML = info.runs.map((r) => `<label class="chip ${r.available ? "" : "off"}" title="${esc(r.why || "")}"><input type="checkbox" class="pg-run" value="${esc(r.name)}" ${r.available ? "checked" : "disabled"}>${swatch(methodOf[r.name] || r.name)}${esc(r.name)}</label>`).join("");
  const d = e.config.data || {};
  const cols = d.prompt ? [...new Set((d.prompt.match(/\{(\w+)\}/g) || []).map((x) => x.slice(1, -1)))] : [].concat(d.input || []);
  state.pgCols = cols;
  $("#pg-template").innerHTML = d.prompt ? `Prompt template: <code class="pre-line">${esc(d.prompt)}</code> — type the value of <b>${esc(cols.join(", "))}</b>.`
    : `Input column${cols.length === 1 ? "" : "s"}: <b>${esc(cols.join(", "))}</b>`;
  $("#pg-inputs").innerHTML = cols.length > 1 ? cols.map((c) => `<label>${esc(c)}<textarea class="pg-col" data-col="${esc(c)}" rows="2"></textarea></label>`).join("")
    : `<textarea id="pg-input" rows="4" placeholder="The value of ${esc(cols[0] || "the input")}"></textarea>`;
  const generative = ["causal-lm", "seq2seq"].includes(e.task);
  $$(".pg-gen").forEach((el) => el.classList.toggle("hidden", !generative));
  state.pgChat = Boolean(info.chat);
  state.pgConv = {};
  $("#pg-chat").classList.toggle("hidden", !state.pgChat);
  $("#pg-inputs").classList.toggle("hidden", state.pgChat);
  $("#pg-template").classList.toggle("hidden", state.pgChat);
  // single-input controls: not in a conversation; beams (also .pg-gen) only for generation
  $$(".pg-single").forEach((el) => el.classList.toggle("hidden", state.pgChat || (el.classList.contains("pg-gen") && !generative)));
  $("#pg-sampling-note").classList.add("hidden");
  wireReferenceClearing();
  $("#pg-temperature").max = state.pgChat ? "2" : "5";  // conversations go through /v1 (temperature up to 2)
  renderChat();
  renderCodePanel();
  const ev = e.config.evaluation || {};
  $("#pg-max-tokens").value = Math.min(256, ev.max_new_tokens || 32);
}

function pgInputs() {
  if (state.pgCols.length > 1) return { inputs: Object.fromEntries($$(".pg-col").map((t) => [t.dataset.col, t.value])) };
  return { text: ($("#pg-input") || {}).value || "" };
}

function samplingSettings() {
  if (!["causal-lm", "seq2seq"].includes(state.pgExp.task)) return {};
  const out = { max_new_tokens: Number($("#pg-max-tokens").value) || null };
  const t = Number($("#pg-temperature").value), p = Number($("#pg-top-p").value), b = Number($("#pg-beams").value);
  if (t > 0) {
    out.do_sample = true; out.temperature = t; out.top_p = p > 0 && p <= 1 ? p : 1.0;
    if ($("#pg-seed").value !== "") out.seed = Number($("#pg-seed").value);
  } else out.do_sample = false;
  if (b > 1 && !state.pgChat) out.num_beams = b;
  return out;
}

function decodingNote(r) {
  const s = r.sampling;
  const note = $("#pg-sampling-note");
  note.classList.remove("hidden");
  if (s && s.num_beams) note.textContent = `Beam search with ${s.num_beams} beams (the evaluation's decoder).`;
  else if (s && s.temperature) note.textContent = `Sampled: temperature ${s.temperature}, top-p ${s.top_p}${s.seed !== null && s.seed !== undefined ? `, seed ${s.seed}` : " (no seed: another draw each time)"}.`;
  else note.textContent = "Greedy, as each run's test evaluation decodes.";
}

async function loadExample() {
  const name = $("#pg-exp").value;
  const n = state.pgExampleCount || 50;
  const index = Math.floor(Math.random() * n);
  let ex;
  try { ex = await api("GET", `/api/experiments/${encodeURIComponent(name)}/example?index=${index}`); }
  catch (e) {
    if (e.status === 404 && index > 0) { state.pgExampleCount = Math.max(1, Math.floor(n / 2)); return loadExample(); }
    toast(e.message); return;
  }
  if (ex.inputs && state.pgCols.length > 1) $$(".pg-col").forEach((t) => { t.value = ex.inputs[t.dataset.col] ?? ""; });
  else if ($("#pg-input")) $("#pg-input").value = ex.text ?? ex.source;
  const ref = Array.isArray(ex.reference) ? ex.reference : [ex.reference];
  $("#pg-reference").classList.remove("hidden");
  $("#pg-reference").innerHTML = `<h3>Test example ${ex.index + 1}: the reference${ref.length > 1 ? "s" : ""}</h3>${ref.map((r) => `<div class="out">${esc(r)}</div>`).join("")}
    ${ex.inputs ? "" : '<p class="small">The raw input was not found in the data file: the formatted input is shown.</p>'}
    <details><summary>What the runs answered at test time</summary>${Object.entries(ex.outputs).map(([k, v]) => `<div><b>${esc(k)}</b>: <span class="wrap">${esc(v)}</span></div>`).join("")}</details>`;
}

async function showPrompt() {
  try {
    const f = await api("POST", `/api/experiments/${encodeURIComponent($("#pg-exp").value)}/format`, pgInputs());
    $("#pg-prompt").classList.remove("hidden");
    $("#pg-prompt").innerHTML = `<h3>The prompt as the model sees it <span class="small">${f.prompt_tokens} tokens${f.chat_template ? ", chat template applied" : ""}</span></h3><pre class="pv-text">${markSpecial(f.prompt)}</pre>`;
  } catch (e) { showError($("#pg-error"), e); }
}

function wirePlayground() {
  $("#pg-exp").addEventListener("change", () => { rememberExp($("#pg-exp").value); state.pgExampleCount = null; renderPgRuns(); });
  $("#pg-example").addEventListener("click", loadExample);
  wireChat();
  wireCodePanel();
  $("#pg-runs").addEventListener("change", () => { renderChat(); renderCodePanel(); });
  $("#pg-show-prompt").addEventListener("click", () => {
    hideError($("#pg-error"));
    const problem = pgInputProblem();
    if (problem) showError($("#pg-error"), problem); else showPrompt();
  });
  $("#pg-go").addEventListener("click", async () => {
    hideError($("#pg-error"));
    const runs = $$(".pg-run").filter((c) => c.checked).map((c) => c.value);
    const problem = !runs.length ? "Tick at least one run." : pgInputProblem() || pgSettingsProblem();
    if (problem) { showError($("#pg-error"), problem); return; }
    const methodOf = Object.fromEntries(state.pgExp.runs.map((r) => [r.name, r.method]));
    $("#pg-go").disabled = true;
    $("#pg-results").innerHTML = runs.map((n) => `<div class="card pg-card"><h3>${swatch(methodOf[n])}${esc(n)}</h3><div class="out small">${spinner("generating…")}</div></div>`).join("");
    try {
      const r = await api("POST", "/api/playground", { experiment: $("#pg-exp").value, runs, ...pgInputs(), ...samplingSettings() });
      $("#pg-results").innerHTML = r.outputs.map((o) => `<div class="card pg-card" data-run="${esc(o.run)}"><h3><span>${swatch(o.method)}${esc(o.run)}</span><span class="small">${esc(o.method)} · ${o.seconds}s</span></h3>
        <div class="out">${esc(o.output) || '<span class="small">(empty output)</span>'}</div>
        <div class="small">${o.stopped === false ? `cut off: it reached the limit of ${Number($("#pg-max-tokens").value) || "max new"} new tokens` : o.stopped ? "ended by itself (end of sequence)" : ""}${o.confidence !== undefined ? `confidence ${o.confidence}` : ""}${o.method === "zero-shot" && o.confidence !== undefined ? " · an untrained head: chance level" : ""}</div></div>`).join("");
      decodingNote(r);
    } catch (e) { showError($("#pg-error"), e); $("#pg-results").innerHTML = ""; } finally { $("#pg-go").disabled = false; }
  });
}
