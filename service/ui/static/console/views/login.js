// Sign in with an API key; the key stays in this tab's sessionStorage and goes only to this server.

import { session, signIn } from "../api.js";
import { h } from "../dom.js";
import { hideNotice, showError } from "../ui.js";

export function loginView() {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    required: true,
    spellcheck: "false",
    "aria-describedby": "api-key-help",
  });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in"),
    h("label", { for: "api-key" }, "API key"),
    input,
    h(
      "p",
      { id: "api-key-help", class: "help" },
      "A read key shows models, splits and statistics; an admin key can also promote, roll back and change splits. ",
      "Create one with ",
      h("code", {}, "modelport token create NAME --scope read"),
      " or use MODELPORT_ADMIN_TOKEN. The key is kept for this tab only.",
    ),
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      const key = input.value.trim();
      const role = await signIn(key);
      session.save(key, role);
      hideNotice();
      if (location.hash.startsWith("#/models")) window.dispatchEvent(new Event("hashchange"));
      else location.hash = "#/models";
    } catch (err) {
      showError(err);
    } finally {
      button.disabled = false;
    }
  });
  return { node: form };
}
