// Datasets: rename a data set (POST /api/datasets/{id}/rename; a name another data set has is
// refused with the reason, shown above the table).
"use strict";

async function renameDataset(id) {
  const d = state.datasets.find((x) => x.id === id);
  if (!d) return;
  hideError($("#dataset-error"));
  const ok = await confirmDialog(`Rename the data set ${d.name}`, `<label>New name <input id="ds-rename-input" type="text" value="${esc(d.name)}" maxlength="200"></label>
    <p class="small">Experiments that used it keep their runs; only the name shown here changes.</p>`, "Rename", false);
  const next = ok ? $("#ds-rename-input").value.trim() : "";
  if (!next || next === d.name) return;
  try {
    await api("POST", `/api/datasets/${id}/rename`, { name: next });
    toast(`Renamed ${d.name} to ${next}`);
    await renderDatasets(location.hash.includes(id) ? id : undefined);
  } catch (e) { showPlainError($("#dataset-error"), e); $("#dataset-error").scrollIntoView({ block: "center" }); }
}
