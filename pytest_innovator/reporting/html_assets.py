"""The HTML report's inline stylesheet and script (the report must open without a network)."""

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 16px 48px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; } h3 { font-size: 15px; }
nav a { margin-right: 12px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.outcome-passed { color: #17702b; } .outcome-failed { color: #a33; } .outcome-error { color: #a60; }
.outcome-running { color: #1f5fa8; }
.muted { color: #777; } .small { font-size: 12px; }
.plot svg { max-width: 100%; height: auto; }
#controls { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid #ddd; z-index: 1; }
#controls label { margin-right: 12px; }
.step { border-bottom: 1px solid #eee; padding: 3px 6px; cursor: pointer; white-space: nowrap; overflow: hidden;
        text-overflow: ellipsis; font-family: ui-monospace, monospace; font-size: 12.5px; }
.step:hover { background: #f6f8fb; }
.step .n { display: inline-block; width: 52px; color: #777; } .step .t { display: inline-block; width: 72px; color: #777; }
.step .tool { display: inline-block; min-width: 120px; font-weight: 600; }
.step.failed .tool::after { content: " ✗"; color: #a33; }
.step.k-evaluation, .step.tool-evaluate { background: #eef8ee; }
.step.k-hint, .step.tool-view_hint { background: #fff4e0; }
.step.tool-think { background: #f3f0fb; }
.step.k-agent_error, .step.k-protected_change { background: #fdeaea; }
.step.k-end { background: #e8f0fb; }
.step.k-llm_call, .step.k-context_summarised { color: #888; }
.step.current { outline: 2px solid #1f5fa8; }
.detail { border: 1px solid #ccd; border-left: 4px solid #1f5fa8; margin: 2px 0 8px 24px; padding: 6px 10px; background: #fafbfd; }
.detail pre { white-space: pre-wrap; word-break: break-word; max-height: 480px; overflow: auto; background: #fff;
              border: 1px solid #eee; padding: 6px; margin: 4px 0; font-size: 12px; }
#pager { margin: 8px 0; }
"""

JS = r"""
(function () {
  "use strict";
  const PAGE = 200;
  const meta = JSON.parse(document.getElementById("items-meta").textContent);
  const CHUNK = meta.chunk;
  const parsed = {};
  const state = { item: 0, filter: "", page: 0, rows: [] };
  const $ = (id) => document.getElementById(id);

  function json(id) {
    if (!(id in parsed)) parsed[id] = JSON.parse(document.getElementById(id).textContent);
    return parsed[id];
  }
  const index = (item) => json("idx-" + item);          // [row, step, kind, label, t, ok, summary]
  function record(item, row) {                          // full line, paged in by chunk on demand
    const c = Math.floor(row / CHUNK);
    return json("chunk-" + item + "-" + c)[row - c * CHUNK];
  }
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fillFilter() {
    const select = $("filter");
    select.replaceChildren(el("option", "", "all steps and events"));
    select.firstChild.value = "";
    for (const [label, count] of meta.items[state.item].labels) {
      const option = el("option", "", label + " (" + count + ")");
      option.value = label;
      select.appendChild(option);
    }
    select.value = state.filter;
  }

  function applyFilter() {
    const all = index(state.item);
    state.rows = state.filter ? all.filter((r) => r[3] === state.filter) : all;
  }

  function render() {
    const box = $("steps");
    const pages = Math.max(1, Math.ceil(state.rows.length / PAGE));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    const fragment = document.createDocumentFragment();
    for (const r of state.rows.slice(state.page * PAGE, (state.page + 1) * PAGE)) {
      const [row, step, kind, label, t, ok, summary] = r;
      const tool = kind === "step" ? label : label.replace(/^event:/, "");
      const div = el("div", "step " + (kind === "step" ? "tool-" + tool : "k-" + kind) + (ok === false ? " failed" : ""));
      div.id = "row-" + state.item + "-" + row;
      div.dataset.row = row;
      div.append(el("span", "n", kind === "step" ? "#" + step : "·" + step), el("span", "t", t == null ? "" : t.toFixed(1) + "s"),
                 el("span", "tool", kind === "step" ? tool : "[" + tool + "]"), el("span", "sum", " " + summary));
      fragment.appendChild(div);
    }
    box.replaceChildren(fragment);
    $("page-info").textContent = "page " + (state.page + 1) + " of " + pages + " · " + state.rows.length + " rows";
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  function showDetail(div) {
    const open = div.nextElementSibling;
    if (open && open.classList.contains("detail")) { open.remove(); div.classList.remove("current"); return null; }
    const rec = record(state.item, Number(div.dataset.row));
    const detail = el("div", "detail");
    detail.id = "detail-" + state.item + "-" + div.dataset.row;
    const head = rec.type === "step"
      ? "step " + rec.step + " · " + rec.tool + " · " + (rec.ok ? "ok" : "error") + " · t=" + rec.t + "s · took " + rec.duration_s + "s"
      : "event " + rec.event + " at step " + rec.step + " · t=" + rec.t + "s";
    detail.appendChild(el("div", "", head));
    if (rec.type === "step") {
      detail.appendChild(el("div", "muted small", "arguments"));
      detail.appendChild(el("pre", "args", JSON.stringify(rec.arguments, null, 2)));
      detail.appendChild(el("div", "muted small", "observation"));
      detail.appendChild(el("pre", "observation", rec.observation));
      const session = rec.arguments && typeof rec.arguments === "object" ? rec.arguments.session : null;
      const log = session && meta.items[state.item].sessions[session];
      if (log) {
        const link = el("a", "", "session log of " + session);
        link.href = log;
        detail.appendChild(link);
      }
    }
    const extra = {};
    for (const [k, v] of Object.entries(rec)) {
      if (!["type", "step", "t", "wall", "tool", "arguments", "ok", "observation", "duration_s", "event"].includes(k)) extra[k] = v;
    }
    if (Object.keys(extra).length) detail.appendChild(el("pre", "extra", JSON.stringify(extra, null, 2)));
    div.classList.add("current");
    div.after(detail);
    return detail;
  }

  function find(step) {                             // the step's own line, else the first line at or after it
    const own = state.rows.findIndex((r) => r[1] === step && r[2] === "step");
    return own >= 0 ? own : state.rows.findIndex((r) => r[1] >= step);
  }

  function jump(step) {
    let at = find(step);
    if (at < 0 || state.rows[at][1] !== step) {       // not in this filter: show everything
      state.filter = "";
      $("filter").value = "";
      applyFilter();
      at = find(step);
    }
    if (at < 0) { $("page-info").textContent = "no step " + step; return; }
    state.page = Math.floor(at / PAGE);
    render();
    const div = $("row-" + state.item + "-" + state.rows[at][0]);
    showDetail(div);
    div.scrollIntoView({ block: "center" });
  }

  function selectItem(item) {
    state.item = item; state.filter = ""; state.page = 0;
    $("item").value = String(item);
    fillFilter(); applyFilter(); render();
  }

  $("item").addEventListener("change", (e) => selectItem(Number(e.target.value)));
  $("filter").addEventListener("change", (e) => { state.filter = e.target.value; state.page = 0; applyFilter(); render(); });
  $("prev").addEventListener("click", () => { state.page -= 1; render(); $("trajectory").scrollIntoView(); });
  $("next").addEventListener("click", () => { state.page += 1; render(); $("trajectory").scrollIntoView(); });
  $("jump-form").addEventListener("submit", (e) => { e.preventDefault(); jump(Number($("jump").value)); });
  $("steps").addEventListener("click", (e) => { const div = e.target.closest(".step"); if (div) showDetail(div); });
  document.addEventListener("click", (e) => {
    const link = e.target.closest("[data-jump-step]");
    if (!link) return;
    e.preventDefault();
    if (Number(link.dataset.jumpItem) !== state.item) selectItem(Number(link.dataset.jumpItem));
    $("trajectory").scrollIntoView();
    jump(Number(link.dataset.jumpStep));
  });
  if (meta.items.length) selectItem(0);
  document.body.dataset.ready = "1";
})();
"""
