// The Compare page: two runs on the tasks both played, with paired tests and the flipped tasks.
// "#/compare?a=<run id>&b=<run id>": the choice lives in the hash, so a comparison is a link.
import { api, el, errorBox, go, table } from "../core.js";

const pct = (x) => (x === null || x === undefined ? "" : (100 * x).toFixed(1) + "%");
const num = (x) => (x === null || x === undefined ? "" : x.toFixed(3));
const signed = (x, percent) => {
  if (x === null || x === undefined) return "";
  const text = percent ? (100 * x).toFixed(1) + "%" : x.toFixed(3);
  return (x >= 0 ? "+" : "") + text;
};
const pValue = (p) => (p >= 0.001 ? p.toPrecision(3).replace(/\.?0+$/, "") : p.toExponential(1));

/** "+0.020 [-0.080, +0.120]", coloured when the interval excludes 0. */
function interval(found, percent = false) {
  if (found.diff === null) return "";
  const cls = found.low > 0 ? "good" : found.high < 0 ? "bad" : undefined;
  return el("span", { class: cls },
    `${signed(found.diff, percent)} [${signed(found.low, percent)}, ${signed(found.high, percent)}]`);
}

const COLUMNS = ["env", "paired", "success A", "success B", "both", "neither", "only A", "only B",
  "McNemar p", "score A", "score B", "score B−A [95%]", "success B−A [95%]", "unpaired A / B"];
const NUMERIC = COLUMNS.slice(1);

function statsRow(row) {
  const cell = (col, value) => el("span", { "data-col": col }, value);
  const significant = row.mcnemar_p < 0.05;
  return [
    cell("env", row.env),
    cell("n", row.n),
    cell("success_a", pct(row.success_a)),
    cell("success_b", pct(row.success_b)),
    cell("both", row.both),
    cell("neither", row.neither),
    cell("only_a", row.only_a),
    cell("only_b", row.only_b),
    el("span", { "data-col": "mcnemar_p", class: significant ? "significant" : undefined }, pValue(row.mcnemar_p)),
    cell("score_a", num(row.score_a)),
    cell("score_b", num(row.score_b)),
    el("span", { "data-col": "score_diff" }, interval(row.score_diff)),
    el("span", { "data-col": "success_diff" }, interval(row.success_diff, true)),
    el("span", { "data-col": "unpaired", class: row.unpaired_a || row.unpaired_b ? "warn" : undefined },
      `${row.unpaired_a} / ${row.unpaired_b}`),
  ];
}

function episodeLink(file, side, flip) {
  const episode = flip[side];
  const mark = episode.success ? "✓" : "✗";
  const text = `${mark} ${episode.score.toFixed(2)} in ${episode.turns} turns`;
  if (!file) return el("span", {}, text);
  return el("a", {
    class: "episode-link " + (episode.success ? "good" : "bad"),
    href: `#/episode?${new URLSearchParams({ file, index: episode.index })}`,
    "data-side": side, "data-index": episode.index,
    title: `line ${episode.index + 1} of ${file}`,
  }, text);
}

