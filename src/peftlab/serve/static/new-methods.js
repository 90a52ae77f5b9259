// New experiment: the method picker. Every method is a row (45 of them): a search box, family
// filters, "selected only", the methods not for this task hidden unless asked for, options shown
// for the selected methods only, and a count of those selected beside the Launch button, which
// stays in view at the bottom of the window.
"use strict";

async function renderMethods(preset) {
  const task = $("#exp-task").value;
  const tbody = $("#methods-table tbody");
  if (!tbody.querySelector("tr.placeholder")) tbody.insertAdjacentHTML("afterbegin", `<tr class="placeholder"><td colspan="4">${spinner("loading…")}</td></tr>`);
  state.methods = await api("GET", `/api/methods?task=${encodeURIComponent(task)}`);
  const wanted = preset ? preset.map((m) => m.name) : DEFAULT_METHODS;
  tbody.innerHTML = state.methods.map((m) => methodRow(m, wanted.includes(m.name) && m.applicable, preset && preset.find((p) => p.name === m.name), 0)).join("");
  if (preset) { // extra entries of the same method: variants
    const seen = {};
    for (const p of preset) {
      seen[p.name] = (seen[p.name] || 0) + 1;
      if (seen[p.name] > 1) addVariant(p.name, p);
    }
  }
  methodFamilies();
  filterMethods();
}

function methodRow(m, checked, preset, variant) {
  const po = (preset && preset.options) || {};
  const opts = Object.entries(m.options).map(([k, o]) => {
    const t = o.type, d = k in po ? po[k] : o.default;
    const title = esc(o.description || t);
    if (t === "bool") return `<label class="opt" title="${title}">${k}<input type="checkbox" data-opt="${k}" data-kind="bool" ${d ? "checked" : ""}></label>`;
    const kind = t === "int" ? "int" : t === "float" ? "float" : t.includes("list") ? "list" : "str";
    const val = d === null || d === undefined ? "" : Array.isArray(d) ? d.join(",") : d;
    return `<label class="opt" title="${title}">${k}<input type="${kind === "int" || kind === "float" ? "number" : "text"}" step="any" data-opt="${k}" data-kind="${kind}" value="${esc(val)}" placeholder="${o.default === null ? "default" : ""}"></label>`;
  }).join("");
  const lr = (preset && preset.learning_rate) || m.learning_rate;
  const label = variant ? `<label class="opt variant-label">label <input class="variant-name" type="text" value="${esc((preset && preset.label) || `${m.name}-v${variant + 1}`)}" pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*"></label>` : "";
  return `<tr class="${m.applicable ? "" : "na"}${variant ? " variant" : ""}${checked ? " picked" : ""}" data-method="${m.name}" data-family="${esc(m.family)}" data-variant="${variant}"><td><input type="checkbox" class="method-check" data-method="${m.name}" ${checked ? "checked" : ""} ${m.applicable ? "" : "disabled"}></td>
    <td>${swatch(m.name)}<b>${m.name}</b>${variant ? ' <span class="small">variant</span>' : ""}<div class="small">${variant ? "" : esc(m.summary)}${m.applicable ? "" : " — not for this task"}</div>
      ${m.applicable && m.trains && !variant ? `<button type="button" class="small secondary add-variant" data-method="${m.name}" title="Compare another setting of ${m.name} (e.g. another rank)">+ variant</button>` : ""}
      ${variant ? '<button type="button" class="small danger del-variant">remove</button>' : ""}</td>
    <td>${m.trains ? `<input class="lr" type="number" step="any" value="${lr}" style="width:100px">` : '<span class="small">no training</span>'}</td>
    <td>${label}<div class="method-opts">${opts || '<span class="small">no options</span>'}</div><span class="small opts-hint">${opts ? "select it to set its options" : ""}</span></td></tr>`;
}

function addVariant(name, preset) {
  const m = state.methods.find((x) => x.name === name);
  const rows = $$(`#methods-table tr[data-method="${name}"]`);
  const n = rows.length;
  rows[rows.length - 1].insertAdjacentHTML("afterend", methodRow(m, true, preset || null, n));
  filterMethods();
}


function methodFamilies() {
  const fams = {};
  for (const m of state.methods) if (m.applicable || $("#method-show-na").checked) fams[m.family] = (fams[m.family] || 0) + 1;
  const on = state.methodFamily || "";
  $("#method-families").innerHTML = [["", "all", Object.values(fams).reduce((a, b) => a + b, 0)], ...Object.entries(fams).map(([f, n]) => [f, f, n])]
    .map(([f, label, n]) => `<button type="button" class="chip family${f === on ? " on" : ""}" data-family="${esc(f)}" aria-pressed="${f === on}">${esc(label)} <span class="small">${n}</span></button>`).join("");
}

function filterMethods() {
  const q = $("#method-search").value.trim().toLowerCase();
  const fam = state.methodFamily || "", pickedOnly = $("#method-picked-only").checked, na = $("#method-show-na").checked;
  let shown = 0;
  for (const tr of $$("#methods-table tbody tr[data-method]")) {
    const m = state.methods.find((x) => x.name === tr.dataset.method) || {};
    const picked = $(".method-check", tr).checked;
    tr.classList.toggle("picked", picked);
    const hay = `${m.name} ${m.family} ${m.summary}`.toLowerCase();
    const show = (!q || hay.includes(q)) && (!fam || m.family === fam) && (!pickedOnly || picked) && (m.applicable || na || picked);
    tr.classList.toggle("hidden", !show);
    shown += show ? 1 : 0;
  }
  const n = $$(".method-check").filter((c) => c.checked).length;
  $("#method-count").textContent = `${n} selected`;
  $("#method-count").dataset.count = n;
  $("#methods-empty").classList.toggle("hidden", shown > 0);
}

function wireMethodPicker() {
  $(".methods-scroll").insertAdjacentHTML("afterend", '<p id="methods-empty" class="small hidden">No method matches: clear the search or pick another family.</p>');
  $("#method-search").addEventListener("input", filterMethods);
  $("#method-picked-only").addEventListener("change", filterMethods);
  $("#method-show-na").addEventListener("change", () => { methodFamilies(); filterMethods(); });
  $("#method-families").addEventListener("click", (ev) => {
    const b = ev.target.closest("button.family");
    if (!b) return;
    state.methodFamily = b.dataset.family;
    methodFamilies();
    filterMethods();
  });
  $("#methods-table").addEventListener("change", (ev) => { if (ev.target.classList.contains("method-check")) filterMethods(); });
}
