// A small, safe markdown renderer for agent output. It builds DOM nodes and puts text in
// with text nodes only, so nothing the agent writes can become HTML, script or a
// javascript: link. Covers what agents actually write: headings, paragraphs, lists,
// fenced code, block quotes, rules, `code`, **bold**, *italic*, [links](https://...).

import { h } from "./dom.js";

const SAFE_URL = /^(https?:|mailto:)/i;

/** Render markdown text into a DocumentFragment. */
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+-]*)/);
    if (fence) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++; // the closing fence (or the end of a still-streaming block)
      const code = h("code", { text: body.join("\n") });
      if (fence[2]) code.dataset.lang = fence[2];
      out.append(h("pre", code));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      // Agent headings sit inside a panel: shift them below the panel's own h2/h3.
      const level = Math.min(6, heading[1].length + 3);
      out.append(h(`h${level}`, inline(heading[2])));
      i++;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      out.append(h("hr"));
      i++;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const body = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) body.push(lines[i++].replace(/^\s*>\s?/, ""));
      out.append(h("blockquote", renderMarkdown(body.join("\n"))));
      continue;
    }
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+/);
    if (item) {
      const ordered = /\d/.test(item[1]);
      const list = h(ordered ? "ol" : "ul");
      while (i < lines.length) {
        const m = lines[i].match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
        if (m && /\d/.test(m[1]) === ordered) {
          list.append(h("li", inline(m[2])));
          i++;
        } else if (lines[i].trim() && /^\s{2,}/.test(lines[i]) && list.lastChild) {
          list.lastChild.append(" ", ...inline(lines[i].trim())); // a continuation line
          i++;
        } else break;
      }
      out.append(list);
      continue;
    }
    if (!line.trim()) {
      i++;
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) para.push(lines[i++]);
    if (!para.length) para.push(lines[i++]); // a line no block rule took
    const p = h("p");
    para.forEach((l, n) => {
      if (n) p.append(h("br"));
      p.append(...inline(l));
    });
    out.append(p);
  }
  return out;
}

function startsBlock(line) {
  return /^\s*(```|~~~|#{1,6}\s|>|[-*+]\s|\d+[.)]\s)/.test(line);
}

// Earliest match wins; the text between matches becomes plain text nodes.
const INLINE = /`([^`]+)`|\*\*(.+?)\*\*|__(.+?)__|\*([^*\s][^*]*?)\*|_([^_\s][^_]*?)_|\[([^\]]+)\]\(([^)\s]+)\)/g;

/** Inline markdown → an array of nodes. */
export function inline(text) {
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) nodes.push(document.createTextNode(text.slice(last, m.index)));
    if (m[1] != null) nodes.push(h("code", { text: m[1] }));
    else if (m[2] != null || m[3] != null) nodes.push(h("strong", inline(m[2] ?? m[3])));
    else if (m[4] != null || m[5] != null) nodes.push(h("em", inline(m[4] ?? m[5])));
    else if (SAFE_URL.test(m[7])) {
      nodes.push(h("a", { href: m[7], target: "_blank", rel: "noopener noreferrer" }, inline(m[6])));
    } else nodes.push(document.createTextNode(m[0])); // an unsafe link stays visible text
    last = m.index + m[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}
