// Chat data (messages, sharegpt, alpaca, prompt-completion): the format a run reads and why, the
// system prompt, and the conversations as the chosen model's chat template renders them, the
// trained replies marked, with the conversations cut at the max length counted. Used by the
// Datasets page and by New experiment (chatPreviewHtml).
"use strict";

const CHAT_FORMAT_NAMES = {
  messages: "messages (OpenAI style: a list of {role, content})",
  sharegpt: "ShareGPT (a list of {from, value})",
  alpaca: "Alpaca (instruction, input, output)",
  "prompt-completion": "prompt-completion (TRL)",
};

function isChat(format) { return !!format && format !== "columns"; }

function formatLabel(format) { return CHAT_FORMAT_NAMES[format] || format; }

// the Datasets table's "mapping" cell
function mappingSummary(d) {
  if (isChat(d.format)) return `${d.format} conversations`;
  const m = d.mapping || {};
  const input = m.prompt ? "template" : (m.input || []).join(", ") || "no input chosen";
  return `${input} → ${m.target || m.label || m.image || "no target chosen"}`;
}

// the card that replaces the column mapping for a chat format
function chatFormatCard(d) {
  const a = d.analysis, m = d.mapping || {};
  return `<form class="card" id="map-form" data-chat="1"><h3>Data format</h3>
    <p id="chat-format">Read as <b>${esc(formatLabel(a.format))}</b> conversations: <span class="small">${esc(a.format_reason)}</span>.</p>
    <p class="small">Every row is a conversation; training learns the assistant replies (marked green below), so there are
      no input or target columns to choose.</p>
    <label>System prompt <span class="small">(for conversations without a system message of their own; empty: the model's default)</span>
      <textarea id="map-system" rows="2" spellcheck="false" placeholder="You are a helpful assistant.">${esc(m.system_prompt || "")}</textarea></label>
    <div class="actions"><button id="map-save" type="submit">Save system prompt</button><a href="#/new/${d.id}">New experiment with this data →</a></div>
    <div id="map-error" class="error hidden"></div>
  </form>`;
}

function wireChatFormat(d) {
  $("#map-system").addEventListener("input", () => schedulePreview(d.id));
  $("#pv-model").addEventListener("change", () => schedulePreview(d.id));
  ["#pv-src", "#pv-tgt"].forEach((s) => $(s).addEventListener("change", () => schedulePreview(d.id)));
  $("#pv-task").addEventListener("change", () => { $("#pv-model").innerHTML = modelOptions($("#pv-task").value, $("#pv-model").value); schedulePreview(d.id); });
  $("#map-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    hideError($("#map-error"));
    try {
      await api("PUT", `/api/datasets/${d.id}/mapping`, { ...(d.mapping || {}), system_prompt: $("#map-system").value.trim() || null });
      toast("System prompt saved");
      await renderDatasets(d.id);
    } catch (e) { showPlainError($("#map-error"), e); }
  });
  $("#pv-tgt-label").classList.remove("hidden");
  schedulePreview(d.id);
}

// The answer of POST /api/datasets/{id}/preview for conversations, as HTML.
function chatPreviewHtml(p) {
  const cut = p.truncated;
  const of = p.counted < p.rows ? `of the first ${fmtNum(p.counted)} conversations` : `of ${fmtNum(p.counted)} conversations`;
  const summary = cut
    ? `<div class="problem chat-trunc" data-truncated="${cut}"><b>⚠</b> ${fmtNum(cut)} ${of} are longer than ${fmtNum(p.max_length)} tokens (max source + max target tokens) and will be cut: the earliest turns are dropped first, then the last turns are shortened. Raise the max tokens to keep them whole.</div>`
    : `<div class="ok chat-trunc" data-truncated="0">All ${fmtNum(p.counted)} conversations fit in ${fmtNum(p.max_length)} tokens.</div>`;
  const bad = p.bad_count ? `<div class="problem"><b>⚠</b> ${fmtNum(p.bad_count)} rows are not valid conversations: ${esc(p.bad[0])}</div>` : "";
  const how = p.chat_template ? "Rendered with the model's chat template, exactly as training encodes it."
    : "This model's tokenizer has no chat template: the plain layout (System:, User:, Assistant:) is used.";
  const convs = p.conversations.map((c, i) => {
    const badge = c.truncated ? ` <span class="badge interrupted">cut to ${fmtNum(p.max_length)} tokens</span>` : "";
    const sys = c.system ? ` · system prompt: ${esc(c.system)}` : "";
    const text = c.segments.map((s) => s.trained ? `<span class="pv-target">${markSpecial(s.text)}</span>` : `<span class="pv-prompt">${markSpecial(s.text)}</span>`).join("");
    return `<div class="pv-row chat-conv" data-row="${i}" data-truncated="${c.truncated ? 1 : 0}"><div class="small">Conversation ${i + 1} (${esc(c.where)}): ${c.turns} turns, <b class="pv-tokens">${fmtNum(c.tokens)}</b> tokens${sys}${badge}</div>
      <pre class="pv-text">${text}</pre></div>`;
  }).join("");
  const long = p.lengths.filter((x) => x.truncated).slice(0, 12).map((x) => `${esc(x.where.split(":").pop())} (${fmtNum(x.tokens)})`).join(", ");
  return `${summary}${cut ? `<div class="small">Cut: rows ${long}${cut > 12 ? ", …" : ""} (tokens).</div>` : ""}${bad}
    <p class="small">${how} <span class="pv-legend"><span class="pv-prompt">not trained (template, system, user)</span> <span class="pv-target">trained (the replies, with their end-of-turn token)</span></span></p>${convs}`;
}
