// "Use these runs from your code": every finished run is a model of this server's OpenAI-compatible
// endpoint (/v1, named EXPERIMENT/RUN). A snippet for the first ticked run (openai's Python client,
// and curl) at this page's address, with the input typed above; the API reference is /docs.
"use strict";

function shellQuote(s) { return `'${s.replace(/'/g, "'\\''")}'`; }

function pyString(s) { return JSON.stringify(s); }  // a JSON string is a valid Python string literal

async function renderCodePanel() {
  const panel = $("#pg-code-body");
  if (!panel || !$("#pg-code").open) return;  // rendered when opened
  const exp = $("#pg-exp").value;
  let models = [];
  try { models = (await api("GET", "/v1/models")).data.map((m) => m.id); } catch (e) { /* shown below */ }
  const ticked = $$(".pg-run").filter((c) => c.checked).map((c) => `${exp}/${c.value}`);
  const model = ticked.find((m) => models.includes(m)) || models.find((m) => m.startsWith(`${exp}/`));
  if (!model) { panel.innerHTML = '<p class="small">No finished run of this experiment yet: once one is done, it is a model here.</p>'; return; }
  const base = `${location.origin}/v1`;
  const auth = Boolean(localStorage.getItem("peftlab-token"));
  const typed = state.pgChat ? "" : (pgInputs().text || "");
  const content = typed.trim() ? typed : "YOUR INPUT";
  const maxTokens = Number($("#pg-max-tokens").value) || 32;
  const py = `from openai import OpenAI

client = OpenAI(base_url=${pyString(base)}, api_key=${auth ? '"YOUR_TOKEN"' : '"none"'})
r = client.chat.completions.create(model=${pyString(model)}, temperature=0, max_tokens=${maxTokens},
                                   messages=[{"role": "user", "content": ${pyString(content)}}])
print(r.choices[0].message.content)`;
  const body = JSON.stringify({ model, temperature: 0, max_tokens: maxTokens, messages: [{ role: "user", content }] });
  const curl = `curl ${base}/chat/completions -H 'Content-Type: application/json'${auth ? " -H 'Authorization: Bearer YOUR_TOKEN'" : ""} \\
  -d ${shellQuote(body)}`;
  panel.innerHTML = `<p class="small">Each finished run is a model of this server's OpenAI-compatible API (<code>${esc(base)}</code>),
    named <code>EXPERIMENT/RUN</code>: here <code class="pg-model">${esc(model)}</code>${ticked.length > 1 ? " (the first ticked run)" : ""}.
    The input is what the data's input column held; the run formats it as at training. ${auth ? "Use your token as the API key." : "Any API key works: this server has no token."}
    Models: <code>GET /v1/models</code>; every endpoint: <a href="/docs" target="_blank">the API reference</a>.</p>
    <h4>Python (<code>pip install openai</code>)</h4><pre class="pg-snippet" data-lang="python">${esc(py)}</pre>
    <h4>curl</h4><pre class="pg-snippet" data-lang="curl">${esc(curl)}</pre>`;
}

function wireCodePanel() {
  const d = $("#pg-code");
  if (d) d.addEventListener("toggle", () => { if (d.open) renderCodePanel(); });
}
