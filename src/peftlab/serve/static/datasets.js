// Datasets: upload or pick a file, read its analysis, map its columns (input columns or a
// multi-line prompt template), preview the first rows exactly as the model will see them.
"use strict";

PAGES.datasets = async function pageDatasets(selected) {
  $("#upload-limit").textContent = `Limit: ${state.config.max_upload_mb} MB.`;
  const [files, models] = await Promise.all([api("GET", "/api/data-files"), api("GET", "/api/models")]);
  state.models = models.models;
  $("#path-folders").textContent = "Folders: " + (files.folders.join(", ") || "(none)");
  $("#path-select").innerHTML = '<option value="">(choose a file)</option>' +
    files.files.map((f) => `<option value="${esc(f.path)}">${esc(f.relative)} (${fmtBytes(f.bytes)})</option>`).join("");
  await renderDatasets(selected);
};

async function renderDatasets(selected) {
  state.datasets = await api("GET", "/api/datasets");
  const body = $("#datasets-table tbody");
  body.innerHTML = state.datasets.map((d) => {
    const mp = mappingSummary(d);
    return `<tr data-id="${d.id}" class="${d.id === selected ? "selected" : ""}"><td>${esc(d.name)}</td><td>${esc(d.origin)}</td>
      <td>${esc(short(d.files.train))}</td><td>${esc(short(d.files.validation) || "auto")}</td><td>${esc(short(d.files.test) || "auto")}</td>
      <td class="ds-mapping">${esc(mp)}</td><td class="nowrap"><button class="small secondary ds-open" data-id="${d.id}">Check</button>
      <a class="small" href="#/new/${d.id}">use →</a>
      <button class="small secondary ds-rename" data-id="${d.id}" title="Rename this data set">Rename</button>
      <button class="small danger ds-delete" data-id="${d.id}" title="Delete this data set">Delete</button></td></tr>`;
  }).join("") || '<tr><td colspan="7" class="small">No data sets yet: upload one above.</td></tr>';
  $$(".ds-open").forEach((b) => b.addEventListener("click", () => showDataset(b.dataset.id)));
  $$(".ds-delete").forEach((b) => b.addEventListener("click", () => deleteDataset(b.dataset.id)));
  $$(".ds-rename").forEach((b) => b.addEventListener("click", () => renameDataset(b.dataset.id)));
  if (selected) await showDataset(selected);
}

async function deleteDataset(id) {
  const d = state.datasets.find((x) => x.id === id);
  if (!d) return;
  const files = d.origin === "upload" ? "Its uploaded file (and split files) are deleted from the store." :
    `The file on the server (${esc(d.files.train)}) is not touched; only the entry goes.`;
  if (!(await confirmDialog(`Delete the data set ${d.name}?`, `<p>${files}</p><p class="small">Experiments that used it keep their runs and results.</p>`))) return;
  try {
    await api("DELETE", `/api/datasets/${id}`);
    toast(`Deleted ${d.name}`);
    $("#dataset-detail").classList.add("hidden");
    if (location.hash.includes(id)) location.hash = "#/datasets";
    await renderDatasets();
  } catch (e) { toast(e.message); }
}

function modelsFor(task) { return state.models.filter((m) => (m.tasks || []).includes(task)); }

function modelOptions(task, chosen) {
  const fit = modelsFor(task);
  const pick = fit.some((m) => m.name === chosen) ? chosen : (fit.some((m) => m.name === localStorage.getItem("peftlab-model")) ? localStorage.getItem("peftlab-model") : (fit[0] || {}).name);
  const opts = fit.map((m) => `<option value="${esc(m.name)}" ${m.name === pick ? "selected" : ""}>${esc(m.name)} (${esc(m.kind)})</option>`).join("");
  return opts || '<option value="">no model here fits this task</option>';
}

