// The Episodes page: a file's episodes, filtered and paged (#/episodes?file=...), and one
// episode as a chat (#/episode?file=...&index=...). Filters live in the URL hash.
import { api, el, fmt, go, link, table } from "../core.js";

const PAGE = 50;
const FILTERS = ["env", "split", "success", "min_score", "max_score", "min_turns", "max_turns",
  "end", "invalid", "format_errors", "loops"];

const yesNo = (value) => (value ? "yes" : "");
const filtersOf = (params) => Object.fromEntries(FILTERS.filter((k) => params[k]).map((k) => [k, params[k]]));

// -- the file picker ---------------------------------------------------------------------

async function filePicker(container) {
  container.append(el("h1", {}, "Episodes"));
  const { items } = await api("runs");
  const files = items.filter((i) => i.kind === "trajectories");
  if (!files.length) {
    container.append(el("p", { class: "muted empty" },
      "No trajectory files under the viewed paths. `palaestra eval … --out runs/x` writes " +
      "runs/x/trajectories.jsonl; view it with `palaestra view runs`."));
    return;
  }
  container.append(el("p", { class: "muted" }, "Pick a trajectories file:"));
  container.append(el("div", { id: "file-picker" }, table(["file", "run", "episodes", "success"], files.map((f) => [
    link(f.id, "episodes", { file: f.id }), f.parent ? link(f.parent, "run", { id: f.parent }) : "",
    f.complete === false ? `${f.episodes ?? 0}…` : fmt(f.episodes),
    f.success === null || f.success === undefined ? "" : `${(100 * f.success).toFixed(1)}%`,
  ]), { numeric: ["episodes", "success"] })));
}

// -- the list ------------------------------------------------------------------------------

function select(name, label, options, value) {
  return el("label", {}, label, el("select", { name, id: `filter-${name}` },
    options.map(([v, text]) => el("option", { value: v, selected: v === (value || "") }, text))));
}

function number(name, label, value, step) {
  return el("label", {}, label, el("input", { type: "number", name, id: `filter-${name}`, value: value || "", step, style: "width:6rem" }));
}

function filterForm(params, facets) {
  const options = (values) => [["", "any"], ...values.map((v) => [v, v])];
  const has = [["", "any"], ["true", "some"], ["false", "none"]];
  const form = el("form", { class: "filters", id: "filters" },
    select("env", "env", options(facets.env), params.env),
    select("split", "split", options(facets.split), params.split),
    select("success", "success", [["", "any"], ["true", "succeeded"], ["false", "failed"]], params.success),
    number("min_score", "score ≥", params.min_score, "0.01"),
    number("max_score", "score ≤", params.max_score, "0.01"),
    number("min_turns", "turns ≥", params.min_turns, "1"),
    number("max_turns", "turns ≤", params.max_turns, "1"),
    select("end", "end", options(facets.end), params.end),
    select("invalid", "invalid actions", has, params.invalid),
    select("format_errors", "format errors", has, params.format_errors),
    select("loops", "loops", has, params.loops),
    el("button", { type: "button", id: "filters-clear", onclick: () => go("episodes", { file: params.file }) }, "clear"),
  );
  const apply = () => {
    const data = Object.fromEntries(new FormData(form).entries());
    go("episodes", { file: params.file, ...data });  // offset back to 0: a new list
  };
  form.addEventListener("change", apply);
  form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  return form;
}

function countLine(data) {
  const parts = [el("b", { id: "matched" }, String(data.matched)), ` of `, el("span", { id: "total" }, String(data.total)), " episodes"];
  if (!data.complete) {
    const share = data.size ? Math.floor((100 * data.indexed) / data.size) : 0;
    parts.push(el("span", { class: "warn", id: "indexing" }, ` · indexing the file (${share}%)…`));
  }
  return el("p", { id: "episodes-count", dataset: { matched: data.matched, total: data.total, complete: data.complete } }, parts);
}

