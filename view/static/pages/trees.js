// The Trees page: Agent-R's search trees drawn as trees, a good/bad pair, its splice and revision.
//
// #/trees                 the trees files under the viewed paths
// #/trees?file=F          the trees of F as summary rows (paged)
// #/tree?file=F&index=I&pair=P   one tree: collapsible nodes (chains of single children
//                         folded as `palaestra tree show` folds them), the best path, the
//                         chosen pair's paths side by side, the splice, the revision as a chat.
// Rows are built only when their parent is opened, so a tree of 10,000 nodes draws fast.
import { api, el, errorBox, fmt, go, link, table } from "../core.js";

const PAGE = 50;
const PAIRS_PAGE = 100;
const EXPAND_ALL_LIMIT = 3000;  // "expand all" past this many nodes would build a huge DOM

// Node columns of the last tree opened: a new pair reuses them (the API then sends none).
let cached = { key: null, nodes: null };

/** A leaf score's colour: red (0) through yellow to green (1). */
function scoreColour(score) {
  const hue = Math.max(0, Math.min(1, score)) * 120;
  return `hsl(${hue}, 70%, 85%)`;
}

function scoreBadge(score, success, end) {
  return el("span", {
    class: "badge score " + (success ? "success" : "failure"),
    style: `background: ${scoreColour(score)}`,
    title: `${end}: score ${score.toFixed(2)}`,
  }, `${end} ${score.toFixed(2)}`);
}

// -- the list ----------------------------------------------------------------------------------

async function renderFiles(container) {
  container.append(el("h1", {}, "Search trees"));
  const { files } = await api("trees");
  if (!files.length) {
    container.append(el("p", { class: "muted", id: "trees-empty" },
      "No search trees under the viewed paths. Agent-R writes them to iter-N/trees.jsonl "
      + "(palaestra evolve agent-r); run `palaestra view RUN` on such a run, or on a trees file."));
    return;
  }
  container.append(el("div", { id: "trees-files" }, table(
    ["file", "run", "size"],
    files.map((f) => [link(f.id, "trees", { file: f.id }), f.run || "", `${(f.size / 1024).toFixed(0)} KiB`]),
    { numeric: ["size"] },
  )));
}

async function renderList(container, params) {
  const file = params.file;
  const offset = Number(params.offset || 0);
  const data = await api("trees", { file, offset, limit: PAGE });
  container.append(
    el("h1", {}, "Trees of ", el("code", {}, file)),
    el("p", { class: "muted" }, link("all trees files", "trees"), ` · ${data.count} trees · pairs at alpha ${data.settings.alpha}, beta ${data.settings.beta} (${data.settings.source})`),
  );
  if (!data.count) {
    container.append(el("p", { class: "muted" }, "This file holds no trees yet (a search still running writes them at its end)."));
    return;
  }
  const columns = ["#", "env", "task", "split", "sample", "nodes", "leaves", "depth", "best score", "successes", "pairs"];
  const rows = data.rows.map((r) => [r.index, r.env_id, String(r.task_id), r.split || "", r.sample, r.nodes, r.leaves, r.depth,
    r.best_score === null ? "" : fmt(r.best_score, 2), r.successes, r.pairs]);
  container.append(el("div", { id: "trees-list" }, table(columns, rows, {
    numeric: ["#", "sample", "nodes", "leaves", "depth", "best score", "successes", "pairs"],
    onRow: (i) => go("tree", { file, index: data.rows[i].index }),
    rowAttrs: (i) => ({ dataset: { index: data.rows[i].index } }),
  })));
  const pager = el("div", { class: "pager" },
    el("button", { id: "trees-prev", disabled: offset === 0, onclick: () => go("trees", { file, offset: Math.max(0, offset - PAGE) }) }, "‹ prev"),
    el("span", {}, `${offset + 1}–${offset + data.rows.length} of ${data.count}`),
    el("button", { id: "trees-next", disabled: offset + PAGE >= data.count, onclick: () => go("trees", { file, offset: offset + PAGE }) }, "next ›"),
  );
  container.append(pager);
}

