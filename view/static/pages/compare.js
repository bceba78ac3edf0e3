// The Compare page (to be built).
import { el } from "../core.js";

export const routes = {
  compare: async (container) => { container.append(el("p", { class: "muted" }, "The compare page is not built yet.")); },
};
