// Operations (`#/ops`): worker queues and their live workers. Workers have no stream of
// their own, so this view re-reads them every few seconds while it is on screen.

import { api } from "./api.js";
import { duration, h, since, stamp } from "./dom.js";

const EVERY_MS = 3000;

export class Ops {
  constructor(root) {
    this.root = root;
  }

  show() {
    this.root.hidden = false;
    this.#load();
    clearInterval(this.timer);
    this.timer = setInterval(() => !document.hidden && this.#load(), EVERY_MS);
  }

  hide() {
    this.root.hidden = true;
    clearInterval(this.timer);
  }

  async #load() {
    let queues, workers;
    try {
      [queues, workers] = await Promise.all([api("/worker-queues"), api("/workers")]);
    } catch (err) {
      this.root.replaceChildren(h("p.form-error", { role: "alert", text: err.message }));
      return;
    }
    const byQueue = Map.groupBy ? Map.groupBy(workers.items, (w) => w.queue) : group(workers.items);
    const sections = queues.items.map((q) => {
      const ws = byQueue.get(q.name) || [];
      return h("section.queue", { "aria-labelledby": `q-${q.id}` },
        h("h2", { id: `q-${q.id}` }, q.name, q.environment ? h("span.pill", { text: q.environment }) : null),
        q.description ? h("p.muted", { text: q.description }) : null,
        h("p.queue-stats",
          stat("workers", q.active_workers), stat("capacity", q.capacity),
          stat("pending", q.pending_tasks), stat("running", q.running_tasks)),
        ws.length
          ? h("table.workers",
            h("caption.sr-only", { text: `Live workers of ${q.name}` }),
            h("thead", h("tr", ["Worker", "Host", "Version", "Running", "Last heartbeat", "Up since"].map((c) => h("th", { scope: "col", text: c })))),
            h("tbody", ws.map((w) => h("tr",
              h("td", { text: w.name || w.id }), h("td", { text: w.hostname }), h("td", { text: w.version }),
              h("td", { text: `${w.running} / ${w.capacity}` }),
              h("td", h("time", { datetime: w.last_heartbeat_at, title: stamp(w.last_heartbeat_at), text: `${duration(since(w.last_heartbeat_at))} ago` })),
              h("td", { text: stamp(w.started_at) })))))
          : h("p.muted", { text: "No live workers." }));
    });
    this.root.replaceChildren(h("h2.sr-only", { text: "Operations" }),
      ...(sections.length ? sections : [h("p.muted", { text: "No worker queues yet." })]));
  }
}

function stat(label, value) {
  return h("span.stat", h("b", { text: String(value) }), ` ${label}`);
}

function group(items) {
  const m = new Map();
  for (const w of items) m.set(w.queue, [...(m.get(w.queue) || []), w]);
  return m;
}