// -- one tree ----------------------------------------------------------------------------------

/** The tree's shape and marks, and the DOM rows drawn so far. */
class TreeDrawing {
  constructor(data, nodes, onSelect) {
    this.data = data;
    this.nodes = nodes;
    this.onSelect = onSelect;
    const n = nodes.parent.length;
    this.children = Array.from({ length: n }, () => []);
    // Ids grow in order of creation, so children come out in the order the search made them.
    for (let id = 1; id < n; id++) this.children[nodes.parent[id]].push(id);
    this.folds = new Map(Object.entries(data.folds).map(([a, b]) => [Number(a), b]));
    this.unfolded = new Set();  // chain starts the user opened into single rows
    this.open = new Set();      // rows whose children are shown
    this.best = new Set(data.best ? data.best.nodes : []);
    const pair = data.pair;
    this.good = pair ? pair.good.nodes.at(-1) : null;
    this.bad = pair ? pair.bad.nodes.at(-1) : null;
    this.splice = pair ? pair.splice_node : null;
    this.trainedSplice = pair && pair.trained ? pair.trained.splice_node : null;
    this.onPair = new Set(pair ? [...pair.good.nodes, ...pair.bad.nodes] : []);
    // Open what the marks are on: the best path and the pair's two paths.
    for (const id of [0, ...this.best, ...this.onPair]) this.open.add(id);
    this.selected = null;
  }

  end(id) {
    return this.unfolded.has(id) ? id : (this.folds.get(id) ?? id);
  }

  label(id) {
    const nodes = this.nodes;
    const end = this.end(id);
    const parts = [];
    if (id === 0) parts.push(el("span", { class: "tn-action" }, "#0 root"));
    else {
      parts.push(el("span", { class: "tn-id" }, `#${id} `));
      parts.push(el("span", { class: "tn-action" + (nodes.invalid[id] ? " invalid" : "") },
        nodes.action[id] ? nodes.action[id] : "(unparsable reply)"));
    }
    parts.push(el("span", { class: "tn-stats" }, ` N=${nodes.visits[id]} Q=${nodes.q[id].toFixed(2)}`));
    if (end !== id) {
      const more = nodes.depth[end] - nodes.depth[id];
      parts.push(el("button", {
        class: "tn-fold", title: "show each step of this chain",
        dataset: { start: id, end },
        onclick: (event) => { event.stopPropagation(); this.unfold(id); },
      }, `… ${more} more step${more === 1 ? "" : "s"} to #${end}`));
    }
    if (nodes.end[end]) parts.push(" ", scoreBadge(nodes.score[end], nodes.success[end], nodes.end[end]));
    if (end === this.good) parts.push(" ", el("span", { class: "badge mark-good" }, "good"));
    if (end === this.bad) parts.push(" ", el("span", { class: "badge mark-bad" }, "bad"));
    if (id === this.splice) parts.push(" ", el("span", { class: "badge mark-splice", title: "the revision is spliced after this step of the bad path" }, "splice"));
    if (this.trainedSplice !== null && id === this.trainedSplice) {
      parts.push(" ", el("span", { class: "badge mark-trained", title: "the revision trained on (data.jsonl) is spliced after this step" }, "trained splice"));
    }
    return parts;
  }

  /** The <li> of the row starting at node `id` (its children built only when open). */
  row(id) {
    const end = this.end(id);
    const kids = this.children[end];
    const isOpen = this.open.has(id) && kids.length > 0;
    const classes = ["tn-row"];
    if (this.best.has(id)) classes.push("best");
    if (this.onPair.has(id)) classes.push("on-pair");
    if (this.selected === id) classes.push("selected");
    const toggle = el("button", {
      class: "tn-toggle", disabled: kids.length === 0, title: kids.length ? `${kids.length} children` : "a leaf",
      onclick: (event) => { event.stopPropagation(); this.toggle(id); },
    }, kids.length ? (isOpen ? "▾" : "▸") : "·");
    const line = el("div", {
      class: classes.join(" "), dataset: { id, end },
      onclick: () => this.select(id),
    }, toggle, ...this.label(id));
    const li = el("li", { class: "tn", dataset: { id } }, line);
    // An opened chain goes on at the same indent: its steps are one line of play.
    const flat = this.unfolded.has(id) && kids.length === 1 && this.unfolded.has(kids[0]);
    if (isOpen) li.append(el("ul", { class: flat ? "flat" : undefined }, kids.map((k) => this.row(k))));
    return li;
  }

