// Comparison of arms: per-version figures, verdicts against the control, and charts over time, polled.
// Every key may be missing (older servers, no feedback yet): a missing figure shows a dash, a missing
// timeline shows "No data yet".

import { api } from "../api.js";
import { DASH, append, clear, h, num, pct, table, text } from "../dom.js";
import { intervalBar, lineChart } from "../charts.js";
import { poll, showError } from "../ui.js";

const WINDOWS = [
  [900, "15 minutes"],
  [3600, "1 hour"],
  [6 * 3600, "6 hours"],
  [24 * 3600, "24 hours"],
];
const POLL_MS = 3000;
const METRICS = [
  ["error_rate", "Error rate", pct],
  ["accuracy", "Accuracy", pct],
  ["reward", "Reward", (v) => num(v, 3)],
  ["latency_ms", "Latency (ms)", (v) => num(v, 2)],
];

const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : {});

function verdictBadge(verdict) {
  if (!verdict) return DASH;
  const v = String(verdict).toLowerCase();
  const tone = /worse|regress|harm/.test(v) ? "bad" : /better|improv|win/.test(v) ? "good" : "neutral";
  return h("span", { class: `badge verdict ${tone}` }, String(verdict));
}

function figuresTable(stats) {
  const versions = obj(stats.versions);
  const weights = new Map((stats.traffic || []).map((s) => [String(s.version), s.weight]));
  const rows = Object.entries(versions).map(([version, raw]) => {
    const v = obj(raw);
    const lat = obj(v.latency_ms);
    const fb = obj(v.feedback);
    return [
      `v${version}${version === String(stats.control ?? "") ? " (control)" : ""}`,
      weights.has(version) ? `${weights.get(version)} %` : DASH,
      num(v.requests),
      num(v.errors),
      pct(v.error_rate, 2),
      num(lat.p50, 2),
      num(lat.p95, 2),
      num(lat.p99, 2),
      num(fb.count),
      pct(fb.accuracy),
      num(fb.reward_mean, 3),
    ];
  });
  return table(
    "Per version",
    ["Version", "Weight", "Requests", "Errors", "Error rate", "p50 ms", "p95 ms", "p99 ms", "Feedback", "Accuracy", "Reward"],
    rows,
    { empty: "No traffic observed yet: send a few predictions and this fills in." },
  );
}

/** One row per arm and metric; today's flat keys (error_rate_diff, ...) are read too. */
function verdictRows(comparison) {
  const rows = [];
  for (const [arm, raw] of Object.entries(obj(comparison.arms))) {
    const a = obj(raw);
    for (const [key, label, fmt] of METRICS) {
      const m = obj(a[key]);
      if (!Object.keys(m).length && key === "error_rate" && "error_rate_diff" in a) {
        rows.push([`v${arm}`, label, DASH, DASH, pct(a.error_rate_diff, 2), DASH, num(a.error_rate_p_value, 3), DASH, DASH]);
        continue;
      }
      if (!Object.keys(m).length) continue;
      const interval = Array.isArray(m.interval) ? m.interval : null;
      rows.push([
        `v${arm}`,
        label,
        fmt(m.control),
        fmt(m.arm),
        fmt(m.difference),
        h("span", { class: "ci" }, interval ? `[${fmt(interval[0])}, ${fmt(interval[1])}]` : DASH, intervalBar(interval, m.difference)),
        num(m.p_value, 3),
        verdictBadge(m.verdict),
        `${num(m.n_control)} / ${num(m.n_arm)}`,
      ]);
    }
    if (a.note) rows.push([`v${arm}`, DASH, DASH, DASH, DASH, DASH, DASH, text(a.note), DASH]);
  }
  return rows;
}

function points(timeline, pick) {
  const series = new Map();
  for (const point of timeline.points || []) {
    const t = Date.parse(point.at);
    if (Number.isNaN(t)) continue;
    for (const [version, raw] of Object.entries(obj(point.versions))) {
      if (!series.has(version)) series.set(version, []);
      const value = pick(obj(raw));
      series.get(version).push([t, typeof value === "number" && Number.isFinite(value) ? value : null]);
    }
  }
  return series;
}

