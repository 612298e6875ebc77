// The Kanban: six columns fed by `/board` snapshots and the `/board/stream` SSE.
// Cards are keyed by task id and updated in place (a status change moves the element to
// its new column), so live changes never re-render the board and nothing flickers.
// On every (re)connect the stream starts with a fresh snapshot, which is how a reconnect
// after a network drop catches up.

import { api, streamUrl } from "./api.js";
import { STATUSES, STATUS_LABEL, FINISHED, h, duration, since, firstLine, announce } from "./dom.js";
import { FAILURE_LABEL, apiParams, isFiltered, matches } from "./filters.js";
import { ToolWatch } from "./toolwatch.js";

const SNAPSHOT = 30; // cards per column in a snapshot
const PAGE = 50; // cards per page-in

export class Board {
  constructor(root, { onState, onSeen }) {
    this.root = root;
    this.onState = onState; // (text) => void: connection state for the header
    this.onSeen = onSeen; // (task) => void: every task the board hears of (fills filter choices)
    this.cards = new Map(); // id → {task, el}
    this.columns = new Map();
    this.queue = []; // task events waiting for the next animation frame
    this.buffering = null; // task events that arrive while a filtered snapshot loads
    this.tools = new ToolWatch((id, tool) => this.#showTool(id, tool));
    this.#build();
    setInterval(() => this.#tick(), 1000);
  }

  #build() {
    const io = new IntersectionObserver((entries) => {
      for (const e of entries) if (e.isIntersecting) this.#pageIn(e.target.dataset.status);
    }, { root: null, rootMargin: "200px" });
    for (const [status, label] of STATUSES) {
      const count = h("span.count", { text: "0" });
      const list = h("ol.cards", { "aria-label": `${label} tasks` });
      const more = h("div.more", { dataset: { status }, "aria-hidden": "true" });
      const section = h(`section.col.col-${status}`, { "aria-labelledby": `h-${status}`, dataset: { status } },
        h("h2", { id: `h-${status}` }, h("span.dot", { "aria-hidden": "true" }), label, " ", count),
        list, more);
      this.root.append(section);
      this.columns.set(status, { section, list, countEl: count, more, count: 0, cursor: null, done: true, loading: false });
      io.observe(more);
      // The column scrolls itself on wide screens: observe within it too.
      new IntersectionObserver((es) => es.some((e) => e.isIntersecting) && this.#pageIn(status), { root: section, rootMargin: "200px" }).observe(more);
    }
  }

  /** Show the board for `filters` (reconnects the stream). */
  show(filters) {
    this.filters = filters;
    for (const [status, col] of this.columns) col.section.hidden = filters.status.length > 0 && !filters.status.includes(status);
    this.connect();
  }

  async connect() {
    const attempt = (this.attempt = (this.attempt || 0) + 1);
    this.es?.close();
    clearTimeout(this.retryTimer);
    this.onState("connecting…");
    let url;
    try {
      url = await streamUrl("/board/stream", { limit: SNAPSHOT });
    } catch {
      this.onState("reconnecting…");
      if (attempt === this.attempt) this.retryTimer = setTimeout(() => this.connect(), 2000);
      return;
    }
    if (attempt !== this.attempt) return; // a newer connect() (new filters) won the race
    const es = (this.es = new EventSource(url));
    es.addEventListener("board", (e) => this.#onSnapshot(JSON.parse(e.data)));
    es.addEventListener("resync", () => this.#refetch());
    es.addEventListener("task", (e) => this.#onTask(JSON.parse(e.data)));
    es.onerror = () => {
      this.onState("reconnecting…");
      // The browser retries by itself unless the answer was an HTTP error (e.g. 401):
      // then the source is closed, and we start a new one after a pause.
      if (es.readyState === EventSource.CLOSED) this.retryTimer = setTimeout(() => this.connect(), 2000);
    };
  }

  async #onSnapshot(snap) {
    if (!isFiltered(this.filters)) return this.#applySnapshot(snap);
    // The stream's snapshot is unfiltered: fetch the filtered one, holding live events
    // until it is on screen so none is lost or applied out of order.
    await this.#refetch();
  }

  async #refetch() {
    this.buffering = this.buffering || [];
    try {
      this.#applySnapshot(await api("/board", { params: { ...apiParams(this.filters), limit: SNAPSHOT } }));
    } catch (err) {
      this.onState(`error: ${err.message}`);
    } finally {
      const held = this.buffering || [];
      this.buffering = null;
      held.forEach((t) => this.#onTask(t));
    }
  }

  #applySnapshot(snap) {
    const keep = new Set();
    this.maxId = "";
    for (const [status, col] of this.columns) {
      const data = snap.columns[status] || { count: 0, items: [] };
      col.count = data.count;
      col.capped = Boolean(data.count_capped); // "1,000+": the server stops counting there
      col.cursor = null;
      col.done = data.items.length >= data.count;
      for (const t of data.items) {
        this.onSeen(t);
        keep.add(t.id);
        if (t.id > this.maxId) this.maxId = t.id;
        this.#upsert(t, true);
      }
    }
    for (const id of [...this.cards.keys()]) if (!keep.has(id)) this.#remove(id);
    this.#renderCounts();
    this.onState("live");
    this.root.dataset.ready = "true";
  }

  #onTask(t) {
    if (this.buffering) return void this.buffering.push(t);
    this.queue.push(t);
    if (this.queue.length === 1) requestAnimationFrame(() => this.#flush());
  }

  #flush() {
    const batch = this.queue.splice(0);
    let moved = null;
    for (const t of batch) {
      this.onSeen(t);
      if (!matches(t, this.filters)) continue;
      const known = this.cards.get(t.id);
      if (known) {
        if (Date.parse(t.updated_at) < Date.parse(known.task.updated_at)) continue; // stale
        if (known.task.status !== t.status) {
          this.columns.get(known.task.status).count--;
          this.columns.get(t.status).count++;
          moved = t;
        }
      } else if (t.id > this.maxId) {
        this.columns.get(t.status).count++; // created since the snapshot
        moved = t;
      } else {
        this.#refreshCounts(); // an older task we do not hold: its previous column is unknown
      }
      this.#upsert(t, false);
    }
    this.#renderCounts();
    if (moved) announce(`${firstLine(moved.prompt)}: ${STATUS_LABEL[moved.status]}`);
  }

  /** Put `t` in its column (in id order, newest first), creating or updating its card. */
  #upsert(t, fromSnapshot) {
    const col = this.columns.get(t.status);
    let entry = this.cards.get(t.id);
    const last = col.list.lastElementChild;
    // Older than every loaded card of a column with more pages: paging will bring it.
    if (!fromSnapshot && !col.done && last && t.id < last.dataset.id && entry?.el.parentElement !== col.list) {
      if (entry) this.#remove(t.id);
      return;
    }
    if (!entry) {
      entry = { task: t, el: h("li", { dataset: { id: t.id } }) };
      this.cards.set(t.id, entry);
    }
    const movedColumn = entry.el.parentElement !== col.list;
    entry.task = t;
    renderCard(entry.el, t, this.tools.current(t.id));
    if (movedColumn) {
      let before = null;
      for (const li of col.list.children) if (li.dataset.id < t.id) { before = li; break; }
      col.list.insertBefore(entry.el, before);
      if (!fromSnapshot) flash(entry.el);
    }
    if (t.status === "running") this.tools.watch(t);
    else this.tools.unwatch(t.id);
  }

  #remove(id) {
    const entry = this.cards.get(id);
    entry?.el.remove();
    this.cards.delete(id);
    this.tools.unwatch(id);
  }

