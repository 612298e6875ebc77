// Entry point: sign-in (when the server wants a key), the filter bar, the router
// (`#/` board, `#/tasks/{id}[/{tab}]` detail, `#/ops` operations) and the theme.

import { ApiError, api, auth } from "./api.js";
import { createTaskDialog, keyDialog } from "./actions.js";
import { Board } from "./board.js";
import { Chat } from "./chat.js";
import { Detail } from "./detail.js";
import { $, STATUSES, h } from "./dom.js";
import { FIELDS, readFilters, writeFilters } from "./filters.js";
import { Ops } from "./ops.js";
import { Schedules } from "./schedules.js";
import { History } from "./history.js";

const SOURCES = ["api", "sdk", "cli", "mcp", "slack", "board", "meta_agent", "schedule", "webhook", "a2a", "worker"];
let who = { name: "", scopes: [] };
const canAct = () => who.scopes.includes("admin") || who.scopes.includes("operator");

async function signIn() {
  try {
    who = await api("/whoami");
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    auth.key = "";
    who = await keyDialog(async (key) => {
      auth.key = key;
      try {
        return await api("/whoami");
      } catch (e) {
        auth.key = "";
        throw e;
      }
    });
  }
  document.body.classList.toggle("read-only", !canAct());
  $("#who").textContent = auth.key ? `${who.name} (${who.scopes.join(", ")})` : "";
  $("#sign-out").hidden = !auth.key;
  $("#new-task").hidden = !canAct();
  $("#chat-open").hidden = !canAct(); // the meta agent acts with the key: operators only
}

// The side panels open below the header, whose height changes as its filters wrap.
function trackHeaderHeight() {
  const top = $(".top");
  const set = () => document.documentElement.style.setProperty("--top-h", `${top.offsetHeight}px`);
  new ResizeObserver(set).observe(top);
  set();
}

// --- filters ---------------------------------------------------------------------------

async function fillFilterOptions(f) {
  const [agents, queues, teams] = await Promise.all(
    ["/agents", "/worker-queues", "/teams"].map((p) => api(p).then((r) => r.items).catch(() => [])));
  const fill = (id, names) => {
    const sel = $(id);
    // A value from a shared link stays selectable even if it is not in the catalog.
    for (const n of [...names, f[sel.name]]) addOption(sel, n);
    sel.value = f[sel.name];
  };
  fill("#f-agent", agents.map((a) => a.name));
  fill("#f-queue", queues.map((q) => q.name));
  fill("#f-team", teams.map((t) => t.name));
  fill("#f-source", SOURCES);
}

function addOption(select, value) {
  if (value && ![...select.options].some((o) => o.value === value)) select.append(h("option", { value, text: value }));
}

/** Agents, teams and queues that appear after the page loaded become filter choices too. */
function seen(t) {
  addOption($("#f-agent"), t.agent);
  addOption($("#f-team"), t.team);
  addOption($("#f-queue"), t.queue);
  addOption($("#f-source"), t.source); // sources added later (webhook, a2a, ...) too
}

function setupFilters(board) {
  const form = $("#filters");
  const f = readFilters();
  const boxes = $("#f-status");
  for (const [value, label] of STATUSES) {
    const id = `f-st-${value}`;
    boxes.append(h("span.check",
      h("input", { type: "checkbox", id, value, checked: f.status.includes(value) }),
      h("label", { for: id, text: label })));
  }
  for (const k of FIELDS) form.elements[k].value = f[k];
  fillFilterOptions(f);
  let typing;
  const apply = () => {
    const next = { status: [...boxes.querySelectorAll("input:checked")].map((i) => i.value) };
    for (const k of FIELDS) next[k] = form.elements[k].value.trim();
    writeFilters(next);
    board.show(next);
    $("#clear-filters").hidden = !next.status.length && !FIELDS.some((k) => next[k]);
  };
  form.addEventListener("change", apply);
  form.addEventListener("input", (e) => {
    if (e.target.name !== "q") return;
    clearTimeout(typing);
    typing = setTimeout(apply, 300); // one request per pause in typing, not per key
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    apply();
  });
  $("#clear-filters").addEventListener("click", () => {
    // Not form.reset(): that restores the filters the page was loaded with.
    for (const box of boxes.querySelectorAll("input")) box.checked = false;
    for (const k of FIELDS) form.elements[k].value = "";
    apply();
  });
  $("#clear-filters").hidden = !f.status.length && !FIELDS.some((k) => f[k]);
  board.show(f);
}

// --- routing ---------------------------------------------------------------------------

function route(detail, ops, schedules, history) {
  const path = location.hash.replace(/^#/, "") || "/";
  const task = path.match(/^\/tasks\/([\w-]+)(?:\/(\w+))?$/);
  const onOps = path === "/ops";
  const onSchedules = path === "/schedules";
  const onHistory = path === "/history";
  $("#view-board").hidden = onOps || onSchedules || onHistory;
  $("#filters").hidden = onOps || onSchedules || onHistory;
  onOps ? ops.show() : ops.hide();
  onSchedules ? schedules.show() : schedules.hide();
  onHistory ? history.show() : history.hide();
  const here = onOps ? "#/ops" : onSchedules ? "#/schedules" : onHistory ? "#/history" : "#/";
  for (const a of document.querySelectorAll("nav a")) a.toggleAttribute("aria-current", a.getAttribute("href") === here);
  if (task) detail.open(task[1], task[2] || "overview");
  else detail.close();
}

// --- theme: follows the system unless toggled; the choice is remembered -----------------

function setupTheme() {
  const button = $("#theme");
  const dark = () => (document.documentElement.dataset.theme || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light")) === "dark";
  const show = () => {
    button.setAttribute("aria-pressed", String(dark()));
    button.title = dark() ? "Switch to the light theme" : "Switch to the dark theme";
  };
  const saved = localStorage.getItem("meta-agent.theme");
  if (saved) document.documentElement.dataset.theme = saved;
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", show);
  button.addEventListener("click", () => {
    const next = dark() ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("meta-agent.theme", next);
    show();
  });
  show();
}

async function main() {
  setupTheme();
  trackHeaderHeight();
  await signIn();
  const live = $("#live");
  const board = new Board($("#board"), {
    onState: (text) => {
      live.textContent = text;
      live.dataset.state = text === "live" ? "live" : "off";
    },
    onSeen: seen,
  });
  const detail = new Detail($("#panel"), { canAct });
  const ops = new Ops($("#view-ops"));
  const schedules = new Schedules($("#view-schedules"), { canAct });
  const history = new History($("#view-history"));
  setupFilters(board);
  addEventListener("hashchange", () => route(detail, ops, schedules, history));
  route(detail, ops, schedules, history);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !document.querySelector("dialog[open]") && location.hash.startsWith("#/tasks/")) location.hash = "#/";
  });
  const chat = new Chat($("#chat"));
  $("#chat-open").addEventListener("click", () => chat.toggle());
  $("#new-task").addEventListener("click", async () => {
    const t = await createTaskDialog().catch((err) => alert(err.message));
    if (t) location.hash = `#/tasks/${t.id}`;
  });
  $("#sign-out").addEventListener("click", () => {
    auth.key = "";
    location.reload();
  });
}

main().catch((err) => {
  $("#live").textContent = `error: ${err.message}`;
});