function chartsFor(timeline) {
  const t = obj(timeline);
  const versions = [...new Set((t.points || []).flatMap((p) => Object.keys(obj(p.versions))))].sort();
  const style = (v) => Math.max(0, versions.indexOf(v));
  const simple = (pick) => [...points(t, pick)].map(([v, pts]) => ({ label: `v${v}`, points: pts, style: style(v) }));
  const latency = [
    ...[...points(t, (v) => obj(v.latency_ms).p50)].map(([v, pts]) => ({ label: `v${v} p50`, points: pts, style: style(v) })),
    ...[...points(t, (v) => obj(v.latency_ms).p99)].map(([v, pts]) => ({ label: `v${v} p99`, points: pts, style: style(v), dashed: true })),
  ];
  const rate = (v) => (v.requests > 0 && typeof v.errors === "number" ? v.errors / v.requests : typeof v.error_rate === "number" ? v.error_rate : null);
  const charts = [
    lineChart({ title: "Requests per bucket", series: simple((v) => v.requests), format: (v) => v.toFixed(0) }),
    lineChart({ title: "Error rate", series: simple(rate), format: (v) => `${(v * 100).toFixed(1)}%` }),
    lineChart({ title: "Latency p50 / p99 (ms)", series: latency, format: (v) => v.toFixed(1) }),
  ];
  const accuracy = simple((v) => obj(v.feedback).accuracy);
  if (accuracy.some((s) => s.points.some((p) => p[1] !== null))) {
    charts.push(lineChart({ title: "Accuracy", series: accuracy, format: (v) => `${(v * 100).toFixed(0)}%`, yMax: 1 }));
  }
  const reward = simple((v) => obj(v.feedback).reward_mean);
  if (reward.some((s) => s.points.some((p) => p[1] !== null))) {
    charts.push(lineChart({ title: "Reward", series: reward, format: (v) => v.toFixed(2) }));
  }
  return charts;
}

export function compareView(name) {
  const choose = h("select", { id: "window" }, WINDOWS.map(([s, label]) => h("option", { value: s, selected: s === 3600 }, label)));
  const updated = h("span", { id: "updated", class: "help" }, "");
  const summary = h("div", { id: "compare-summary" });
  const figures = h("div", { id: "figures" }, h("p", { class: "empty" }, "Loading\u2026"));
  const verdicts = h("div", { id: "verdicts" });
  const charts = h("div", { id: "charts", class: "charts" });
  const node = h(
    "section",
    { "aria-labelledby": "model-title" },
    h("p", { class: "crumbs" }, h("a", { href: "#/models" }, "Models"), " / "),
    h("h1", { id: "model-title" }, name),
    h("nav", { class: "tabs", "aria-label": "Model views" }, h("a", { href: `#/models/${encodeURIComponent(name)}` }, "Overview"), h("a", { href: `#/models/${encodeURIComponent(name)}/compare`, "aria-current": "page" }, "Compare arms")),
    h("div", { class: "toolbar" }, h("label", { for: "window" }, "Window"), choose, updated),
    summary,
    h("h2", {}, "Figures"),
    figures,
    h("h2", {}, "Verdicts against the control"),
    verdicts,
    h("h2", {}, "Over time"),
    charts,
  );
  const tick = async () => {
    const windowS = Number(choose.value);
    const stats = obj(await api.stats(name, windowS, Math.max(10, Math.round(windowS / 60))));
    const comparison = obj(stats.comparison);
    const control = stats.control ?? comparison.control;
    const alpha = stats.alpha ?? comparison.alpha;
    clear(summary).append(
      h(
        "p",
        {},
        "Control: ",
        h("strong", { id: "control" }, control ? `v${control}` : DASH),
        " \u2014 the first arm of the split, which every other arm is compared against. Significance level \u03b1 = ",
        num(alpha, 2),
        ". Split: ",
        (stats.traffic || []).length ? stats.traffic.map((s) => `v${s.version} ${s.weight} %`).join(" \u00b7 ") : "none",
        stats.shadow && stats.shadow.version ? `; shadow v${stats.shadow.version} at ${num(stats.shadow.percent)} %` : "",
        ".",
      ),
    );
    clear(figures).append(figuresTable(stats));
    clear(verdicts).append(
      table("Arms against the control", ["Arm", "Metric", "Control", "Arm value", "Difference", "Interval", "p", "Verdict", "n (control / arm)"], verdictRows(comparison), {
        empty: "No comparison yet: it needs a split with at least two arms and traffic on both.",
      }),
    );
    const timeline = obj(stats.timeline);
    append(
      clear(charts),
      Array.isArray(timeline.points) && timeline.points.length
        ? chartsFor(timeline)
        : [h("p", { class: "empty", id: "no-timeline" }, "No data yet: the server has not reported figures over time.")],
    );
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${POLL_MS / 1000} s.`;
  };
  let stop = poll(tick, POLL_MS);
  choose.addEventListener("change", () => {
    stop();
    stop = poll(tick, POLL_MS);
  });
  return { node, stop: () => stop() };
}
