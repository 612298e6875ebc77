// The task detail side panel (`#/tasks/{id}` and `#/tasks/{id}/{tab}`). It follows the
// task's own SSE stream from seq 0, so Live Output, Tool Calls and Logs are all views
// over one event log, updated once per animation frame however fast events arrive.

import { api, download, streamUrl } from "./api.js";
import { confirmDialog } from "./actions.js";
import { FINISHED, STATUS_LABEL, announce, duration, firstLine, h, pretty, stamp } from "./dom.js";
import { Output, ToolCalls, summary } from "./events.js";
import { renderMarkdown } from "./markdown.js";
import { FAILURE_LABEL } from "./filters.js";

export const TABS = [
  ["overview", "Overview"],
  ["output", "Live Output"],
  ["tools", "Tool Calls"],
  ["logs", "Logs"],
  ["artifacts", "Artifacts"],
];

export class Detail {
  constructor(root, { canAct }) {
    this.root = root;
    this.canAct = canAct;
  }

  /** Show task `id` on `tab`; reopening the same task only switches the tab. */
  async open(id, tab = "overview") {
    if (this.id !== id) {
      this.close(false);
      this.id = id;
      this.#build();
      this.root.hidden = false;
      document.body.classList.add("panel-open");
      try {
        this.task = await api(`/tasks/${id}`);
      } catch (err) {
        this.body.replaceChildren(h("p.form-error", { role: "alert", text: err.message }));
        return;
      }
      if (this.id !== id) return;
      this.#renderTask();
      this.#follow();
      this.#loadArtifacts();
      this.heading.focus();
    }
    this.#select(tab);
  }

  close(restoreFocus = true) {
    clearTimeout(this.retry);
    this.es?.close();
    this.es = null;
    if (this.id == null) return;
    const id = this.id;
    this.id = this.task = null;
    this.root.hidden = true;
    this.root.replaceChildren();
    document.body.classList.remove("panel-open");
    if (restoreFocus) document.querySelector(`li[data-id="${id}"] a`)?.focus();
  }

  #build() {
    this.output = new Output();
    this.calls = new ToolCalls();
    this.events = [];
    this.agentInfo = null;
    this.artifacts = null;
    this.workerId = null; // of the last claim: the task row forgets it once the task ends
    this.children = new Map(); // delegate call id → the sub-task it created
    this.stepsEl = h("ol.steps", { "aria-label": "Steps" });
    this.heading = h("h2", { id: "panel-title", tabindex: "-1", text: "Loading…" });
    this.pill = h("span.pill");
    this.actions = h("div.actions");
    this.question = h("div.answer", { hidden: true });
    this.tabs = h("div.tabs", { role: "tablist", "aria-label": "Task detail" });
    this.panels = {};
    for (const [key, label] of TABS) {
      const tab = h("a.tab", {
        role: "tab", id: `tab-${key}`, href: `#/tasks/${this.id}/${key}`, "aria-controls": `tp-${key}`, dataset: { tab: key },
      }, label, h("span.n", { dataset: { n: key } }));
      tab.addEventListener("keydown", (e) => this.#tabKeys(e));
      this.tabs.append(tab);
      this.panels[key] = h("section.tabpanel", { role: "tabpanel", id: `tp-${key}`, "aria-labelledby": `tab-${key}`, tabindex: "0", hidden: true });
    }
    this.outputEl = h("div.markdown", { "aria-live": "polite", "aria-busy": "false" });
    this.panels.output.append(this.outputEl);
    this.toolsEl = h("ol.toolcalls");
    this.panels.tools.append(this.toolsEl);
    this.#buildLogs();
    this.body = h("div.panel-body", Object.values(this.panels));
    this.root.replaceChildren(
      h("header.panel-head", this.heading, this.pill,
        h("a.close", { href: "#/", "aria-label": "Close task detail", title: "Close (Esc)", text: "×" })),
      this.actions, this.question, this.tabs, this.body);
  }

