// peftlab web pages, shared parts: the API client, formatting, routing, dialogs, charts.
// Plain JS over the REST API (/api, schema at /openapi.json). No build step, nothing from a CDN.
// One file per page (datasets.js, new.js, jobs.js, results.js, playground.js, export.js);
// app.js starts them.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const state = { config: null, datasets: [], methods: [], models: [], experiments: [], timers: [], page: "", colors: {} };
const PAGES = {};

// -- token and API --------------------------------------------------------------
(function takeTokenFromUrl() {
  const q = new URLSearchParams(location.search);
  if (q.get("token")) {
    localStorage.setItem("peftlab-token", q.get("token"));
    q.delete("token");
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : "") + location.hash);
  }
})();

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

function authHeaders() {
  const token = localStorage.getItem("peftlab-token");
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(method, path, body, isForm) {
  const headers = authHeaders();
  let payload;
  if (isForm) payload = body;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const res = await fetch(path, { method, headers, body: payload });
  if (res.status === 401) { $("#token-bar").classList.remove("hidden"); }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { detail: text }; }
  if (!res.ok) {
    let d = data && data.detail;
    if (Array.isArray(d)) d = d.map((x) => `${(x.loc || []).slice(1).join(".")}: ${x.msg}`).join("\n");
    throw new ApiError(res.status, d || res.statusText);
  }
  return data;
}

async function apiText(path) {
  const res = await fetch(path, { headers: authHeaders() });
  if (!res.ok) throw new ApiError(res.status, await res.text());
  return res.text();
}

function toast(msg, ms = 4500) {
  const t = $("#toast");
  t.textContent = msg;
  t.classList.remove("hidden");
  clearTimeout(toast._t);
  toast._t = setTimeout(() => t.classList.add("hidden"), ms);
}
function showError(el, e) {
  el.textContent = e instanceof Error ? e.message : String(e);
  el.classList.remove("hidden");
}
function hideError(el) { el.classList.add("hidden"); el.textContent = ""; }

async function download(path) {
  let url = path;
  if (localStorage.getItem("peftlab-token")) url = (await api("POST", "/api/tickets", { path })).url;
  const a = document.createElement("a");
  a.href = url;
  a.download = "";
  document.body.appendChild(a);
  a.click();
  a.remove();
}
function saveText(name, text, type = "text/yaml") {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
}
async function copyText(text) {
  try { await navigator.clipboard.writeText(text); return true; } catch (e) { /* not a secure context */ }
  const ta = document.createElement("textarea");
  ta.value = text;
  document.body.appendChild(ta);
  ta.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
  ta.remove();
  return ok;
}

// A confirmation that names what will happen; resolves true when confirmed.
function confirmDialog(title, body, action = "Delete", danger = true) {
  return new Promise((resolve) => {
    const m = $("#modal");
    $("#modal-title").textContent = title;
    $("#modal-body").innerHTML = body;
    const ok = $("#modal-ok");
    ok.textContent = action;
    ok.className = danger ? "danger" : "";
    m.classList.remove("hidden");
    const done = (v) => { m.classList.add("hidden"); ok.onclick = null; $("#modal-cancel").onclick = null; resolve(v); };
    ok.onclick = () => done(true);
    $("#modal-cancel").onclick = () => done(false);
    ok.focus();
  });
}

