// One model: routing (aliases, split, shadow), the changes an admin key may make, versions and the audit trail.

import { api, session } from "../api.js";
import { DASH, bytes, clear, h, table, text, when } from "../dom.js";
import { confirmAction, showDone, showError } from "../ui.js";
import { splitBar, splitText } from "./models.js";
import { loadRollouts, rolloutPanel } from "./rollout.js";

const READ_ONLY_NOTE = "Read-only key: promoting, rolling back and changing the split need an admin key.";

function cardDetails(card) {
  const entries = Object.entries(card || {});
  if (!entries.length) return DASH;
  return h(
    "details",
    { class: "card-details" },
    h("summary", {}, card.summary ? String(card.summary).slice(0, 60) : `${entries.length} fields`),
    h(
      "dl",
      {},
      entries.map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))]),
    ),
  );
}

function versionsTable(versions) {
  return table(
    "Versions",
    ["Version", "Status", "Backend", "Architecture", "Size", "sha256", "Created", "Created by", "Card"],
    versions.map((v) => [
      `v${v.version}`,
      text(v.status),
      text(v.backend),
      text(v.architecture),
      bytes(v.size_bytes),
      h("code", { class: "sha", title: v.sha256 || "" }, v.sha256 ? `${v.sha256.slice(0, 12)}\u2026` : DASH),
      when(v.created_at),
      text(v.created_by),
      cardDetails(v.card),
    ]),
    { empty: "No versions registered yet." },
  );
}

function auditTable(entries) {
  return table(
    "Audit trail (newest first)",
    ["When", "Who", "Action", "Target", "Details"],
    entries.map((a) => [when(a.at), text(a.actor), text(a.action), text(a.target), h("code", {}, JSON.stringify(a.details || {}))]),
    { empty: "No changes recorded for this model.", rowHeader: true },
  );
}

/** Disables every control of a form for a read key and says why, so a refusal never comes as a surprise. */
function guard(form) {
  if (session.isAdmin) return form;
  for (const el of form.querySelectorAll("input, select, button")) el.disabled = true;
  form.append(h("p", { class: "help read-only" }, READ_ONLY_NOTE));
  return form;
}

function aliasForm(name, detail, reload) {
  const active = detail.versions.filter((v) => v.status !== "archived");
  const alias = h("input", { id: "alias-name", value: "production", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9._-]{0,63}" });
  const version = h(
    "select",
    { id: "alias-version" },
    active.map((v) => h("option", { value: v.version, selected: v.version === detail.aliases.production }, `v${v.version}`)),
  );
  const form = h(
    "form",
    { class: "card", id: "alias-form", "aria-labelledby": "alias-title" },
    h("h3", { id: "alias-title" }, "Promote or roll back"),
    h("div", { class: "row" }, h("label", { for: "alias-name" }, "Alias"), alias),
    h("div", { class: "row" }, h("label", { for: "alias-version" }, "Version"), version),
    h("button", { type: "submit" }, "Point alias"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const current = detail.aliases[alias.value];
    const body = h(
      "div",
      {},
      h("p", {}, `Point "${alias.value}" of ${name} at v${version.value}${current ? ` (now v${current})` : ""}?`),
      detail.traffic.length && alias.value === "production"
        ? h("p", { class: "help" }, `While the split (${splitText(detail.traffic)}) exists it decides unversioned calls.`)
        : null,
    );
    if (!(await confirmAction("Point alias", body, "Point alias"))) return;
    try {
      await api.setAlias(name, alias.value, version.value);
      showDone(`${alias.value} \u2192 v${version.value}`);
      reload();
    } catch (err) {
      showError(err);
    }
  });
  return guard(form);
}

function splitForm(name, detail, reload) {
  const active = detail.versions.filter((v) => v.status !== "archived");
  const weights = new Map(detail.traffic.map((s) => [s.version, s.weight]));
  const inputs = active.map((v) =>
    h("input", { id: `weight-${v.version}`, type: "number", min: "0", max: "100", step: "1", value: weights.get(v.version) ?? 0, "data-version": v.version }),
  );
  const total = h("output", { id: "split-total", for: inputs.map((i) => i.id).join(" ") });
  const sum = () => inputs.reduce((acc, i) => acc + (Number.parseInt(i.value, 10) || 0), 0);
  const showTotal = () => {
    total.textContent = `Total ${sum()} % (must be 100)`;
    total.classList.toggle("bad", sum() !== 100);
  };
  for (const i of inputs) i.addEventListener("input", showTotal);
  showTotal();
  const clearButton = h("button", { type: "button", class: "secondary", id: "clear-split", disabled: !detail.traffic.length }, "Clear split");
  const form = h(
    "form",
    { class: "card", id: "split-form", "aria-labelledby": "split-title" },
    h("h3", { id: "split-title" }, "Traffic split"),
    h("p", { class: "help" }, "Percent of unversioned calls per version; 0 leaves a version out."),
    active.map((v, i) => h("div", { class: "row" }, h("label", { for: inputs[i].id }, `v${v.version}`), inputs[i], " %")),
    h("p", {}, total),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "apply-split" }, "Apply split"), clearButton),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const splits = inputs
      .map((i) => ({ version: i.dataset.version, weight: Number.parseInt(i.value, 10) || 0 }))
      .filter((s) => s.weight > 0);
    if (sum() !== 100) {
      showError(new Error(`the weights add up to ${sum()} %, not 100 %`));
      return;
    }
    const body = h("p", {}, `Route unversioned calls to ${name} as ${splitText(splits)} (now: ${splitText(detail.traffic)})?`);
    if (!(await confirmAction("Change the split", body, "Apply split"))) return;
    try {
      await api.setSplit(name, splits);
      showDone(`Split set: ${splitText(splits)}`);
      reload();
    } catch (err) {
      showError(err);
    }
  });
  clearButton.addEventListener("click", async () => {
    const body = h("p", {}, `Remove the split of ${name}? Unversioned calls then follow "production" (v${detail.aliases.production ?? DASH}).`);
    if (!(await confirmAction("Clear the split", body, "Clear split"))) return;
    try {
      await api.clearSplit(name);
      showDone("Split cleared");
      reload();
    } catch (err) {
      showError(err);
    }
  });
  return guard(form);
}