  redraw(id) {
    const li = this.root.querySelector(`li.tn[data-id="${id}"]`);
    if (li) li.replaceWith(this.row(id));
  }

  toggle(id) {
    if (this.open.has(id)) this.open.delete(id); else this.open.add(id);
    this.redraw(id);
  }

  unfold(id) {
    // The chain's nodes become rows of their own, opened down to its last node.
    let node = id;
    const end = this.end(id);
    this.unfolded.add(id);
    while (node !== end) {
      this.open.add(node);
      this.unfolded.add(node);
      node = this.children[node][0];
    }
    this.unfolded.add(end);  // a single row (its own chain, if any, stays folded below it)
    this.redraw(id);
  }

  expandAll() {
    for (let id = 0; id < this.children.length; id++) if (this.children[id].length) this.open.add(id);
    this.draw();
  }

  collapseAll() {
    this.open = new Set([0]);
    this.draw();
  }

  select(id) {
    const before = this.root.querySelector(".tn-row.selected");
    if (before) before.classList.remove("selected");
    this.selected = id;
    const line = this.root.querySelector(`.tn-row[data-id="${id}"]`);
    if (line) line.classList.add("selected");
    this.onSelect(id);
  }

  draw() {
    this.root.replaceChildren(this.row(0));
  }

  element() {
    this.root = el("ul", { class: "tree-root", id: "tree" });
    this.draw();
    return this.root;
  }
}

function messagesChat(messages, id) {
  if (!messages) return el("p", { class: "muted" }, "none");
  let revisionShown = false;
  return el("div", { class: "chat", id }, messages.map((m, i) => {
    // The revision turn: the first trained reply (its thought is the reflection).
    const isRevision = m.role === "assistant" && m.loss && !revisionShown;
    if (isRevision) revisionShown = true;
    const text = el("pre", {}, m.content ?? "");
    return el("div", { class: `msg ${m.role}${m.loss ? " loss" : ""}${isRevision ? " revision-turn" : ""}`, dataset: { i, role: m.role, loss: m.loss ? "1" : "0" } },
      el("div", { class: "who" }, el("span", {}, m.role),
        m.loss ? el("span", { class: "badge loss" }, "loss") : null,
        isRevision ? el("span", { class: "badge mark-splice" }, "revision") : null),
      // The system prompt is the same in every revision: folded, one click away.
      m.role === "system" ? el("details", {}, el("summary", { class: "muted" }, "system prompt"), text) : text);
  }));
}

function pathsTable(pair) {
  const good = pair.good, bad = pair.bad;
  const steps = Math.max(good.steps, bad.steps);
  const trainedStep = pair.trained ? pair.trained.splice_step : null;
  const rows = [];
  for (let s = 1; s <= steps; s++) {
    const shared = s <= pair.divergence;
    const cls = [shared ? "shared" : "", s === pair.splice_step ? "splice" : "", s === trainedStep ? "trained-splice" : ""].filter(Boolean).join(" ");
    const cell = (path, isBad) => {
      if (s > path.steps) return el("td", { class: "empty" }, "");
      const marks = [];
      if (isBad && s === pair.splice_step) marks.push(el("span", { class: "badge mark-splice" }, "splice"));
      if (isBad && s === trainedStep) marks.push(el("span", { class: "badge mark-trained" }, "trained splice"));
      return el("td", { dataset: { node: path.nodes[s] } }, el("span", { class: "tn-id" }, `#${path.nodes[s]} `), path.actions[s - 1] || "(unparsable reply)", " ", ...marks);
    };
    rows.push(el("tr", { class: cls, dataset: { step: s } }, el("td", { class: "num" }, s), cell(good, false), cell(bad, true)));
  }
  const foot = el("tr", {}, el("td", {}, "end"),
    el("td", {}, scoreBadge(good.score, good.success, good.end)),
    el("td", {}, scoreBadge(bad.score, bad.success, bad.end)));
  return el("table", { id: "pair-paths", class: "pair-paths" },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "step"), el("th", {}, `good path (leaf #${good.nodes.at(-1)})`), el("th", {}, `bad path (leaf #${bad.nodes.at(-1)})`))),
    el("tbody", {}, rows, foot));
}