  async #pageIn(status) {
    const col = this.columns.get(status);
    if (col.done || col.loading || col.section.hidden || !this.filters) return;
    col.loading = true;
    try {
      const params = { ...apiParams(this.filters), status, limit: PAGE, cursor: col.cursor };
      const page = await api("/tasks", { params });
      for (const t of page.items) if (!this.cards.has(t.id)) this.#upsert(t, true);
      col.cursor = page.next_cursor;
      col.done = !page.next_cursor;
    } catch (err) {
      this.onState(`error: ${err.message}`);
    } finally {
      col.loading = false;
    }
  }

  #refreshCounts() {
    clearTimeout(this.countTimer);
    this.countTimer = setTimeout(async () => {
      const snap = await api("/board", { params: { ...apiParams(this.filters), limit: 1 } }).catch(() => null);
      if (!snap) return;
      for (const [status, col] of this.columns) {
        col.count = snap.columns[status]?.count ?? col.count;
        col.capped = Boolean(snap.columns[status]?.count_capped);
      }
      this.#renderCounts();
    }, 500);
  }

  #renderCounts() {
    for (const [status, col] of this.columns) {
      col.count = Math.max(col.count, col.list.children.length);
      const shown = col.capped ? `${col.count.toLocaleString("en")}+` : String(col.count);
      col.countEl.textContent = shown;
      col.countEl.setAttribute("aria-label", `${shown} ${col.count === 1 && !col.capped ? "task" : "tasks"}`);
      col.section.classList.toggle("empty", col.count === 0);
      col.more.hidden = col.done;
      if (!col.done && !col.loading && isVisible(col.more)) this.#pageIn(status);
    }
  }

  #showTool(id, tool) {
    const entry = this.cards.get(id);
    if (entry && entry.task.status === "running") renderCard(entry.el, entry.task, tool);
  }

  #tick() {
    for (const el of this.root.querySelectorAll("[data-since]")) {
      el.textContent = `${el.dataset.prefix} ${duration(since(el.dataset.since))}`;
    }
  }
}