function aliasesTable(name, aliases, reload) {
  return table(
    "Aliases",
    ["Alias", "Version", ""],
    Object.entries(aliases).map(([alias, version]) => {
      const remove = h("button", { type: "button", class: "secondary small", disabled: !session.isAdmin, "aria-label": `Remove alias ${alias}` }, "Remove");
      remove.addEventListener("click", async () => {
        if (!(await confirmAction("Remove alias", `Remove "${alias}" (v${version}) from ${name}?`, "Remove alias"))) return;
        try {
          await api.removeAlias(name, alias);
          showDone(`Alias ${alias} removed`);
          reload();
        } catch (err) {
          showError(err);
        }
      });
      return [alias, `v${version}`, remove];
    }),
    { empty: "No aliases: unversioned calls get 404 unless a split is set." },
  );
}

export function modelView(name) {
  const body = h("div", { id: "model-body" }, h("p", { class: "empty" }, "Loading\u2026"));
  const node = h(
    "section",
    { "aria-labelledby": "model-title" },
    h("p", { class: "crumbs" }, h("a", { href: "#/models" }, "Models"), " / "),
    h("h1", { id: "model-title" }, name),
    h("nav", { class: "tabs", "aria-label": "Model views" }, h("a", { href: `#/models/${encodeURIComponent(name)}`, "aria-current": "page" }, "Overview"), h("a", { href: `#/models/${encodeURIComponent(name)}/compare` }, "Compare arms")),
    body,
  );
  const load = async () => {
    const [detail, audit, stats, rollouts] = await Promise.all([
      api.model(name),
      api.audit(name),
      api.stats(name, 3600, 60).catch(() => null),
      loadRollouts(name),
    ]);
    const shadow = stats?.shadow;
    clear(body).append(
      h("p", { class: "lead" }, detail.model.description || ""),
      h(
        "dl",
        { class: "facts", id: "routing-facts" },
        h("dt", {}, "Production"),
        h("dd", { id: "fact-production" }, detail.aliases.production ? `v${detail.aliases.production}` : "none"),
        h("dt", {}, "Split"),
        h("dd", { id: "fact-split" }, splitBar(detail.traffic), splitText(detail.traffic)),
        h("dt", {}, "Shadow"),
        h("dd", { id: "fact-shadow" }, shadow && shadow.version ? `v${shadow.version} mirrors ${shadow.percent ?? DASH} % (answers discarded)` : "none"),
        h("dt", {}, "Unversioned calls go to"),
        h("dd", {}, detail.traffic.length ? "the split" : detail.aliases.production ? "production" : "nowhere (404)"),
      ),
      h("h2", {}, "Rollout"),
      rolloutPanel(name, rollouts, load),
      h("div", { class: "grid2" }, aliasForm(name, detail, load), splitForm(name, detail, load)),
      h("h2", {}, "Aliases"),
      aliasesTable(name, detail.aliases, load),
      h("h2", {}, "Versions"),
      versionsTable(detail.versions),
      h("h2", {}, "Audit trail"),
      auditTable(audit),
    );
  };
  load().catch(showError);
  return { node };
}
