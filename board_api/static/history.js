// History (`#/history`): the executions asked for in a date range (From..To, local days,
// To included), filtered by status, agent, source and failure class, newest first with
// "Show more"; Export downloads the same selection with every task's events as JSON
// lines (GET /tasks/export). A download with a key goes through fetch and a blob URL: a
// plain link cannot carry the Authorization header.

import { ApiError, API, api, auth } from "./api.js";
import { FINISHED, STATUSES, STATUS_LABEL, announce, duration, firstLine, h, stamp } from "./dom.js";

const SOURCES = ["api", "sdk", "cli", "mcp", "slack", "board", "meta_agent", "schedule", "webhook", "a2a", "worker"];
const FAILURES = [
  ["policy_violation", "Policy violation"], ["missing_prerequisites", "Missing prerequisites"],
  ["tool_error", "Tool error"], ["worker_lost", "Worker lost"], ["provider_error", "Model provider error"],
  ["timeout", "Timeout"], ["invalid_input", "Invalid input"],
];
const DAY_MS = 86_400_000;

/** A local calendar day as YYYY-MM-DD (what <input type=date> holds). */
function day(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function select(name, label, options) {
  return h("div.field",
    h("label", { for: `h-${name}`, text: label }),
    h("select", { id: `h-${name}`, name },
      h("option", { value: "", text: "any" }),
      options.map(([value, text]) => h("option", { value, text }))));
}

export class History {
  constructor(root) {
    this.root = root;
    this.built = false;
  }

  show() {
    this.root.hidden = false;
    if (!this.built) this.#build();
    this.#load();
  }

  hide() {
    this.root.hidden = true;
  }

  #build() {
    this.built = true;
    const today = new Date();
    this.form = h("form.history-filters", { role: "search", "aria-label": "Filter history" },
      h("div.field", h("label", { for: "h-from", text: "From" }),
        h("input", { id: "h-from", name: "from", type: "date", value: day(new Date(today - 7 * DAY_MS)) })),
      h("div.field", h("label", { for: "h-to", text: "To" }),
        h("input", { id: "h-to", name: "to", type: "date", value: day(today) })),
      select("status", "Status", STATUSES),
      select("agent", "Agent", []),
      select("source", "Source", SOURCES.map((s) => [s, s])),
      select("failure", "Failure", FAILURES),
      h("button", { id: "h-export", type: "button", text: "Export JSONL" }));
    this.form.addEventListener("change", () => this.#load());
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.#load(); });
    this.form.querySelector("#h-export").addEventListener("click", () => this.#export());
    this.status = h("p.muted", { role: "status" });
    this.body = h("tbody");
    this.more = h("button", { type: "button", text: "Show more", hidden: true });
    this.more.addEventListener("click", () => this.#load(this.cursor));
    const cols = ["Created", "Task", "Agent", "Status", "Source", "Duration"];
    const table = h("table.workers.history", { "aria-labelledby": "history-title" },
      h("thead", h("tr", cols.map((c) => h("th", { scope: "col", text: c })))), this.body);
    this.root.replaceChildren(h("h2", { id: "history-title", text: "History" }), this.form, this.status, table, this.more);
    api("/agents").then((r) => {
      const sel = this.form.elements.agent;
      for (const a of r.items) sel.append(h("option", { value: a.name, text: a.name }));
    }).catch(() => {});
  }

  /** The query of the form: the range as instants (To's whole day included). */
  #params() {
    const e = this.form.elements;
    const p = { status: e.status.value, agent: e.agent.value, source: e.source.value, failure: e.failure.value };
    if (e.from.value) p.since = new Date(`${e.from.value}T00:00`).toISOString();
    if (e.to.value) p.until = new Date(new Date(`${e.to.value}T00:00`).getTime() + DAY_MS).toISOString();
    return p;
  }

  async #load(cursor) {
    const params = { ...this.#params(), limit: 50, cursor };
    let page;
    try {
      page = await api("/tasks/history", { params });
    } catch (err) {
      this.status.textContent = err.message;
      return;
    }
    if (!cursor) this.body.replaceChildren();
    this.body.append(...page.items.map(row));
    this.cursor = page.next_cursor;
    this.more.hidden = !this.cursor;
    const n = this.body.children.length;
    this.status.textContent = n ? `${n}${this.cursor ? "+" : ""} execution(s)` : "No executions in this range.";
  }

  async #export() {
    const url = new URL(`${API}/tasks/export`, location.origin);
    for (const [k, v] of Object.entries(this.#params())) if (v) url.searchParams.set(k, v);
    const headers = auth.key ? { Authorization: `Bearer ${auth.key}` } : {};
    try {
      const resp = await fetch(url, { headers });
      if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => ({})));
      const href = URL.createObjectURL(await resp.blob());
      const e = this.form.elements;
      const a = h("a", { href, download: `executions-${e.from.value || "start"}-${e.to.value || "now"}.jsonl` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 10_000);
      announce("Export downloaded");
    } catch (err) {
      this.status.textContent = `Export failed: ${err.message}`;
    }
  }
}

function row(t) {
  const status = h("span.pill", { text: STATUS_LABEL[t.status] || t.status, dataset: { status: t.status } });
  return h("tr", { id: `history-${t.id}` },
    h("td", h("time", { datetime: t.created_at, text: stamp(t.created_at) })),
    h("th", { scope: "row" }, h("a", { href: `#/tasks/${t.id}`, text: firstLine(t.prompt) })),
    h("td", { text: t.team || t.agent || "" }),
    h("td", status, t.error ? h("span.muted", { text: ` ${t.error.code}` }) : null),
    h("td", { text: t.source }),
    h("td", { text: FINISHED.has(t.status) ? duration(t.duration_seconds) : "" }));
}
