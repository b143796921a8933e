// The playground view: a payload and a mapping in, the relay's preview out, live.
// Uses GET /v1/mappings[/{name}], GET /v1/samples[/{name}], POST /v1/preview,
// POST /v1/preview/draft and POST /v1/events[/{mapping}]?wait=N.

import { call, problemText, tokens } from "./api.js";
import { badge, el, problemBlock, show } from "./dom.js";
import { renderJson } from "./jsonview.js";

const PREVIEW_DELAY_MS = 250;
const $ = (id) => document.getElementById(id);

const state = {
  served: "", // the YAML text of the selected mapping as the relay serves it
  file: null, // its file name
  open: false, // the relay answered without a token (RELAY_ALLOW_UNAUTHENTICATED)
  timer: null,
  controller: null,
  mappings: [],
};

export function initPlayground() {
  $("mapping").addEventListener("change", selectMapping);
  $("sample").addEventListener("change", selectSample);
  $("payload").addEventListener("input", schedulePreview);
  $("yaml").addEventListener("input", () => {
    drawGutter([]);
    markDraft();
    schedulePreview();
  });
  $("yaml").addEventListener("scroll", () => {
    $("gutter").scrollTop = $("yaml").scrollTop;
  });
  $("yaml").addEventListener("keydown", indentWithTab);
  $("copy-yaml").addEventListener("click", copyYaml);
  $("reset-yaml").addEventListener("click", () => {
    $("yaml").value = state.served;
    drawGutter([]);
    markDraft();
    schedulePreview();
  });
  $("send").addEventListener("click", send);
  return loadLists();
}

/** (Re)load the mappings and samples; called at start and when the ingest token changes. */
export async function loadLists() {
  const token = tokens.ingest();
  let mappings, samples;
  try {
    [mappings, samples] = await Promise.all([
      call("GET", "/v1/mappings", { token }),
      call("GET", "/v1/samples", { token }),
    ]);
  } catch {
    setPreviewState("The relay cannot be reached.");
    return;
  }
  state.open = mappings.ok && !token;
  updateSendButton();
  if (!mappings.ok) {
    const hint = mappings.status === 401 ? " Enter an ingest token above." : "";
    show($("results"), problemBlock(mappings.problem));
    setPreviewState(`Cannot list the mappings.${hint}`);
    return;
  }
  state.mappings = mappings.data.mappings;
  fillSelect($("mapping"), "All mappings", state.mappings.map((m) => [m.name, `${m.name} → ${m.destination}`]));
  const sampleList = samples.ok ? samples.data.samples : [];
  fillSelect(
    $("sample"),
    "Choose a sample…",
    sampleList.map((s) => [s.name, s.event_types.length ? `${s.name} (${s.event_types.join(", ")})` : s.name]),
  );
  document.dispatchEvent(new CustomEvent("mappings-loaded", { detail: state.mappings }));
  if ($("mapping").value && !$("yaml").value) await selectMapping();
  else schedulePreview();
}

function fillSelect(select, emptyLabel, options) {
  const current = select.value;
  show(select, el("option", { value: "" }, emptyLabel), ...options.map(([value, label]) => el("option", { value }, label)));
  if (options.some(([value]) => value === current)) select.value = current;
}

async function selectMapping() {
  const name = $("mapping").value;
  $("editor-block").hidden = !name;
  $("send").textContent = name ? `Send through ${name}` : "Send";
  if (!name) {
    state.served = "";
    state.file = null;
    $("yaml").value = "";
    schedulePreview();
    return;
  }
  const answer = await call("GET", `/v1/mappings/${encodeURIComponent(name)}`, { token: tokens.ingest() });
  if (!answer.ok) {
    show($("results"), problemBlock(answer.problem));
    return;
  }
  state.served = answer.data.text;
  state.file = answer.data.file;
  $("yaml").value = state.served;
  drawGutter([]);
  markDraft();
  schedulePreview();
}

