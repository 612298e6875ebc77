// Pure views over a task's event log: the agent's output as messages, and its tool calls
// paired by `tool_call_id`. Runtimes name fields a little differently; accept the usual keys.

const TEXT_KEYS = ["text", "delta", "content", "message", "output", "chunk"]; // chunk: a tool_output piece

/** The text of a message, delta or output, whatever key the runtime used. */
export function textOf(data) {
  if (typeof data === "string") return data;
  if (!data || typeof data !== "object") return "";
  for (const k of TEXT_KEYS) {
    const v = data[k];
    if (typeof v === "string") return v;
    if (Array.isArray(v)) return v.map((b) => (b && typeof b === "object" ? b.text || "" : "")).join("");
  }
  return "";
}

/** Feed events in order; `messages` is [{text, done}] and the streamed one is last.
 * `add` returns the index of the message it changed (-1: none). */
export class Output {
  constructor() {
    this.messages = [];
  }

  add(e) {
    const last = this.messages[this.messages.length - 1];
    if (e.kind === "message_reset") {
      // A retried model call: the text streamed since the last full message is void. The
      // index returned no longer holds a message (until the retry streams into it).
      if (!last || last.done) return -1;
      this.messages.pop();
      return this.messages.length;
    }
    if (last && !last.done && e.kind !== "message_delta" && e.kind !== "message" && e.kind !== "usage") {
      last.done = true; // the model's turn ended (a tool call, a status change) without a full message
      return this.messages.length - 1;
    }
    if (e.kind === "message_delta") {
      if (last && !last.done) last.text += textOf(e.data);
      else this.messages.push({ text: textOf(e.data), done: false });
      return this.messages.length - 1;
    }
    if (e.kind === "message") {
      const text = textOf(e.data);
      // A full message closes the streamed one (and is the authoritative text).
      if (last && !last.done) {
        last.text = text || last.text;
        last.done = true;
        return this.messages.length - 1;
      }
      if (!text) return -1;
      this.messages.push({ text, done: true });
      return this.messages.length - 1;
    }
    return -1;
  }
}

/** Feed events in order; `calls` maps tool_call_id → {id, name, status, args, output, ...}. */
export class ToolCalls {
  constructor() {
    this.calls = new Map();
  }

  add(e) {
    if (!e.kind.startsWith("tool_")) return null;
    const d = e.data || {};
    const id = String(d.tool_call_id ?? d.id ?? `seq-${e.seq}`);
    let c = this.calls.get(id);
    if (!c) {
      c = { id, name: "tool", status: "running", args: undefined, output: "", error: null, started: e.created_at, ended: null, duration: null };
      this.calls.set(id, c);
    }
    if (d.tool || d.name || d.tool_name) c.name = String(d.tool || d.name || d.tool_name);
    if (e.kind === "tool_started") {
      c.args = d.args ?? d.arguments ?? d.input;
      c.started = e.created_at;
    } else if (e.kind === "tool_output") {
      c.output += textOf(d) || (d.line != null ? `${d.line}\n` : "");
    } else if (e.kind === "tool_completed") {
      const failed = Boolean(d.error) || d.ok === false || d.is_error === true || d.status === "error";
      c.status = failed ? "failed" : "success";
      c.error = d.error ?? null;
      const out = d.output ?? d.result;
      if (out != null) c.output = typeof out === "string" ? out : JSON.stringify(out, null, 2);
      c.ended = e.created_at;
      const secs = d.duration_seconds ?? d.duration ?? (typeof d.duration_ms === "number" ? d.duration_ms / 1000 : null);
      c.duration = typeof secs === "number" ? secs : (Date.parse(c.ended) - Date.parse(c.started)) / 1000;
    }
    return c;
  }
}

/** One line about an event, for the Logs tab. */
export function summary(e) {
  const d = e.data || {};
  switch (e.kind) {
    case "status":
      return `${d.from ? d.from + " → " : ""}${d.status}${d.error ? ` (${d.error.code}: ${d.error.message})` : ""}`;
    case "log":
      return d.line != null ? `[${d.stream || "stdout"}] ${d.line}` : `[${d.level || "info"}] ${d.message ?? ""}`;
    case "message_delta":
    case "message":
      return textOf(d);
    case "message_reset":
      return `partial answer discarded: ${d.reason ?? "retried"}`;
    case "tool_started":
      return `${d.tool || d.name || "tool"} ${JSON.stringify(d.args ?? d.arguments ?? d.input ?? {})}`;
    case "tool_output":
      return textOf(d) || String(d.line ?? "");
    case "tool_completed":
      return `${d.tool || d.name || "tool"} ${d.error ? "failed" : "done"}`;
    case "input_requested":
      return d.question || "";
    case "input_received":
      return `answered: ${d.answer ?? JSON.stringify(d)}`;
    case "artifact":
      return `${d.name}${d.size != null ? ` (${d.size} bytes)` : ""}`;
    default:
      return JSON.stringify(d);
  }
}