function episodesTable(data, params) {
  const columns = ["#", "env", "task", "split", "sample", "success", "score", "turns", "end", "invalid", "format errors", "loops", "messages"];
  const rows = data.rows.map((r) => [
    String(r.index), r.env_id.split("/").pop(), fmt(r.task_id), r.split ?? "", fmt(r.sample),
    el("span", { class: r.success ? "good" : "bad" }, r.success ? "yes" : "no"), fmt(r.score), fmt(r.turns), r.end,
    r.invalid_actions || "", r.format_errors || "", r.loops || "", fmt(r.messages),
  ]);
  return table(columns, rows, {
    numeric: ["#", "sample", "score", "turns", "invalid", "format errors", "loops", "messages"],
    onRow: (i) => go("episode", { ...filtersOf(params), file: params.file, offset: params.offset, index: data.rows[i].index }),
    rowAttrs: (i) => ({ dataset: { index: data.rows[i].index, success: data.rows[i].success } }),
  });
}

function pager(data, params) {
  const offset = data.offset;
  const to = (o) => () => go("episodes", { ...params, offset: o || undefined });
  return el("div", { class: "pager", id: "pager" },
    el("button", { id: "page-prev", disabled: offset <= 0, onclick: to(Math.max(0, offset - PAGE)) }, "‹ previous"),
    el("span", {}, data.matched ? `${offset + 1}–${Math.min(offset + PAGE, data.matched)} of ${data.matched}` : "none"),
    el("button", { id: "page-next", disabled: offset + PAGE >= data.matched, onclick: to(offset + PAGE) }, "next ›"));
}

async function renderEpisodes(container, params) {
  if (!params.file) { await filePicker(container); return; }
  const query = { ...params, limit: PAGE };
  const data = await api("episodes", query);
  container.append(el("h1", {}, "Episodes ", el("span", { class: "muted" }, params.file)));
  container.append(filterForm(params, data.facets));
  const body = el("div", { id: "episodes" });
  container.append(body);
  let timer = null;
  const draw = (d) => {
    const parts = [countLine(d)];
    if (d.rows.length) parts.push(episodesTable(d, params), pager(d, params));
    else if (d.total) parts.push(el("p", { class: "muted empty" }, "No episode passes these filters: loosen one, or clear them."));
    else parts.push(el("p", { class: "muted empty" }, d.complete ? "The file holds no episodes yet: they appear here as they are written." : "Indexing…"));
    body.replaceChildren(...parts);
    clearTimeout(timer);
    // A big file indexes in the background: count up until it is done.
    if (!d.complete) timer = setTimeout(() => { if (body.isConnected) refresh(); }, 700);
  };
  async function refresh() {
    const scroll = window.scrollY;
    draw(await api("episodes", query));
    window.scrollTo(0, scroll);
  }
  draw(data);
  return refresh;
}

// -- one episode ---------------------------------------------------------------------------

function header(e) {
  const r = e.record;
  const t = r.timings || {};
  const facts = [
    ["env", r.env_id], ["task", fmt(r.task_id)], ["split", r.split ?? ""], ["sample", fmt(r.sample)], ["seed", fmt(r.seed)],
    ["success", el("span", { class: r.success ? "good" : "bad" }, r.success ? "yes" : "no")], ["score", fmt(r.score)],
    ["turns", fmt(r.turns)], ["end", r.end], ["invalid actions", fmt(r.invalid_actions)], ["format errors", fmt(r.format_errors)],
    ["loops", fmt(e.summary.loops)], ["context truncations", fmt(r.context_truncations)],
    ["timings", Object.keys(t).length ? Object.entries(t).map(([k, v]) => `${k} ${fmt(v, 2)} s`).join(", ") : "not recorded"],
    ["tokens", r.prompt_tokens || r.completion_tokens ? `${r.prompt_tokens} prompt, ${r.completion_tokens} completion` : "not recorded"],
    ["model", r.model], ["env version", r.env_version || ""], ["spliced", yesNo(r.spliced)],
    ["env info", el("span", { class: "muted" }, "not recorded in trajectory files (only its success and score)")],
  ];
  return el("dl", { class: "episode-facts", id: "episode-facts" },
    facts.filter(([, v]) => v !== "" && v !== undefined && v !== null).flatMap(([k, v]) => [el("dt", {}, k), el("dd", { dataset: { fact: k } }, v)]));
}