function pairSection(data, params) {
  const section = el("section", { id: "pair" });
  const pairs = data.pairs;
  section.append(el("h2", {}, "Pair"));
  if (!pairs.count) {
    section.append(el("p", { class: "muted", id: "pair-none" },
      `No pair in this tree: no leaf scores at least alpha=${data.settings.alpha} with another ${data.settings.beta} below it. Agent-R makes no revision from it.`));
    return section;
  }
  const pair = data.pair;
  const choose = (i) => go("tree", { file: params.file, index: data.index, pair: i });
  const select = el("select", { id: "pair-select", onchange: (e) => choose(Number(e.target.value)) },
    pairs.items.map((p) => el("option", { value: p.index, selected: p.index === pair.index },
      `#${p.index}: good #${p.good} (${fmt(p.good_score, 2)}) / bad #${p.bad} (${fmt(p.bad_score, 2)}), part after step ${p.divergence}${p.trained ? " · trained" : ""}`)));
  section.append(el("div", { class: "filters" },
    el("label", {}, `pair (${pairs.count}, alpha ${data.settings.alpha}, beta ${data.settings.beta}, ${data.settings.source})`, select),
    el("button", { id: "pair-prev", disabled: pair.index === 0, onclick: () => choose(pair.index - 1) }, "‹"),
    el("button", { id: "pair-next", disabled: pair.index + 1 >= pairs.count, onclick: () => choose(pair.index + 1) }, "›"),
    pairs.trained.length ? el("span", { class: "muted" }, `trained on (${data.trained_file}): pairs ${pairs.trained.slice(0, 10).map((i) => "#" + i).join(", ")}${pairs.trained.length > 10 ? "…" : ""}`) : null,
  ));
  section.append(el("p", { class: "muted" },
    `The paths share ${pair.divergence} step${pair.divergence === 1 ? "" : "s"}; the revision is spliced after step ${pair.splice_step} of the bad path (node #${pair.splice_node}).`));
  section.append(el("div", { class: "first-error", id: "first-error" },
    el("strong", {}, "First error: "), data.first_error === null ? "not recorded. " : `step ${data.first_error}. `,
    el("span", { class: "muted" }, data.first_error_note),
    pair.trained ? el("div", {}, `The revision trained on (${pair.trained.file}) is spliced after step ${pair.trained.splice_step} (node #${pair.trained.splice_node}).`) : null));
  const body = el("div", { class: "pair-body" }, el("div", {}, pathsTable(pair)));
  section.append(body);
  const revision = el("div", { class: "chat-col" }, el("h3", {}, "Revision (revision_trajectory, first error unknown)"),
    pair.revision ? messagesChat(pair.revision.messages, "revision") : el("p", { class: "bad", id: "revision-error" }, pair.revision_error));
  const cols = [revision];
  if (pair.trained) {
    cols.push(el("div", { class: "chat-col" }, el("h3", {}, `Trained on (${pair.trained.file})`), messagesChat(pair.trained.messages, "trained")));
  } else if (data.trained_count) {
    cols.push(el("div", { class: "chat-col" }, el("h3", {}, "Trained on"), el("p", { class: "muted" },
      `${data.trained_file} holds ${data.trained_count} revision${data.trained_count === 1 ? "" : "s"} of this task, none of this pair: choose a pair marked "trained".`)));
  }
  body.append(el("div", { class: "chats" }, cols));
  return section;
}

