// The Runs page (to be built).
import { el } from "../core.js";

export const routes = {
  runs: async (container) => { container.append(el("p", { class: "muted" }, "The runs page is not built yet.")); },
};
