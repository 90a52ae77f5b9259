// Playground conversations (runs trained on conversations): each run holds its own conversation,
// answered through the OpenAI-compatible endpoint (POST /v1/chat/completions, streamed: the same
// serving engine as every other client, so a run answers the same input the same way on every
// path), with an optional system prompt and stop strings. A reply cut at the token limit is
// marked, as /v1's finish_reason "length" says.
"use strict";

function chatRuns() { return $$(".pg-run").filter((c) => c.checked).map((c) => c.value); }

function stopStrings() { return $("#pg-stop").value.split("\n").filter((s) => s !== ""); }

function replyNote(m) {
  if (m.error) return `<div class="small bad">${esc(m.error)}</div>`;
  if (m.finish === "length") return `<div class="small cut" data-finish="length">cut off: it reached the limit of ${m.maxTokens ?? "max new"} new tokens</div>`;
  if (m.finish === "stop" && m.stops && m.stops.length) return '<div class="small" data-finish="stop">ended (end of reply or a stop string)</div>';
  return m.finish ? `<div class="small" data-finish="${esc(m.finish)}"></div>` : "";
}

function turnHtml(n, m) {
  const who = m.role === "user" ? "you" : esc(n);
  if (m.pending) return `<div class="turn-live" data-chunks="0"><span class="small">${who} ${spinner("")}</span><div class="out">${esc(m.content)}</div></div>`;
  return `<div class="turn turn-${m.role}" data-role="${m.role}" data-chunks="${m.chunks || 0}"><span class="small">${who}</span><div class="out">${esc(m.content) || '<span class="small">(empty reply)</span>'}</div>${m.role === "assistant" ? replyNote(m) : ""}</div>`;
}

function renderChat() {
  if (!state.pgChat) { $("#pg-chat-log").innerHTML = ""; return; }
  const methodOf = Object.fromEntries(state.pgExp.runs.map((r) => [r.name, r.method]));
  $("#pg-chat-log").innerHTML = chatRuns().map((n) => `<div class="card pg-card pg-conv" data-run="${esc(n)}"><h3>${swatch(methodOf[n])}${esc(n)}</h3>
    ${(state.pgConv[n] || []).map((m) => turnHtml(n, m)).join("") || '<p class="small">No messages yet.</p>'}</div>`).join("");
}

// One streamed reply: calls onText with the text so far at each chunk; resolves to {text, finish}.
async function streamReply(body, onText, signal) {
  const res = await fetch("/v1/chat/completions", { method: "POST", signal, body: JSON.stringify(body),
    headers: { ...authHeaders(), "Content-Type": "application/json" } });
  if (res.status === 401) $("#token-bar").classList.remove("hidden");
  if (!res.ok) {
    let msg = res.statusText;
    try { const j = await res.json(); msg = (j.error && j.error.message) || msg; } catch (e) { /* not JSON */ }
    throw new ApiError(res.status, msg);
  }
  const reader = res.body.getReader(), dec = new TextDecoder();
  let buf = "", text = "", finish = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(0, i).split("\n").find((l) => l.startsWith("data: "));
      buf = buf.slice(i + 2);
      if (!line) continue;
      if (line === "data: [DONE]") return { text, finish };
      const j = JSON.parse(line.slice(6));
      if (j.error) throw new ApiError(400, j.error.message);
      const c = (j.choices || [])[0];
      if (!c) continue;
      if (c.delta && c.delta.content) { text += c.delta.content; onText(text); }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish };
}

// The turns sent: a reply that failed or was stopped is shown, but left out with its message.
function chatHistory(conv) {
  return conv.filter((m, i) => !m.error && !(conv[i + 1] && conv[i + 1].error)).map(({ role, content }) => ({ role, content }));
}

function v1Body(run, messages, stops) {
  const s = samplingSettings();
  const body = { model: `${$("#pg-exp").value}/${run}`, messages, stream: true, temperature: s.do_sample ? s.temperature : 0 };
  if (s.do_sample) { body.top_p = s.top_p; if (s.seed !== undefined) body.seed = s.seed; }
  if (s.max_new_tokens) body.max_tokens = s.max_new_tokens;
  if (stops.length) body.stop = stops;
  return body;
}

async function sendChat() {
  const text = $("#pg-chat-input").value, runs = chatRuns(), stops = stopStrings();
  let problem = !runs.length ? "Tick at least one run." : !text.trim() ? "Type a message first." : null;
  if (!problem && stops.length > 4) problem = `Stop strings: up to 4, one per line; you gave ${stops.length}.`;
  problem = problem || pgSettingsProblem();
  if (problem) { showError($("#pg-error"), problem); return; }
  hideError($("#pg-error"));
  const system = $("#pg-system").value.trim();
  const maxTokens = Number($("#pg-max-tokens").value) || null;
  for (const n of runs) state.pgConv[n] = [...(state.pgConv[n] || []), { role: "user", content: text }, { role: "assistant", content: "", pending: true }];
  renderChat();
  $("#pg-chat-input").value = "";
  $("#pg-chat-send").disabled = true;
  $("#pg-chat-stop").classList.remove("hidden");
  const ctrl = new AbortController();
  state.pgAbort = ctrl;
  await Promise.all(runs.map(async (n) => {
    const conv = state.pgConv[n], reply = conv[conv.length - 1];
    const messages = [...(system ? [{ role: "system", content: system }] : []), ...chatHistory(conv.slice(0, -1))];
    let chunks = 0;
    try {
      const r = await streamReply(v1Body(n, messages, stops), (t) => {
        reply.content = t; chunks += 1;
        const live = $(`.pg-conv[data-run="${CSS.escape(n)}"] .turn-live`);
        if (live) { live.querySelector(".out").textContent = t; live.dataset.chunks = String(chunks); }
      }, ctrl.signal);
      Object.assign(reply, { content: r.text, finish: r.finish });
    } catch (e) {
      reply.error = e.name === "AbortError" ? "stopped by you" : `No reply: ${e.message}`;
    }
    Object.assign(reply, { pending: false, chunks, maxTokens, stops });
  }));
  $("#pg-chat-send").disabled = false;
  $("#pg-chat-stop").classList.add("hidden");
  renderChat();
  const s = samplingSettings();
  decodingNote({ sampling: s.do_sample ? { temperature: s.temperature, top_p: s.top_p, seed: s.seed ?? null } : null });
}

function wireChat() {
  $("#pg-chat-send").addEventListener("click", sendChat);
  $("#pg-chat-input").addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) sendChat(); });
  $("#pg-chat-stop").addEventListener("click", () => { if (state.pgAbort) state.pgAbort.abort(); });
  $("#pg-chat-reset").addEventListener("click", () => { state.pgConv = {}; renderChat(); });
}
