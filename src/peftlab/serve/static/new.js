// New experiment: data, a model that fits the task, the methods (and variants of one method),
// the budget and training settings, tuning and seeds; estimate, preview the experiment file,
// copy the CLI command, launch. `#/new/<dataset id>` starts from a data set, `#/new/from/<experiment>`
// from an existing experiment's settings.
"use strict";

const DEFAULT_METHODS = ["zero-shot", "lora", "ia3"];

PAGES.new = async function pageNew(arg) {
  hideError($("#new-error"));
  resetNewForm();
  $("#methods-table tbody").innerHTML = `<tr class="placeholder"><td colspan="4">${spinner("loading the methods and their defaults…")}</td></tr>`;
  const [datasets, models, exps] = await Promise.all([api("GET", "/api/datasets"), api("GET", "/api/models"), api("GET", "/api/experiments"), loadColors()]);
  state.datasets = datasets;
  state.models = models.models;
  state.experiments = exps;
  $("#exp-dataset").innerHTML = datasets.map((d) => `<option value="${d.id}">${esc(d.name)}</option>`).join("") || '<option value="">upload a data set first</option>';
  $("#exp-task").innerHTML = state.config.tasks.map((t) => `<option value="${t}">${t}</option>`).join("");
  let from = null;
  if (arg.startsWith("from/")) from = await api("GET", `/api/experiments/${encodeURIComponent(arg.slice(5))}`);
  else if (arg) $("#exp-dataset").value = arg;
  if (from) fillFromExperiment(from);
  else onDatasetChange();
  $("#exp-name").value = nextName(from ? from.name : "exp-" + new Date().toISOString().slice(5, 16).replace(/[-T:]/g, ""), !from);
  await renderMethods(from ? from.config.methods : null);
  updateTaskFields();
};

// Every visit starts from the page's defaults: the last experiment's name, tuning and seeds
// must not carry over into the next one (its runs would go under the other experiment's name).
function resetNewForm() {
  $("#exp-form").reset();
  state.fromData = null;
  state.yaml = null;
  state.methodFamily = "";
  $("#exp-from").classList.add("hidden");
  ["#yaml-panel", "#estimate"].forEach((s) => $(s).classList.add("hidden"));
  $("#exp-chat").innerHTML = "";
}

function nextName(name, keep) {
  const taken = new Set(state.experiments.map((e) => e.name));
  if (keep && !taken.has(name)) return name;
  for (let i = 2; i < 100; i++) { const n = `${name.replace(/-\d+$/, "")}-${i}`; if (!taken.has(n)) return n; }
  return name + "-copy";
}

function fillModels(chosen) {
  const task = $("#exp-task").value;
  const fit = state.models.filter((m) => (m.tasks || []).includes(task));
  const other = state.models.filter((m) => !(m.tasks || []).includes(task));
  const keep = fit.some((m) => m.name === chosen) ? chosen : fit.some((m) => m.name === $("#exp-model").value) ? $("#exp-model").value : (fit[0] || {}).name;
  $("#exp-model").innerHTML = fit.map((m) => `<option value="${esc(m.name)}">${esc(m.name)} (${esc(m.kind)}, ${m.params ? (m.params / 1e6).toFixed(m.params < 1e7 ? 2 : 0) + "M params" : "?"})</option>`).join("")
    || '<option value="">no model in the model folders fits this task</option>';
  if (keep) $("#exp-model").value = keep;
  $("#exp-model-why").innerHTML = other.length ? `Not offered for ${esc(task)}: ${other.map((m) => `<span title="${esc((m.unfit || {})[task] || "")}">${esc(m.name)} (${esc(m.kind)})</span>`).join(", ")}.` : "";
}

function onDatasetChange() {
  const d = state.datasets.find((x) => x.id === $("#exp-dataset").value);
  if (!d) { $("#exp-mapping").textContent = ""; fillModels(); return; }
  const m = d.mapping || {};
  $("#exp-system").value = m.system_prompt || "";
  $("#exp-chat").innerHTML = "";
  $("#exp-chat-box").classList.toggle("hidden", !isChat(d.format));
  if (isChat(d.format)) {
    $("#exp-task").value = "causal-lm";
    $("#exp-mapping").innerHTML = `<b>${esc(d.format)} conversations</b>: ${esc(d.format_reason)}; training learns the assistant replies. <a href="#/datasets/${d.id}">check</a>`;
    fillModels();
    return;
  }
  if (m.task) $("#exp-task").value = m.task;
  $("#exp-mapping").innerHTML = `${m.prompt ? "template" : "input"}: <b class="pre-line">${esc(m.prompt || (m.input || []).join(", ") || "?")}</b> · target: <b>${esc(m.target || "–")}</b> · label: <b>${esc(m.label || "–")}</b>${m.image ? ` · image: <b>${esc(m.image)}</b>` : ""} <a href="#/datasets/${d.id}">change</a>`;
  fillModels();
}

