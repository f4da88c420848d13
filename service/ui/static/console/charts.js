// Hand-rolled SVG line charts (no library): time on x, one line per series, gaps where a bucket has no value.

import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 560;
const H = 200;
const PAD = { left: 52, right: 12, top: 10, bottom: 26 };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  const hm = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  return spanMs > 36 * 3600 * 1000 ? `${d.getMonth() + 1}/${d.getDate()} ${hm}` : hm;
}

/**
 * A chart figure. `series`: [{label, points: [[timeMs, value|null], ...], style: 0..5, dashed}].
 * `format(value)` labels the y axis and the summary read by screen readers.
 */
export function lineChart({ title, series, format = (v) => v.toFixed(2), yMax }) {
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => typeof v === "number");
  const times = series.flatMap((s) => s.points.map((p) => p[0]));
  const id = `chart-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  const figure = h("figure", { class: "chart", "data-chart": id });
  figure.append(h("figcaption", { id: `${id}-title` }, title));
  if (!values.length || !times.length) {
    figure.append(h("p", { class: "empty" }, "No data yet."));
    return figure;
  }
  const t0 = Math.min(...times);
  const t1 = Math.max(...times, t0 + 1);
  const top = yMax ?? niceMax(Math.max(...values));
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (Math.min(v, top) / top) * (H - PAD.top - PAD.bottom);

  const latest = series
    .map((s) => {
      const last = [...s.points].reverse().find((p) => typeof p[1] === "number");
      return last ? `${s.label} ${format(last[1])}` : null;
    })
    .filter(Boolean)
    .join(", ");
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`,
    preserveAspectRatio: "none",
  });
  root.append(svg("desc", { id: `${id}-desc` }, `Latest: ${latest || "none"}.`));
  const grid = svg("g", { class: "grid" });
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    grid.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
    grid.append(svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  for (let i = 0; i <= 3; i += 1) {
    const t = t0 + ((t1 - t0) * i) / 3;
    const anchor = i === 0 ? "start" : i === 3 ? "end" : "middle";
    grid.append(svg("text", { x: x(t), y: H - 6, "text-anchor": anchor }, timeLabel(t, t1 - t0)));
  }
  root.append(grid);
  for (const s of series) {
    let d = "";
    let pen = "M";
    for (const [t, v] of s.points) {
      if (typeof v !== "number") {
        pen = "M";
        continue;
      }
      d += `${pen}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    }
    const cls = `line s${s.style % 6}${s.dashed ? " dashed" : ""}`;
    if (d) root.append(svg("path", { d, class: cls }));
    const single = s.points.filter((p) => typeof p[1] === "number");
    if (single.length === 1) root.append(svg("circle", { cx: x(single[0][0]), cy: y(single[0][1]), r: 3, class: cls }));
  }
  figure.append(root);
  figure.append(
    h(
      "ul",
      { class: "legend" },
      series.map((s) => h("li", {}, h("span", { class: `key s${s.style % 6}${s.dashed ? " dashed" : ""}`, "aria-hidden": "true" }), s.label)),
    ),
  );
  return figure;
}

/** An interval plot for one comparison: the estimate and its interval against a zero line. */
export function intervalBar(interval, difference) {
  if (!Array.isArray(interval) || interval.length !== 2 || !interval.every((v) => typeof v === "number")) return null;
  const [lo, hi] = interval;
  const span = Math.max(Math.abs(lo), Math.abs(hi), Math.abs(difference ?? 0), 1e-9) * 1.1;
  const x = (v) => 50 + (v / span) * 48;
  const root = svg("svg", { viewBox: "0 0 100 14", class: "interval", role: "img", "aria-label": `interval ${lo} to ${hi}` });
  root.append(svg("line", { x1: 50, x2: 50, y1: 0, y2: 14, class: "zero" }));
  root.append(svg("line", { x1: x(lo), x2: x(hi), y1: 7, y2: 7, class: "band" }));
  if (typeof difference === "number") root.append(svg("circle", { cx: x(difference), cy: 7, r: 2.5, class: "estimate" }));
  return root;
}
