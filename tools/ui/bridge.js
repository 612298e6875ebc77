// The view side of MCP Apps (spec 2026-01-26): JSON-RPC 2.0 over postMessage with the host.
// The view has no network of its own: reads and actions are `tools/call` and `resources/read`
// requests that the host forwards to the MCP server that served this view.
const app = (() => {
  const PROTOCOL = "2026-01-26";
  const TIMEOUT_MS = 120000;
  const pending = new Map();
  const handlers = {};
  const stoppers = [];
  let nextId = 1;

  const post = (msg) => window.parent.postMessage({ jsonrpc: "2.0", ...msg }, "*");

  function settle(msg) {
    const waiter = pending.get(msg.id);
    if (!waiter) return;
    pending.delete(msg.id);
    if (msg.error) waiter.reject(new Error(msg.error.message || "the host refused the request"));
    else waiter.resolve(msg.result || {});
  }

  function answerHost(msg) {
    if (msg.method === "ui/resource-teardown") {
      stoppers.forEach((stop) => stop());
      post({ id: msg.id, result: {} });
    } else if (msg.method === "ping") {
      post({ id: msg.id, result: {} });
    } else {
      post({ id: msg.id, error: { code: -32601, message: `Method not found: ${msg.method}` } });
    }
  }

  window.addEventListener("message", (event) => {
    // Only the host talks to us; anything else (another frame, an extension) is ignored.
    if (event.source !== window.parent) return;
    const msg = event.data;
    if (!msg || msg.jsonrpc !== "2.0") return;
    if (msg.method === undefined) settle(msg);
    else if (msg.id !== undefined) answerHost(msg);
    else if (handlers[msg.method]) handlers[msg.method](msg.params || {});
  });

  function request(method, params) {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      setTimeout(() => {
        if (pending.delete(id)) reject(new Error(`the host did not answer ${method}`));
      }, TIMEOUT_MS);
      post({ id, method, params });
    });
  }

  const notify = (method, params) => post({ method, params: params || {} });

  function resultText(result) {
    return (result.content || []).map((block) => block.text || "").join(" ").trim();
  }

  // A tool's structured result; a tool error (isError) becomes an Error with its text.
  async function callTool(name, args) {
    const result = await request("tools/call", { name, arguments: args });
    if (result.isError) throw new Error(resultText(result) || `${name} failed`);
    if (result.structuredContent) return result.structuredContent;
    return JSON.parse(resultText(result));
  }

  async function readJson(uri) {
    const result = await request("resources/read", { uri });
    const content = (result.contents || [])[0];
    return content && content.text ? JSON.parse(content.text) : null;
  }

  function applyContext(ctx) {
    if (!ctx) return;
    const root = document.documentElement;
    if (ctx.theme) root.style.colorScheme = ctx.theme;
    const variables = (ctx.styles && ctx.styles.variables) || {};
    for (const [name, value] of Object.entries(variables)) if (value) root.style.setProperty(name, value);
  }

  // The content's own size (the body's box: the document itself is as tall as the iframe).
  function reportSize() {
    let last = "";
    const observer = new ResizeObserver(() => {
      const box = document.body.getBoundingClientRect();
      const size = { width: Math.ceil(box.width), height: Math.ceil(box.height) };
      const key = `${size.width}x${size.height}`;
      if (key !== last) notify("ui/notifications/size-changed", size);
      last = key;
    });
    observer.observe(document.body);
  }

  // Handlers first, then the handshake: the host may send tool-input right after `initialized`.
  async function start(name, on) {
    Object.assign(handlers, on, {
      "ui/notifications/host-context-changed": applyContext,
    });
    const init = await request("ui/initialize", {
      appInfo: { name, version: "1" },
      appCapabilities: { availableDisplayModes: ["inline"] },
      protocolVersion: PROTOCOL,
    });
    applyContext(init.hostContext);
    notify("ui/notifications/initialized", {});
    reportSize();
    return init;
  }

  // A repeating refresh that never overlaps itself and stops at teardown.
  function every(ms, tick) {
    let timer = null;
    let stopped = false;
    const run = async () => {
      timer = null;
      if (stopped) return;
      try { await tick(); } finally { if (!stopped) timer = setTimeout(run, ms); }
    };
    stoppers.push(() => { stopped = true; if (timer) clearTimeout(timer); });
    return { now: () => { if (timer) { clearTimeout(timer); run(); } }, start: run };
  }

  // The view's error line, `show(err, kind)`: an action's error ("action") stays until the
  // next action, since every action ends with a refresh, and a refresh ("refresh", the
  // default) that succeeds must not wipe out why the action failed before anyone read it.
  function errorLine(el) {
    const errors = { action: "", refresh: "" };
    return (err, kind = "refresh") => {
      errors[kind] = err ? String(err.message || err) : "";
      el.textContent = errors.action || errors.refresh;
    };
  }

  // An element built from text only (never innerHTML): task data is untrusted.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  return { start, callTool, readJson, notify, every, errorLine, h, resultText };
})();
