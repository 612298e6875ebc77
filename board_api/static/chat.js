// The chat drawer: talk to the meta agent from the board (`POST /api/v1/chat`).
//
// The answer is an SSE stream on a POST, which EventSource cannot send, so the response
// body is read with fetch and split into frames here. The conversation id is kept in this
// tab's sessionStorage, so a reload goes on with the same conversation (the server stores
// it). A plan held for approval shows Approve / Reject; the choice goes back as a decision.

import { API, auth } from "./api.js";
import { $, h, announce } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const CONV = "meta-agent.conversation";

export class Chat {
  constructor(root) {
    this.root = root;
    this.busy = false;
    this.log = h("ol.chat-log", { "aria-live": "polite", "aria-label": "Conversation" });
    this.input = h("textarea", { id: "chat-input", rows: 2, placeholder: "Ask for work, or ask what is running…", "aria-label": "Message to the meta agent" });
    this.send = h("button.primary", { type: "submit", text: "Send" });
    const form = h("form.chat-form", { onsubmit: (e) => { e.preventDefault(); this.#submit(); } }, this.input, this.send);
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.#submit(); }
    });
    root.append(
      h("div.panel-head",
        h("h2", { id: "chat-title", text: "Meta agent" }),
        h("button.link", { type: "button", text: "New conversation", onclick: () => this.reset() }),
        h("button.close", { type: "button", "aria-label": "Close the chat", text: "×", onclick: () => this.close() })),
      h("div.panel-body.chat-body", this.log),
      form);
    root.addEventListener("keydown", (e) => { if (e.key === "Escape") this.close(); });
  }

  get conversation() { return sessionStorage.getItem(CONV) || ""; }
  set conversation(id) { id ? sessionStorage.setItem(CONV, id) : sessionStorage.removeItem(CONV); }

  toggle() { this.root.hidden ? this.open() : this.close(); }

  open() {
    this.root.hidden = false;
    $("#chat-open")?.setAttribute("aria-expanded", "true");
    this.input.focus();
  }

  close() {
    this.root.hidden = true;
    $("#chat-open")?.setAttribute("aria-expanded", "false");
  }

  reset() {
    this.conversation = "";
    this.log.replaceChildren();
    this.input.focus();
  }

  #submit() {
    const text = this.input.value.trim();
    if (!text || this.busy) return;
    this.input.value = "";
    this.#say("you", text);
    this.#turn({ message: text, source: "board" });
  }

  #say(who, text) {
    const li = h(`li.msg.${who}`, h("span.who", { text: who === "you" ? "You" : "Meta agent" }));
    const body = h("div.text");
    if (text) body.append(who === "you" ? text : renderMarkdown(text));
    li.append(body);
    this.log.append(li);
    this.#scroll();
    return body;
  }

  #note(cls, ...children) {
    const li = h(`li.note.${cls}`, ...children);
    this.log.append(li);
    this.#scroll();
    return li;
  }

  #scroll() {
    const body = this.log.parentElement;
    if (body) body.scrollTop = body.scrollHeight;
  }

  async #turn(body) {
    this.busy = true;
    this.send.disabled = true;
    if (this.conversation) body.conversation_id = this.conversation;
    let reply = null;
    let text = "";
    try {
      const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
      if (auth.key) headers.Authorization = `Bearer ${auth.key}`;
      const resp = await fetch(API + "/chat", { method: "POST", headers, body: JSON.stringify(body) });
      if (!resp.ok) {
        const problem = await resp.json().catch(() => ({}));
        this.#note("error", problem.detail || problem.title || `HTTP ${resp.status}`);
        if (problem.code === "conversation_not_found") this.conversation = "";
        return;
      }
      for await (const [event, data] of frames(resp.body)) {
        if (event === "conversation") this.conversation = data.conversation_id;
        else if (event === "text") {
          reply ??= this.#say("agent", "");
          text += data.text;
          reply.replaceChildren(renderMarkdown(text));
          this.#scroll();
        } else if (event === "text_reset") {
          text = ""; // the model call is retried: its partial answer goes
          reply?.replaceChildren();
        } else if (event === "tool_call") {
          reply = null; text = ""; // the next words start a new bubble, after the tool line
          this.#note("tool", `→ ${data.name}`);
        } else if (event === "tool_result" && data.is_error) this.#note("tool error", data.text);
        else if (event === "task") this.#taskNote(data);
        else if (event === "approval") this.#approval(data);
        else if (event === "error") this.#note("error", data.message);
        else if (event === "done") announce(data.reply ? "The meta agent answered" : "The meta agent is done");
      }
    } catch (err) {
      this.#note("error", `the chat connection failed: ${err.message}`);
    } finally {
      this.busy = false;
      this.send.disabled = false;
    }
  }

  #taskNote(t) {
    this.#note("task",
      "Execution ", h("a", { href: `#/tasks/${t.task_id}`, text: t.task_id }),
      ` ${(t.status || "").replace("_", " ")}`);
  }

  #approval(a) {
    const args = a.arguments || {};
    const what = a.tool === "retry_task" ? `retry execution ${args.task_id}` : `run ${args.agent || args.team} on ${args.queue || "its default queue"}`;
    const decide = (approve) => {
      for (const b of box.querySelectorAll("button")) b.disabled = true;
      box.append(h("p.muted", { text: approve ? "Approved." : "Rejected." }));
      this.#turn({ decision: { approval_id: a.approval_id, approve } });
    };
    const box = this.#note("approval",
      h("strong", { text: `Approve? The meta agent wants to ${what}.` }),
      args.prompt ? h("p", { text: args.prompt }) : null,
      h("div.actions",
        h("button.primary", { type: "button", text: "Approve", onclick: () => decide(true) }),
        h("button", { type: "button", text: "Reject", onclick: () => decide(false) })));
    box.querySelector("button").focus();
  }
}

/** SSE frames of a fetch body: yields [event, data]. */
async function* frames(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield [event, JSON.parse(data.join("\n"))];
    }
  }
}
