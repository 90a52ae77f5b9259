// Jobs: the live chart of an experiment's runs. The loss (train solid, validation dashed) or the
// validation metric the runs score every N steps (the curve `val_<main metric>`), one line per
// run: each run its own shade of its method's colour (the trials and seeds of a method told
// apart), and a toggle per method and per run.
"use strict";

const chartView = { metric: "loss", off: new Set() }; // off: "m:<method>" and "r:<run name>"

// The method's colour, lighter or darker per run: n runs of a method get n shades around it.
function shade(hex, i, n) {
  if (n <= 1 || !/^#[0-9a-f]{6}$/i.test(hex)) return hex;
  const t = -0.45 + (0.9 * i) / (n - 1); // below 0 towards black, above towards white
  const c = [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16));
  const mixed = c.map((v) => Math.round(t < 0 ? v * (1 + t) : v + (255 - v) * t));
  return "#" + mixed.map((v) => v.toString(16).padStart(2, "0")).join("");
}

function runColors(runs) {
  const byMethod = new Map();
  for (const r of runs) { if (!byMethod.has(r.method)) byMethod.set(r.method, []); byMethod.get(r.method).push(r); }
  const out = {};
  for (const [m, rs] of byMethod) rs.forEach((r, i) => { out[r.name] = shade(colorOf(m), i, rs.length); });
  return out;
}

const chip = (key, color, label, title) => `<label class="chip${chartView.off.has(key) ? " off" : ""}" title="${esc(title)}">`
  + `<input type="checkbox" class="chart-toggle" data-key="${esc(key)}"${chartView.off.has(key) ? "" : " checked"}>`
  + `<i class="swatch" style="background:${color}"></i>${esc(label)}</label>`;

async function renderLossChart(exp, runs) {
  const box = $("#jobs-chart");
  if (!exp) { box.innerHTML = '<div class="small">Choose an experiment to follow its runs while they train.</div>'; box._html = null; return; }
  const shown = runs.filter((r) => r.status !== "queued").sort((a, b) => a.id - b.id);
  const now = Date.now();
  await Promise.all(shown.map(async (r) => {
    const c = state.curves[r.id];
    const stale = !c || (r.status === "running" && now - c.at > 2500) || (c.status !== r.status);
    if (!stale) return;
    try { state.curves[r.id] = { at: now, status: r.status, data: await api("GET", `/api/runs/${r.id}/curves`) }; } catch (e) { /* gone */ }
  }));
  const colors = runColors(shown);
  const metricKey = [...new Set(shown.flatMap((r) => Object.keys((state.curves[r.id] || {}).data || {})))].find((k) => k.startsWith("val_"));
  const metric = metricKey ? metricKey.slice(4) : null;
  const onMetric = chartView.metric === "metric";
  const visible = (r) => !chartView.off.has("m:" + r.method) && !chartView.off.has("r:" + r.name);
  const series = [];
  for (const r of shown.filter(visible)) {
    const d = (state.curves[r.id] || {}).data || {};
    const color = colors[r.name];
    if (onMetric) {
      if (metricKey && (d[metricKey] || []).length) series.push({ label: `${r.name} validation ${metric}`, color, points: d[metricKey] });
      continue;
    }
    if (d.train_loss && d.train_loss.length) series.push({ label: `${r.name} train`, color, points: d.train_loss });
    if (d.eval_loss && d.eval_loss.length) series.push({ label: `${r.name} validation`, color, points: d.eval_loss, dashed: true });
  }
  const methods = [...new Set(shown.map((r) => r.method))];
  const switcher = `<span class="chart-metric">`
    + `<label class="radio inline"><input type="radio" name="chart-metric" value="loss"${onMetric ? "" : " checked"}> loss</label>`
    + `<label class="radio inline"><input type="radio" name="chart-metric" value="metric"${onMetric ? " checked" : ""}> validation ${esc(metric || "metric")}</label></span>`;
  const toggles = shown.length ? `<div class="chips chart-methods"><span class="small">Methods:</span>${methods.map((m) => chip("m:" + m, colorOf(m), m, `show or hide every run of ${m}`)).join("")}</div>`
    + `<div class="chips chart-runs"><span class="small">Runs:</span>${shown.map((r) => chip("r:" + r.name, colors[r.name], r.name, `show or hide ${r.name}`)).join("")}</div>` : "";
  const empty = onMetric && !series.length
    ? `<div class="small chart-empty">No validation ${esc(metric || "scores")} yet: a run scores the validation split every N steps when “Validate every” is set for the experiment (tuning trials always do).</div>` : "";
  const title = onMetric ? `Validation ${esc(metric || "metric")} while training` : "Loss while training <span class=\"small\">(train solid, validation dashed)</span>";
  const chart = empty || lineChart(series, { yLabel: onMetric ? metric || "" : "loss", width: 720, height: 240 });
  const html = `<h3>${title}</h3>${switcher}${toggles}${chart}`;
  if (box._html !== html) { box.innerHTML = html; box._html = html; }
}

function wireJobsChart() {
  $("#jobs-chart").addEventListener("change", (ev) => {
    const t = ev.target;
    if (t.name === "chart-metric") chartView.metric = t.value;
    else if (t.classList.contains("chart-toggle")) {
      if (t.checked) chartView.off.delete(t.dataset.key);
      else chartView.off.add(t.dataset.key);
    } else return;
    renderLossChart($("#jobs-exp").value, state.lastRuns || []).catch((e) => toast(e.message));
  });
}