function flipsTable(result, key, title, count) {
  const flips = result.flips[key];
  const box = el("section", { class: "compare-flips", "data-flips": key },
    el("h2", {}, `${title}: ${count}`));
  if (count === 0) {
    box.append(el("p", { class: "muted" }, "None."));
    return box;
  }
  if (flips.length < count) box.append(el("p", { class: "muted" }, `The first ${flips.length} listed.`));
  const rows = flips.map((f) => [
    f.env.replace(/^palaestra\//, ""), String(f.task_id), f.sample,
    episodeLink(result.a.file, "a", f), episodeLink(result.b.file, "b", f),
  ]);
  const node = table(["env", "task", "sample", "A", "B"], rows, {
    rowAttrs: (i) => ({ "data-task": String(flips[i].task_id), "data-sample": flips[i].sample }),
  });
  box.append(node);
  return box;
}

function resultView(result) {
  const rows = result.envs.length > 1 ? [...result.envs, result.overall] : result.envs;
  const { a, b, overall } = result;
  const parts = [
    el("p", { id: "compare-runs" },
      el("b", {}, "A"), ` = ${a.label} (${a.episodes} episodes), `,
      el("b", {}, "B"), ` = ${b.label} (${b.episodes} episodes); paired by env, split, task and sample: ${overall.n}.`),
  ];
  if (overall.unpaired_a || overall.unpaired_b) {
    parts.push(el("p", { id: "compare-unpaired", class: "warn" },
      `${overall.unpaired_a} episode(s) only in A and ${overall.unpaired_b} only in B are not compared.`));
  }
  if (a.duplicates || b.duplicates) {
    parts.push(el("p", { class: "warn" },
      `Repeated episodes ignored (the first kept): ${a.duplicates} in A, ${b.duplicates} in B.`));
  }
  // The unpaired column only when some episode is unpaired (the note above says so too).
  const width = overall.unpaired_a || overall.unpaired_b ? COLUMNS.length : COLUMNS.length - 1;
  parts.push(table(COLUMNS.slice(0, width), rows.map((row) => statsRow(row).slice(0, width)), {
    numeric: NUMERIC, rowAttrs: (i) => ({ "data-env": rows[i].env }),
  }));
  parts.push(el("div", { id: "compare-readings" },
    rows.map((row) => el("p", { class: "reading", "data-env": row.env },
      el("b", {}, row.env + ": "), row.reading))));
  parts.push(el("p", { class: "muted" },
    `McNemar's exact test counts only the flipped tasks; p < ${result.alpha} says one run succeeds more often. ` +
    `Intervals: ${Math.round(100 * overall.score_diff.level)}% paired bootstrap over tasks ` +
    `(${result.resamples} resamples, seed ${result.seed}); one that excludes 0 is coloured.`));
  parts.push(el("div", { class: "compare-flip-pair" },
    flipsTable(result, "b_won", "B won, A lost", overall.only_b),
    flipsTable(result, "a_won", "A won, B lost", overall.only_a)));
  return parts;
}

function picker(name, runs, value, onchange) {
  const options = [el("option", { value: "" }, "choose a run…")];
  let known = false;
  for (const run of runs) {
    known ||= run.id === value;
    options.push(el("option", { value: run.id, selected: run.id === value }, `${run.id} — ${run.label}`));
  }
  // A run in the link but not (or no longer) under the viewed paths still shows, and errors below.
  if (value && !known) options.push(el("option", { value, selected: true }, value));
  return el("label", {}, `Run ${name}`, el("select", { id: `compare-${name.toLowerCase()}`, onchange }, options));
}

async function renderCompare(container, params) {
  container.append(el("h1", {}, "Compare two runs"));
  const { runs } = await api("compare/runs");
  if (runs.length < 2 && !(params.a && params.b)) {
    container.append(el("p", { id: "compare-empty", class: "muted" },
      `Comparing needs two runs on the same tasks, and ${runs.length ? "only one is" : "none is"} viewed. ` +
      "Start the viewer on two eval folders (or a folder holding them), e.g. " +
      "palaestra view runs/bc runs/agentevol, or run palaestra compare RUN_A RUN_B."));
    return;
  }
  const pick = () => go("compare", {
    a: document.getElementById("compare-a").value, b: document.getElementById("compare-b").value,
  });
  const swap = el("button", {
    id: "compare-swap", type: "button", title: "swap A and B",
    onclick: () => go("compare", { a: params.b, b: params.a }),
  }, "⇄ swap");
  container.append(el("div", { class: "filters" },
    picker("A", runs, params.a, pick), picker("B", runs, params.b, pick), swap));
  const body = el("div", { id: "compare-result" });
  container.append(body);
  if (!params.a || !params.b) {
    body.append(el("p", { id: "compare-empty", class: "muted" },
      "Pick run A and run B: the two runs are paired on the tasks both played, and the table " +
      "tests whether B succeeds or scores differently from A."));
    return;
  }
  const draw = async () => {
    try {
      body.replaceChildren(...resultView(await api("compare", { a: params.a, b: params.b })));
    } catch (error) {
      body.replaceChildren(errorBox(error));
    }
  };
  await draw();
  return draw;
}

export const routes = { compare: renderCompare };
