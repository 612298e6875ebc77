// Dialogs: confirm, the API key prompt, and "New task". Native <dialog> gives focus
// trapping, Escape to close and a backdrop without any library.

import { api } from "./api.js";
import { h } from "./dom.js";

/** Ask a yes/no question; resolves true when confirmed. */
export function confirmDialog(title, text, yes = "Confirm") {
  return new Promise((resolve) => {
    const dlg = h("dialog.dialog", { "aria-labelledby": "confirm-title" },
      h("form", { method: "dialog" },
        h("h2", { id: "confirm-title", text: title }),
        h("p", { text }),
        h("div.buttons",
          h("button", { value: "no", type: "submit", text: "Keep it" }),
          h("button.danger", { value: "yes", type: "submit", text: yes }))));
    dlg.addEventListener("close", () => {
      resolve(dlg.returnValue === "yes");
      dlg.remove();
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Ask for an API key until one works; `check(key)` throws when it does not. */
export function keyDialog(check) {
  return new Promise((resolve) => {
    const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
    const err = h("p.form-error", { role: "alert" });
    const form = h("form",
      h("h2", { id: "key-title", text: "API key required" }),
      h("p", { text: "This control plane requires an API key. It is kept for this browser tab only." }),
      h("label", { for: "api-key", text: "API key" }), input, err,
      h("div.buttons", h("button.primary", { type: "submit", text: "Sign in" })));
    const dlg = h("dialog.dialog", { "aria-labelledby": "key-title" }, form);
    dlg.addEventListener("cancel", (e) => e.preventDefault()); // nothing to show without a key
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const who = await check(input.value.trim());
        dlg.close();
        dlg.remove();
        resolve(who);
      } catch (ex) {
        err.textContent = ex.message;
        input.select();
      }
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** "New task": agent, queue, prompt, parameters. Resolves with the created task or null. */
export async function createTaskDialog() {
  const [agents, queues] = await Promise.all([api("/agents"), api("/worker-queues")]);
  const agent = h("select", { id: "nt-agent", name: "agent", required: true },
    agents.items.map((a) => h("option", { value: a.name, text: a.description ? `${a.name} — ${a.description}` : a.name })));
  const queue = h("select", { id: "nt-queue", name: "queue" },
    h("option", { value: "", text: "the agent's default queue" }),
    queues.items.map((q) => h("option", { value: q.name, text: `${q.name} (${q.active_workers} workers)` })));
  const prompt = h("textarea", { id: "nt-prompt", name: "prompt", rows: 4, required: true });
  const params = h("fieldset.params", h("legend", { text: "Parameters" }));
  const extra = h("textarea", { id: "nt-extra", rows: 2, placeholder: '{"key": "value"}', spellcheck: "false" });
  const err = h("p.form-error", { role: "alert" });
  const byName = new Map(agents.items.map((a) => [a.name, a]));

  // One labelled field per parameter the agent declares; anything else as JSON.
  const showParams = () => {
    const spec = byName.get(agent.value)?.parameters || {};
    params.replaceChildren(h("legend", { text: "Parameters" }));
    for (const [name, p] of Object.entries(spec)) {
      const id = `nt-p-${name}`;
      params.append(h("label", { for: id }, name, p.required ? " (required)" : ""),
        h("input", { id, dataset: { param: name }, value: p.default ?? "", placeholder: p.description || "" }));
    }
    params.append(h("label", { for: "nt-extra", text: "Other parameters (JSON object, optional)" }), extra);
    const q = byName.get(agent.value)?.default_queue;
    queue.firstElementChild.textContent = q ? `the agent's default queue (${q})` : "the agent's default queue";
  };
  agent.addEventListener("change", showParams);
  showParams();

  return new Promise((resolve) => {
    const form = h("form",
      h("h2", { id: "nt-title", text: "New task" }),
      h("label", { for: "nt-agent", text: "Agent" }), agent,
      h("label", { for: "nt-queue", text: "Queue" }), queue,
      h("label", { for: "nt-prompt", text: "Prompt" }), prompt,
      params, err,
      h("div.buttons",
        h("button", { type: "button", onclick: () => dlg.close(), text: "Cancel" }),
        h("button.primary", { type: "submit", text: "Create task" })));
    const dlg = h("dialog.dialog.wide", { "aria-labelledby": "nt-title" }, form);
    let created = null;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const parameters = extra.value.trim() ? JSON.parse(extra.value) : {};
        if (typeof parameters !== "object" || Array.isArray(parameters)) throw new Error("parameters must be a JSON object");
        for (const input of params.querySelectorAll("[data-param]")) if (input.value) parameters[input.dataset.param] = input.value;
        created = await api("/tasks", {
          method: "POST",
          body: { agent: agent.value, queue: queue.value || null, prompt: prompt.value, parameters, source: "board" },
        });
        dlg.close();
      } catch (ex) {
        err.textContent = ex instanceof SyntaxError ? `parameters: ${ex.message}` : ex.message;
      }
    });
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(created);
    });
    document.body.append(dlg);
    dlg.showModal();
    prompt.focus();
  });
}
