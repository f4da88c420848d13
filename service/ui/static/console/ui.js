// Shared by the views: notices, the confirmation dialog and polling.

import { ApiError, session } from "./api.js";
import { clear, h } from "./dom.js";

const notice = () => document.getElementById("notice");

/** Shown in the alert region: a refused action says why (403: the key lacks the admin scope). */
export function showError(err) {
  let message = err instanceof Error ? err.message : String(err);
  if (err instanceof ApiError && err.status === 403) message = `Refused (403): ${message}. Sign in with an admin key to change routing.`;
  else if (err instanceof ApiError && err.status === 401) message = `Not signed in (401): ${message}`;
  else if (err instanceof ApiError) message = `Error ${err.status}: ${message}`;
  notice().className = "notice error";
  notice().textContent = message;
  notice().hidden = false;
  if (err instanceof ApiError && err.status === 401) {
    session.clear();
    window.dispatchEvent(new Event("modelport:signed-out"));
  }
}

export function showDone(message) {
  notice().className = "notice ok";
  notice().textContent = message;
  notice().hidden = false;
}

export function announce(message) {
  document.getElementById("status").textContent = message;
}

export function hideNotice() {
  notice().hidden = true;
}

/** Resolves true when the operator confirms; `body` is a node or text describing exactly what will change. */
export function confirmAction(title, body, okLabel = "Confirm") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  clear(document.getElementById("confirm-body")).append(body instanceof Node ? body : h("p", {}, body));
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** Calls `tick` now and every `ms` while the view is shown and the tab visible; returns the stopper. */
export function poll(tick, ms) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    if (!document.hidden) await tick().catch(showError);
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

