// The Runs page: every run and data file (#/runs), and one run's tables (#/run?id=).
import { api, el, fmt, link, table } from "../core.js";

const pct = (x) => (x === undefined || x === null ? "" : `${(100 * x).toFixed(1)}%`);
const interval = (ci) => (ci ? `${(100 * ci[0]).toFixed(0)}–${(100 * ci[1]).toFixed(0)}%` : "");

/** "3 min ago" for recent times, else the local date and time. */
export function ago(seconds) {
  if (!seconds) return "";
  const delta = Date.now() / 1000 - seconds;
  if (delta < 60) return "just now";
  if (delta < 3600) return `${Math.floor(delta / 60)} min ago`;
  if (delta < 86400) return `${Math.floor(delta / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleString();
}

function itemLink(item) {
  if (item.kind === "eval" || item.kind === "evolve") return link(item.id, "run", { id: item.id });
  if (item.kind === "trajectories") return link(item.id, "episodes", { file: item.id });
  return link(item.id, "trees", { file: item.id });
}

function episodesCell(item) {
  if (item.kind === "evolve") return item.stages !== undefined ? `${item.stages} stages` : "";
  if (item.kind === "trajectories" && item.complete === false) return `${item.episodes ?? 0}… (indexing)`;
  return fmt(item.episodes);
}

function runsTable(items) {
  const rows = items.map((item) => [
    el("span", { class: "indent", style: `padding-left:${1.2 * item.depth}rem` }, itemLink(item)),
    el("span", { class: `badge kind-${item.kind}` }, item.kind),
    item.kind === "trajectories" || item.kind === "trees" ? el("span", { class: "muted" }, item.title) : item.title,
    episodesCell(item),
    el("span", { title: item.success_of || "" }, pct(item.success)),
    el("span", { title: item.updated ? new Date(item.updated * 1000).toLocaleString() : "" }, ago(item.updated)),
  ]);
  return table(["run or file", "kind", "title", "episodes", "success", "updated"], rows, {
    numeric: ["episodes", "success"],
    rowAttrs: (i) => ({ dataset: { id: items[i].id, kind: items[i].kind, depth: items[i].depth } }),
  });
}

async function renderRuns(container) {
  container.append(el("h1", {}, "Runs"));
  const body = el("div", { id: "runs-list" });
  container.append(body);
  let timer = null;
  async function refresh() {
    const { items } = await api("runs");
    if (!items.length) {
      body.replaceChildren(el("p", { class: "muted empty" },
        "No runs or trajectory files under the viewed paths. Run `palaestra eval … --out runs/x` " +
        "or `palaestra demo`, then `palaestra view runs`."));
      return;
    }
    body.replaceChildren(runsTable(items));
    // Files still being indexed count up on their own, without waiting for a file change.
    clearTimeout(timer);
    if (items.some((i) => i.complete === false)) timer = setTimeout(() => { if (body.isConnected) refresh(); }, 1000);
  }
  await refresh();
  return refresh;
}

// -- one run ---------------------------------------------------------------------------------

function resultsTable(rows) {
  const columns = ["env", "episodes", "success", "95% CI", "score", "turns", "invalid", "format errors"];
  return table(columns, rows.map((r) => [
    r.env, fmt(r.episodes), pct(r.success), interval(r.success_95), fmt(r.score), fmt(r.turns, 1),
    pct(r.invalid_rate), fmt(r.format_errors),
  ]), {
    numeric: ["episodes", "success", "95% CI", "score", "turns", "invalid", "format errors"],
    rowAttrs: (i) => ({ class: rows[i].env === "macro average" ? "macro" : undefined, dataset: { env: rows[i].env } }),
  });
}

function stageTable({ columns, rows }) {
  const head = ["stage", "policy", ...columns.map((c) => `${c.env.split("/").pop()} ${c.temperature === 0 ? "greedy" : "t=" + c.temperature}`)];
  const body = rows.map((r) => [r.stage, r.policy, ...columns.map((c) => {
    const cell = r.cells[c.key];
    if (!cell) return "";
    return el("span", { title: `${cell.successes}/${cell.episodes}; mean turns ${fmt(cell.mean_turns, 1)}; loop rate ${fmt(cell.loop_rate)}` },
      pct(cell.success), " ", el("span", { class: "muted" }, `(${interval(cell.success_95)})`));
  })]);
  return table(head, body, { numeric: head.slice(2), rowAttrs: (i) => ({ dataset: { stage: rows[i].stage } }) });
}

function stagesList(stages) {
  const keys = (s) => Object.entries(s).filter(([k]) => k !== "stage" && k !== "seconds")
    .map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : fmt(v)}`).join(", ");
  return table(["stage", "seconds", "what it did"], stages.map((s) => [s.stage, fmt(s.seconds, 1), el("span", { class: "muted" }, keys(s))]),
    { numeric: ["seconds"] });
}