async function selectSample() {
  const name = $("sample").value;
  if (!name) return;
  const answer = await call("GET", `/v1/samples/${encodeURIComponent(name)}`, { token: tokens.ingest() });
  if (!answer.ok) {
    show($("results"), problemBlock(answer.problem));
    return;
  }
  $("payload").value = JSON.stringify(answer.data, null, 2);
  schedulePreview();
}

function schedulePreview() {
  clearTimeout(state.timer);
  state.timer = setTimeout(preview, PREVIEW_DELAY_MS);
}

async function preview() {
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const text = $("payload").value;
  if (!text.trim()) {
    show($("results"), el("p", { className: "muted" }, "Paste an Adobe payload or choose a sample payload."));
    setPreviewState("");
    return;
  }
  const name = $("mapping").value;
  const token = tokens.ingest();
  setPreviewState("Rendering…");
  let answer;
  try {
    answer = name
      ? await call("POST", "/v1/preview/draft", {
          token,
          json: { mapping: $("yaml").value, payload: text, file: state.file },
          signal: controller.signal,
        })
      : await call("POST", "/v1/preview", { token, text, signal: controller.signal });
  } catch (error) {
    if (error.name !== "AbortError") setPreviewState("The relay cannot be reached.");
    return;
  }
  if (controller !== state.controller) return;
  const issues = answer.problem?.code === "mapping_invalid" ? answer.problem.errors || [] : [];
  showYamlErrors(issues);
  if (!answer.ok) {
    show($("results"), problemBlock(answer.problem));
    setPreviewState(issues.length ? "The mapping does not compile." : `Not rendered: ${problemText(answer)}`);
    return;
  }
  renderPreview(answer.data);
}

function renderPreview(doc) {
  const matched = doc.results.filter((r) => r.mapping);
  const events = doc.events === 1 ? "1 event" : `${doc.events} events`;
  const summary = matched.length
    ? `${doc.shape} payload, ${events}: ${matched.length} matching ${matched.length === 1 ? "mapping" : "mappings"}`
    : `${doc.shape} payload, ${events}: no mapping matches`;
  setPreviewState(summary);
  show($("results"), ...doc.results.map((result) => resultCard(result, doc.events > 1)));
}

const PREVIEW_LABELS = { dry_run: "would send", rejected: "rejected", ignored: "no match" };

/** " · event id …" for a result that has one; "(derived)" when the relay made it from the event's content. */
function eventIdNote({ event_id, event_id_source }) {
  return event_id ? ` · event id ${event_id}${event_id_source === "derived" ? " (derived)" : ""}` : "";
}

function resultCard(result, showIndex) {
  const title = result.mapping
    ? `${result.mapping} → ${result.destination}`
    : "No mapping matches this event (ignored)";
  const heading = el("h3", {}, showIndex ? `Event ${result.event_index}: ${title}` : title);
  const problem = result.problem;
  const notes = (problem?.violations || []).slice();
  if (problem?.code === "mapping_error" && problem.field) {
    notes.push({ path: problem.field.replace(/^body\.?/, ""), message: problem.detail });
  }
  return el(
    "article",
    { className: `result status-${result.status}` },
    el("header", {}, heading, badge(result.status, PREVIEW_LABELS[result.status] || result.status)),
    result.endpoint && el("p", { className: "endpoint" }, el("code", {}, result.endpoint),
      eventIdNote(result)),
    problem && problemBlock(problem),
    "body" in result ? renderJson(result.body, notes, `Body for ${result.destination}`) : null,
  );
}

function showYamlErrors(issues) {
  drawGutter(issues.map((i) => i.line));
  show(
    $("yaml-errors"),
    ...issues.map((issue) => {
      const button = el("button", { type: "button", className: "link" }, `${issue.file}:${issue.line}`);
      button.addEventListener("click", () => goToLine(issue.line));
      return el("li", { className: "error" }, button, `: ${issue.reason}`);
    }),
  );
}

