// The deliveries view (admin token): per destination the backlog and its oldest age, the
// deliveries of the last minutes drawn against the rate limit, the circuit and the dead
// letters of the last hour. Uses GET /v1/deliveries/summary, again every few seconds while shown.

import { call, problemText, tokens } from "./api.js";
import { badge, el, figure, show, utc } from "./dom.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
export const REFRESH_MS = 3000;
const CHART = { width: 420, height: 140, left: 44, right: 8, top: 12, bottom: 20 };
const CIRCUIT_TEXT = { closed: "circuit closed", open: "circuit open", half_open: "circuit open, probing" };

let timer = null;
let running = false;

/** Show the view and refresh it every REFRESH_MS until `stopDeliveries`. */
export function startDeliveries() {
  running = true;
  clearTimeout(timer);
  refresh();
}

export function stopDeliveries() {
  running = false;
  clearTimeout(timer);
}

async function refresh() {
  await loadDeliveries();
  if (running) {
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

function setState(...parts) {
  show($("dv-state"), ...parts);
}

/** Read the summary once and draw it. */
export async function loadDeliveries() {
  const token = tokens.admin();
  if (!token) {
    show($("dv-destinations"));
    setState("Enter the admin token (RELAY_ADMIN_TOKEN) above to see deliveries.");
    return;
  }
  let answer;
  try {
    answer = await call("GET", "/v1/deliveries/summary", { token });
  } catch {
    setState("The relay cannot be reached; trying again in a few seconds.");
    return;
  }
  if (!answer.ok) {
    show($("dv-destinations"));
    setState(problemText(answer));
    return;
  }
  const summary = answer.data;
  show($("dv-destinations"), ...summary.destinations.map((d) => card(d, summary)));
  setState(
    `Updated ${utc(summary.generated_at)} UTC, every ${REFRESH_MS / 1000} s. `,
    `${summary.dead_letters} dead ${summary.dead_letters === 1 ? "letter" : "letters"} in the store.`,
  );
}

function card(destination, summary) {
  const name = destination.name;
  const dead = destination.dead_last_hour;
  const codes = Object.entries(destination.dead_last_hour_by_code).map(([code, count]) => `${code} × ${count}`);
  const deadText = `${dead}${summary.dead_last_hour_capped ? "+" : ""}`;
  return el(
    "article",
    { className: "destination-card", id: `deliveries-${name}`, "aria-labelledby": `deliveries-${name}-title` },
    el(
      "h3",
      { id: `deliveries-${name}-title` },
      name,
      " ",
      destination.dry_run
        ? badge("dry_run", "dry run: sends nothing")
        : destination.circuit
          ? badge(`circuit-${destination.circuit.state}`, CIRCUIT_TEXT[destination.circuit.state] || destination.circuit.state)
          : "",
    ),
    el(
      "dl",
      { className: "figures" },
      figure("Backlog", `${destination.pending} waiting`, "backlog"),
      figure("Oldest waiting", duration(destination.oldest_pending_age_seconds), "oldest"),
      figure(`Delivered, last ${summary.minutes} min`, `${total(destination)} (${last(destination)} this minute)`, "delivered"),
      figure("Rate limit", destination.limit_per_minute === null ? "none" : `${round(destination.limit_per_minute)} / min`, "limit"),
      figure("Dead letters, last hour", deadText, "dead", codes.join(", ")),
    ),
    chart(destination, summary.minutes),
  );
}

const total = (destination) => destination.delivered_per_minute.reduce((sum, count) => sum + count, 0);
const last = (destination) => destination.delivered_per_minute.at(-1) || 0;

function round(value) {
  return value >= 10 ? String(Math.round(value)) : String(Math.round(value * 10) / 10);
}

/** Seconds as "42 s", "3 min 5 s" or "2 h 10 min". */
function duration(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

// Delivered per minute (bars; the last is the minute under way) against the rate limit (a
// dashed line). Drawn with SVG elements and presentation attributes only: the page's CSP
// allows no inline style and no script from elsewhere.
function chart(destination, minutes) {
  const counts = destination.delivered_per_minute;
  const limit = destination.limit_per_minute;
  const top = Math.max(1, ...counts, limit || 0) * 1.1;
  const { width, height, left, right, bottom } = CHART;
  const plotTop = CHART.top;
  const plotHeight = height - plotTop - bottom;
  const slot = (width - left - right) / counts.length;
  const y = (value) => plotTop + plotHeight - (value / top) * plotHeight;
  const bars = counts.map((count, index) => {
    const barHeight = count > 0 ? Math.max(1.5, (count / top) * plotHeight) : 0;
    const ago = counts.length - 1 - index;
    return svg(
      "rect",
      {
        class: "bar",
        x: (left + index * slot + 1).toFixed(1),
        y: (plotTop + plotHeight - barHeight).toFixed(1),
        width: Math.max(1, slot - 2).toFixed(1),
        height: barHeight.toFixed(1),
        "data-count": count,
      },
      svg("title", {}, `${count} delivered ${ago === 0 ? "this minute so far" : `${ago} min ago`}`),
    );
  });
  // the counts over their bars: far below the limit a bar is a sliver
  const labels = counts.flatMap((count, index) =>
    count > 0
      ? [svg("text", { class: "count", x: (left + (index + 0.5) * slot).toFixed(1), y: (y(count) - 3).toFixed(1), "text-anchor": "middle" }, count)]
      : [],
  );
  const parts = [
    svg("line", { class: "axis", x1: left, y1: plotTop + plotHeight, x2: width - right, y2: plotTop + plotHeight }),
    svg("text", { class: "tick", x: left - 4, y: plotTop + plotHeight, "text-anchor": "end" }, "0"),
    svg("text", { class: "tick", x: left - 4, y: plotTop + 8, "text-anchor": "end" }, round(top)),
    svg("text", { class: "tick", x: left, y: height - 4 }, `${minutes} min ago`),
    svg("text", { class: "tick", x: width - right, y: height - 4, "text-anchor": "end" }, "now"),
    ...bars,
    ...labels,
  ];
  if (limit !== null) {
    parts.push(
      svg("line", { class: "limit", x1: left, y1: y(limit).toFixed(1), x2: width - right, y2: y(limit).toFixed(1) }),
      svg("text", { class: "limit-label", x: width - right, y: (y(limit) - 3).toFixed(1), "text-anchor": "end" }, `limit ${round(limit)} / min`),
    );
  }
  const label =
    `${destination.name}: ${total(destination)} delivered in the last ${minutes} minutes, ${last(destination)} this minute so far` +
    (limit === null ? "" : `; the rate limit allows ${round(limit)} a minute`);
  return el(
    "figure",
    { className: "chart" },
    svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "pace" }, ...parts),
    el("figcaption", { className: "muted" }, `Delivered per minute by this replica, last ${minutes} minutes`),
  );
}
