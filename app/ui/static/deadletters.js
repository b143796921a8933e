// The dead-letter view (admin token): each destination's circuit, the list with filters,
// details, replay and purge. Uses GET /v1/dead-letters[/{id}], POST /v1/dead-letters/{id}/replay,
// POST /v1/dead-letters/replay, DELETE /v1/dead-letters/{id} and GET /v1/deliveries/{id}.

import { call, problemText, tokens } from "./api.js";
import { badge, el, problemBlock, show, utc } from "./dom.js";
import { renderJson } from "./jsonview.js";

const $ = (id) => document.getElementById(id);
const SETTLE_POLL_MS = 200;
const SETTLE_TIMEOUT_MS = 15000;

export function initDeadLetters() {
  $("dl-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDeadLetters();
  });
  $("dl-replay-all").addEventListener("click", replayMatching);
  document.addEventListener("mappings-loaded", (event) => {
    const mappings = event.detail;
    fillOptions($("dl-mapping"), mappings.map((m) => m.name));
    fillOptions($("dl-destination"), [...new Set(mappings.map((m) => m.destination))].sort());
  });
}

function fillOptions(select, values) {
  const current = select.value;
  show(select, el("option", { value: "" }, "Any"), ...values.map((v) => el("option", { value: v }, v)));
  if (values.includes(current)) select.value = current;
}

function filterQuery(withLimit) {
  const query = new URLSearchParams();
  for (const [key, id] of [["destination", "dl-destination"], ["mapping", "dl-mapping"], ["code", "dl-code"]]) {
    const value = $(id).value.trim();
    if (value) query.set(key, value);
  }
  for (const [key, id] of [["since", "dl-since"], ["until", "dl-until"]]) {
    const value = $(id).value;
    if (value) query.set(key, new Date(value).toISOString()); // the input is local time
  }
  if (withLimit) query.set("limit", String(Math.min(1000, Math.max(1, Number($("dl-limit").value) || 100))));
  return query.toString();
}

function setState(...parts) {
  show($("dl-state"), ...parts);
}

/** List the dead letters matching the filters. */
export async function loadDeadLetters() {
  const token = tokens.admin();
  const body = $("dl-table").tBodies[0];
  show($("dl-circuits"));
  if (!token) {
    show(body);
    setState("Enter the admin token (RELAY_ADMIN_TOKEN) above to see dead letters.");
    return;
  }
  let answer;
  try {
    answer = await call("GET", `/v1/dead-letters?${filterQuery(true)}`, { token });
  } catch {
    setState("The relay cannot be reached.");
    return;
  }
  if (!answer.ok) {
    show(body);
    setState(problemText(answer));
    return;
  }
  showCircuits(answer.data.circuits || {});
  const letters = answer.data.dead_letters;
  show(body, ...letters.map(row));
  if (!letters.length) setState("No dead letters match these filters.");
  else if ($("dl-state").dataset.keep !== "1") setState(`${letters.length} dead ${letters.length === 1 ? "letter" : "letters"}.`);
  delete $("dl-state").dataset.keep;
}

const CIRCUIT_TEXT = { closed: "circuit closed", open: "circuit open", half_open: "circuit open, probing" };

// Each destination that sends. An open circuit is why its deliveries wait: it failed several
// times in a row, so the relay sends one probe per interval (and keeps storing events) until
// one succeeds.
function showCircuits(circuits) {
  const items = Object.entries(circuits).sort(([a], [b]) => a.localeCompare(b));
  show(
    $("dl-circuits"),
    ...items.map(([name, circuit]) =>
      el(
        "li",
        { id: `circuit-${name}` },
        el("strong", {}, name),
        " ",
        badge(`circuit-${circuit.state}`, CIRCUIT_TEXT[circuit.state] || circuit.state),
        circuit.state === "closed" ? "" : el("span", { className: "muted" }, ` since ${utc(circuit.since)} UTC: one probe at a time until one succeeds`),
      ),
    ),
  );
}

