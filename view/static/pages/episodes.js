// The Episodes page (to be built).
import { el } from "../core.js";

export const routes = {
  episodes: async (container) => { container.append(el("p", { class: "muted" }, "The episodes page is not built yet.")); },
};
