// Results: the recommendation (once, in full, within the budget typed here), the ranked table
// with each run's interval, rank group and flags (and the majority-class baseline), then the HTML
// report of `peftlab report`; rename or delete the experiment. Compare: several experiments in one report.
"use strict";

PAGES.results = async function pageResults(exp) {
  await loadColors();
  const name = await fillExperimentSelect($("#results-exp"), exp);
  rememberExp(name);
  state.reportKey = null;
  if (!name) { $("#recommendation").innerHTML = "No experiments yet: launch one from New experiment."; return; }
  await renderResults();
  every(3000, async () => { if (state.resultsLive) await renderResults(); });
};

function budgetQuery() {
  const q = new URLSearchParams();
  for (const [id, key] of [["#bg-mem", "max_memory_mb"], ["#bg-secs", "max_train_seconds"], ["#bg-pct", "max_trainable_percent"], ["#bg-forget", "max_forgetting"]]) {
    const v = $(id).value;
    if (v !== "" && Number(v) > 0) q.set(key, v);
  }
  return q.toString();
}

const RESULT_FLAGS = (r) => {
  const f = [];
  if (r.baseline) f.push(`<span class="badge baseline" title="${esc(r.note || "")}">baseline: always ${esc(r.majority_label)}</span>`);
  if (r.untrained_head) f.push('<span class="badge" title="zero-shot classification scores a freshly initialised head: chance level">untrained head</span>');
  if (r.collapsed) f.push(`<span class="badge flag" title="${esc(r.collapsed)}">⚠ one class</span>`);
  if ((r.health_problems || []).length) f.push(`<span class="badge flag" title="${esc(r.health_problems.join("; "))}">⚠ ${esc(r.health_problems[0])}</span>`);
  if (r.error) f.push(`<span class="small bad">${esc(trunc(r.error, 120))}</span>`);
  if (r.dropped_text) f.push(`<span class="small muted race-dropped">${esc(r.dropped_text)}</span>`);
  return f.join(" ");
};

function fmtP(p, bound) {
  if (typeof p !== "number") return "–";
  if (p < 0.001) return "< 0.001";
  return (bound ? "≤ " : "") + p.toPrecision(2);
}

// Forgetting with its interval; "n/a" where it is not measured (classification).
function fmtForgetting(r) {
  if (r.forgetting_na) return "n/a";
  if (typeof r.forgetting !== "number") return "–";
  const ci = typeof r.forgetting_ci_low === "number" && typeof r.forgetting_ci_high === "number"
    ? ` <span class="ci" title="95% confidence interval">[${r.forgetting_ci_low.toFixed(3)}, ${r.forgetting_ci_high.toFixed(3)}]</span>` : "";
  return r.forgetting.toFixed(3) + ci;
}

// One seed of a row trained over several: its own values, in the row's colour, under it.
function seedRow(r, sd, m) {
  const v = sd[m];
  return `<tr class="seed-row" data-seed="${esc(sd.run)}"><td class="sticky"></td><td class="sticky2 nowrap"><i class="swatch" style="background:${r.color}"></i><span class="small">↳ ${esc(sd.run)}</span></td>
    <td></td><td class="num">${typeof v === "number" ? v.toFixed(2) : "–"}</td><td></td><td></td><td></td>
    <td class="num">${typeof sd.eval_loss === "number" ? sd.eval_loss.toFixed(3) : "–"}</td>
    <td class="num">${typeof sd.forgetting === "number" ? sd.forgetting.toFixed(3) : "–"}</td>
    <td class="num">${fmtPct(sd.trainable_percent)}</td>
    <td class="num">${typeof sd.train_seconds === "number" ? fmtSecs(sd.train_seconds) : "–"}</td><td>${badge(sd.status)}</td></tr>`;
}

