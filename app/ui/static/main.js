// Start-up: the two views (switched by the URL fragment) and the token fields.

import { tokens } from "./api.js";
import { initDeadLetters, loadDeadLetters } from "./deadletters.js";
import { initPlayground, loadLists, updateSendButton } from "./playground.js";

const VIEWS = ["playground", "dead-letters"];
const $ = (id) => document.getElementById(id);

function showView() {
  const wanted = location.hash.slice(1);
  const view = VIEWS.includes(wanted) ? wanted : "playground";
  for (const name of VIEWS) {
    $(name).hidden = name !== view;
    const tab = $(`tab-${name}`);
    if (name === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (view === "dead-letters") loadDeadLetters();
}

function bindToken(kind, onChange) {
  const input = $(`${kind}-token`);
  input.value = tokens[kind]();
  let timer = null;
  input.addEventListener("input", () => {
    tokens.set(kind, input.value);
    clearTimeout(timer);
    timer = setTimeout(onChange, 300);
  });
}

$("tokens").addEventListener("submit", (event) => event.preventDefault());
bindToken("ingest", () => {
  updateSendButton();
  loadLists();
});
bindToken("admin", () => {
  if (!$("dead-letters").hidden) loadDeadLetters();
});
initDeadLetters();
window.addEventListener("hashchange", showView);
showView();
initPlayground();