function isVisible(el) {
  const r = el.getBoundingClientRect();
  return r.top < innerHeight + 200 && r.bottom > -200;
}

function flash(el) {
  el.classList.remove("flash");
  void el.offsetWidth; // restart the animation
  el.classList.add("flash");
}

/** A card's content (inside its keyed <li>), from the task. */
export function renderCard(li, t, tool) {
  const who = t.agent || (t.team ? `team ${t.team}` : "—");
  const time = timing(t);
  const parts = [
    h("div.card-top", h("span.agent", { text: who }), h("span.q-name", { title: "queue", text: t.queue })),
    h("p.title", { text: firstLine(t.prompt) }),
  ];
  if (t.status === "running") {
    parts.push(h("div.state",
      h("span.phase", { text: t.phase || "starting" }),
      tool ? h("span.tool", { title: "current tool call" }, h("span", { "aria-hidden": "true", text: "⚙ " }), tool) : null,
      t.cancel_requested ? h("span.badge.warn", { text: "cancelling…" }) : null));
  }
  if (t.status === "requires_input" && t.pending_input) parts.push(h("p.question", { text: t.pending_input.question }));
  // Why no worker takes it: no live worker of the queue has what its agent requires.
  if (t.status === "pending" && t.waiting_for) parts.push(h("p.waiting-for", { text: t.waiting_for }));
  if (t.failure_class) {
    // The class in words and the next step (kernel/failures.py builds the sentence).
    parts.push(h("p.error", h("strong.failure-class", { text: FAILURE_LABEL[t.failure_class] || t.failure_class }), " ", t.failure_hint));
  } else if (t.error && t.status !== "completed") parts.push(h("p.error", { text: `${t.error.code}: ${t.error.message}` }));
  parts.push(h("div.card-meta",
    h("span.source", { text: t.source }),
    t.requested_by ? h("span.who", { text: t.requested_by }) : null,
    h("time.elapsed", time.live ? { dataset: { since: time.since, prefix: time.prefix } } : {}, time.text)));
  if (t.retry_of) parts.push(h("span.badge", { text: "retry" }));
  if (t.schedule_id) parts.push(h("span.badge.scheduled", { title: `started by schedule ${t.schedule_id}`, text: "scheduled" }));
  // Keep the link element itself, so a focused card stays focused through updates.
  let link = li.firstElementChild;
  if (!link) li.append((link = h("a.card", { href: `#/tasks/${t.id}` })));
  link.dataset.status = t.status;
  link.replaceChildren(...parts);
  li.className = `status-${t.status}`;
}

function timing(t) {
  if (FINISHED.has(t.status)) {
    const took = t.duration_seconds ?? (Date.parse(t.finished_at || t.updated_at) - Date.parse(t.created_at)) / 1000;
    return { text: `took ${duration(took)}`, live: false };
  }
  const [prefix, from] = {
    pending: ["waiting", t.created_at],
    running: ["running", t.started_at || t.updated_at],
    requires_input: ["asked", t.updated_at],
  }[t.status];
  return { text: `${prefix} ${duration(since(from))}`, live: true, since: from, prefix };
}