function resultsTable(lb) {
  const m = lb.main_metric;
  const rows = lb.rows.map((r) => {
    const v = r[m];
    const ci = typeof r[`${m}_ci_low`] === "number" && typeof r[`${m}_ci_high`] === "number"
      ? ` <span class="ci" title="95% confidence interval">[${r[`${m}_ci_low`].toFixed(1)}, ${r[`${m}_ci_high`].toFixed(1)}]</span>` : "";
    const rec = !r.baseline && lb.recommendation.run === r.run ? ' <span class="badge done" title="the recommendation">★ recommended</span>' : "";
    const seeds = (r.seeds || []).length > 1 ? r.seeds.map((sd) => seedRow(r, sd, m)).join("") : "";
    return `<tr class="${r.baseline ? "baseline" : ""}${["failed", "diverged"].includes(r.status) ? " bad" : ""}" data-run="${esc(r.run)}">
      <td class="sticky">${r.rank ?? "–"}</td><td class="sticky2 nowrap"><i class="swatch" style="background:${r.color}"></i><b>${esc(r.run)}</b>${rec}</td>
      <td>${esc(r.method)}</td><td class="num">${typeof v === "number" ? v.toFixed(2) : "–"}${ci}</td>
      <td class="num" title="1: not significantly different from the best">${r.rank_group ?? "–"}</td><td class="num">${fmtP(r.p_vs_best, r.p_vs_best_bound)}</td>
      <td class="num">${r.n_seeds ?? (r.baseline ? "–" : 1)}</td><td class="num">${typeof r.eval_loss === "number" ? r.eval_loss.toFixed(3) : "–"}</td>
      <td class="num"${r.forgetting_na ? ` title="${esc(r.forgetting_na)}"` : ""}>${fmtForgetting(r)}</td>
      <td class="num">${fmtPct(r.trainable_percent)}</td>
      <td class="num">${typeof r.train_seconds === "number" ? fmtSecs(r.train_seconds) : "–"}</td><td>${r.baseline ? "" : badge(r.status)} ${RESULT_FLAGS(r)}</td></tr>${seeds}`;
  }).join("");
  return `<div class="scroll sticky-table"><table class="grid" id="results-table"><thead><tr><th class="sticky">#</th><th class="sticky2">run</th><th>method</th>
    <th title="main metric, with its 95% confidence interval">${esc(m)} [95% CI]</th><th title="rank group: 1 = cannot be told apart from the best">group</th><th>p vs best</th><th>seeds</th><th>test loss</th>
    <th title="the run's loss minus the base model's on a general reference set (nats/token, 95% CI; 0 for zero-shot, lower is better)">forgetting</th><th>trainable</th><th>train time</th><th>status and flags</th></tr></thead><tbody>${rows}</tbody></table></div>
    <p class="small">One row per method configuration: trained over several seeds, the row is the mean over its seeds and its seeds follow it (↳) with their own values. Group 1: the methods the test set cannot tell apart from the best (paired test on the same test examples, over seeds too, Holm-corrected). Intervals: bootstrap over test examples (and seeds).</p>`;
}

async function renderResults() {
  const name = $("#results-exp").value;
  if (!name) return;
  const q = budgetQuery();
  const lb = await api("GET", `/api/experiments/${encodeURIComponent(name)}/leaderboard${q ? "?" + q : ""}`);
  const rec = lb.recommendation;
  state.resultsLive = !rec.final;
  $("#results-live").textContent = rec.final ? "" : "updating while runs finish…";
  $("#results-new-from").href = `#/new/from/${encodeURIComponent(name)}`;
  const r = $("#recommendation");
  r.classList.toggle("pending", !rec.run);
  const html = rec.html || `<p>${esc(rec.text)}</p>`;
  if (r._html !== html) { r.innerHTML = html; r._html = html; }
  const t = resultsTable(lb);
  if ($("#results-summary")._html !== t) { $("#results-summary").innerHTML = t; $("#results-summary")._html = t; }
  const key = `${lb.fingerprint}|${q}`;
  if (key === state.reportKey) return;
  state.reportKey = key;
  await loadReport($("#report-frame"), `/api/experiments/${encodeURIComponent(name)}/report.html${q ? "?" + q : ""}`, $("#results-fallback"), true);
}