function updateTaskFields() {
  const generative = ["causal-lm", "seq2seq"].includes($("#exp-task").value);
  $$(".gen-only").forEach((el) => el.classList.toggle("hidden", !generative));
}

function fillFromExperiment(e) {
  const c = e.config, d = c.data || {}, t = c.training || {}, ev = c.evaluation || {};
  const ds = state.datasets.find((x) => x.files.train === d.train);
  if (ds) $("#exp-dataset").value = ds.id;
  $("#exp-task").value = c.task;
  onDatasetChange();
  $("#exp-task").value = c.task;
  fillModels(c.model && c.model.path);
  if (!state.models.some((m) => m.name === (c.model || {}).path)) $("#exp-model-custom").value = (c.model || {}).path || "";
  const set = (id, v) => { $(id).value = v === null || v === undefined ? "" : v; };
  set("#max-steps", t.max_steps); set("#epochs", t.max_steps ? "" : t.epochs); set("#batch-size", t.batch_size);
  set("#max-train", d.max_train_examples); set("#max-eval", d.max_test_examples); set("#max-val", d.max_validation_examples);
  set("#eval-every", t.eval_every); set("#seed", t.seed); set("#max-src", t.max_source_length); set("#max-tgt", t.max_target_length);
  set("#max-new", ev.max_new_tokens);
  set("#exp-system", d.system_prompt);
  set("#tune", c.tuning ? c.tuning.trials : ""); set("#budget", c.tuning && c.tuning.budget ? `${Math.round(c.tuning.budget)}s` : ""); set("#seeds", c.seeds ? c.seeds.length : "");
  state.fromData = ds ? null : d;
  $("#exp-from").innerHTML = `Settings of <b>${esc(e.name)}</b>${ds ? "" : " (its data section as it was: not a data set of this service)"}; change what you want to try.`;
  $("#exp-from").classList.remove("hidden");
}

