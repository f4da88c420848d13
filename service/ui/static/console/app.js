// Entry point: the session badge and the hash router (#/models, #/models/NAME, #/models/NAME/compare).

import { session } from "./api.js";
import { clear } from "./dom.js";
import { hideNotice } from "./ui.js";
import { loginView } from "./views/login.js";
import { modelsView } from "./views/models.js";
import { modelView } from "./views/model.js";
import { compareView } from "./views/compare.js";

const main = document.getElementById("main");
let stopCurrent = () => {};

function renderSession() {
  const box = document.getElementById("session");
  box.hidden = !session.key;
  const role = document.getElementById("role");
  role.textContent = session.isAdmin ? "admin key" : "read-only key";
  role.className = `badge ${session.isAdmin ? "admin" : "read"}`;
}

function route() {
  stopCurrent();
  stopCurrent = () => {};
  renderSession();
  clear(main);
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let view;
  if (!session.key) view = loginView();
  else if (parts[0] === "models" && parts[1] && parts[2] === "compare") view = compareView(parts[1]);
  else if (parts[0] === "models" && parts[1]) view = modelView(parts[1]);
  else view = modelsView();
  main.append(view.node);
  stopCurrent = view.stop || (() => {});
  const heading = main.querySelector("h1");
  if (heading) {
    document.title = `${heading.textContent} \u00b7 modelport`;
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.clear();
  hideNotice();
  location.hash = "#/models";
  route();
});
window.addEventListener("hashchange", () => {
  hideNotice();
  route();
});
window.addEventListener("modelport:signed-out", route);
route();