function drawGutter(errorLines) {
  const count = $("yaml").value.split("\n").length;
  const bad = new Set(errorLines);
  const rows = [];
  for (let n = 1; n <= count; n++) {
    rows.push(el("span", { className: bad.has(n) ? "bad" : "" }, String(n)), "\n");
  }
  show($("gutter"), ...rows);
  $("gutter").scrollTop = $("yaml").scrollTop;
}

function goToLine(line) {
  const textarea = $("yaml");
  const lines = textarea.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((sum, l) => sum + l.length + 1, 0);
  textarea.focus();
  textarea.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

function markDraft() {
  const edited = $("yaml").value !== state.served;
  $("draft-state").textContent = edited ? "(edited, not saved)" : "(as served)";
}

// Tab indents in the YAML editor; Escape then Tab (or Shift+Tab) still leaves it.
let escaped = false;
function indentWithTab(event) {
  if (event.key === "Escape") {
    escaped = true;
    return;
  }
  if (event.key !== "Tab" || event.shiftKey || escaped) {
    escaped = false;
    return;
  }
  event.preventDefault();
  const textarea = event.target;
  textarea.setRangeText("  ", textarea.selectionStart, textarea.selectionEnd, "end");
  textarea.dispatchEvent(new Event("input"));
}

async function copyYaml() {
  const text = $("yaml").value;
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    $("yaml").select();
    copied = document.execCommand("copy");
  }
  setPreviewState(copied ? "YAML copied to the clipboard." : "Select the YAML and copy it by hand.");
}

export function updateSendButton() {
  const allowed = Boolean(tokens.ingest()) || state.open;
  $("send").disabled = !allowed;
  $("send-hint").classList.toggle("warning", !allowed);
}

async function send() {
  const name = $("mapping").value;
  const wait = Math.min(30, Math.max(1, Number($("wait").value) || 10));
  const text = $("fresh-id").checked ? withFreshEventId($("payload").value) : $("payload").value;
  const path = `${name ? `/v1/events/${encodeURIComponent(name)}` : "/v1/events"}?wait=${wait}`;
  show($("send-result"), el("p", { className: "muted" }, `Sending, waiting up to ${wait} s…`));
  let answer;
  try {
    answer = await call("POST", path, { token: tokens.ingest(), text });
  } catch {
    show($("send-result"), el("p", { className: "problem" }, "The relay cannot be reached."));
    return;
  }
  const results = answer.data?.results;
  if (!Array.isArray(results)) {
    show($("send-result"), problemBlock(answer.problem));
    return;
  }
  show(
    $("send-result"),
    el("p", { className: "muted" }, `HTTP ${answer.status}`, answer.data.request_id ? ` · request ${answer.data.request_id}` : ""),
    ...results.map(sentCard),
  );
}

function sentCard(result) {
  const { event_index, status, mapping, destination, event_id, event_id_source, delivery_id, problem, endpoint, body, ...answer } =
    result;
  const title = mapping ? `${mapping} → ${destination}` : "No mapping matches this event";
  const upstream = problem?.upstream;
  return el(
    "article",
    { className: `result status-${status}` },
    el("header", {}, el("h3", {}, title), badge(status)),
    delivery_id && el("p", { className: "endpoint" }, `delivery ${delivery_id}`, eventIdNote(result)),
    Object.keys(answer).length ? renderJson(answer, [], "The destination's answer") : null,
    problem && problemBlock(problem),
    upstream && renderJson(upstream, [], "The destination's error answer"),
  );
}

/** The payload text with a new xdm._id on every event (left as it is when it is not JSON). */
export function withFreshEventId(text) {
  let payload;
  try {
    payload = JSON.parse(text);
  } catch {
    return text;
  }
  const renew = (event) => {
    if (!event || typeof event !== "object") return;
    if (event.xdm && typeof event.xdm === "object") event.xdm._id = uuid4();
    else if ("eventType" in event) event._id = uuid4();
  };
  if (Array.isArray(payload?.events)) payload.events.forEach(renew);
  else if (payload?.event) renew(payload.event);
  else renew(payload);
  return JSON.stringify(payload, null, 2);
}

function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function setPreviewState(text) {
  $("preview-state").textContent = text;
}
