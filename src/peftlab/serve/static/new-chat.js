// New experiment, chat data: the conversations as the chosen model will see them (its chat
// template, the trained replies marked), with the max tokens and system prompt of this form.
"use strict";

async function showNewChat() {
  const out = $("#exp-chat"), id = $("#exp-dataset").value;
  const model = $("#exp-model-custom").value.trim() || $("#exp-model").value;
  if (!id || !model) return;
  const num = (s, dflt) => Number($(s).value) || dflt;
  out.innerHTML = spinner("rendering with the model's chat template…");
  try {
    const p = await api("POST", `/api/datasets/${id}/preview`, { task: "causal-lm", model, rows: 2, mapping: null,
      max_source_length: num("#max-src", 256), max_target_length: num("#max-tgt", 64), system_prompt: $("#exp-system").value.trim() });
    out.innerHTML = p.chat ? chatPreviewHtml(p) : '<span class="small">This data set is read as columns.</span>';
  } catch (e) { out.innerHTML = `<div class="error">${esc(plainMessage(e.message))}</div>`; }
}