async function showDataset(id) {
  const d = await api("GET", `/api/datasets/${id}`);
  $$("#datasets-table tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  const a = d.analysis, m = d.mapping || {};
  const task = m.task || a.suggested_mapping.task || "causal-lm";
  const opt = (sel) => a.columns.map((c) => `<option ${c === sel ? "selected" : ""}>${esc(c)}</option>`).join("");
  const counts = Object.entries(a.counts).map(([k, v]) => `<b>${fmtNum(v)}</b> ${esc(k.replace(/_/g, " "))}`).join(" · ");
  const problems = a.problems.length ? a.problems.map((p) => `<div class="problem${p.level === "note" ? " note" : ""}" data-kind="${esc(p.kind)}"><b>${p.level === "note" ? "ℹ" : "⚠"}</b> ${esc(p.message)}${p.lines ? ` <span class="small">(lines ${p.lines.slice(0, 8).join(", ")}${p.lines.length > 8 ? ", …" : ""})</span>` : ""}</div>`).join("")
    : '<div class="ok">No problems found.</div>';
  const skipped = d.info.skipped_count ? `<div class="problem"><b>⚠</b> ${d.info.skipped_count} unreadable rows: ${esc(d.info.skipped.slice(0, 3).join("; "))}</div>` : "";
  const cols = a.columns.map((c) => { const i = a.column_info[c]; return `<tr><td>${esc(c)}</td><td>${esc(i.kind)}</td><td class="num">${fmtNum(i.empty)}</td><td class="num">${fmtNum(i.distinct)}</td><td class="num">${fmtNum(i.mean_chars, 0)}</td><td class="num">${fmtNum(i.max_chars)}</td></tr>`; }).join("");
  const prev = a.preview.map((r) => `<tr>${a.columns.map((c) => `<td>${esc(trunc(typeof r[c] === "string" ? r[c] : JSON.stringify(r[c]), 160))}</td>`).join("")}</tr>`).join("");
  const useTemplate = !!m.prompt;
  const chat = isChat(a.format) && !["input", "prompt", "target", "label", "image"].some((k) => m[k] && m[k].length);
  const el = $("#dataset-detail");
  el.classList.remove("hidden");
  el.innerHTML = `<h2>${esc(d.name)}</h2>
    <p>${counts}<br><span class="small">${esc(a.split_note)}</span></p>
    <div class="cards two">
      <div class="card"><h3>Problems</h3>${problems}${skipped}</div>
      ${chat ? chatFormatCard(d) : `<form class="card" id="map-form"><h3>Column mapping</h3>
        <fieldset class="source-choice"><legend>What the model reads</legend>
          <label class="radio"><input type="radio" name="map-source" value="input" ${useTemplate ? "" : "checked"}> the input column(s) as they are</label>
          <select id="map-input" multiple size="${Math.min(4, a.columns.length)}">${a.columns.map((c) => `<option ${(m.input || []).includes(c) ? "selected" : ""}>${esc(c)}</option>`).join("")}</select>
          <label class="radio"><input type="radio" name="map-source" value="template" ${useTemplate ? "checked" : ""}> a prompt template with {column} placeholders (Enter for a new line)</label>
          <textarea id="map-prompt" rows="4" spellcheck="false" placeholder="Write the title of this table:&#10;{table}">${esc(m.prompt || "")}</textarea>
          <div id="map-used" class="used"></div>
          <div id="map-escape" class="hidden note-warn">The template holds a typed <code>\\n</code> (a backslash and an n): the model would see those two characters.
            <button type="button" class="small secondary" id="map-unescape">Turn \\n into line breaks</button></div>
        </fieldset>
        <label>Target column (generation) <select id="map-target"><option value="">–</option>${opt(m.target)}</select></label>
        <label>Label column (classification) <select id="map-label"><option value="">–</option>${opt(m.label)}</select></label>
        <label>Image column (image classification) <select id="map-image"><option value="">–</option>${opt(m.image)}</select></label>
        <div class="actions"><button id="map-save" type="submit">Save mapping</button><a href="#/new/${d.id}">New experiment with this data →</a></div>
        <div id="map-error" class="error hidden"></div>
      </form>`}
    </div>
    <div class="card" id="preview-card"><h3>What the model will see</h3>
      <div class="inline-fields">
        <label class="inline">Task <select id="pv-task">${state.config.tasks.map((t) => `<option value="${t}" ${t === task ? "selected" : ""}>${t}</option>`).join("")}</select></label>
        <label class="inline">Model <select id="pv-model">${modelOptions(task)}</select></label>
        <label class="inline">Max source tokens <input id="pv-src" type="number" min="1" value="256"></label>
        <label class="inline" id="pv-tgt-label">Max target tokens <input id="pv-tgt" type="number" min="1" value="64"></label>
      </div>
      <div id="pv-out" class="small">Choose the input and a model to see the first rows formatted.</div>
    </div>
    <h3 style="margin-top:16px">Columns</h3>
    <table class="grid"><thead><tr><th>column</th><th>kind</th><th>empty</th><th>distinct</th><th>mean chars</th><th>max chars</th></tr></thead><tbody>${cols}</tbody></table>
    <h3 style="margin-top:16px">First rows</h3>
    <div class="scroll"><table class="grid" id="preview-table"><thead><tr>${a.columns.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>${prev}</tbody></table></div>`;
  if (chat) wireChatFormat(d); else wireMapping(d);
}

function currentMapping() {
  const src = ($$('input[name="map-source"]').find((r) => r.checked) || {}).value;
  return {
    input: src === "input" ? $$("#map-input option").filter((o) => o.selected).map((o) => o.value) : [],
    prompt: src === "template" ? $("#map-prompt").value || null : null,
    target: $("#map-target").value || null, label: $("#map-label").value || null, image: $("#map-image").value || null,
  };
}

function wireMapping(d) {
  const id = d.id;
  const sync = () => {
    const m = currentMapping();
    const tpl = $$('input[name="map-source"]').find((r) => r.checked).value === "template";
    $("#map-input").classList.toggle("unused", tpl);
    $("#map-prompt").classList.toggle("unused", !tpl);
    $("#map-used").innerHTML = tpl ? `Used: <b>the template</b> (the input columns are ignored)`
      : `Used: <b>the input column${m.input.length === 1 ? "" : "s"} ${esc(m.input.join(", ") || "(none chosen)")}</b>${m.input.length > 1 ? ", one per line as <code>column: value</code>" : ""} (the template is ignored)`;
    $("#map-escape").classList.toggle("hidden", !(tpl && /\\n/.test($("#map-prompt").value)));
    $("#pv-tgt-label").classList.toggle("hidden", !["causal-lm", "seq2seq"].includes($("#pv-task").value));
    schedulePreview(id);
  };
  $$('input[name="map-source"]').forEach((r) => r.addEventListener("change", sync));
  ["#map-input", "#map-target", "#map-label", "#map-image", "#pv-model", "#pv-src", "#pv-tgt"].forEach((s) => $(s).addEventListener("change", sync));
  $("#map-prompt").addEventListener("input", sync);
  // using one of the two selects it: the control always says which one the model reads
  const choose = (v) => () => { const r = $(`input[name="map-source"][value="${v}"]`); if (!r.checked) { r.checked = true; sync(); } };
  $("#map-prompt").addEventListener("focus", choose("template"));
  $("#map-input").addEventListener("focus", choose("input"));
  $("#pv-task").addEventListener("change", () => { $("#pv-model").innerHTML = modelOptions($("#pv-task").value, $("#pv-model").value); sync(); });
  $("#map-unescape").addEventListener("click", () => { $("#map-prompt").value = $("#map-prompt").value.replace(/\\n/g, "\n"); sync(); });
  $("#map-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    hideError($("#map-error"));
    try { await api("PUT", `/api/datasets/${id}/mapping`, currentMapping()); toast("Mapping saved"); await renderDatasets(id); }
    catch (e) { showPlainError($("#map-error"), e); }
  });
  sync();
}