function collectExperiment() {
  const methods = [];
  for (const cb of $$(".method-check")) {
    if (!cb.checked) continue;
    const m = state.methods.find((x) => x.name === cb.dataset.method);
    const row = cb.closest("tr");
    const spec = { name: m.name, options: {} };
    const vn = $(".variant-name", row);
    if (vn && vn.value.trim()) spec.label = vn.value.trim();
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
  const num = (id) => ($(id).value !== "" ? Number($(id).value) : null);
  const training = {};
  for (const [id, key] of [["#eval-every", "eval_every"], ["#max-src", "max_source_length"], ["#max-tgt", "max_target_length"]]) {
    if (num(id) !== null) training[key] = num(id);
  }
  const evaluation = {};
  if (num("#max-new") !== null && !$("#max-new").closest(".hidden")) evaluation.max_new_tokens = num("#max-new");
  const body = {
    name: $("#exp-name").value.trim(), task: $("#exp-task").value,
    model: $("#exp-model-custom").value.trim() || $("#exp-model").value, methods,
    max_steps: num("#max-steps"), epochs: num("#max-steps") === null ? num("#epochs") : null,
    max_train_examples: num("#max-train"), max_eval_examples: num("#max-eval"), max_validation_examples: num("#max-val"),
    batch_size: num("#batch-size"), seed: num("#seed"), tune: num("#tune"), seeds: num("#seeds"),
    budget: $("#budget").value.trim() || null, training, evaluation,
  };
  const system = $("#exp-system").value.trim();
  if (state.fromData) body.data = { ...state.fromData, system_prompt: system || undefined };
  else {
    body.dataset = $("#exp-dataset").value || null;
    body.mapping = { system_prompt: system };
  }
  return body;
}

function renderEstimate(e) {
  $("#estimate").classList.remove("hidden");
  const plan = e.plan ? Object.fromEntries(e.plan.rows.map((r) => [r.run, r])) : null;
  $("#estimate-table thead").innerHTML = `<tr><th>run</th><th>trainable parameters</th><th>memory</th><th>time per run</th>${plan ? "<th>trials</th><th>final runs</th><th>total time</th>" : ""}</tr>`;
  $("#estimate-table tbody").innerHTML = e.methods.map((m) => {
    const p = plan && plan[m.name];
    const meth = state.methods.find((x) => x.name === m.name) || state.methods.find((x) => m.name.startsWith(x.name + "-")) || {};
    return `<tr><td>${swatch(meth.name)}${esc(m.name)}</td><td class="num">${fmtNum(m.trainable_params)}</td>
      <td class="num">${m.memory_mb === null ? "–" : fmtNum(m.memory_mb) + " MB"}</td><td class="num">${m.seconds === null ? "–" : "~" + fmtSecs(m.seconds)}</td>
      ${p ? `<td class="num">${p.trials}</td><td class="num">${p.final_runs}</td><td class="num">~${fmtSecs(p.seconds)}</td>` : ""}</tr>`;
  }).join("");
  const total = plan ? e.plan.seconds : e.methods.reduce((s, m) => s + (m.seconds || 0), 0);
  const runs = plan ? e.plan.runs : e.methods.length;
  $("#estimate-total").innerHTML = `<b>${runs} run${runs === 1 ? "" : "s"}</b>, about <b>${fmtSecs(total)}</b> one after another${state.config.concurrency > 1 ? ` (the service runs ${state.config.concurrency} at a time)` : ""}${plan && e.plan.rows.some((r) => r.trials) ? " — tuning trials included" : ""}${plan && e.plan.rows.some((r) => r.final_runs > 1) ? " — one run per seed" : ""}.`;
  if (e.race) $("#estimate-total").innerHTML = `<b>A race within the budget</b>, instead of every trial:<pre class="small race-plan">${esc(e.race)}</pre>`;
  $("#estimate-how").textContent = `Base model: ${fmtNum(e.base_params)} parameters (${e.shape_source}); ${e.steps} steps; ~${e.sequence_tokens} tokens per example; throughput ${(e.flops_per_second / 1e9).toFixed(1)} GFLOP/s (${e.throughput_source}); data ${JSON.stringify(e.data)}.\n\n${e.how}`;
}

async function launch(replace) {
  const body = { ...collectExperiment(), replace: !!replace };
  let r;
  try { r = await api("POST", "/api/experiments", body); }
  catch (err) {
    if (err.status === 409 && !replace && /replace/.test(err.message)) {
      if (await confirmDialog("Replace finished results?", `<p>${esc(plainMessage(err.message))}</p>`, "Replace them")) return launch(true);
      return;
    }
    throw err;
  }
  rememberExp(r.experiment);
  toast(launchSummary(r), 8000);
  location.hash = `#/jobs/${encodeURIComponent(r.experiment)}`;
}

function launchSummary(r) {
  if (r.driver) return `Tuning ${r.experiment}: a driver process (pid ${r.driver.pid}) runs the trials one at a time, then the final runs; they appear in Jobs as they start.`;
  const n = (xs) => `${xs.length} run${xs.length === 1 ? "" : "s"}`;
  const parts = [];
  if (r.queued.length) parts.push(`Queued ${n(r.queued)} (${r.queued.join(", ")})`);
  if (r.requeued.length) parts.push(`queued again ${n(r.requeued)} (${r.requeued.join(", ")})`);
  if (r.replaced.length) parts.push(`replaced ${n(r.replaced)} (${r.replaced.join(", ")})`);
  if (r.reused.length) parts.push(`reused ${n(r.reused)} already done with these settings (${r.reused.join(", ")})`);
  if (r.running.length) parts.push(`${n(r.running)} still running (${r.running.join(", ")})`);
  const text = parts.join("; ") || "Nothing to do";
  return `${text[0].toUpperCase()}${text.slice(1)} — ${r.experiment}.`;
}

function wireNewForm() {
  wireMethodPicker();
  $("#exp-chat-show").addEventListener("click", showNewChat);
  $("#exp-dataset").addEventListener("change", () => { state.fromData = null; onDatasetChange(); renderMethods(); updateTaskFields(); });
  $("#exp-task").addEventListener("change", () => { fillModels(); renderMethods(); updateTaskFields(); });
  $("#methods-table").addEventListener("click", (ev) => {
    const add = ev.target.closest(".add-variant");
    if (add) addVariant(add.dataset.method);
    const del = ev.target.closest(".del-variant");
    if (del) { del.closest("tr").remove(); filterMethods(); }
  });
  $("#estimate-btn").addEventListener("click", async () => {
    hideError($("#new-error"));
    $("#estimate-btn").disabled = true;
    const was = $("#estimate-btn").textContent;
    $("#estimate-btn").innerHTML = spinner("estimating…");
    try { renderEstimate(await api("POST", "/api/estimate", collectExperiment())); }
    catch (err) { showPlainError($("#new-error"), err); } finally { $("#estimate-btn").disabled = false; $("#estimate-btn").textContent = was; }
  });
  $("#yaml-btn").addEventListener("click", async () => {
    hideError($("#new-error"));
    try {
      const y = await api("POST", "/api/experiments/yaml", collectExperiment());
      $("#yaml-panel").classList.remove("hidden");
      $("#yaml-view").textContent = y.yaml;
      $("#cli-view").textContent = y.cli;
      state.yaml = y;
      showResolved();
    } catch (err) { showPlainError($("#new-error"), err); }
  });
  $("#yaml-download").addEventListener("click", () => state.yaml && saveText(state.yaml.filename, state.yaml.yaml));
  $("#cli-copy").addEventListener("click", async () => {
    if (!state.yaml) return;
    toast((await copyText(state.yaml.cli)) ? "Command copied" : "Copy it from the box: the browser refused");
  });
  $("#exp-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    hideError($("#new-error"));
    $("#launch-btn").disabled = true;
    try { await launch(false); } catch (err) { showPlainError($("#new-error"), err); } finally { $("#launch-btn").disabled = false; }
  });
}
