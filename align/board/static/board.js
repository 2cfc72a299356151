// align board: the page. Plain JavaScript, no build step; charts by uPlot (vendor/uplot).
// Views by the address's hash: #/ runs, #/run/ID, #/compare/ID,ID, #/launch, #/answers.
"use strict";

const POLL_MS = 2000;
const COLORS = ["#2f6fdf", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad", "#5c940d",
                "#d6336c", "#495057", "#f08c00"];
const board = { info: null, timers: [], charts: {}, runs: [] };
window.board = board;  // the browser tests read the charts' data and the alarms from here

// ---- helpers ----------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Align-Board": "1" } };
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function toast(text, bad) {
  const t = document.getElementById("toast");
  t.textContent = text; t.hidden = false; t.className = bad ? "bad" : "";
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

function every(fn, ms) { const id = setInterval(fn, ms); board.timers.push(id); }

function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2)
    : v.toPrecision(digits).replace(/\.?0+$/, "");
}

function duration(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function stateBadge(state) { return el("span", { class: `state state-${state}`, text: stateLabel(state) }); }
function stateLabel(s) {
  return { collapsed: "stopped by a health detector", stopped: "stopped", killed: "killed",
           failed: "failed", running: "running", finished: "finished", ended: "ended" }[s] || s;
}
const runLink = (id) => "#/run/" + encodeURIComponent(id);

// TensorBoard's smoothing, as `align plot` draws it (align/plot.py ema): debiased EMA.
function ema(values, w) {
  if (!w) return values.slice();
  const out = []; let last = 0, n = 0;
  for (const v of values) {
    if (v === null || v === undefined) { out.push(null); continue; }
    n += 1; last = last * w + (1 - w) * v; out.push(last / (1 - Math.pow(w, n)));
  }
  return out;
}

// ---- charts -----------------------------------------------------------------------------
// A panel: one quantity, several series [{label, steps, values, color, dash, faint}].
function chart(container, title, series, alarms, key) {
  const panel = el("div", { class: "panel", "data-panel": title });
  const head = el("h3", { text: title });
  panel.append(head);
  container.append(panel);
  const xs = Array.from(new Set(series.flatMap(s => s.steps))).sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const data = [xs];
  for (const s of series) {
    const ys = new Array(xs.length).fill(null);
    s.steps.forEach((x, i) => { ys[index.get(x)] = s.values[i]; });
    data.push(ys);
  }
  const opts = {
    width: Math.max(380, panel.clientWidth - 16), height: 210,
    legend: { show: series.filter(s => !s.faint).length > 1 && series.length <= 12 },
    scales: { x: { time: false } },
    // tick labels as the tables print numbers: tiny values (a KL of 1e-5) stay readable
    axes: [{ label: "step", size: 34 }, { size: 60, values: (u, ticks) => ticks.map(v => fmt(v, 3)) }],
    series: [{ label: "step" }, ...series.map(s => ({
      label: s.label, stroke: s.faint ? s.color + "44" : s.color, width: s.faint ? 1 : 1.6,
      dash: s.dash ? [5, 4] : undefined, spanGaps: true, points: { show: false } }))],
    hooks: { draw: [u => placeAlarms(u, panel, alarms)] },
  };
  const u = new uPlot(opts, data, panel);
  // the legend names the smoothed curves only: the step column and the faint raw ones go
  u.root.querySelectorAll(".u-legend .u-series").forEach((row, i) => {
    if (i === 0 || (series[i - 1] && series[i - 1].faint)) row.hidden = true;
  });
  board.charts[key || title] = { u, series, alarms, panel };
  return u;
}

// The alarms as red lines at their step, each a DOM element with the hint as its title.
function placeAlarms(u, panel, alarms) {
  panel.querySelectorAll(".alarm-mark").forEach(m => m.remove());
  const [lo, hi] = [u.scales.x.min, u.scales.x.max];
  for (const a of alarms || []) {
    if (a.step < lo || a.step > hi) continue;
    const left = u.valToPos(a.step, "x");
    const mark = el("div", { class: "alarm-mark", "data-step": a.step, "data-detector": a.detector,
                             title: `step ${a.step}: ${a.detector}: ${a.message}` });
    mark.style.left = `${left}px`;
    u.over.append(mark);
  }
}

function panelsFor(keys) {
  const have = new Set(keys);
  const out = [], used = new Set();
  for (const [title, names] of board.info.panels) {
    const present = names.filter(n => have.has(n));
    if (present.length) { out.push([title, present]); present.forEach(n => used.add(n)); }
  }
  const tools = keys.filter(k => /tool/.test(k) && !used.has(k));
  if (tools.length) out.push(["tool calls", tools]);
  return out;
}

// ---- runs list --------------------------------------------------------------------------
async function viewRuns(root) {
  root.append(el("h1", { text: "Runs" }));
  const bar = el("div", { class: "toolbar" });
  const compareBtn = el("button", { id: "compare", disabled: true, onclick: () => {
    const ids = [...root.querySelectorAll("input.pick:checked")].map(c => c.value);
    location.hash = "#/compare/" + ids.map(encodeURIComponent).join(",");
  } }, "Compare selected");
  const count = el("span", { class: "muted" });
  bar.append(compareBtn, count);
  root.append(bar);
  const pending = el("div", { id: "pending" });
  const table = el("table", { id: "runs" });
  table.append(el("thead", {}, el("tr", {}, ["", "run", "algorithm", "model", "status", "step",
    "time left", "reward", "loss"].map(h => el("th", { text: h })))));
  const tbody = el("tbody");
  table.append(tbody);
  root.append(pending, table);
  const picked = new Set();
  async function refresh() {
    const data = await api("/api/runs");
    board.runs = data.runs;
    count.textContent = `${data.runs.length} runs`;
    tbody.replaceChildren(...data.runs.map(r => {
      const box = el("input", { type: "checkbox", class: "pick", value: r.id, checked: picked.has(r.id),
        onchange: e => { e.target.checked ? picked.add(r.id) : picked.delete(r.id);
                         compareBtn.disabled = picked.size < 2; } });
      return el("tr", { "data-run": r.id, "data-state": r.state },
        el("td", {}, box),
        el("td", {}, el("a", { href: runLink(r.id), text: r.name || r.id })),
        el("td", { text: r.algo }),
        el("td", { class: "muted", title: r.model, text: (r.model || "").split("/").slice(-2).join("/") }),
        el("td", { title: r.message || "" }, stateBadge(r.state)),
        el("td", { class: "num", text: r.step === null || r.step === undefined ? "" : r.total ? `${r.step} / ${r.total}` : r.step }),
        el("td", { class: "num", text: duration(r.time_left) }),
        el("td", { class: "num", title: r.reward_key || "", text: fmt(r.reward) }),
        el("td", { class: "num", title: r.loss_key || "", text: fmt(r.loss) }));
    }));
    pending.replaceChildren(...(data.pending || []).map(p => el("p", { class: "muted" },
      p.exit_code === null || p.exit_code === undefined
        ? `starting ${p.output_dir} (pid ${p.pid}) ...` : `${p.output_dir}: ended with exit code ${p.exit_code} before training (log: ${p.log})`)));
  }
  await refresh();
  every(refresh, POLL_MS);
}

// ---- one run ----------------------------------------------------------------------------
async function viewRun(root, id) {
  const run = await api("/api/run/" + encodeURIComponent(id));
  const title = el("h1", {}, run.name, " ", stateBadge(run.state));
  root.append(title);
  const bar = el("div", { class: "toolbar" });
  bar.append(el("span", { class: "muted", text: `${run.algo} · ${run.model} · ${run.path}` }));
  if (!board.info.read_only && run.state === "running") {
    bar.append(el("button", { id: "stop", class: "danger", onclick: async (e) => {
      e.target.disabled = true;
      try { await api(`/api/run/${encodeURIComponent(id)}/stop`, {}); toast("stop sent (SIGTERM): the run ends as on Ctrl-C"); }
      catch (err) { toast(err.message, true); e.target.disabled = false; }
    } }, "Stop"));
  }
  if (run.message) bar.append(el("span", { class: "bad", text: run.message }));
  root.append(bar);
  const curves = el("div", { class: "grid", id: "curves" });
  const alarmsBox = el("ul", { class: "alarms", id: "alarms" });
  root.append(el("h2", { text: "Curves" }), curves, el("h2", { text: "Health alarms" }), alarmsBox);
  const answers = sampledAnswers(id);
  root.append(answers.box);
  const cols = el("div", { class: "cols" });
  const ckpt = el("div", { id: "checkpoints" }), cfg = el("div", { id: "config" });
  cols.append(el("div", {}, el("h2", { text: "Checkpoints" }), ckpt),
    el("div", {}, el("h2", { text: "Config" }), el("details", {}, el("summary", { text: "the resolved config (align_config.yaml)" }), cfg)));
  root.append(cols);
  const log = el("pre", { id: "log" });
  root.append(el("h2", { text: "Console (tail)" }), log);

  ckpt.append(run.checkpoints.length ? el("table", {}, el("tr", {}, el("th", { text: "checkpoint" }), el("th", { text: "step" }), el("th", { text: "" })),
    run.checkpoints.map(c => el("tr", {}, el("td", { text: c.name }), el("td", { class: "num", text: c.step ?? "" }),
      el("td", { class: "muted", text: !c.complete ? "incomplete" : c.healthy ? "healthy" : "saved during an alarm" }))))
    : el("p", { class: "muted", text: "none" }));
  cfg.append(el("table", {}, Object.entries(run.config).map(([k, v]) =>
    el("tr", {}, el("td", { class: "muted", text: "--" + k.replace(/_/g, "-") }), el("td", { text: JSON.stringify(v) })))));

  // curves: all of it once (downsampled), then only the appended rows
  const state = { rows: 0, generation: null, series: {}, alarms: [] };
  function draw() {
    curves.replaceChildren();
    board.charts = {};
    const keys = Object.keys(state.series);
    for (const [ptitle, names] of panelsFor(keys)) {
      const ss = [];
      names.forEach((n, i) => {
        const [steps, values] = state.series[n];
        const exact = board.info.exact.includes(n);
        const color = COLORS[i % COLORS.length];
        if (!exact && steps.length >= 5) ss.push({ label: n + " (raw)", steps, values, color, faint: true });
        ss.push({ label: n, steps, values: exact ? values : ema(values, board.info.smoothing), color });
      });
      chart(curves, ptitle, ss, state.alarms, ptitle);
    }
    if (!keys.length) curves.append(el("p", { class: "muted", text: "no metrics logged yet" }));
    alarmsBox.replaceChildren(...(state.alarms.length ? state.alarms.map(a => el("li", { "data-step": a.step },
      el("span", { class: "det", text: `step ${a.step}: ${a.detector}` }), " ", a.message || "")) : [el("li", { class: "muted", text: "none" })]));
  }
  async function pull() {
    const since = state.rows;
    const d = await api(`/api/run/${encodeURIComponent(id)}/curves?since=${since}&generation=${state.generation ?? ""}`);
    const changed = d.full || d.rows !== state.rows || d.alarms.length !== state.alarms.length;
    if (d.full) state.series = {};
    for (const [k, [steps, values]] of Object.entries(d.series)) {
      const cur = state.series[k] || [[], []];
      state.series[k] = d.full ? [steps, values] : [cur[0].concat(steps), cur[1].concat(values)];
    }
    state.rows = d.rows; state.generation = d.generation; state.alarms = d.alarms;
    if (changed) draw();
    board.lastCurves = { rows: d.rows, full: d.full };
  }
  let logOffset = null;
  async function pullLog() {
    const d = await api(`/api/run/${encodeURIComponent(id)}/log${logOffset === null ? "" : "?offset=" + logOffset}`);
    if (d.reset) log.textContent = d.text; else log.textContent += d.text;
    logOffset = d.offset;
    const lines = log.textContent.split("\n");
    if (lines.length > 400) log.textContent = lines.slice(-400).join("\n");
    log.scrollTop = log.scrollHeight;
  }
  await Promise.all([pull(), pullLog(), answers.pull()]);
  every(async () => {
    const list = await api("/api/runs");
    const me = list.runs.find(r => r.id === id);
    if (me && me.state !== run.state) { route(); return; }  // status changed: redraw all
    if (run.state === "running") { await pull(); await pullLog(); await answers.pull(); }
  }, POLL_MS);
}

// The sampled answers of an online run (samples.jsonl): a step picker and that step's answers
// with their rewards. Only the steps logged since the last poll come back; the picker follows
// the newest step until another is picked. Hidden while the run has none.
function sampledAnswers(id) {
  const box = el("section", { id: "samples", class: "samples", hidden: true });
  const prev = el("button", { id: "sample-prev", title: "the step before" }, "‹");
  const next = el("button", { id: "sample-next", title: "the step after" }, "›");
  const slider = el("input", { type: "range", id: "sample-slider", min: 0, max: 0, value: 0 });
  const label = el("span", { id: "sample-step", class: "muted" });
  const list = el("div", { id: "sample-answers" });
  box.append(el("h2", { text: "Sampled answers" }),
    el("div", { class: "toolbar" }, prev, slider, next, label), list);
  const st = { count: 0, generation: null, steps: [], shown: null, follow: true };
  board.samples = st;  // the browser tests read the shown step from here
  async function pull(step) {
    const want = step ?? (st.follow ? null : st.shown);
    const q = `since=${st.count}&generation=${st.generation ?? ""}` + (want === null ? "" : `&step=${want}`);
    const d = await api(`/api/run/${encodeURIComponent(id)}/samples?${q}`);
    st.steps = d.full ? d.steps : st.steps.concat(d.steps);
    st.count = d.count; st.generation = d.generation;
    box.hidden = !st.steps.length;
    if (!st.steps.length) return;
    slider.max = st.steps.length - 1;
    if (d.step !== st.shown || d.full) draw(d.step, d.answers);
    slider.value = st.steps.indexOf(st.shown);
  }
  function go(index) {
    index = Math.max(0, Math.min(st.steps.length - 1, index));
    st.follow = index === st.steps.length - 1;
    pull(st.steps[index]);
  }
  prev.addEventListener("click", () => go(st.steps.indexOf(st.shown) - 1));
  next.addEventListener("click", () => go(st.steps.indexOf(st.shown) + 1));
  slider.addEventListener("change", () => go(parseInt(slider.value, 10)));
  function draw(step, rows) {
    st.shown = step;
    const i = st.steps.indexOf(step);
    label.textContent = `step ${step} (${i + 1} of ${st.steps.length} logged steps)`;
    prev.disabled = i <= 0; next.disabled = i >= st.steps.length - 1;
    list.replaceChildren(el("table", {}, el("tr", {}, ["prompt", "answer", "reward"].map(h => el("th", { text: h }))),
      rows.map(r => el("tr", { class: "sample", "data-step": r.step },
        el("td", { class: "prompt" }, message(r.prompt)),
        el("td", { class: "answer" }, message(r.answer)),
        el("td", { class: "num reward" }, fmt(r.reward, 3), details(r))))));
  }
  return { box, pull: () => pull() };
}

// A prompt or an answer: text, or chat messages (role, content, tool calls) one per block.
function message(m) {
  if (!Array.isArray(m)) return el("div", { class: "text", text: m ?? "" });
  return m.map(msg => el("div", { class: `msg msg-${msg.role}` },
    el("span", { class: "role", text: msg.role }),
    el("span", { class: "text", text: typeof msg.content === "string" ? msg.content : JSON.stringify(msg.content ?? "") }),
    (msg.tool_calls || []).map(c => el("code", { class: "call",
      text: `${c.function?.name ?? c.name}(${JSON.stringify(c.function?.arguments ?? c.arguments ?? {})})` }))));
}

// Under a reward: each source's value, the advantage and the tool calls, when logged.
function details(r) {
  const parts = Object.entries(r.rewards || {}).map(([k, v]) => `${k} ${fmt(v, 3)}`);
  if (r.advantage !== undefined && r.advantage !== null) parts.push(`advantage ${fmt(r.advantage, 3)}`);
  if (r.tool_calls) parts.push(`${r.tool_calls} tool call${r.tool_calls > 1 ? "s" : ""}`);
  return parts.length ? el("div", { class: "muted small", text: parts.join(" · ") }) : null;
}

// ---- compare ----------------------------------------------------------------------------
async function viewCompare(root, ids) {
  const d = await api("/api/compare?ids=" + ids.map(encodeURIComponent).join(","));
  root.append(el("h1", { text: "Compare" }));
  const legend = el("p", {}, d.runs.map((r, i) => el("span", { style: "margin-right:14px" },
    el("span", { class: "legend-swatch", style: `background:${COLORS[i % COLORS.length]}` }),
    el("a", { href: runLink(r.id), text: r.name }), " ", stateBadge(r.state))));
  const smooth = el("input", { type: "range", min: 0, max: 0.99, step: 0.01, value: board.info.smoothing, id: "smoothing" });
  const smoothLabel = el("span", { class: "muted" });
  root.append(legend, el("div", { class: "toolbar" }, "smoothing ", smooth, smoothLabel));
  const grid = el("div", { class: "grid", id: "curves" });
  root.append(grid);
  function draw() {
    const w = parseFloat(smooth.value);
    smoothLabel.textContent = w.toFixed(2);
    grid.replaceChildren(); board.charts = {};
    const keys = Array.from(new Set(d.runs.flatMap(r => Object.keys(r.curves.series))));
    for (const [title, names] of panelsFor(keys)) {
      const ss = [];
      d.runs.forEach((r, i) => names.forEach((n, j) => {
        const s = r.curves.series[n];
        if (!s) return;
        const exact = board.info.exact.includes(n);
        ss.push({ label: `${r.name}: ${n}`, steps: s[0], values: exact ? s[1] : ema(s[1], w),
                  color: COLORS[i % COLORS.length], dash: j > 0 });
      }));
      chart(grid, title, ss, [], title);
    }
  }
  smooth.addEventListener("input", draw);
  draw();
  root.append(el("h2", { text: "Flags that differ" }));
  const table = el("table", { class: "diff", id: "differ" });
  table.append(el("tr", {}, el("th", { text: "flag" }), d.runs.map(r => el("th", { text: r.name }))));
  for (const row of d.differ) {
    table.append(el("tr", { "data-flag": row.flag }, el("td", { text: row.flag }),
      row.values.map(v => el("td", { text: v === null || v === undefined ? "(not set)" : JSON.stringify(v) }))));
  }
  root.append(d.differ.length ? table : el("p", { class: "muted", text: "the configs are the same" }));
}

// ---- launch -----------------------------------------------------------------------------
async function viewLaunch(root) {
  root.append(el("h1", { text: "Launch a run" }));
  if (board.info.read_only) { root.append(el("p", { class: "muted", text: "This board is read-only (--read-only)." })); return; }
  const algo = el("select", { id: "algo" }, board.info.algos.map(a => el("option", { value: a.name, text: `${a.name}: ${a.summary}` })));
  const fieldsBox = el("div", { id: "fields" });
  const cmd = el("pre", { class: "cmd", id: "command" });
  const result = el("pre", { id: "result", hidden: true });
  const checkBtn = el("button", { id: "check" }, "Check (dry run)");
  const startBtn = el("button", { id: "start", class: "primary" }, "Start");
  root.append(el("div", { class: "toolbar" }, "algorithm ", algo), fieldsBox, el("h2", { text: "Command" }), cmd,
    el("div", { class: "toolbar" }, checkBtn, startBtn), result);
  let form = null;
  const inputs = {};
  function values() {
    const out = {};
    for (const f of Object.values(form.groups).flat()) {
      const input = inputs[f.name];
      if (f.type === "bool") { if (input.checked !== Boolean(f.default)) out[f.name] = input.checked; }
      else if (input.value.trim() !== "" && input.value !== String(f.default ?? "")) out[f.name] = input.value.trim();
    }
    return out;
  }
  let timer = null;
  async function preview() {
    try { const d = await api("/api/command", { algo: algo.value, values: values() }); cmd.textContent = d.command; cmd.classList.remove("bad"); }
    catch (e) { cmd.textContent = e.message; cmd.classList.add("bad"); }
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(preview, 250); };
  let loads = 0;
  async function load() {
    const mine = ++loads;
    const got = await api("/api/form/" + algo.value);
    if (mine !== loads) return;  // another algorithm was picked while this form was on its way
    form = got;
    // what the user typed (model, dataset, ...) stays when the algorithm changes
    const kept = {};
    for (const [k, inp] of Object.entries(inputs)) {
      if (inp.tagName === "INPUT" && inp.type === "text" && inp.value !== "") kept[k] = inp.value;
    }
    fieldsBox.replaceChildren();
    for (const k of Object.keys(inputs)) delete inputs[k];
    const firsts = Object.values(form.groups).flat().filter(f => f.first);
    const groups = [["essentials", firsts], ...Object.entries(form.groups).map(([g, fs]) => [g, fs.filter(f => !f.first)])];
    for (const [g, fs] of groups) {
      if (!fs.length) continue;
      const det = el("details", { class: "form-group", open: g === "essentials" }, el("summary", { text: g }));
      for (const f of fs) {
        let input;
        if (f.type === "bool") input = el("input", { type: "checkbox", checked: Boolean(f.default) });
        else if (f.choices) input = el("select", {}, (f.default === null ? [el("option", { value: "", text: "" })] : []).concat(
          f.choices.map(c => el("option", { value: c, text: c, selected: c === f.default }))));
        else input = el("input", { type: "text", placeholder: f.default === null || f.default === undefined ? (f.metavar || "") : String(f.default) });
        input.name = f.name; input.id = "f-" + f.name;
        if (kept[f.name] !== undefined && input.type === "text") input.value = kept[f.name];
        input.addEventListener("input", later); input.addEventListener("change", later);
        inputs[f.name] = input;
        const help = [f.help, f.bounds ? `Range: ${f.bounds}.` : "", f.source ? `(source: ${f.source})` : "",
                      f.default !== null && f.default !== "" && f.type !== "bool" ? `default: ${f.default}` : ""].filter(Boolean).join(" ");
        det.append(el("div", { class: "field" }, el("label", { for: input.id, text: f.flag }), input, el("div", { class: "help", text: help })));
      }
      fieldsBox.append(det);
    }
    fieldsBox.dataset.algo = algo.value;
    preview();
  }
  algo.addEventListener("change", load);
  checkBtn.addEventListener("click", async () => {
    result.hidden = false; result.textContent = "checking (dry run) ..."; checkBtn.disabled = true;
    try { const d = await api("/api/check", { algo: algo.value, values: values() });
          result.textContent = (d.ok ? "dry run OK\n\n" : `dry run failed (exit ${d.exit_code})\n\n`) + d.output;
          result.className = d.ok ? "ok" : "bad"; }
    catch (e) { result.textContent = e.message; result.className = "bad"; }
    checkBtn.disabled = false;
  });
  startBtn.addEventListener("click", async () => {
    result.hidden = false; result.textContent = "checking, then starting ..."; startBtn.disabled = true;
    try {
      const d = await api("/api/launch", { algo: algo.value, values: values() });
      if (!d.started) { result.textContent = `not started: the dry run failed (exit ${d.exit_code})\n\n${d.output}`; result.className = "bad"; }
      else { result.textContent = `started (pid ${d.pid}): ${d.command}`; result.className = "ok"; location.hash = runLink(d.id); }
    } catch (e) { result.textContent = e.message; result.className = "bad"; }
    startBtn.disabled = false;
  });
  await load();
}

// ---- answers ----------------------------------------------------------------------------
async function viewAnswers(root) {
  root.append(el("h1", { text: "Answers" }),
    el("p", { class: "muted", text: "A trained model and a baseline answer the same prompts, each answer scored by a reward model (align generate --compare)." }));
  const data = await api("/api/runs");
  const finished = data.runs.filter(r => r.state === "finished");
  const paths = {};
  for (const r of finished) paths[r.id] = { ...r, config: { model: r.model, reward_model: r.reward_model } };
  const options = (blank) => (blank ? [el("option", { value: "", text: "(none)" })] : []).concat(
    finished.map(r => el("option", { value: paths[r.id].path, text: `${r.name} (${r.algo})` })));
  const model = el("select", { id: "a-model" }, options(false));
  const baseline = el("select", { id: "a-baseline" }, options(true));
  const rm = el("select", { id: "a-rm" }, options(true));
  function defaults() {
    const run = Object.values(paths).find(p => p.path === model.value);
    if (!run) return;
    const byPath = (p) => p && Object.values(paths).find(x => x.path === p) ? p : "";
    baseline.value = byPath(run.config.model) || "";
    rm.value = byPath(run.config.reward_model) || (Object.values(paths).find(x => x.algo === "rm") || {}).path || "";
  }
  model.addEventListener("change", defaults);
  defaults();
  const prompts = el("textarea", { id: "a-prompts", placeholder: "one prompt per line" });
  const tokens = el("input", { id: "a-tokens", type: "number", value: 48, min: 1, max: 1024 });
  const go = el("button", { id: "a-go", class: "primary" }, "Answer");
  const out = el("div", { id: "answers" });
  root.append(el("div", { class: "field" }, el("label", { text: "model" }), model, el("span")),
    el("div", { class: "field" }, el("label", { text: "baseline" }), baseline, el("span", { class: "help", text: "default: the model the run started from" })),
    el("div", { class: "field" }, el("label", { text: "reward model" }), rm, el("span")),
    el("div", { class: "field" }, el("label", { text: "max new tokens" }), tokens, el("span")),
    el("h2", { text: "Prompts" }), prompts, el("div", { class: "toolbar" }, go), out);
  go.addEventListener("click", async () => {
    go.disabled = true; out.replaceChildren(el("p", { class: "muted", text: "answering (the models load in a child process) ..." }));
    try {
      const d = await api("/api/answers", { model: model.value, baseline: baseline.value, reward_model: rm.value,
                                             prompts: prompts.value, max_new_tokens: parseInt(tokens.value, 10) });
      const name = (p) => p ? p.split("/").slice(-2).join("/") : "";
      out.replaceChildren(el("pre", { class: "cmd", text: d.command }),
        el("table", { class: "answers" }, el("tr", {}, el("th", { text: `model: ${name(d.model)}` }), el("th", { text: `baseline: ${name(d.baseline)}` })),
          d.rows.flatMap(r => [el("tr", {}, el("td", { colspan: 2, class: "muted", text: r.prompt })),
            el("tr", { class: "answer-row" }, el("td", {}, r.response, r.score !== null && r.score !== undefined ? el("div", { class: "score", text: `RM score ${fmt(r.score, 3)}` }) : null),
              el("td", {}, r.compare_response ?? "", r.compare_score !== null && r.compare_score !== undefined ? el("div", { class: "score", text: `RM score ${fmt(r.compare_score, 3)}` }) : null))])));
    } catch (e) { out.replaceChildren(el("p", { class: "bad", text: e.message })); }
    go.disabled = false;
  });
}

// ---- routing ----------------------------------------------------------------------------
async function route() {
  board.timers.forEach(clearInterval); board.timers = [];
  const root = document.getElementById("view");
  root.replaceChildren();
  const hash = location.hash || "#/";
  document.querySelectorAll("header nav a").forEach(a => a.classList.toggle("active", a.getAttribute("href") === hash.split("/").slice(0, 2).join("/")));
  try {
    if (hash.startsWith("#/run/")) await viewRun(root, decodeURIComponent(hash.slice(6)));
    else if (hash.startsWith("#/compare/")) await viewCompare(root, hash.slice(10).split(",").map(decodeURIComponent));
    else if (hash === "#/launch") await viewLaunch(root);
    else if (hash === "#/answers") await viewAnswers(root);
    else await viewRuns(root);
    root.setAttribute("data-ready", hash);
  } catch (e) {
    root.append(el("p", { class: "bad", id: "error", text: e.message }));
    root.setAttribute("data-ready", hash);
  }
}

(async function main() {
  board.info = await api("/api/info");
  document.getElementById("roots").textContent = board.info.roots.join(", ") + (board.info.read_only ? " · read-only" : "");
  if (board.info.read_only) document.getElementById("nav-launch").hidden = true;
  window.addEventListener("hashchange", route);
  route();
})();
