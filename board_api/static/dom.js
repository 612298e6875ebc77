// Small DOM helpers. Text always goes in through textContent, never as HTML.

/** h("div.card", {attrs}, child, "text", [children]) → Element. */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);

export const STATUSES = [
  ["pending", "Pending"],
  ["running", "Running"],
  ["requires_input", "Requires Input"],
  ["completed", "Completed"],
  ["failed", "Failed"],
  ["cancelled", "Cancelled"],
];
export const STATUS_LABEL = Object.fromEntries(STATUSES);
export const FINISHED = new Set(["completed", "failed", "cancelled"]);

/** 75 → "1m 15s"; compact, for cards. */
export function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)}s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export const since = (iso) => (Date.now() - Date.parse(iso)) / 1000;
export const stamp = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
export const firstLine = (text) => (text || "").trim().split("\n")[0].slice(0, 200) || "(no prompt)";

/** Announce a change to screen readers (one polite live region for the page). */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (region) region.textContent = text;
}

/** Any JSON value as readable text. */
export function pretty(value) {
  if (value == null) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}
