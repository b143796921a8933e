// Calls to the relay's public API, with the tokens typed into the page.

const STORE = window.sessionStorage;

export const tokens = {
  ingest: () => STORE.getItem("aep-relay.ingest-token") || "",
  admin: () => STORE.getItem("aep-relay.admin-token") || "",
  set(kind, value) {
    STORE.setItem(`aep-relay.${kind}-token`, value.trim());
  },
};

/**
 * One HTTP call. `json` is sent as JSON, `text` as text/plain (how Adobe sends payloads).
 * Resolves to {status, ok, data, problem}; `problem` is the RFC 9457 document of an error.
 * Rejects only when the relay cannot be reached (or the call is aborted).
 */
export async function call(method, path, { token, json, text, signal } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (text !== undefined) {
    headers["Content-Type"] = "text/plain";
    body = text;
  }
  const response = await fetch(path, { method, headers, body, signal, cache: "no-store" });
  const type = response.headers.get("content-type") || "";
  let data = null;
  if (type.includes("json")) {
    data = await response.json();
  } else {
    await response.text();
  }
  const problem = type.startsWith("application/problem+json") ? data : null;
  return { status: response.status, ok: response.ok, data, problem };
}

/** The problem of a failed call as one line: "code: detail". */
export function problemText(answer) {
  const problem = answer.problem;
  if (!problem) return `HTTP ${answer.status}`;
  return `${problem.code}: ${problem.detail || problem.title}`;
}