function turnLine(turn) {
  if (!turn) return null;
  const parts = [el("span", {}, "action ", el("code", { class: "action" }, turn.action === "" ? "(none: the reply did not parse)" : turn.action ?? "?"))];
  parts.push(el("span", {}, `reward ${fmt(turn.reward)}`));
  if (turn.invalid === true) parts.push(el("span", { class: "badge bad invalid" }, turn.format_error ? "format error" : "invalid"));
  else if (turn.invalid === null) parts.push(el("span", { class: "muted", title: "the file counts this episode's invalid actions, not which turn made them" }, "invalid: not recorded per turn"));
  return el("div", { class: "turn-line" }, parts);
}

// An assistant's tool calls as `-> name({...})  [id]`, one a line (as `palaestra data info --show`).
function toolCalls(calls) {
  return calls.map((c) => `-> ${c.function?.name ?? "?"}(${c.function?.arguments ?? ""})  [${c.id ?? ""}]`).join("\n");
}

function chat(e) {
  const turns = new Map(e.turns.map((t) => [t.message, t]));
  const messages = e.record.messages || [];
  let observation = 0;
  return el("div", { id: "chat" }, messages.map((m, i) => {
    const turn = turns.get(i);
    const label = m.role === "system" ? "system prompt"
      : m.role === "user" ? (observation++ === 0 ? "first observation" : "observation")
      : m.role === "tool" ? (observation++, `tool result ${m.tool_call_id || ""}`)
      : `reply, turn ${turn ? turn.turn : "?"}`;
    return el("div", {
      class: `msg ${m.role}${m.loss ? " loss" : ""}`, dataset: { index: i, role: m.role, loss: Boolean(m.loss) },
    },
    el("div", { class: "who" }, el("b", {}, label),
      m.loss ? el("span", { class: "badge loss", title: "SFT trains on this message" }, "loss") : el("span", { class: "badge", title: "SFT does not train on this message" }, "no loss")),
    el("pre", { class: "content" }, m.content),
    m.tool_calls ? el("pre", { class: "tool-calls" }, toolCalls(m.tool_calls)) : null,
    m.role === "assistant" ? turnLine(turn) : null);
  }), el("p", { class: "muted end-line" }, `The episode ended: ${e.record.end || "?"}; success ${e.record.success ? "yes" : "no"}, score ${fmt(e.record.score)}` +
    (e.record.end === "terminated" || e.record.end === "truncated" ? " (the final observation is not recorded)." : ".")));
}

async function renderEpisode(container, params) {
  if (!params.file || params.index === undefined) {
    container.append(el("p", { class: "muted empty" }, "No episode chosen: pick a file on the ", link("Episodes", "episodes"), " page."));
    return;
  }
  const filters = filtersOf(params);
  const e = await api("episode", { ...filters, file: params.file, index: params.index });
  const nav = el("div", { class: "pager", id: "episode-nav" },
    link("‹ back to the list", "episodes", { ...filters, file: params.file, ...(params.offset ? { offset: params.offset } : {}) }),
    e.prev !== null ? link("‹ previous", "episode", { ...filters, file: params.file, index: e.prev }) : el("span", { class: "muted" }, "‹ previous"),
    el("span", { class: "muted" }, e.position !== null ? `${e.position + 1} of ${e.matched}` : `episode ${e.index}`),
    e.next !== null ? link("next ›", "episode", { ...filters, file: params.file, index: e.next }) : el("span", { class: "muted" }, "next ›"));
  nav.querySelectorAll("a").forEach((a) => { if (a.textContent.includes("previous")) a.id = "episode-prev"; if (a.textContent.includes("next")) a.id = "episode-next"; });
  container.append(
    el("h1", {}, `Episode ${e.index} `, el("span", { class: "muted" }, `${e.record.env_id} · task ${fmt(e.record.task_id)}`)),
    nav, header(e), chat(e));
}

export const routes = { episodes: renderEpisodes, episode: renderEpisode };
