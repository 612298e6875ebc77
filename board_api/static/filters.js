// Board filters live in the URL's query string (`?agent=x&status=running,failed&q=deploy`),
// so a filtered board is a link: copy it, share it, reload it and get the same board.

export const FIELDS = ["agent", "team", "queue", "type", "source", "q"];

/** The filters in the current URL. */
export function readFilters(search = location.search) {
  const p = new URLSearchParams(search);
  const f = { status: (p.get("status") || "").split(",").filter(Boolean) };
  for (const k of FIELDS) f[k] = p.get(k) || "";
  return f;
}

/** Put `f` in the URL (replacing the entry: typing a search should not flood history). */
export function writeFilters(f) {
  const p = new URLSearchParams();
  if (f.status.length) p.set("status", f.status.join(","));
  for (const k of FIELDS) if (f[k]) p.set(k, f[k]);
  const qs = p.toString();
  history.replaceState(history.state, "", `${location.pathname}${qs ? "?" + qs : ""}${location.hash}`);
}

/** Query parameters for `/board` and `/tasks` (status is handled per column). */
export function apiParams(f) {
  const out = {};
  for (const k of FIELDS) if (f[k]) out[k] = f[k];
  return out;
}

export const isFiltered = (f) => FIELDS.some((k) => f[k]);

/** Whether a task pushed by the (unfiltered) board stream belongs on this board: the
 *  same rules as the server's filter_tasks, so live updates match a reload. */
export function matches(t, f) {
  if (f.agent && t.agent !== f.agent) return false;
  if (f.team && t.team !== f.team) return false;
  if (f.queue && t.queue !== f.queue) return false;
  if (f.type === "agent" && t.team) return false;
  if (f.type === "team" && !t.team) return false;
  if (f.source && t.source !== f.source) return false;
  if (f.q && !(t.prompt || "").toLowerCase().includes(f.q.toLowerCase())) return false;
  if (f.failure && t.failure_class !== f.failure) return false; // failure classes, below
  return true;
}

// --- failure classes (kernel/failures.py): `?failure=tool_error` shows failed tasks whose
// error code is of that class; the API filters the same way (`failure=`).
export const FAILURE_CLASSES = [
  ["policy_violation", "Policy violation"],
  ["missing_prerequisites", "Missing prerequisites"],
  ["tool_error", "Tool error"],
  ["worker_lost", "Worker lost"],
  ["provider_error", "Model provider error"],
  ["timeout", "Timeout"],
  ["invalid_input", "Invalid input"],
];
export const FAILURE_LABEL = Object.fromEntries(FAILURE_CLASSES);
FIELDS.push("failure");
