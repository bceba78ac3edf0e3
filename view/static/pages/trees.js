// The Trees page (to be built).
import { el } from "../core.js";

export const routes = {
  trees: async (container) => { container.append(el("p", { class: "muted" }, "The trees page is not built yet.")); },
};