function fileList(files) {
  if (!files.length) return el("p", { class: "muted" }, "No data files in this run's folder.");
  return table(["file", "kind", "episodes", "success"], files.map((f) => [
    f.kind === "trajectories" ? link(f.title, "episodes", { file: f.id }) : link(f.title, "trees", { file: f.id }),
    f.kind, f.complete === false ? `${f.episodes ?? 0}…` : fmt(f.episodes), pct(f.success),
  ]), { numeric: ["episodes", "success"], rowAttrs: (i) => ({ class: "file", dataset: { id: files[i].id } }) });
}

function childList(children) {
  return table(["run", "kind", "title", "episodes", "success"], children.map((c) => [
    link(c.id, "run", { id: c.id }), c.kind, c.title, fmt(c.episodes), pct(c.success),
  ]), { numeric: ["episodes", "success"], rowAttrs: (i) => ({ class: "child", dataset: { id: children[i].id } }) });
}

function collapsible(title, value, id) {
  return el("details", { class: "provenance", id },
    el("summary", {}, title), el("pre", {}, JSON.stringify(value, null, 1)));
}

function runHeader(run) {
  return [
    el("h1", {}, run.title, " ", el("span", { class: "muted" }, run.id)),
    el("p", { class: "muted run-meta" },
      run.parent ? ["part of ", link(run.parent, "run", { id: run.parent }), " · "] : "",
      `${run.path} · updated ${ago(run.updated)}`),
  ];
}

function evalSections(run) {
  const out = [el("h2", {}, "Results")];
  if (run.live) out.push(el("p", { class: "warn live-note" }, "Still being written: the table is counted from the trajectories so far."));
  out.push(run.rows.length ? el("div", { id: "results" }, resultsTable(run.rows))
    : el("p", { class: "muted empty" }, "No episodes finished yet: the table appears as the eval writes trajectories."));
  const facts = [];
  if (run.episodes_planned !== null && run.episodes_planned !== undefined) facts.push(`${run.episodes_finished} of ${run.episodes_planned} planned episodes finished`);
  facts.push(`${run.errors} lost to errors (errors.jsonl)`);
  if (run.this_invocation) facts.push(`last invocation ${fmt(run.this_invocation.wall_s, 1)} s`);
  out.push(el("p", { class: "muted", id: "run-facts" }, facts.join(" · ")));
  return out;
}

function evolveSections(run) {
  const out = [el("h2", {}, "Success per stage")];
  out.push(run.table.rows.length ? el("div", { id: "stage-table" }, stageTable(run.table))
    : el("p", { class: "muted empty" }, "No stage has evaluated yet: rows appear as eval stages finish."));
  if (run.plot) out.push(el("img", { id: "plot", src: `/api/run/plot?id=${encodeURIComponent(run.id)}&v=${run.updated}`, alt: "success per policy" }));
  out.push(el("h2", {}, "Stages"), stagesList(run.stages));
  if (run.seeds) out.push(el("p", { class: "muted seeds" }, "Seeds: " + Object.entries(run.seeds).map(([k, v]) => `${k} ${v}`).join(", ")));
  return out;
}

async function renderRun(container, params) {
  if (!params.id) {
    container.append(el("p", { class: "muted empty" }, "No run chosen: pick one on the ", link("Runs", "runs"), " page."));
    return;
  }
  const body = el("div", { id: "run" });
  container.append(body);
  async function refresh() {
    const run = await api("run", { id: params.id });
    const open = [...body.querySelectorAll("details[open]")].map((d) => d.id);
    const sections = [...runHeader(run), ...(run.kind === "eval" ? evalSections(run) : evolveSections(run))];
    sections.push(el("h2", {}, "Data files"), fileList(run.files));
    if (run.children.length) sections.push(el("h2", {}, "Runs inside"), childList(run.children));
    if (run.report) sections.push(collapsibleText("report.md", run.report, "report"));
    sections.push(el("h2", {}, "Provenance"), collapsible("run.json provenance", run.provenance, "provenance"),
      collapsible("configuration", run.config, "config"));
    if (run.tasks && Object.keys(run.tasks).length) sections.push(collapsible("tasks (counts)", run.tasks, "tasks"));
    body.replaceChildren(...sections);
    for (const id of open) body.querySelector(`#${id}`)?.setAttribute("open", "");
  }
  await refresh();
  return refresh;
}

function collapsibleText(title, text, id) {
  return el("details", { class: "provenance", id }, el("summary", {}, title), el("pre", {}, text));
}

export const routes = { runs: renderRuns, run: renderRun };