  #buildLogs() {
    this.logFilter = h("input", { id: "log-filter", type: "search", placeholder: "filter text" });
    this.logKind = h("select", { id: "log-kind" }, h("option", { value: "", text: "all kinds" }),
      ["status", "log", "message_delta", "message_reset", "message", "tool_started", "tool_output", "tool_completed", "input_requested",
        "input_received", "artifact", "plan", "usage"].map((k) => h("option", { value: k, text: k })));
    const copy = h("button", { type: "button", text: "Copy" });
    copy.addEventListener("click", () => this.#copyLogs(copy));
    this.logsEl = h("ol.logs");
    const refilter = () => {
      for (const row of this.logsEl.children) row.hidden = !this.#logVisible(row);
    };
    this.logFilter.addEventListener("input", refilter);
    this.logKind.addEventListener("change", refilter);
    this.panels.logs.append(
      h("div.log-tools",
        h("label.sr-only", { for: "log-kind", text: "Event kind" }), this.logKind,
        h("label.sr-only", { for: "log-filter", text: "Filter events" }), this.logFilter, copy),
      this.logsEl);
  }

  #logVisible(row) {
    const kind = this.logKind.value, text = this.logFilter.value.toLowerCase();
    return (!kind || row.dataset.kind === kind) && (!text || row.textContent.toLowerCase().includes(text));
  }

  async #copyLogs(button) {
    const lines = [...this.logsEl.children].filter((r) => !r.hidden).map((r) => JSON.stringify(this.events[r.dataset.i]));
    const text = lines.join("\n");
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // No clipboard API off localhost without https: fall back to a selected textarea.
      const ta = h("textarea", { class: "sr-only" }, text);
      document.body.append(ta);
      ta.select();
      document.execCommand("copy");
      ta.remove();
    }
    button.textContent = `Copied ${lines.length}`;
    setTimeout(() => (button.textContent = "Copy"), 1500);
  }

  #select(tab) {
    if (!this.panels[tab]) tab = "overview";
    for (const t of this.tabs.children) {
      const on = t.dataset.tab === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
    }
    for (const [key, p] of Object.entries(this.panels)) p.hidden = key !== tab;
  }

  #tabKeys(e) {
    const tabs = [...this.tabs.children];
    const i = tabs.indexOf(e.currentTarget);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (next == null) return;
    e.preventDefault();
    const t = tabs[(next + tabs.length) % tabs.length];
    t.focus();
    location.hash = t.getAttribute("href");
  }

  // --- the event stream -------------------------------------------------------------

  async #follow() {
    const id = this.id;
    const after = this.events.length ? this.events[this.events.length - 1].seq : 0;
    let url;
    try {
      url = await streamUrl(`/tasks/${id}/stream`, { after });
    } catch {
      url = null;
    }
    if (this.id !== id) return; // another task was opened meanwhile
    this.es?.close();
    if (!url) {
      this.retry = setTimeout(() => this.id === id && this.#follow(), 2000);
      return;
    }
    const es = (this.es = new EventSource(url));
    es.onerror = () => {
      // The browser retries by itself unless the answer was an HTTP error (an expired
      // stream token, a restarting server): then follow again from the last event seen.
      if (es.readyState === EventSource.CLOSED && this.es === es) {
        this.retry = setTimeout(() => this.id === id && this.es === es && this.#follow(), 2000);
      }
    };
    const kinds = ["status", "message_delta", "message_reset", "message", "tool_started", "tool_output", "tool_completed", "log",
      "input_requested", "input_received", "artifact", "plan", "checkpoint", "usage"];
    for (const k of kinds) es.addEventListener(k, (e) => this.#onEvent(JSON.parse(e.data)));
    es.addEventListener("end", (e) => {
      es.close(); // the task is over; otherwise EventSource would reconnect forever
      this.#setTask(JSON.parse(e.data));
    });
  }

  #onEvent(e) {
    if (e.task_id !== this.id || (this.events.length && e.seq <= this.events[this.events.length - 1].seq)) return;
    this.events.push(e);
    this.pending = this.pending || [];
    this.pending.push(e);
    if (this.pending.length === 1) requestAnimationFrame(() => this.#flush());
  }

  #flush() {
    const batch = this.pending.splice(0);
    if (this.id == null) return;
    const msgs = new Set(), calls = new Set();
    let refresh = false;
    for (const e of batch) {
      const m = this.output.add(e);
      if (m >= 0) msgs.add(m);
      const c = this.calls.add(e);
      if (c) calls.add(c);
      this.#logRow(e);
      if (e.kind === "status" && e.data?.worker_id) this.workerId = e.data.worker_id;
      const child = e.kind === "tool_output" && /delegated as task (\S+)/.exec(e.data?.chunk || "");
      if (child) this.children.set(String(e.data.tool_call_id), child[1]);
      if (["status", "input_requested", "input_received", "usage"].includes(e.kind)) refresh = true;
      if (e.kind === "artifact") this.#loadArtifacts();
    }
    for (const i of msgs) this.#renderMessage(i);
    for (const c of calls) this.#renderCall(c);
    if (calls.size) renderSteps(this.stepsEl, this.calls, this.children);
    this.#counts();
    if (refresh) this.#refreshTask();
  }

  #renderMessage(i) {
    const m = this.output.messages[i];
    let el = this.outputEl.children[i];
    if (!m) return el?.remove(); // voided by a message_reset
    if (!el) this.outputEl.append((el = h("article.message")));
    el.classList.toggle("streaming", !m.done);
    el.replaceChildren(renderMarkdown(m.text));
  }

  #renderCall(c) {
    let el = this.toolsEl.querySelector(`[data-call="${CSS.escape(c.id)}"]`);
    if (!el) this.toolsEl.append((el = h("li.toolcall", { dataset: { call: c.id } })));
    const label = { running: "Running", success: "Success", failed: "Failed" }[c.status];
    const open = el.querySelector("details")?.open ?? false;
    el.dataset.status = c.status;
    el.replaceChildren(h("details", { open },
      h("summary",
        h("span.tool-name", { text: c.name }),
        h(`span.pill.st-${c.status}`, { text: label }),
        h("span.muted", { text: c.duration != null ? duration(c.duration) : "" })),
      h("h4", { text: "Arguments" }), h("pre", { text: pretty(c.args) || "—" }),
      h("h4", { text: c.error ? "Error" : "Output" }),
      h("pre", { text: c.error ? pretty(c.error) : c.output || (c.status === "running" ? "…" : "—") })));
  }

  #logRow(e) {
    const row = h("li", { dataset: { kind: e.kind, i: this.events.length - 1 } },
      h("span.seq", { text: `#${e.seq}` }),
      h("time", { datetime: e.created_at, text: new Date(e.created_at).toLocaleTimeString() }),
      h("span.kind", { text: e.kind }),
      h("span.line", { text: summary(e) }));
    row.hidden = !this.#logVisible(row);
    this.logsEl.append(row);
  }

  #counts() {
    const n = { tools: this.calls.calls.size, logs: this.events.length, artifacts: this.artifacts?.length ?? 0 };
    for (const el of this.tabs.querySelectorAll("[data-n]")) {
      const v = n[el.dataset.n];
      el.textContent = v ? ` ${v}` : "";
    }
  }

  // --- task state and actions ---------------------------------------------------------

  async #refreshTask() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(async () => {
      const id = this.id;
      const t = await api(`/tasks/${id}`).catch(() => null);
      if (t && this.id === id) this.#setTask(t);
    }, 100);
  }

  #setTask(t) {
    if (t.id !== this.id) return;
    const moved = this.task?.status !== t.status;
    this.task = t;
    this.#renderTask();
    if (moved) announce(`Task is now ${STATUS_LABEL[t.status]}`);
  }

  #renderTask() {
    const t = this.task;
    this.heading.textContent = firstLine(t.prompt);
    this.pill.className = `pill st-${t.status}`;
    this.pill.textContent = STATUS_LABEL[t.status] + (t.cancel_requested && t.status === "running" ? " · cancelling" : "");
    this.root.dataset.status = t.status;
    this.#renderActions(t);
    this.#renderQuestion(t);
    const show = () => this.task && this.panels.overview.replaceChildren(
      overview(this.task, { ...(this.agentInfo?.agent ? this.agentInfo : {}), workerId: this.workerId }, this.stepsEl));
    show();
    if (!this.agentInfo) {
      this.agentInfo = "loading";
      const get = (path) => api(path).catch(() => null);
      Promise.all([t.agent ? get(`/agents/${t.agent}`) : null, get(`/worker-queues/${t.queue}`), get("/workers")])
        .then(([agent, queue, workers]) => {
          this.agentInfo = { agent: agent || {}, queue, workers: workers?.items || [] };
          show();
        });
    }
  }

  #renderActions(t) {
    // Rebuilt only when the choice of buttons changes: replacing them on every live update
    // could land between a press and its release, and the click would be lost.
    const key = [t.id, this.canAct(), FINISHED.has(t.status), t.cancel_requested].join("|");
    if (this.actions.dataset.key === key) return;
    this.actions.dataset.key = key;
    this.actions.replaceChildren();
    if (!this.canAct()) return;
    if (!FINISHED.has(t.status) && !t.cancel_requested) {
      this.actions.append(h("button.danger", { type: "button", onclick: () => this.#cancel(), text: "Cancel task" }));
    }
    if (FINISHED.has(t.status)) {
      this.actions.append(h("button", { type: "button", onclick: () => this.#retry(), text: "Retry" }));
    }
  }

  async #cancel() {
    const t = this.task;
    const ok = await confirmDialog("Cancel this task?", `“${firstLine(t.prompt)}” will be stopped${t.status === "running" ? " by its worker within seconds" : ""}.`, "Cancel task");
    if (!ok) return;
    await this.#act(() => api(`/tasks/${t.id}/cancel`, { method: "POST" }));
  }

  async #retry() {
    const fresh = await this.#act(() => api(`/tasks/${this.task.id}/retry`, { method: "POST" }), false);
    if (fresh) location.hash = `#/tasks/${fresh.id}`;
  }

  async #act(call, apply = true) {
    try {
      const t = await call();
      if (apply) this.#setTask(t);
      return t;
    } catch (err) {
      this.actions.append(h("p.form-error", { role: "alert", text: err.message }));
      return null;
    }
  }

  #renderQuestion(t) {
    const q = t.status === "requires_input" ? t.pending_input : null;
    this.question.hidden = !q;
    if (!q) return this.question.replaceChildren();
    const key = `${t.id}:${t.updated_at}`;
    if (this.question.dataset.key === key) return; // keep a half-typed answer
    this.question.dataset.key = key;
    const parts = [h("h3", { text: "The agent asks" }), h("p.question", { text: q.question })];
    if (this.canAct()) {
      if (q.choices?.length) {
        parts.push(h("div.choices", { role: "group", "aria-label": "Answers" },
          q.choices.map((c) => h("button", { type: "button", onclick: () => this.#answer(c), text: c }))));
      } else {
        const input = h("textarea", { id: "answer-text", rows: 2, required: true });
        const form = h("form", h("label", { for: "answer-text", text: "Your answer" }), input,
          h("button.primary", { type: "submit", text: "Send answer" }));
        form.addEventListener("submit", (e) => {
          e.preventDefault();
          this.#answer(input.value);
        });
        parts.push(form);
      }
    }
    this.question.replaceChildren(...parts);
  }

  async #answer(answer) {
    // The question's key goes along: an answer to a question that has since changed is refused.
    const key = this.task.pending_input?.key;
    await this.#act(() => api(`/tasks/${this.task.id}/input`, { method: "POST", body: { answer, key } }));
    announce("Answer sent; the task resumes");
  }

  async #loadArtifacts() {
    const id = this.id;
    const page = await api(`/tasks/${id}/artifacts`).catch(() => null);
    if (!page || this.id !== id) return;
    this.artifacts = page.items;
    this.panels.artifacts.replaceChildren(page.items.length
      ? h("ul.artifacts", page.items.map((a) => h("li",
        h("button.link", { type: "button", onclick: () => download(id, a.name).catch((e) => announce(e.message)), text: a.name }),
        h("span.muted", { text: ` ${a.media_type} · ${a.size.toLocaleString()} bytes` }))))
      : h("p.muted", { text: "No artifacts." }));
    this.#counts();
  }
}

/** The steps: tool calls and sub-tasks (`delegate` calls) in the order they started. */
function renderSteps(el, calls, children) {
  el.replaceChildren(...[...calls.calls.values()].map((c) => {
    const child = children.get(c.id);
    const what = c.name === "delegate"
      ? [`sub-task → ${c.args?.agent ?? "?"} `, child ? h("a", { href: `#/tasks/${child}`, text: child.slice(0, 8) }) : null]
      : [c.name];
    const label = { running: "Running", success: "Success", failed: "Failed" }[c.status];
    return h("li", { dataset: { status: c.status } }, h("span.step-name", what),
      h(`span.pill.st-${c.status}`, { text: label }),
      h("span.muted", { text: c.duration != null ? duration(c.duration) : "" }));
  }));
}

/** A result as text where it is text (a command's stdout, an llm agent's answer), not JSON. */
function resultView(result) {
  const output = typeof result === "string" ? result : typeof result?.output === "string" ? result.output : null;
  if (output == null) return [h("pre", { text: pretty(result) })];
  const rest = typeof result === "object" ? Object.fromEntries(Object.entries(result).filter(([k]) => k !== "output")) : {};
  return [h("pre.result-text", { text: output || "(empty)" }),
    Object.keys(rest).length ? h("p.muted", { text: Object.entries(rest).map(([k, v]) => `${k}: ${pretty(v)}`).join(" · ") }) : null];
}

function overview(t, info = {}, stepsEl = null) {
  const usage = t.usage || {};
  const tokens = usage.total_tokens ?? ((usage.prompt_tokens || usage.input_tokens || 0) + (usage.completion_tokens || usage.output_tokens || 0));
  const rows = [
    ["Agent", t.agent || "—"], ["Team", t.team], ["Runtime", info.agent?.runtime ? `${info.agent.runtime}${info.agent.model ? ` · ${info.agent.model}` : ""}` : null],
    ["Queue", t.queue], ["Environment", info.queue?.environment || null],
    ["Execution id", h("code", { text: t.id })],
    ["Status", `${STATUS_LABEL[t.status]}${t.phase ? ` (${t.phase})` : ""}`],
    ["Attempt", `${t.attempt} of ${t.max_attempts}`], ["Worker", workerText(t.worker_id || info.workerId, info.workers)],
    ["Source", t.source], ["Requested by", t.requested_by],
    ["Retry of", t.retry_of ? h("a", { href: `#/tasks/${t.retry_of}`, text: t.retry_of }) : null],
    ["Parent", t.parent_id ? h("a", { href: `#/tasks/${t.parent_id}`, text: t.parent_id }) : null],
    ["Schedule", t.schedule_id ? h("a", { href: "#/schedules", text: t.schedule_id }) : null],
    ["Created", stamp(t.created_at)], ["Started", t.started_at ? stamp(t.started_at) : null],
    ["Finished", t.finished_at ? stamp(t.finished_at) : null],
    ["Duration", t.duration_seconds != null ? duration(t.duration_seconds) : null],
    ["Tokens", tokens ? tokens.toLocaleString() : null],
    ["Cost", usage.cost ?? usage.cost_usd ? `$${Number(usage.cost ?? usage.cost_usd).toFixed(4)}` : null],
  ];
  const dl = h("dl.overview");
  for (const [k, v] of rows) if (v != null && v !== "") dl.append(h("dt", { text: k }), h("dd", v));
  const out = [];
  if (t.failure_class) {
    out.push(h("div.failure", { role: "note" }, h("h3", { text: `Failed: ${FAILURE_LABEL[t.failure_class] || t.failure_class}` }),
      h("p.error", { text: t.failure_hint }), h("p.muted", h("code", { text: t.error.code }), ` ${t.error.message}`)));
  }
  out.push(dl, h("h3", { text: "Prompt" }), h("pre.prompt", { text: t.prompt }));
  if (Object.keys(t.parameters || {}).length) out.push(h("h3", { text: "Parameters" }), h("pre", { text: pretty(t.parameters) }));
  if (t.plan?.text) out.push(h("h3", { text: "Plan" }), h("div.markdown.plan", renderMarkdown(t.plan.text)));
  if (stepsEl) out.push(h("h3", { text: "Steps" }), stepsEl); // empty: board.css says "no tool calls"
  if (t.error && !t.failure_class) out.push(h("h3", { text: "Error" }), h("p.error", { text: `${t.error.code}: ${t.error.message}` }));
  if (t.result != null) out.push(h("h3", { text: "Result" }), ...resultView(t.result));
  return h("div", out);
}

function workerText(id, workers = []) {
  if (!id) return null;
  const host = workers.find((w) => w.id === id)?.hostname;
  return host ? `${id} on ${host}` : id;
}
