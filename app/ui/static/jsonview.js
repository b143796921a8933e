// JSON pretty-printed as lines that know their field path, so that each validation problem
// is shown next to the field it concerns (or its closest parent when the field is missing).

import { el } from "./dom.js";

/** Lines {depth, text, path} of a JSON value; closing brackets have path null. */
export function jsonLines(value) {
  const lines = [];
  const walk = (node, path, depth, key, last) => {
    const prefix = key === null ? "" : `${JSON.stringify(key)}: `;
    const comma = last ? "" : ",";
    const isArray = Array.isArray(node);
    const entries = isArray ? node.map((v, i) => [i, v]) : node && typeof node === "object" ? Object.entries(node) : null;
    if (entries === null) {
      lines.push({ depth, text: prefix + JSON.stringify(node) + comma, path });
      return;
    }
    const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
    if (!entries.length) {
      lines.push({ depth, text: prefix + open + close + comma, path });
      return;
    }
    lines.push({ depth, text: prefix + open, path });
    entries.forEach(([k, v], i) => {
      const child = isArray ? `${path}[${k}]` : path ? `${path}.${k}` : k;
      walk(v, child, depth + 1, isArray ? null : k, i === entries.length - 1);
    });
    lines.push({ depth, text: close + comma, path: null });
  };
  walk(value, "", 0, null, true);
  return lines;
}

/** The path one level up: "a.b[2]" -> "a.b", "a.b" -> "a", "a" -> "". */
export function parentPath(path) {
  const cut = path.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
  return cut === path ? "" : cut;
}

/**
 * A <pre> of `value` with `notes` ({path, message}) placed under the line of their field.
 * `label` names the block for screen readers.
 */
export function renderJson(value, notes = [], label = "JSON") {
  const lines = jsonLines(value);
  const lineOf = new Map();
  lines.forEach((line, index) => {
    if (line.path !== null && !lineOf.has(line.path)) lineOf.set(line.path, index);
  });
  const notesAt = lines.map(() => []);
  for (const note of notes) {
    let path = note.path || "";
    while (path && !lineOf.has(path)) path = parentPath(path);
    notesAt[lineOf.get(path) ?? 0].push(note);
  }
  const pre = el("pre", { className: "json", tabIndex: 0, "aria-label": label });
  lines.forEach((line, index) => {
    const row = el("span", { className: "line" }, "  ".repeat(line.depth) + line.text);
    if (line.path !== null) row.dataset.path = line.path;
    if (notesAt[index].length) row.classList.add("has-note");
    pre.append(row, "\n");
    for (const note of notesAt[index]) {
      const where = note.path ? `${note.path}: ` : "";
      const text = `${"  ".repeat(line.depth + 1)}⚠ ${where}${note.message}`;
      const noteEl = el("span", { className: "note", role: "note" }, text);
      noteEl.dataset.path = note.path || "";
      pre.append(noteEl, "\n");
    }
  });
  return pre;
}