function schedulePreview(id) {
  clearTimeout(schedulePreview._t);
  schedulePreview._t = setTimeout(() => renderPreview(id).catch(() => {}), 350);
}

async function renderPreview(id) {
  const out = $("#pv-out");
  const model = $("#pv-model").value;
  if (!model) { out.innerHTML = '<span class="bad">No model in the model folders fits this task.</span>'; return; }
  localStorage.setItem("peftlab-model", model);
  const seq = (renderPreview._seq = (renderPreview._seq || 0) + 1);
  out.innerHTML = spinner("formatting with the model's tokenizer…");
  let p;
  const chat = !!$("#map-system");
  try {
    p = await api("POST", `/api/datasets/${id}/preview`, { mapping: chat ? null : currentMapping(), task: $("#pv-task").value, model, rows: 3,
      max_source_length: Number($("#pv-src").value) || 256, max_target_length: Number($("#pv-tgt").value) || 64,
      system_prompt: chat ? $("#map-system").value.trim() : null });
  } catch (e) {
    if (seq === renderPreview._seq) out.innerHTML = `<div class="error">${esc(plainMessage(e.message))}</div>`;
    return;
  }
  if (seq !== renderPreview._seq) return; // a newer preview is on its way
  if (p.chat) { out.innerHTML = chatPreviewHtml(p); return; }
  const notes = p.notes.map((n) => `<div class="problem"><b>⚠</b> ${esc(n)}</div>`).join("");
  const rows = p.rows.map((r, i) => {
    const cutP = r.prompt_tokens >= p.max_source_length, cutT = r.target_tokens !== undefined && r.target_tokens >= p.max_target_length;
    const cut = r.truncated ? ` <span class="badge interrupted" title="longer than the max lengths: cut at training time">cut: ${[cutP && "prompt", cutT && "target"].filter(Boolean).join(" and ") || "input"}</span>` : "";
    return `<div class="pv-row" data-row="${i}"><div class="small">Row ${i + 1}: prompt <b class="pv-tokens">${r.prompt_tokens}</b> tokens${r.target_tokens !== undefined ? ` · target <b>${r.target_tokens}</b> tokens` : ""}${r.label !== undefined ? ` · label <b>${esc(r.label)}</b>` : ""}${cut}</div>
      <pre class="pv-text"><span class="pv-prompt">${markSpecial(r.prompt)}</span>${cutP ? '<span class="cut-mark" title="cut here: longer than max source tokens">✂</span>' : ""}${r.target !== undefined ? `<span class="pv-target">${markSpecial(r.target)}</span>` : ""}</pre></div>`;
  }).join("");
  const skipped = p.skipped.length ? `<div class="problem"><b>⚠</b> ${p.skipped.length} of the first rows would be skipped: ${esc(p.skipped[0])}</div>` : "";
  const causal = p.task === "causal-lm", hasTarget = p.rows.some((r) => r.target !== undefined);
  const how = !causal ? "The input as the model's tokenizer encodes it (its start and separator tokens shown)."
    : p.chat_template ? "The model's chat template is applied (system and user turns, then the assistant's turn the target fills)."
      : "This tokenizer has no chat template: the prompt is the text as formatted, after the start token.";
  out.innerHTML = `${notes}<p class="small">${how}
    ${hasTarget ? '<span class="pv-legend"><span class="pv-prompt">prompt</span> <span class="pv-target">target (what the model learns to write, then its end token)</span></span>' : ""}</p>${rows}${skipped}`;
}

// special tokens (<s>, </s>, <|im_start|>, [CLS], ...) shown as tags
function markSpecial(text) {
  return esc(text).replace(/(&lt;\|[^|]{1,40}\|&gt;|&lt;\/?s&gt;|\[(?:CLS|SEP|PAD|UNK|MASK)\]|&lt;(?:pad|unk|eos|bos)&gt;)/g, '<mark class="special">$1</mark>');
}

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
      $("#upload-name").value = ""; // the next file is named after itself, not after this one
      $("#upload-file").value = "";
      toast(`Uploaded ${d.name}`);
      location.hash = `#/datasets/${d.id}`;
    } catch (e) { showPlainError($("#dataset-error"), e); } finally { $("#upload-btn").disabled = false; }
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
    } catch (e) { showPlainError($("#dataset-error"), e); }
  });
}
