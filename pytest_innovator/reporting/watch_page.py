"""The live page of `pytest-innovator watch` (watch.py): one HTML file with its script.

Everything the page shows arrives as JSON and goes into the page as text (textContent, never
innerHTML): trajectory text is the agent's. Each item's card is made once and then only its
status, evaluations and tail are refilled, so what a person is typing survives the updates.
"""

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pytest-innovator watch</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1em 2em; color: #222; }
.item { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 1em; margin: 1em 0; }
.item h2 { font-size: 1.1em; margin: 0.2em 0; }
.state-running h2 { color: #06c; } .state-finished h2 { color: #393; } .state-stopped h2 { color: #b30; }
.status { font-family: monospace; }
.tail { font-family: monospace; font-size: 0.85em; white-space: pre-wrap; background: #f6f6f6;
        max-height: 22em; overflow: auto; padding: 0.4em; }
.tail .failed { color: #b00; }
textarea { width: 100%; height: 4em; }
.notice { color: #555; font-style: italic; }
.notice.error { color: #b00; }
</style>
</head>
<body>
<h1>pytest-innovator watch</h1>
<p id="source"></p>
<p id="connection" class="notice"></p>
<div id="items"></div>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const cards = new Map();

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}

async function call(action, body, card) {
  const notice = card.querySelector(".notice");
  notice.className = "notice";
  notice.textContent = "sending...";
  try {
    const response = await fetch("/api/" + action, {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-Watch-Token": token},
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    notice.className = response.ok ? "notice" : "notice error";
    notice.textContent = response.ok ? answer.done : "error: " + answer.error;
    return response.ok;
  } catch (error) {
    notice.className = "notice error";
    notice.textContent = "error: " + error;
    return false;
  }
}

function makeCard(item) {
  const card = el("section", {className: "item"});
  card.dataset.item = item.id;
  const author = el("input", {className: "author", placeholder: "your name"});
  author.value = localStorage.getItem("author") || "";
  const text = el("textarea", {className: "guidance-text", placeholder: "guidance for the agent"});
  const send = el("button", {className: "send", textContent: "send guidance"});
  send.onclick = async () => {
    localStorage.setItem("author", author.value);
    if (await call("guide", {item: item.id, text: text.value, author: author.value}, card)) text.value = "";
  };
  const pause = el("button", {className: "pause", textContent: "pause"});
  pause.onclick = () => call("pause", {item: item.id}, card);
  const resume = el("button", {className: "resume", textContent: "resume"});
  resume.onclick = () => call("resume", {item: item.id}, card);
  const step = el("input", {className: "mark-step", type: "number", min: 1, placeholder: "step"});
  const reason = el("input", {className: "mark-reason", placeholder: "why"});
  const keep = el("button", {className: "mark-keep", textContent: "keep"});
  const drop = el("button", {className: "mark-drop", textContent: "drop"});
  for (const [button, label] of [[keep, "keep"], [drop, "drop"]]) {
    button.onclick = () => call(
      "label", {item: item.id, step: step.value, label, reason: reason.value, author: author.value}, card);
  }
  card.append(
    el("h2", {className: "title"}),
    el("div", {className: "status"}),
    el("h3", {textContent: "evaluations"}), el("ol", {className: "evaluations"}),
    el("h3", {textContent: "trajectory (latest last)"}), el("div", {className: "tail"}),
    el("div", {className: "guide"}, author, text, send, " ", pause, resume),
    el("div", {className: "mark"}, "mark a step: ", step, reason, keep, drop),
    el("p", {className: "notice"}),
  );
  return card;
}

function score(value) { return value === null || value === undefined ? "–" : value.toFixed(1); }

function fill(card, item) {
  card.className = "item state-" + item.state;
  card.querySelector(".title").textContent = item.id + " — " + item.state + (item.paused ? " (paused)" : "");
  card.querySelector(".status").textContent =
    "agent " + (item.agent || "?") + " · step " + item.step + "/" + (item.step_limit || "?") +
    " · working time " + Math.round(item.working_time_s) + " s · evaluations " + item.evals_used + "/" +
    (item.evals_budget ?? "∞") + " · best " + score(item.best_score) + " · last " + score(item.last_score) +
    (item.state === "finished" ? " · final " + score(item.score_final) + " (" + item.end_reason + ")" : "");
  const running = item.state === "running";
  card.querySelector(".guide").hidden = !running;
  card.querySelector(".mark").hidden = item.state !== "finished";
  card.querySelector(".evaluations").replaceChildren(...item.evaluation_list.map(e => el("li", {
    className: "evaluation",
    textContent: e.kind + " at step " + e.step + ": " + e.status + ", score " + score(e.score) +
      (e.message ? " — " + e.message : ""),
  })));
  const tail = card.querySelector(".tail");
  const atBottom = tail.scrollTop + tail.clientHeight >= tail.scrollHeight - 4;
  tail.replaceChildren(...item.tail.map(r => el("div", {
    className: r.ok ? "record" : "record failed",
    textContent: (r.step ?? "") + " " + r.kind + ": " + r.text,
  })));
  if (atBottom) tail.scrollTop = tail.scrollHeight;
}

async function refresh() {
  const connection = document.getElementById("connection");
  try {
    const response = await fetch("/api/items", {headers: {"X-Watch-Token": token}, cache: "no-store"});
    const data = await response.json();
    if (!response.ok) throw new Error(data.error);
    document.getElementById("source").textContent = data.results_dir;
    connection.textContent = data.items.length ? "" : "no items yet";
    const list = document.getElementById("items");
    data.items.forEach((item, index) => {
      if (!cards.has(item.id)) cards.set(item.id, makeCard(item));
      const card = cards.get(item.id);
      fill(card, item);
      // Moved only when out of the server's order: moving a card takes the focus from its text box.
      if (list.children[index] !== card) list.insertBefore(card, list.children[index] || null);
    });
  } catch (error) {
    connection.textContent = "cannot reach the watch server: " + error.message;
  }
}

refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""
