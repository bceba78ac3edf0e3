// The page's entry: routes "#/page?..." to the page modules, and re-renders on live changes.
import { api, currentRoute, el, errorBox } from "./core.js";
import * as runs from "./pages/runs.js";
import * as episodes from "./pages/episodes.js";
import * as compare from "./pages/compare.js";
import * as trees from "./pages/trees.js";
import * as play from "./pages/play.js";

// Each page module exports `routes`: {name: render(container, params, {live})}.
// A render may return a function `refresh()` that live updates call instead of a full redraw.
const ROUTES = { ...runs.routes, ...episodes.routes, ...compare.routes, ...trees.routes, ...play.routes };
const NAV = { run: "runs", episode: "episodes", tree: "trees" };

let refresh = null;

async function render() {
  const { page, params } = currentRoute();
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === (NAV[page] || page));
  }
  const container = document.getElementById("page");
  container.replaceChildren();
  const route = ROUTES[page];
  refresh = null;
  if (!route) { container.append(errorBox(`no page "${page}"`)); return; }
  try {
    const result = await route(container, params);
    refresh = typeof result === "function" ? result : null;
  } catch (error) {
    container.append(errorBox(error));
  }
  document.body.dataset.ready = page;  // tests wait for this
}

let version = null;
async function poll() {
  try {
    const { version: now } = await api("version");
    if (version !== null && now !== version) {
      document.getElementById("live").textContent = "updated " + new Date().toLocaleTimeString();
      if (refresh) await refresh(); else await render();
    }
    version = now;
  } catch { /* the server may be restarting: try again at the next tick */ }
  setTimeout(poll, 2000);
}

window.addEventListener("hashchange", render);
render();
poll();
