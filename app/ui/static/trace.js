// The trace view (admin token): what the relay did with one Adobe event id, a card per delivery
// with its attempts, the body sent and, when asked, whether Zendesk holds it now.
// Uses GET /v1/trace/{event_id}[?verify=true].

import { call, tokens } from "./api.js";
import { badge, el, figure, iso, show } from "./dom.js";
import { renderJson } from "./jsonview.js";

const $ = (id) => document.getElementById(id);

// `verified` as the relay answers it: true, false, or null where it cannot tell
const VERIFIED = new Map([
  [true, { key: "held", text: (vendor) => `held by ${vendor}` }],
  [false, { key: "not-held", text: (vendor) => `not held by ${vendor}` }],
  [null, { key: "unknown", text: () => "cannot tell" }],
]);
const VERIFIED_NOTE = {
  held: "The destination holds the event now.",
  "not-held": "It never arrived, or was deleted since (Zendesk keeps events 90 days to 3 years by plan).",
  unknown: "This destination cannot be read back, or it was a dry run, or the read failed.",
};

let searches = 0; // a slower earlier answer must not replace a later one

export function initTrace() {
  $("tr-form").addEventListener("submit", (event) => {
    event.preventDefault();
    searchTrace();
  });
}

function setState(...parts) {
  show($("tr-state"), ...parts);
}

/** Ask the relay for the trace of the typed event id and draw it. */
export async function searchTrace() {
  const eventId = $("tr-event-id").value.trim();
  if (!eventId) return;
  const verify = $("tr-verify").checked;
  const search = ++searches;
  show($("tr-deliveries"));
  setState(verify ? "Searching, and reading back from Zendesk…" : "Searching…");
  const path = `/v1/trace/${encodeURIComponent(eventId)}${verify ? "?verify=true" : ""}`;
  let answer;
  try {
    answer = await call("GET", path, { token: tokens.admin() });
  } catch {
    if (search === searches) setState("The relay cannot be reached.");
    return;
  }
  if (search !== searches) return;
  if (!answer.ok) {
    setState(problemNotice(answer));
    return;
  }
  const deliveries = answer.data.deliveries;
  setState(
    `${deliveries.length} ${deliveries.length === 1 ? "delivery" : "deliveries"} of `,
    el("code", {}, answer.data.event_id),
    verify ? ", read back from the destinations." : ".",
  );
  show($("tr-deliveries"), ...deliveries.map(card));
}

// A problem document as its title and detail (the code too, for searching the docs).
function problemNotice(answer) {
  const problem = answer.problem;
  if (!problem) return el("p", { className: "problem", role: "alert" }, `The relay answered HTTP ${answer.status}.`);
  const hint = !tokens.admin() && answer.status === 401 ? " Enter the admin token (RELAY_ADMIN_TOKEN) above." : "";
  return el(
    "div",
    { className: "problem", role: "alert" },
    el("strong", {}, problem.title || problem.code || `HTTP ${answer.status}`),
    problem.detail ? `: ${problem.detail}.` : ".",
    hint,
    problem.code ? el("span", { className: "code" }, ` (${problem.code})`) : null,
  );
}

function vendorName(destination) {
  return destination.charAt(0).toUpperCase() + destination.slice(1);
}

function card(delivery) {
  const id = `trace-${delivery.id}`;
  return el(
    "article",
    { className: "trace-card", id, "aria-labelledby": `${id}-title` },
    el("h3", { id: `${id}-title` }, `${delivery.mapping} → ${delivery.destination}`, " ", badge(delivery.status)),
    el(
      "dl",
      { className: "figures" },
      figure("Endpoint", el("code", {}, delivery.endpoint), "endpoint"),
      "verified" in delivery ? verifiedFigure(delivery) : null,
      figure("Delivery id", el("code", {}, delivery.id), "id"),
      figure("Attempts", String(delivery.attempts), "attempts"),
      figure("Stored (UTC)", iso(delivery.created_at), "created"),
      figure("Last change (UTC)", iso(delivery.updated_at), "updated"),
      delivery.next_attempt_at ? figure("Next attempt (UTC)", iso(delivery.next_attempt_at), "next") : null,
    ),
    el("h4", {}, "Attempts"),
    attempts(delivery),
    delivery.last_problem ? lastProblem(delivery.last_problem) : null,
    delivery.response ? collapsible("The destination's answer", delivery.response) : null,
    collapsible("Body sent", delivery.body),
  );
}

function verifiedFigure(delivery) {
  const state = VERIFIED.get(delivery.verified) || VERIFIED.get(null);
  return figure(
    `In ${vendorName(delivery.destination)} now`,
    el("span", { className: `badge verified-${state.key}` }, state.text(vendorName(delivery.destination))),
    "verified",
    VERIFIED_NOTE[state.key],
  );
}

function attempts(delivery) {
  if (!delivery.history.length) return el("p", { className: "muted" }, "No attempt yet.");
  return el(
    "table",
    { className: "letters attempts" },
    el("caption", { className: "visually-hidden" }, `Attempts of delivery ${delivery.id}, oldest first`),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ...["Time (UTC)", "Outcome", "Code", "Upstream status", "Latency (ms)"].map((h) => el("th", { scope: "col" }, h)),
      ),
    ),
    el(
      "tbody",
      {},
      ...delivery.history.map((attempt) =>
        el(
          "tr",
          {},
          el("td", {}, el("time", { dateTime: iso(attempt.at) }, iso(attempt.at))),
          el("td", {}, badge(attempt.outcome)),
          el("td", {}, el("code", {}, attempt.code)),
          el("td", { className: "number" }, attempt.upstream_status ?? "none"),
          el("td", { className: "number" }, attempt.latency_ms === null ? "none" : attempt.latency_ms.toFixed(1)),
        ),
      ),
    ),
  );
}

function lastProblem(problem) {
  return el(
    "div",
    { className: "last-problem" },
    el("h4", {}, "Last problem"),
    el(
      "p",
      { className: "problem" },
      el("strong", {}, problem.code || "error"),
      problem.detail ? `: ${problem.detail}` : "",
    ),
    collapsible("Problem document", problem),
  );
}

// Long JSON stays folded until asked for: a card shows the story, the bodies on request.
function collapsible(title, value) {
  return el("details", { className: "json-block" }, el("summary", {}, title), renderJson(value, [], title));
}