// -- formatting -----------------------------------------------------------------
function fmtNum(v, digits = 2) {
  if (v === null || v === undefined || v === "") return "–";
  if (typeof v !== "number") return esc(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  return Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(digits);
}
function fmtBytes(b) {
  if (b === null || b === undefined) return "–";
  const u = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
}
function fmtSecs(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}
// A share in percent as a person reads it: 100%, 0.52%, 0.0013% (never 1.0e+2%).
function fmtPct(v) {
  if (typeof v !== "number" || !isFinite(v)) return "–";
  if (v === 0) return "0%";
  if (v >= 10) return `${Math.round(v)}%`;
  const digits = Math.max(0, 1 - Math.floor(Math.log10(Math.abs(v)))); // two significant digits
  return `${Number(v.toPrecision(2)).toFixed(digits).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "")}%`;
}
const badge = (s) => `<span class="badge ${esc(s)}">${esc(s)}</span>`;
const trunc = (s, n) => (s && s.length > n ? s.slice(0, n) + "…" : s ?? "");
const short = (p) => (p ? p.split("/").slice(-2).join("/") : "");
const spinner = (text) => `<span class="spinner"></span> ${esc(text)}`;
// One colour per method (the report's, from /api/methods), so charts agree everywhere.
const colorOf = (method) => state.colors[method] || "#7a8494";
const swatch = (method) => `<i class="swatch" style="background:${colorOf(method)}"></i>`;

// -- routing --------------------------------------------------------------------
function route() {
  const [, page = "home", ...rest] = (location.hash || "#/home").split("/");
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.page = page;
  $$(".page").forEach((p) => p.classList.toggle("active", p.id === "page-" + page));
  $$("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  const fn = PAGES[page];
  if (fn) fn(decodeURIComponent(rest.join("/"))).catch((e) => toast(e.message));
}
function every(ms, fn) { state.timers.push(setInterval(() => fn().catch(() => {}), ms)); }

async function fillExperimentSelect(sel, chosen) {
  state.experiments = await api("GET", "/api/experiments");
  const cur = chosen || sel.value || localStorage.getItem("peftlab-exp") || (state.experiments[0] || {}).name || "";
  sel.innerHTML = state.experiments.map((e) => `<option value="${esc(e.name)}">${esc(e.name)} (${e.done || 0}/${e.runs} done)</option>`).join("")
    || '<option value="">no experiments yet</option>';
  if (state.experiments.some((e) => e.name === cur)) sel.value = cur;
  return sel.value;
}
function rememberExp(name) { if (name) localStorage.setItem("peftlab-exp", name); }

async function loadColors() {
  if (Object.keys(state.colors).length) return;
  const ms = await api("GET", "/api/methods");
  ms.forEach((m) => { state.colors[m.name] = m.color; });
}

// -- a small SVG line chart (several series overlaid) -----------------------------
// series: [{label, color, points: [[x, y], ...]}]
function lineChart(series, { width = 640, height = 260, xLabel = "step", yLabel = "", log = false } = {}) {
  const pts = series.flatMap((s) => s.points).filter((p) => isFinite(p[1]) && (!log || p[1] > 0));
  if (!pts.length) return '<div class="small chart-empty">No points yet: the first ones come with the first logged steps.</div>';
  const L = 52, R = 12, T = 10, B = 34;
  const tf = (y) => (log ? Math.log10(y) : y);
  let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...pts.map((p) => tf(p[1]))), y1 = Math.max(...pts.map((p) => tf(p[1])));
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.06;
  y0 -= pad; y1 += pad;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (width - L - R);
  const sy = (y) => T + (1 - (tf(y) - y0) / (y1 - y0)) * (height - T - B);
  const grid = [];
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4, py = T + (1 - i / 4) * (height - T - B);
    const shown = log ? Math.pow(10, yv) : yv;
    grid.push(`<line class="grid" x1="${L}" x2="${width - R}" y1="${py}" y2="${py}"/><text class="tick" x="${L - 6}" y="${py + 4}" text-anchor="end">${shown.toPrecision(3)}</text>`);
  }
  const xt = [...new Set([0, 1, 2, 3, 4].map((i) => Math.round(x0 + ((x1 - x0) * i) / 4)))];
  xt.forEach((xv) => grid.push(`<text class="tick" x="${sx(xv)}" y="${height - B + 16}" text-anchor="middle">${xv}</text>`));
  const lines = series.filter((s) => s.points.length).map((s) => {
    const d = s.points.filter((p) => isFinite(p[1]) && (!log || p[1] > 0)).map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    const last = s.points[s.points.length - 1];
    return `<g class="series" data-series="${esc(s.label)}"><title>${esc(s.label)}</title><polyline points="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 4"' : ""}/>`
      + `<circle cx="${sx(last[0]).toFixed(1)}" cy="${sy(last[1]).toFixed(1)}" r="3" fill="${s.color}"/></g>`;
  }).join("");
  return `<svg class="linechart" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(yLabel)} by ${esc(xLabel)}">
    ${grid.join("")}<rect class="plotarea" x="${L}" y="${T}" width="${width - L - R}" height="${height - T - B}"/>
    ${lines}<text class="alabel" x="${(L + width - R) / 2}" y="${height - 4}" text-anchor="middle">${esc(xLabel)}</text>
    <text class="alabel" x="12" y="${(T + height - B) / 2}" text-anchor="middle" transform="rotate(-90 12 ${(T + height - B) / 2})">${esc(yLabel)}</text></svg>`;
}
function legend(series) {
  return `<div class="legend">${series.map((s) => `<span><i style="background:${s.color}"></i>${esc(s.label)}</span>`).join("")}</div>`;
}
