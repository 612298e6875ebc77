// Schedules (`#/schedules`): what starts tasks on a cron, when it runs next, how its last
// run went (a link to that task), and pause/resume for operators. Schedules have no stream
// of their own, so the view re-reads them every few seconds while it is on screen. Notify:
// where each run is posted (slack:#ops) and whether the last one got there.

import { api } from "./api.js";
import { $, STATUS_LABEL, announce, h, stamp } from "./dom.js";

const EVERY_MS = 3000;

export class Schedules {
  constructor(root, { canAct }) {
    this.root = root;
    this.canAct = canAct;
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

  /** `refocus`: the schedule whose button was pressed (disabled while its call ran, so
   *  it lost focus); its new button gets it back after the re-render. */
  async #load(refocus) {
    let page;
    try {
      page = await api("/schedules", { params: { limit: 200 } });
    } catch (err) {
      this.root.replaceChildren(h("p.form-error", { role: "alert", text: err.message }));
      return;
    }
    const heading = h("h2", { id: "schedules-title", text: "Schedules" });
    if (!page.items.length) {
      this.root.replaceChildren(heading, h("p.muted", {
        text: 'No schedules yet. Create one with `meta-agent schedules create NAME --agent A --cron "0 8 * * 1-5" --prompt "…"`.',
      }));
      return;
    }
    const cols = ["Name", "Agent", "Cron", "Time zone", "Next run", "Last run", "State", "Notify", ""];
    const table = h("table.workers.schedules", { "aria-labelledby": "schedules-title" },
      h("thead", h("tr", cols.map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", page.items.map((s) => this.#row(s))));
    // Keep keyboard focus on the row's button across the re-render.
    const focused = refocus || document.activeElement?.dataset?.schedule;
    this.root.replaceChildren(heading, table);
    if (focused) $(`button[data-schedule="${CSS.escape(focused)}"]`, this.root)?.focus();
  }

  #row(s) {
    return h("tr", { id: `schedule-${s.name}`, dataset: { paused: String(s.paused) } },
      h("th", { scope: "row", text: s.name, title: s.prompt }),
      h("td", { text: s.queue ? `${s.agent} · ${s.queue}` : s.agent }),
      h("td", h("code", { text: s.cron })),
      h("td", { text: s.timezone }),
      h("td.next", s.next_run_at ? h("time", { datetime: s.next_run_at, text: stamp(s.next_run_at) }) : "—"),
      h("td.last", lastRun(s)),
      h("td.state", s.paused ? h("span.pill.paused", { text: "paused" }) : h("span.pill", { text: "active" })),
      h("td.notify", notify(s)),
      h("td", this.canAct() ? this.#toggle(s) : null));
  }

  #toggle(s) {
    const action = s.paused ? "resume" : "pause";
    const button = h("button", {
      type: "button",
      dataset: { schedule: s.name },
      "aria-label": `${s.paused ? "Resume" : "Pause"} schedule ${s.name}`,
      text: s.paused ? "Resume" : "Pause",
    });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(`/schedules/${encodeURIComponent(s.name)}/${action}`, { method: "POST" });
        announce(`Schedule ${s.name} ${s.paused ? "resumed" : "paused"}`);
      } catch (err) {
        alert(err.message);
      }
      await this.#load(s.name);
    });
    return button;
  }
}

/** The targets, and the last run's delivery when it did not simply work (its reason as a
 *  tooltip): "not delivered" when Slack is not configured, "failed" on a Slack error. */
function notify(s) {
  if (!s.notify || !s.notify.length) return "—";
  const state = s.last_notify || "";
  const bad = state.startsWith("failed") || state.startsWith("not delivered");
  return [
    h("code", { text: s.notify.join(", ") }),
    bad ? h("span.muted.notify-problem", { text: ` (${state.split(":")[0]})`, title: state }) : null,
  ];
}

function lastRun(s) {
  const outcome = s.last_outcome && s.last_outcome !== "started" ? h("span.muted", { text: ` (${s.last_outcome.replace("_", " ")})`, title: s.last_error || "" }) : null;
  if (!s.last_task_id) return s.last_outcome ? outcome : "never";
  const status = STATUS_LABEL[s.last_task_status] || s.last_task_status || "";
  return [
    h("a", { href: `#/tasks/${s.last_task_id}`, text: s.last_run_at ? stamp(s.last_run_at) : s.last_task_id }),
    status ? h("span.pill", { text: status, dataset: { status: s.last_task_status } }) : null,
    outcome,
  ];
}
