// Building DOM nodes without HTML strings: every value from the relay is set as text.

/** `el("p", {className: "x"}, "text", child)`; attributes with a dash are set as attributes. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key.includes("-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** One labelled figure of a card (`dt`/`dd`), addressed by `data-figure="key"`, with an optional note. */
export function figure(term, value, key, note = "") {
  return el(
    "div",
    { className: "figure" },
    el("dt", {}, term),
    el("dd", { "data-figure": key }, value),
    note ? el("dd", { className: "note", "data-figure": `${key}-note` }, note) : null,
  );
}

/** Replace the children of `node`. */
export function show(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

/** A status badge, e.g. "delivered" or "rejected". */
export function badge(status, text = status) {
  return el("span", { className: `badge status-${status}` }, text);
}

/** A problem document as a short block: code, detail, and each listed error. */
export function problemBlock(problem, fallback = "The relay answered with an error") {
  if (!problem) return el("p", { className: "problem" }, fallback);
  return el(
    "div",
    { className: "problem", role: "alert" },
    el("strong", {}, problem.code || "error"),
    ": ",
    problem.detail || problem.title || fallback,
  );
}

/** Epoch seconds as "2024-05-01 12:00:00" (UTC). */
export function utc(seconds) {
  if (typeof seconds !== "number") return "";
  return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
}

/** Epoch seconds as ISO 8601 in UTC, e.g. "2024-05-01T12:00:00.250Z". */
export function iso(seconds) {
  if (typeof seconds !== "number") return "";
  return new Date(seconds * 1000).toISOString();
}
