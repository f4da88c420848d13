// All models: production version and split at a glance, filtered by a search box.

import { api } from "../api.js";
import { DASH, clear, h, table, when } from "../dom.js";
import { showError } from "../ui.js";

export function splitText(traffic) {
  return traffic && traffic.length ? traffic.map((s) => `v${s.version} ${s.weight} %`).join(" \u00b7 ") : "none";
}

export function splitBar(traffic) {
  if (!traffic || !traffic.length) return null;
  return h(
    "span",
    { class: "splitbar", "aria-hidden": "true" },
    traffic.map((s, i) => {
      const seg = h("span", { class: `seg s${i % 6}`, title: `v${s.version}: ${s.weight} %` });
      seg.style.flexGrow = String(s.weight); // CSSOM, not a style attribute: allowed by the CSP
      return seg;
    }),
  );
}

export function modelsView() {
  const search = h("input", { id: "model-search", type: "search", placeholder: "name or description" });
  const list = h("div", { id: "models-list", "aria-live": "polite" }, h("p", { class: "empty" }, "Loading\u2026"));
  const node = h(
    "section",
    { "aria-labelledby": "models-title" },
    h("h1", { id: "models-title" }, "Models"),
    h("div", { class: "toolbar" }, h("label", { for: "model-search" }, "Search"), search),
    list,
  );
  let rows = [];
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const shown = rows.filter((r) => !q || r.name.toLowerCase().includes(q) || r.description.toLowerCase().includes(q));
    clear(list).append(
      table(
        `${shown.length} of ${rows.length} models`,
        ["Model", "Description", "Production", "Split", "Versions", "Updated"],
        shown.map((r) => [
          h("a", { href: `#/models/${encodeURIComponent(r.name)}` }, r.name),
          r.description || DASH,
          r.production ? `v${r.production}` : DASH,
          h("span", { class: "split" }, splitBar(r.traffic), splitText(r.traffic)),
          String(r.versions),
          when(r.updated_at),
        ]),
        { empty: rows.length ? "No model matches the search." : "No models registered yet." },
      ),
    );
  };
  search.addEventListener("input", render);
  (async () => {
    const models = await api.models();
    const details = await Promise.all(models.map((m) => api.model(m.name).catch(() => null)));
    rows = models.map((m, i) => ({
      ...m,
      production: details[i]?.aliases?.production,
      traffic: details[i]?.traffic || [],
      versions: details[i]?.versions?.filter((v) => v.status !== "archived").length ?? DASH,
    }));
    render();
  })().catch(showError);
  return { node };
}
