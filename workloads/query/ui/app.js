// Tributary's dashboard page: the project's dashboards, each insight drawn
// as a chart (trends as SVG lines, funnels as bars, retention as a shaded
// grid). The API key stays in this tab's sessionStorage and travels only in
// the X-API-Key header. No library: the charts are a few SVG elements.
"use strict";

const KEY = "tributary.key";
const COLORS = ["#2f6fde", "#e8710a", "#1e8e3e", "#d01884", "#9334e6", "#12b5cb", "#f9ab00", "#5f6368"];
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

let dashboards = [];
let current = null;
// The tiles last drawn, drawn again at a new width.
let shown = [];

function key() { return sessionStorage.getItem(KEY); }

async function api(method, path, body) {
  const init = { method, headers: { "X-API-Key": key() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    const e = new Error((data && data.message) || `${method} ${path}: ${r.status}`);
    e.status = r.status;
    e.field = data && data.field;
    throw e;
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function say(text) { $("message").textContent = text || ""; }

function showKeyForm() {
  $("key-form").hidden = false;
  $("board").hidden = true;
  $("forget").hidden = true;
  $("dashboards").replaceChildren();
}

async function start() {
  if (!key()) return showKeyForm();
  $("key-form").hidden = true;
  $("forget").hidden = false;
  try {
    dashboards = (await api("GET", "/api/dashboards")).dashboards;
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(KEY);
      showKeyForm();
    }
    return say(e.message);
  }
  say(dashboards.length ? "" : "This project has no dashboards yet.");
  const wanted = Number(new URLSearchParams(location.hash.slice(1)).get("dashboard"));
  const pick = dashboards.find((d) => d.id === wanted) || dashboards[0];
  drawNav(pick);
  if (pick) await open(pick.id, false);
}

function drawNav(active) {
  $("dashboards").replaceChildren(...dashboards.map((d) => {
    const a = el("a", { href: `#dashboard=${d.id}` }, d.name);
    if (active && d.id === active.id) a.setAttribute("aria-current", "page");
    return a;
  }));
}

async function open(id, refresh) {
  current = dashboards.find((d) => d.id === id);
  drawNav(current);
  $("board").hidden = false;
  $("title").textContent = current.name;
  const tiles = $("tiles");
  tiles.replaceChildren(el("p", {}, "Loading…"));
  let answer;
  try {
    answer = await api("GET", `/api/dashboards/${id}/results${refresh ? "?refresh=true" : ""}`);
  } catch (e) {
    return say(e.message);
  }
  const range = $("range").value;
  const interval = $("interval").value;
  const results = await Promise.all(answer.results.map(async (r) => {
    if (!r.insight || (!range && !interval) || r.error) return r;
    // The picked range or interval instead of the saved ones.
    const q = { ...r.insight.query };
    if (range) { q.date_from = range; delete q.date_to; }
    if (interval && r.insight.kind === "trend") q.interval = interval;
    try {
      return { ...r, result: await api("POST", `/api/query/${r.insight.kind}${refresh ? "?refresh=true" : ""}`, q) };
    } catch (e) {
      return { ...r, result: null, error: { message: e.message } };
    }
  }));
  shown = results;
  tiles.replaceChildren(...results.map(drawTile));
}

function drawTile(r) {
  const tile = el("article", { class: "tile", "data-insight": r.tile.insight_id, "data-kind": r.insight ? r.insight.kind : "" });
  tile.style.gridColumn = `span ${r.tile.width}`;
  tile.append(el("h3", {}, r.insight ? r.insight.name : "(deleted insight)"));
  if (r.error) {
    tile.append(el("p", { class: "error" }, r.error.message));
    return tile;
  }
  const computed = r.result.computed_at ? new Date(r.result.computed_at).toLocaleString() : "";
  tile.append(el("div", { class: "meta" }, `${r.result.cached ? "cached, " : ""}computed ${computed}`));
  const draw = { trend: drawTrend, funnel: drawFunnel, retention: drawRetention }[r.insight.kind];
  // Charts are drawn at about the width they get, so their text keeps its size.
  const columns = window.innerWidth <= 700 ? 12 : r.tile.width;
  const width = Math.max(280, Math.round((Math.min(window.innerWidth, 1400) * columns) / 12) - 60);
  tile.append(draw(r.result, width));
  return tile;
}

function lineLabel(line) {
  if (line.other) return "other";
  if (line.breakdown_value !== undefined && line.breakdown_value !== null) return String(line.breakdown_value);
  return `${line.event} (${line.math})`;
}

function drawTrend(a, W) {
  const H = 240, L = 40, B = 24, T = 8, R = 12;
  const lines = a.results || [];
  const max = Math.max(1, ...lines.flatMap((l) => l.data));
  const n = Math.max(1, a.buckets.length - 1);
  const x = (i) => L + (i * (W - L - R)) / n;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "trend" });
  for (const f of [0, 0.5, 1]) {
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), stroke: "#d9dde5" }));
    const t = svg("text", { x: L - 4, y: y(max * f) + 4, "text-anchor": "end", "font-size": 10, fill: "#5b6475" });
    t.textContent = Number.isInteger(max * f) ? max * f : (max * f).toFixed(1);
    chart.append(t);
  }
  // Every bucket labelled while they fit, else about one label per 70 px.
  const every = Math.max(1, Math.ceil(a.buckets.length / Math.max(2, Math.floor((W - L) / 70))));
  for (let i = 0; i < a.buckets.length; i += every) {
    const anchor = i === 0 ? "start" : i === a.buckets.length - 1 ? "end" : "middle";
    const t = svg("text", { x: x(i), y: H - 6, "text-anchor": anchor, "font-size": 10, fill: "#5b6475" });
    t.textContent = a.interval === "hour" ? a.buckets[i].slice(5, 16).replace("T", " ") : a.buckets[i].slice(5, 10);
    chart.append(t);
  }
  const legend = el("ul", { class: "legend" });
  lines.forEach((line, s) => {
    const color = COLORS[s % COLORS.length];
    const label = lineLabel(line);
    const points = line.data.map((v, i) => `${x(i)},${y(v)}`).join(" ");
    const g = svg("g", { "data-series": label });
    g.append(svg("polyline", { points, fill: "none", stroke: color, "stroke-width": 2 }));
    line.data.forEach((v, i) => {
      const c = svg("circle", { cx: x(i), cy: y(v), r: 2.5, fill: color, "data-value": v, "data-bucket": a.buckets[i] });
      const tip = svg("title", {});
      tip.textContent = `${label} ${a.buckets[i]}: ${v}`;
      c.append(tip);
      g.append(c);
    });
    chart.append(g);
    const total = line.data.reduce((p, v) => p + v, 0);
    // Styles are set through the DOM: the page's policy refuses style
    // attributes.
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = color;
    legend.append(el("li", { "data-series": label, "data-total": total }, swatch, `${label}: ${total}`));
  });
  const box = el("div", {});
  box.append(chart, legend);
  return box;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${seconds.toFixed(0)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function drawFunnel(a) {
  const box = el("div", { class: "funnel" });
  const first = Math.max(1, a.steps.length ? a.steps[0].count : 1);
  for (const s of a.steps) {
    const pct = (100 * s.conversion_from_first).toFixed(1);
    const median = s.step > 0 && s.median_time_to_convert_seconds !== null
      ? ` · median ${duration(s.median_time_to_convert_seconds)}` : "";
    const bar = el("div", { class: "bar", "data-count": s.count });
    bar.style.width = `${(100 * s.count) / first}%`;
    box.append(el("div", { class: "step", "data-step": s.step, "data-count": s.count, "data-percent": pct },
      el("div", { class: "label" }, `${s.step + 1}. ${s.event}: ${s.count} (${pct}%)${median}`), bar));
  }
  return box;
}

function drawRetention(a) {
  const periods = Math.max(0, ...a.cohorts.map((c) => c.values.length));
  const table = el("table", { class: "retention" });
  const head = el("tr", {}, el("th", {}, "cohort"), el("th", {}, "users"));
  for (let p = 0; p < periods; p++) head.append(el("th", {}, `${a.period} ${p}`));
  table.append(head);
  for (const c of a.cohorts) {
    const row = el("tr", {}, el("th", {}, c.date), el("td", {}, String(c.size)));
    for (let p = 0; p < periods; p++) {
      const v = c.values[p];
      const pct = c.size && v !== undefined ? (100 * v) / c.size : 0;
      const cell = el("td", { "data-value": v === undefined ? "" : v }, v === undefined ? "" : `${pct.toFixed(0)}%`);
      cell.style.background = `rgba(47,111,222,${(pct / 100) * 0.85})`;
      if (pct > 55) cell.style.color = "#fff";
      row.append(cell);
    }
    table.append(row);
  }
  // A wide grid scrolls inside its tile, not the page.
  return el("div", { class: "scroll" }, table);
}

async function saveInsight(event) {
  event.preventDefault();
  const f = event.target;
  const events = f.events.value.split(",").map((s) => s.trim()).filter(Boolean);
  const kind = f.kind.value;
  const query = kind === "trend"
    ? { series: events.map((e) => ({ event: e })), date_from: f.date_from.value, interval: f.interval.value }
    : { steps: events.map((e) => ({ event: e })), date_from: f.date_from.value };
  $("form-error").textContent = "";
  try {
    const insight = await api("POST", "/api/insights", { name: f.name.value, kind, query });
    const tiles = [...current.tiles, { insight_id: insight.id, width: 6, height: 4 }];
    const updated = await api("PATCH", `/api/dashboards/${current.id}`, { tiles });
    dashboards = dashboards.map((d) => (d.id === updated.id ? updated : d));
    f.reset();
    $("new-insight").open = false;
    await open(updated.id, false);
  } catch (e) {
    $("form-error").textContent = e.field ? `${e.field}: ${e.message}` : e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    start();
  });
  $("forget").addEventListener("click", () => { sessionStorage.removeItem(KEY); showKeyForm(); });
  $("refresh").addEventListener("click", () => current && open(current.id, true));
  $("range").addEventListener("change", () => current && open(current.id, false));
  $("interval").addEventListener("change", () => current && open(current.id, false));
  $("insight-form").addEventListener("submit", saveInsight);
  let drawnAt = window.innerWidth;
  window.addEventListener("resize", () => {
    if (Math.abs(window.innerWidth - drawnAt) < 40) return;
    drawnAt = window.innerWidth;
    requestAnimationFrame(() => $("tiles").replaceChildren(...shown.map(drawTile)));
  });
  window.addEventListener("hashchange", () => {
    const id = Number(new URLSearchParams(location.hash.slice(1)).get("dashboard"));
    if (dashboards.some((d) => d.id === id)) open(id, false);
  });
  start();
});
