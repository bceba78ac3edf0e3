// The Play page: play a task of a served env in the browser, through the viewer's proxy
// (/api/play/...) to a running `palaestra serve`, with the expert's next move on request.
import { api, el, errorBox, fmt } from "../core.js";

// The session this page holds on the env server (closed on New task, Restart, leaving).
let current = null;

async function request(method, path) {
  // api() knows GET and POST; DELETE goes through fetch itself.
  const response = await fetch("/api/" + path, { method, keepalive: true });
  if (!response.ok && response.status !== 204) {
    const data = await response.json().catch(() => ({}));
    throw new Error(data.error || `${response.status} ${response.statusText}`);
  }
}

function closeCurrent() {
  if (current === null) return;
  const id = current;
  current = null;
  request("DELETE", `play/sessions/${encodeURIComponent(id)}`).catch(() => {});
}

// Leaving the page or the tab closes the game's session on the env server.
window.addEventListener("hashchange", () => {
  if (!location.hash.startsWith("#/play")) closeCurrent();
});
window.addEventListener("pagehide", closeCurrent);

/** Keep env/split/task in the URL without re-rendering (replaceState fires no hashchange). */
function keepInHash(params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  history.replaceState(null, "", `#/play?${query}`);
}

function option(value, text, selected) {
  return el("option", { value, selected: selected ? true : undefined }, text);
}