function row(letter) {
  const problem = letter.last_problem || {};
  const actions = el(
    "td",
    { className: "actions" },
    actionButton("Details", letter.id, () => showDetail(letter.id)),
    actionButton("Replay", letter.id, () => replayOne(letter.id)),
    purgeButton(letter.id),
  );
  return el(
    "tr",
    { id: `letter-${letter.id}` },
    el("td", {}, utc(letter.updated_at)),
    el("td", {}, letter.mapping),
    el("td", {}, letter.destination),
    el("td", {}, el("code", {}, letter.event_id || "")),
    el("td", {}, el("strong", {}, problem.code || ""), problem.detail ? `: ${problem.detail}` : ""),
    el("td", { className: "number" }, String(letter.attempts)),
    actions,
  );
}

function actionButton(label, id, onClick) {
  const button = el("button", { type: "button", "aria-label": `${label} dead letter ${id}` }, label);
  button.addEventListener("click", onClick);
  return button;
}

// Purging cannot be undone: the first press asks, the second purges.
function purgeButton(id) {
  const button = actionButton("Purge", id, async () => {
    if (button.dataset.armed !== "1") {
      button.dataset.armed = "1";
      button.textContent = "Confirm purge";
      button.setAttribute("aria-label", `Confirm purge of dead letter ${id}`);
      button.classList.add("danger");
      return;
    }
    const answer = await call("DELETE", `/v1/dead-letters/${encodeURIComponent(id)}`, { token: tokens.admin() });
    keepState(answer.ok ? `Purged ${id}.` : `Not purged: ${problemText(answer)}`);
    await loadDeadLetters();
  });
  return button;
}

function keepState(...parts) {
  setState(...parts);
  $("dl-state").dataset.keep = "1";
}

async function showDetail(id) {
  const answer = await call("GET", `/v1/dead-letters/${encodeURIComponent(id)}`, { token: tokens.admin() });
  const detail = $("dl-detail");
  if (!answer.ok) {
    show(detail, problemBlock(answer.problem));
    return;
  }
  const letter = answer.data;
  const { upstream, ...problem } = letter.last_problem || {};
  show(
    detail,
    el("h3", {}, `Dead letter ${letter.id}`),
    el("p", {}, `${letter.mapping} → ${letter.destination} · ${letter.endpoint} · ${letter.attempts} attempt(s)`),
    el("h4", {}, "Problem"),
    renderJson(problem, [], "Problem"),
    el("h4", {}, "The destination's answer"),
    upstream ? renderJson(upstream, [], "The destination's answer") : el("p", { className: "muted" }, "No answer (not reached)."),
    el("h4", {}, "Body sent"),
    renderJson(letter.body, [], "Body sent"),
  );
  detail.focus();
}

async function replayOne(id) {
  const token = tokens.admin();
  const answer = await call("POST", `/v1/dead-letters/${encodeURIComponent(id)}/replay`, { token });
  if (!answer.ok) {
    setState(`Not replayed: ${problemText(answer)}`);
    return;
  }
  setState(`Replaying ${id}…`);
  const delivery = await settle(id, token);
  keepState(`Replayed ${id}: `, badge(delivery.status), delivery.last_problem ? ` ${delivery.last_problem.code}` : "");
  await loadDeadLetters();
}

/** Poll the delivery until it is no longer pending or in flight (or the time is up). */
async function settle(id, token) {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    const answer = await call("GET", `/v1/deliveries/${encodeURIComponent(id)}`, { token });
    const status = answer.data?.status;
    if (!answer.ok || !["pending", "in_flight"].includes(status) || Date.now() > deadline) {
      return answer.ok ? answer.data : { status: "unknown" };
    }
    await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
  }
}

async function replayMatching() {
  const answer = await call("POST", `/v1/dead-letters/replay?${filterQuery(false)}`, { token: tokens.admin() });
  keepState(answer.ok ? `Replayed ${answer.data.replayed} dead letter(s).` : `Not replayed: ${problemText(answer)}`);
  await loadDeadLetters();
}
