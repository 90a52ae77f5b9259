// New experiment: beside the experiment file, what each run will actually use, resolved by the
// engine on the chosen model (POST /api/experiments/resolved): learning rate, trainable
// parameters, rank, alpha, target modules, virtual tokens, ...
"use strict";

function fmtSetting(v) {
  if (Array.isArray(v)) return v.join(", ");
  if (typeof v === "boolean") return v ? "yes" : "no";
  return String(v);
}

async function showResolved() {
  const out = $("#resolved-view");
  const seq = (showResolved._seq = (showResolved._seq || 0) + 1);
  out.innerHTML = spinner("resolving the settings on the model…");
  let r;
  try { r = await api("POST", "/api/experiments/resolved", collectExperiment()); }
  catch (e) { if (seq === showResolved._seq) out.innerHTML = `<div class="error">${esc(plainMessage(e.message))}</div>`; return; }
  if (seq !== showResolved._seq) return;
  out.innerHTML = `<table class="grid" id="resolved-table"><thead><tr><th>run</th><th>learning rate</th><th>trainable parameters</th><th>settings</th></tr></thead><tbody>${
    r.runs.map((x) => `<tr data-run="${esc(x.run)}"><td>${swatch(x.method)}${esc(x.run)}</td>
      <td class="num">${x.learning_rate === null ? "–" : esc(x.learning_rate)}</td>
      <td class="num">${fmtNum(x.trainable)}</td>
      <td>${Object.entries(x.settings).map(([k, v]) => `<span class="setting" data-key="${esc(k)}"><b>${esc(k)}</b> ${esc(fmtSetting(v))}</span>`).join(" · ")}${x.note ? `<div class="small">${esc(plainMessage(x.note))}</div>` : ""}</td></tr>`).join("")
  }</tbody></table>`;
}
