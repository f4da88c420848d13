// A model's rollout (docs/experiments.md section 4): its stage, the candidate's weight, what the controller waits
// for, each guard against the latest figures, and Abort for an admin key (with a confirmation).

import { api, session } from "../api.js";
import { DASH, h, num, pct, table, text, when } from "../dom.js";
import { confirmAction, showDone, showError } from "../ui.js";

const READ_ONLY_NOTE = "Read-only key: aborting a rollout needs an admin key.";

/** "shadow only" for the 0 % stage, else the candidate's share. */
function stageWeight(weight) {
  return weight === 0 ? "shadow only (0 %: a copy of every call, no answers)" : `${weight} % of unversioned calls`;
}

function stepsList(rollout) {
  const steps = rollout.plan?.steps || [];
  return h(
    "ol",
    { class: "steps", id: "rollout-steps", "aria-label": "Steps (candidate weight)" },
    steps.map((weight, i) => {
      const state = i < rollout.step ? "done" : i === rollout.step ? "current" : "next";
      return h("li", { class: state, "aria-current": state === "current" ? "step" : null }, weight === 0 ? "shadow" : `${weight} %`);
    }),
  );
}

/**
 * One row per guard of the plan: its limit, the latest figure the controller saw, and whether it holds. A running
 * rollout's guards held at the last check (a failing guard rolls back at once); figures come from `last_check`.
 */
function guardRows(rollout) {
  const guards = rollout.plan?.guards || {};
  const evidence = rollout.last_check?.evidence || {};
  const cand = evidence.candidate || {};
  const ctrl = evidence.control || {};
  const checked = Boolean(rollout.last_check);
  const state = (limitSet, measured) => {
    if (!limitSet) return "off";
    if (!checked) return "not checked yet";
    return measured ? "holding" : "holding (too few samples to judge)";
  };
  const rows = [];
  const errLimit = guards.max_error_rate_increase;
  const errNow = typeof cand.error_rate === "number" && typeof ctrl.error_rate === "number";
  rows.push([
    "Error rate increase",
    errLimit === undefined || errLimit === null ? "off" : `at most +${pct(errLimit, 2)} (with confidence)`,
    errNow ? `${pct(cand.error_rate, 2)} vs control ${pct(ctrl.error_rate, 2)}` : DASH,
    state(errLimit !== undefined && errLimit !== null, errNow),
  ]);
  const ratio = guards.max_latency_ratio;
  const latNow = typeof cand.latency_p99_ms === "number" && typeof ctrl.latency_p99_ms === "number" && ctrl.latency_p99_ms > 0;
  rows.push([
    "p99 latency",
    ratio === undefined || ratio === null ? "off" : `at most ${num(ratio, 2)}\u00d7 control's`,
    latNow ? `${num(cand.latency_p99_ms, 1)} ms vs ${num(ctrl.latency_p99_ms, 1)} ms (${num(cand.latency_p99_ms / ctrl.latency_p99_ms, 2)}\u00d7)` : DASH,
    state(ratio !== undefined && ratio !== null, latNow),
  ]);
  const floor = guards.min_shadow_agreement;
  const agreement = cand.shadow?.agreement;
  rows.push([
    "Shadow agreement",
    floor === undefined || floor === null ? "off" : `at least ${pct(floor, 1)}`,
    typeof agreement === "number" ? pct(agreement, 1) : DASH,
    state(floor !== undefined && floor !== null, typeof agreement === "number"),
  ]);
  return rows;
}

function abortButton(name, rollout, reload) {
  const button = h("button", { type: "button", class: "danger", id: "abort-rollout" }, "Abort rollout");
  button.addEventListener("click", async () => {
    const body = h(
      "div",
      {},
      h("p", {}, `Abort rollout #${rollout.id} of ${name} (v${rollout.candidate} at ${rollout.weight} %)?`),
      h("p", { class: "help" }, `Production goes back to v${rollout.control} and the split and shadow are cleared.`),
    );
    if (!(await confirmAction("Abort the rollout", body, "Abort rollout"))) return;
    try {
      await api.abortRollout(name, rollout.id);
      showDone(`Rollout #${rollout.id} aborted: production is v${rollout.control}, no split`);
      reload();
    } catch (err) {
      showError(err);
    }
  });
  return button;
}

function activePanel(name, rollout, reload) {
  const steps = rollout.plan?.steps || [];
  return h(
    "section",
    { class: "card rollout", id: "rollout", "aria-labelledby": "rollout-title" },
    h("h3", { id: "rollout-title" }, `Rollout #${rollout.id}: v${rollout.candidate} against v${rollout.control}`),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "State"),
      h("dd", { id: "rollout-state" }, rollout.state),
      h("dt", {}, "Stage"),
      h("dd", { id: "rollout-stage" }, `step ${rollout.step + 1} of ${steps.length}: ${stageWeight(rollout.weight)}`),
      h("dt", {}, "Step started"),
      h("dd", {}, when(rollout.step_started_at)),
      h("dt", {}, "Waiting for"),
      h("dd", { id: "rollout-waiting" }, text(rollout.last_check?.waiting_for || (rollout.last_check ? "nothing: deciding" : "the first check"))),
      h("dt", {}, "Started by"),
      h("dd", {}, `${text(rollout.created_by)}, ${when(rollout.created_at)}`),
    ),
    stepsList(rollout),
    h("div", { id: "rollout-guards" }, table("Guards (roll back at once when one fails)", ["Guard", "Limit", "Latest figures", "State"], guardRows(rollout))),
    session.isAdmin ? h("div", { class: "actions" }, abortButton(name, rollout, reload)) : h("p", { class: "help read-only" }, READ_ONLY_NOTE),
  );
}

function endedNote(rollout) {
  return h(
    "p",
    { class: "help", id: "rollout-last" },
    `No rollout running. Last: #${rollout.id}, v${rollout.candidate} against v${rollout.control}, ${rollout.state.replace("_", " ")}`,
    rollout.ended_at ? ` ${when(rollout.ended_at)}` : "",
    rollout.reason ? ` (${rollout.reason})` : "",
    ".",
  );
}

/** The running rollout (at most one per model), else a line on the last one; `rollouts` is newest first. */
export function rolloutPanel(name, rollouts, reload) {
  if (rollouts === null) return h("p", { class: "help", id: "rollout-last" }, "Rollouts could not be read.");
  const running = rollouts.find((r) => r.state === "running");
  if (running) return activePanel(name, running, reload);
  if (rollouts.length) return endedNote(rollouts[0]);
  return h("p", { class: "help", id: "rollout-last" }, "No rollout yet: `modelport rollout start` ramps a candidate step by step.");
}

/** Fetches the model's rollouts; null when they cannot be read (the rest of the page still renders). */
export function loadRollouts(name) {
  return api.rollouts(name).catch((err) => {
    showError(err);
    return null;
  });
}
