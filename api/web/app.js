// citeqa's page: streams /v1/chat, renders verified citations, shows cited passages.
// Every piece of text from the server goes in through textContent, never innerHTML.
"use strict";

const $ = (id) => document.getElementById(id);
const chat = $("chat"), form = $("ask"), input = $("q"), send = $("send");
const keyInput = $("key"), topk = $("topk"), mode = $("mode");
let history = [];  // [{role, content}] of finished turns

keyInput.value = localStorage.getItem("citeqa-key") || "";
keyInput.addEventListener("change", () => localStorage.setItem("citeqa-key", keyInput.value));
$("reset").addEventListener("click", () => { history = []; chat.replaceChildren(); closePanel(); });
$("close").addEventListener("click", closePanel);
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
});

function headers() {
  const h = { "Content-Type": "application/json", "Accept": "text/event-stream" };
  if (keyInput.value) h["Authorization"] = "Bearer " + keyInput.value;
  return h;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

mode.addEventListener("change", () => {
  input.placeholder = mode.value === "claim"
    ? "A claim to check against the papers… (Enter to send)"
    : "Ask about the papers… (Enter to send, Shift+Enter for a new line)";
  send.textContent = mode.value === "claim" ? "Check" : "Ask";
});

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const question = input.value.trim();
  if (!question) return;
  if (mode.value === "claim") return checkClaim(question);
  input.value = "";
  send.disabled = true;
  const turn = el("div", "turn");
  turn.append(el("div", "q", question));
  const answer = el("div", "a streaming", "");
  answer.dataset.state = "streaming";
  turn.append(answer);
  chat.append(turn);
  turn.scrollIntoView({ block: "end" });
  const messages = [...history, { role: "user", content: question }];
  try {
    const final = await stream("/v1/chat", { messages }, "the answer stream ended early", {
      token: (d) => { answer.textContent += d.text; },
      reset: () => { answer.textContent = ""; },
    });
    render(turn, answer, final);
    history = [...messages, { role: "assistant", content: final.answer }];
  } catch (err) {
    answer.classList.remove("streaming");
    answer.dataset.state = "error";
    answer.replaceChildren(el("span", "error", "Error: " + err.message));
  } finally {
    send.disabled = false;
    input.focus();
  }
});

// POSTs `body` to a streaming endpoint (with the page's top-k), calls `on[event]` with
// each event's data, and returns the "done" event's data; an HTTP error, an "error"
// event or a stream that ends without "done" throws, with the server's message.
async function stream(url, body, early, on) {
  const req = { ...body, stream: true };
  const k = parseInt(topk.value, 10);
  if (k > 0) req.top_k = k;
  const r = await fetch(url, { method: "POST", headers: headers(), body: JSON.stringify(req) });
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  for await (const ev of sse(r.body)) {
    const data = ev.data ? JSON.parse(ev.data) : null;
    if (ev.event === "done") return data;
    if (ev.event === "error") throw new Error(data.error.message);
    if (on[ev.event]) on[ev.event](data);
  }
  throw new Error(early);
}

// "Check a claim": streams /v1/verify; each paper that bears on the claim is shown
// as it is judged, with its label and the sentences that say so.
async function checkClaim(claim) {
  input.value = "";
  send.disabled = true;
  const turn = el("div", "turn claim");
  turn.append(el("div", "q", claim));
  const box = el("div", "a streaming", "Checking the papers…");
  box.dataset.state = "streaming";
  const list = el("ul", "papers");
  turn.append(box, list);
  chat.append(turn);
  turn.scrollIntoView({ block: "end" });
  try {
    const final = await stream("/v1/verify", { claim }, "the check stream ended early", {
      paper: (d) => list.append(paperItem(d)),
    });
    box.classList.remove("streaming");
    box.dataset.state = "done";
    box.replaceChildren(el("span", "verdict", final.verdict));
    if (final.refused) turn.querySelector(".q").append(el("span", "badge refused", "no evidence"));
  } catch (err) {
    box.classList.remove("streaming");
    box.dataset.state = "error";
    box.replaceChildren(el("span", "error", "Error: " + err.message));
  } finally {
    send.disabled = false;
    input.focus();
  }
}

function paperItem(p) {
  const li = el("li", "paper");
  li.dataset.label = p.label;
  li.append(el("span", "badge " + (p.label === "supports" ? "supports" : "contradicts"), p.label));
  const title = el("span", "title", " [" + p.citations[0].n + "] " + p.title);
  title.addEventListener("click", () => show(p.citations[0], title));
  li.append(title);
  for (const c of p.citations) {
    const q = el("blockquote", "rationale", c.quote);
    q.addEventListener("click", () => show(c, q));
    li.append(q);
  }
  return li;
}

// Server-sent events from a fetch body (EventSource cannot POST).
async function* sse(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const ev = { event: "message", data: "" };
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "event") ev.event = val;
        else if (field === "data") data.push(val);
      }
      ev.data = data.join("\n");
      if (data.length) yield ev;
    }
  }
}