async function renderPlay(container, params) {
  closeCurrent();
  container.append(el("h1", {}, "Play"));
  const { envs, setup, env_url: envUrl } = await api("play/envs");
  if (setup) {
    container.append(el("p", { id: "play-setup", class: "muted" }, setup));
    return () => {};
  }
  if (!envs.length) {
    container.append(el("p", { id: "play-setup", class: "muted" }, `The env server at ${envUrl} serves no env: start it with an env id, e.g. \`palaestra serve palaestra/Maze-v0\`.`));
    return () => {};
  }
  const byId = Object.fromEntries(envs.map((e) => [e.id, e]));
  const envSelect = el("select", { id: "play-env" }, envs.map((e) => option(e.id, e.id, e.id === params.env)));
  const splitSelect = el("select", { id: "play-split" });
  const taskInput = el("input", { id: "play-task", list: "play-task-ids", placeholder: "random", size: 10 });
  const taskIds = el("datalist", { id: "play-task-ids" });
  const taskCount = el("span", { id: "play-task-count", class: "muted" });
  const startButton = el("button", { id: "play-start", type: "button" }, "Start");
  const randomButton = el("button", { id: "play-random", type: "button" }, "Random task");
  const description = el("details", { id: "play-description" });
  const error = el("div", { id: "play-error" });
  const game = el("div", { id: "play-game" });
  container.append(
    el("p", { class: "muted" }, `Env server: ${envUrl}`),
    el("div", { class: "filters" },
      el("label", {}, "env", envSelect), el("label", {}, "split", splitSelect),
      el("label", {}, "task", taskInput), taskIds, startButton, randomButton, taskCount),
    description, error, game,
  );

  async function loadTasks() {
    const env = byId[envSelect.value];
    taskCount.textContent = "";
    const data = await api("play/tasks", { env: env.id, split: splitSelect.value, limit: 500 });
    taskIds.replaceChildren(...data.task_ids.map((id) => el("option", { value: id })));
    taskCount.textContent = `${data.total} tasks in ${data.split}`;
  }

  async function chooseEnv(split) {
    const env = byId[envSelect.value];
    const splits = Object.keys(env.splits);
    const chosen = splits.includes(split) ? split : (splits.includes("test") ? "test" : splits[0]);
    splitSelect.replaceChildren(...splits.map((s) => option(s, `${s} (${env.splits[s]})`, s === chosen)));
    description.replaceChildren(el("summary", {}, "what the agent is told (the env's instruction)"), el("pre", {}, env.description));
    await loadTasks();
  }

  const guard = (f) => async (...args) => {
    error.replaceChildren();
    try { await f(...args); } catch (e) { error.replaceChildren(errorBox(e)); }
  };
  const keepChoice = () => keepInHash({ env: envSelect.value, split: splitSelect.value, task: taskInput.value.trim() });
  envSelect.addEventListener("change", guard(async () => { taskInput.value = ""; await chooseEnv(); keepChoice(); }));
  splitSelect.addEventListener("change", guard(() => { taskInput.value = ""; keepChoice(); return loadTasks(); }));
  taskInput.addEventListener("change", keepChoice);
  startButton.addEventListener("click", guard(() => start(taskInput.value.trim())));
  randomButton.addEventListener("click", guard(() => start("")));

  async function start(task) {
    closeCurrent();
    const env = byId[envSelect.value];
    const body = { env_id: env.id, split: splitSelect.value };
    if (task !== "") body.task_id = /^-?\d+$/.test(task) ? Number(task) : task;
    game.replaceChildren(el("p", { class: "muted" }, "Starting…"));
    let session;
    try { session = await api("play/sessions", {}, body); } catch (e) { game.replaceChildren(); throw e; }
    current = session.session;
    taskInput.value = String(session.task_id);
    keepInHash({ env: env.id, split: session.split, task: session.task_id });
    showGame(env, session);
  }

  function showGame(env, session) {
    let steps = 0;
    let total = 0;
    const stepsBadge = el("span", { id: "play-steps", class: "badge" });
    const rewardBadge = el("span", { id: "play-reward", class: "badge" });
    const status = () => {
      stepsBadge.textContent = `step ${steps} / ${env.max_steps}`;
      rewardBadge.textContent = `reward ${fmt(total)}`;
    };
    status();
    const transcript = el("div", { id: "play-transcript" });
    const actionInput = el("input", { id: "play-action", list: "play-action-list", placeholder: "your action", autocomplete: "off" });
    const actionList = el("datalist", { id: "play-action-list" });
    const sendButton = el("button", { id: "play-send", type: "submit" }, "Send");
    const expertButton = el("button", { id: "play-expert", type: "button", title: "ask the env's scripted expert for its next move and put it in the box" }, "Expert's move");
    const expertHint = el("span", { id: "play-expert-hint", class: "muted" });
    const choices = el("div", { id: "play-choices" });
    const stepError = el("div", { id: "play-step-error" });
    const form = el("form", { id: "play-form" }, actionInput, actionList, sendButton, env.expert ? expertButton : null, expertHint);
    const restartButton = el("button", { id: "play-restart", type: "button" }, "Restart");
    const newButton = el("button", { id: "play-new", type: "button" }, "New task");
    restartButton.addEventListener("click", guard(() => start(String(session.task_id))));
    newButton.addEventListener("click", guard(() => start("")));

    const observation = (text, n) => el("div", { class: "msg user", dataset: { step: n } },
      el("div", { class: "who" }, el("span", {}, n === 0 ? "observation (reset)" : `observation ${n}`)), el("pre", {}, text));

    function showChoices(actions) {
      choices.replaceChildren();
      actionList.replaceChildren();
      if (!actions) return;
      actionList.append(...actions.map((a) => el("option", { value: a })));
      choices.append(...actions.map((a) => el("button", {
        type: "button", class: "play-choice", dataset: { action: a }, onclick: () => send(a),
      }, a)));
    }

    function end(reply) {
      form.remove();
      choices.remove();
      const outcome = reply.success ? "success" : (reply.truncated && !reply.terminated ? "truncated" : "failure");
      const words = { success: "Success", failure: "Failure", truncated: "Truncated (out of steps)" }[outcome];
      transcript.after(el("div", { id: "play-end", class: `banner ${outcome}`, dataset: { outcome, score: reply.score ?? "", steps } },
        el("strong", {}, words), ` after ${steps} steps, score ${fmt(reply.score ?? 0)}, reward ${fmt(total)}.`));
    }

    let busy = false;
    async function send(action) {
      if (busy || current !== session.session) return;
      if (!action) { stepError.replaceChildren(errorBox("type an action (or press Expert's move)")); return; }
      busy = true;
      stepError.replaceChildren();
      try {
        const reply = await api(`play/sessions/${encodeURIComponent(session.session)}/step`, {}, { action });
        steps = reply.steps;
        total = reply.total_reward;
        status();
        expertHint.textContent = "";
        delete expertHint.dataset.action;  // the hint was for the state just left
        actionInput.value = "";
        transcript.append(
          el("div", { class: `msg assistant${reply.invalid ? " invalid" : ""}`, dataset: { step: steps, reward: reply.reward, invalid: reply.invalid } },
            el("div", { class: "who" }, el("span", {}, `you, step ${steps}`), el("span", {}, `reward ${fmt(reply.reward)}`),
              reply.invalid ? el("span", { class: "badge invalid", title: "the env rejected this action as not an action of its world" }, "invalid") : null),
            el("pre", {}, action)),
          observation(reply.observation, steps),
        );
        if (reply.terminated || reply.truncated) end(reply);
        else showChoices(reply.available_actions);
        transcript.scrollTop = transcript.scrollHeight;
        if (!(reply.terminated || reply.truncated)) actionInput.focus();
      } catch (e) {
        stepError.replaceChildren(errorBox(e));
      } finally {
        busy = false;
      }
    }

    form.addEventListener("submit", (event) => { event.preventDefault(); send(actionInput.value.trim()); });
    expertButton.addEventListener("click", async () => {
      stepError.replaceChildren();
      expertHint.textContent = "asking the expert…";
      delete expertHint.dataset.action;
      try {
        const { action } = await api(`play/sessions/${encodeURIComponent(session.session)}/expert`);
        actionInput.value = action;
        expertHint.textContent = `expert: ${action}`;
        expertHint.dataset.action = action;
        actionInput.focus();
      } catch (e) {
        expertHint.textContent = "";
        stepError.replaceChildren(errorBox(e));
      }
    });

    game.replaceChildren(
      el("div", { class: "play-head" },
        el("span", { class: "badge" }, env.id), el("span", { id: "play-task-badge", class: "badge" }, `${session.split} task ${session.task_id}`),
        stepsBadge, rewardBadge, restartButton, newButton),
      transcript, stepError, form, choices,
    );
    transcript.append(observation(session.observation, 0));
    showChoices(session.available_actions);
    actionInput.focus();
    game.dataset.session = session.session;
  }

  await chooseEnv(params.split);
  if (params.task !== undefined) taskInput.value = params.task;
  // Live updates of the viewed runs must not wipe a game: nothing to refresh here.
  return () => {};
}

export const routes = { play: renderPlay };