async function showNode(panel, params, index, id) {
  panel.replaceChildren(el("p", { class: "muted" }, `node #${id}…`));
  try {
    const n = await api("tree/node", { file: params.file, index, node: id });
    panel.replaceChildren(
      el("h3", {}, `#${n.id} ${n.parent === null ? "root" : (n.action || "(unparsable reply)")}`),
      el("p", { class: "muted" }, `depth ${n.depth} · N=${n.visits} Q=${fmt(n.q, 2)} · ${n.kind}${n.invalid ? " · invalid" : ""}${n.end ? ` · ${n.end}, score ${fmt(n.score, 2)}` : ""} · reward ${fmt(n.reward, 2)}`),
      n.reply !== null ? el("div", { class: "msg assistant" }, el("div", { class: "who" }, "reply"), el("pre", { id: "node-reply" }, n.reply)) : null,
      el("div", { class: "msg user" }, el("div", { class: "who" }, "observation"), el("pre", { id: "node-observation" }, n.observation)),
    );
  } catch (error) {
    panel.replaceChildren(errorBox(error));
  }
}

async function renderTree(container, params) {
  if (!params.file) { go("trees"); return; }
  const index = Number(params.index || 0);
  const pair = Number(params.pair || 0);
  const key = `${params.file}#${index}`;
  const haveNodes = cached.key === key;
  const data = await api("tree", {
    file: params.file, index, pair,
    pair_offset: Math.floor(pair / PAIRS_PAGE) * PAIRS_PAGE, pair_limit: PAIRS_PAGE,
    nodes: haveNodes ? "false" : "true",
  });
  if (!haveNodes) cached = { key, nodes: data.nodes };
  const nodes = cached.nodes;
  const leaves = nodes.parent.length - new Set(nodes.parent.filter((p) => p !== null)).size;
  container.append(
    el("h1", {}, `Tree ${data.index}: ${data.env_id} task ${data.task_id}`),
    el("p", { class: "muted", id: "tree-summary" },
      link("trees of this file", "trees", { file: params.file }),
      ` · ${data.split || "-"} sample ${data.sample} seed ${data.seed} · model ${data.model} · ${data.count} nodes, ${leaves} leaves · k=${data.config.k} c=${data.config.c} simulations=${data.config.simulations} max depth ${data.config.max_depth}`,
      data.best ? ` · best path: ${data.best.steps} steps, score ${fmt(data.best.score, 2)}` : ""),
  );
  const detail = el("div", { class: "node-detail", id: "node-detail" }, el("p", { class: "muted" }, "Click a node to see the model's reply and the observation after it."));
  const drawing = new TreeDrawing(data, nodes, (id) => showNode(detail, params, index, id));
  const big = data.count > EXPAND_ALL_LIMIT;
  const tools = el("div", { class: "filters tree-tools" },
    el("button", { id: "tree-expand-all", disabled: big, title: big ? `over ${EXPAND_ALL_LIMIT} nodes: open rows one by one` : "", onclick: () => drawing.expandAll() }, "expand all"),
    el("button", { id: "tree-collapse", onclick: () => drawing.collapseAll() }, "collapse"),
    el("span", { class: "legend" },
      el("span", { class: "legend-best" }, "best path"), " ",
      el("span", { class: "badge mark-good" }, "good"), " ", el("span", { class: "badge mark-bad" }, "bad"), " ",
      el("span", { class: "badge mark-splice" }, "splice"), " leaf score:",
      [0, 0.25, 0.5, 0.75, 1].map((s) => el("span", { class: "swatch", style: `background: ${scoreColour(s)}` }, String(s)))),
  );
  container.append(tools, el("div", { class: "tree-layout" }, el("div", { class: "tree-panel" }, drawing.element()), detail));
  container.append(pairSection(data, params));
  // A live update (the file rewritten, e.g. by a repair) must not reuse the old node columns.
  return async () => {
    cached = { key: null, nodes: null };
    container.replaceChildren();
    await renderTree(container, params);
  };
}

export const routes = {
  trees: async (container, params) => (params.file ? renderList(container, params) : renderFiles(container)),
  tree: renderTree,
};
