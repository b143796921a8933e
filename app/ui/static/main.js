// Start-up: the four views (switched by the URL fragment) and the token fields.

import { tokens } from "./api.js";
import { initDeadLetters, loadDeadLetters } from "./deadletters.js";
import { loadDeliveries, startDeliveries, stopDeliveries } from "./deliveries.js";
import { initPlayground, loadLists, updateSendButton } from "./playground.js";
import { initTrace } from "./trace.js";

const VIEWS = ["playground", "dead-letters", "deliveries", "trace"];
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
  if (view === "deliveries") startDeliveries();
  else stopDeliveries(); // polls only while shown
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
  if (!$("deliveries").hidden) loadDeliveries();
});
initDeadLetters();
initTrace();
window.addEventListener("hashchange", showView);
showView();
initPlayground();
