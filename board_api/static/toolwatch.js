// Which tool a running task is calling right now, for its card. Tool events do not move a
// task on the board stream (only status and phase do), so this follows the tail of each
// visible running task's event log with a light poll, only while the page is visible.

import { api } from "./api.js";

const EVERY_MS = 2000;
const MAX_WATCHED = 20; // a board shows this many running cards before the column scrolls

export const toolName = (d) => String(d.tool || d.name || d.tool_name || "tool");

export class ToolWatch {
  constructor(onChange) {
    this.onChange = onChange; // (taskId, toolName | null) => void
    this.tasks = new Map(); // id → {seen, open: Map(callId → name), tool}
    this.timer = setInterval(() => this.#poll(), EVERY_MS);
  }

  current(id) {
    return this.tasks.get(id)?.tool ?? null;
  }

  watch(t) {
    if (this.tasks.has(t.id) || this.tasks.size >= MAX_WATCHED) return;
    // Start near the end of the log: the current call is among the last events.
    this.tasks.set(t.id, { seen: Math.max(0, (t.last_seq || 0) - 100), open: new Map(), tool: null });
  }

  unwatch(id) {
    this.tasks.delete(id);
  }

  async #poll() {
    if (document.hidden || this.busy) return;
    this.busy = true;
    try {
      await Promise.all([...this.tasks.keys()].map((id) => this.#follow(id)));
    } finally {
      this.busy = false;
    }
  }

  async #follow(id) {
    const page = await api(`/tasks/${id}/events`, { params: { after: this.tasks.get(id).seen, limit: 500 } }).catch(() => null);
    const w = this.tasks.get(id);
    if (!page || !w) return;
    for (const e of page.items) {
      w.seen = e.seq;
      const call = e.data.tool_call_id || e.data.id;
      if (e.kind === "tool_started") w.open.set(call, toolName(e.data));
      if (e.kind === "tool_completed") w.open.delete(call);
    }
    const tool = [...w.open.values()].pop() ?? null;
    if (tool !== w.tool) {
      w.tool = tool;
      this.onChange(id, tool);
    }
  }
}