// The report in an iframe; `hideRecommendation`: the page shows the recommendation and the
// leaderboard above already (once is enough: the same rows, from the same API).
async function loadReport(frame, path, fallback, hideRecommendation) {
  try {
    $(".report-loading", frame.parentElement) || frame.insertAdjacentHTML("beforebegin", `<div class="report-loading small">${spinner("rendering the report (BERTScore is computed once per run)…")}</div>`);
    const html = await apiText(path);
    fallback.classList.add("hidden");
    frame.classList.remove("hidden");
    const y = frame.contentWindow ? frame.contentWindow.scrollY : 0;
    frame.onload = () => {
      const doc = frame.contentDocument;
      if (hideRecommendation) {
        for (const id of ["recommendation", "leaderboard"]) {
          const s = doc.getElementById(id);
          if (s) s.style.display = "none";
          const a = doc.querySelector(`nav a[href="#${id}"]`);
          if (a) a.style.display = "none";
        }
      }
      frame.style.height = Math.max(600, doc.documentElement.scrollHeight + 20) + "px";
      if (y) frame.contentWindow.scrollTo(0, y);
      frame.dataset.loaded = "1";
    };
    frame.srcdoc = html;
  } catch (e) {
    state.reportKey = null;
    fallback.classList.remove("hidden");
    fallback.innerHTML = `<div class="error">The report could not be rendered: ${esc(e.message)}</div>`;
  } finally {
    const l = $(".report-loading", frame.parentElement);
    if (l) l.remove();
  }
}

async function renameExperiment() {
  const name = $("#results-exp").value;
  if (!name) return;
  const ok = await confirmDialog(`Rename the experiment ${name}`, `<label>New name <input id="rename-input" type="text" value="${esc(name)}" pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*"></label>
    <p class="small">Its runs, their results and files follow; running or queued runs must finish (or be cancelled) first.</p>`, "Rename", false);
  const next = ok ? $("#rename-input").value : "";
  if (!next || next === name) return;
  try {
    await api("POST", `/api/experiments/${encodeURIComponent(name)}/rename`, { name: next.trim() });
    rememberExp(next.trim());
    toast(`Renamed ${name} to ${next.trim()}`);
    location.hash = `#/results/${encodeURIComponent(next.trim())}`;
    if (state.page === "results") PAGES.results(next.trim());
  } catch (e) { toast(e.message, 8000); }
}

async function deleteExperiment() {
  const name = $("#results-exp").value;
  if (!name || !(await deleteExperimentAsked(name))) return;
  location.hash = "#/results";
  PAGES.results("");
}

// -- Compare -------------------------------------------------------------------------
PAGES.compare = async function pageCompare(arg) {
  state.experiments = await api("GET", "/api/experiments");
  const chosen = new Set((arg || "").split(",").filter(Boolean));
  $("#cmp-exps").innerHTML = state.experiments.map((e) => `<label class="chip"><input type="checkbox" class="cmp-exp" value="${esc(e.name)}" ${chosen.has(e.name) ? "checked" : ""}>${esc(e.name)} <span class="small">${esc(e.task)} · ${e.done || 0}/${e.runs}</span></label>`).join("")
    || '<span class="small">No experiments yet.</span>';
  if (chosen.size) await renderCompare();
};

async function renderCompare() {
  const names = $$(".cmp-exp").filter((c) => c.checked).map((c) => c.value);
  if (!names.length) { toast("Choose one or more experiments"); return; }
  await loadReport($("#cmp-frame"), `/api/compare/report.html?experiments=${encodeURIComponent(names.join(","))}`, $("#cmp-fallback"), false);
}

function wireResults() {
  $("#results-exp").addEventListener("change", () => {
    const name = $("#results-exp").value;
    rememberExp(name);
    history.pushState(null, "", `#/results/${encodeURIComponent(name)}`); // a reload shows this one
    state.reportKey = null;
    renderResults();
  });
  $("#bg-apply").addEventListener("click", () => { state.reportKey = null; renderResults(); });
  ["#bg-mem", "#bg-secs", "#bg-pct", "#bg-forget"].forEach((id) => $(id).addEventListener("keydown", (ev) => { if (ev.key === "Enter") { state.reportKey = null; renderResults(); } }));
  $("#report-open").addEventListener("click", async () => {
    const q = budgetQuery();
    const html = await apiText(`/api/experiments/${encodeURIComponent($("#results-exp").value)}/report.html${q ? "?" + q : ""}`);
    window.open(URL.createObjectURL(new Blob([html], { type: "text/html" })), "_blank");
  });
  $("#results-rename").addEventListener("click", renameExperiment);
  $("#results-delete").addEventListener("click", deleteExperiment);
  $("#cmp-go").addEventListener("click", renderCompare);
}