function render(turn, answer, a) {
  answer.classList.remove("streaming");
  answer.dataset.state = "done";
  answer.replaceChildren();
  const byN = new Map(a.citations.map((c) => [c.n, c]));
  // Split on markers; each [n] with a citation becomes a button, the rest stays text.
  const parts = a.answer.split(/(\[\d+\])/);
  for (const part of parts) {
    const m = /^\[(\d+)\]$/.exec(part);
    const c = m && byN.get(parseInt(m[1], 10));
    if (c) {
      const b = el("button", "cite", part);
      b.type = "button";
      b.dataset.n = String(c.n);
      b.addEventListener("click", () => show(c, b));
      answer.append(b);
    } else {
      answer.append(document.createTextNode(part));
    }
  }
  const q = turn.querySelector(".q");
  if (a.refused) q.append(el("span", "badge refused", "not covered"));
  if (a.degraded) {
    const d = el("span", "badge degraded", "fallback");
    d.title = a.degraded_reason || "";
    q.append(d);
  }
  if (a.citations.length) {
    const ol = el("ol", "refs");
    for (const c of a.citations) {
      const li = el("li", "", c.title);
      li.value = c.n;
      li.addEventListener("click", () => show(c, li));
      li.append(citeMenu([c.paper_id], "cite"));
      ol.append(li);
    }
    turn.append(ol);
    const ids = [...new Set(a.citations.map((c) => c.paper_id))];
    if (ids.length > 1) turn.append(citeMenu(ids, "cite all " + ids.length));
  }
  // A refusal near the corpus names the nearest papers: each opens its abstract.
  if (a.nearest && a.nearest.length) {
    const ol = el("ol", "refs nearest");
    a.nearest.forEach((p, i) => {
      const c = { n: i + 1, paper_id: p.paper_id, title: p.title || p.paper_id, url: p.url,
                  quote: "", start: 0, end: 0 };
      const li = el("li", "", c.title);
      li.value = c.n;
      li.addEventListener("click", () => show(c, li));
      ol.append(li);
    });
    turn.append(ol);
  }
}

async function show(c, trigger) {
  document.querySelectorAll(".cite.active").forEach((b) => b.classList.remove("active"));
  if (trigger.classList.contains("cite")) trigger.classList.add("active");
  const panel = $("panel");
  panel.hidden = false;
  $("p-title").textContent = "[" + c.n + "] " + c.title;
  $("p-id").textContent = c.paper_id;
  const link = $("p-link");
  const safe = typeof c.url === "string" && /^https?:\/\//i.test(c.url);
  link.hidden = !safe;
  if (safe) { link.href = c.url; link.textContent = c.url; }
  const abs = $("p-abstract");
  abs.replaceChildren(el("mark", "", c.quote));  // until the abstract arrives
  try {
    const h = headers(); delete h["Accept"];
    const r = await fetch("/v1/papers/" + encodeURIComponent(c.paper_id), { headers: h });
    if (!r.ok) return;
    const text = (await r.json()).abstract || "";
    if (text.slice(c.start, c.end) !== c.quote) return;  // keep the quote alone
    abs.replaceChildren(
      document.createTextNode(text.slice(0, c.start)),
      el("mark", "", text.slice(c.start, c.end)),
      document.createTextNode(text.slice(c.end)),
    );
    abs.querySelector("mark").scrollIntoView({ block: "nearest" });
  } catch (_) { /* the quote is already shown */ }
}

function closePanel() { $("panel").hidden = true; }

// The cite menu: a paper (or all an answer cites) as a file for a reference manager.
const CITE_FORMATS = [["bibtex", "BibTeX"], ["ris", "RIS"], ["csljson", "CSL-JSON"]];

function citeMenu(ids, label) {
  const menu = el("details", "cite-menu");
  menu.append(el("summary", "", label));
  menu.addEventListener("click", (e) => e.stopPropagation());  // not the panel's click
  for (const [fmt, name] of CITE_FORMATS) {
    const b = el("button", "cite-format", name);
    b.type = "button";
    b.dataset.format = fmt;
    b.addEventListener("click", () => download(ids, fmt, menu));
    menu.append(b);
  }
  return menu;
}

async function download(ids, fmt, menu) {
  const h = headers(); delete h["Accept"]; delete h["Content-Type"];
  const url = ids.length === 1
    ? "/v1/papers/" + encodeURIComponent(ids[0]) + "?format=" + fmt
    : "/v1/cite?format=" + fmt + ids.map((i) => "&paper_id=" + encodeURIComponent(i)).join("");
  menu.querySelectorAll(".error").forEach((e) => e.remove());
  try {
    const r = await fetch(url, { headers: h });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { msg = (await r.json()).error.message; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    const name = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await r.blob());
    link.download = name ? name[1] : "citation";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    menu.open = false;
  } catch (err) {
    menu.append(el("span", "error", " " + err.message));
  }
}
