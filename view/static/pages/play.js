// The Play page (to be built).
import { el } from "../core.js";

export const routes = {
  play: async (container) => { container.append(el("p", { class: "muted" }, "The play page is not built yet.")); },
};
