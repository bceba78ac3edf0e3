// What every page shares: the API call, element building, the hash router and live updates.

/** GET (or POST with a body) /api/<path>; throws an Error with the server's message. */
export async function api(path, params = {}, body = undefined) {
  const url = new URL("/api/" + path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const init = body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(url, init);
  const text = await response.text();
  let data;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!response.ok) throw new Error((data && data.error) || `${response.status} ${response.statusText}`);
  return data;
}

/** el("div", {class: "x", onclick: f}, child, "text", ...): an element. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A table from column names and rows (arrays of cells: text, numbers or elements). */
export function table(columns, rows, { numeric = [], onRow = undefined, rowAttrs = undefined } = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { class: numeric.includes(c) ? "num" : undefined }, c)));
  const body = rows.map((row, i) => el("tr", {
    class: onRow ? "clickable" : undefined, onclick: onRow ? () => onRow(i) : undefined,
    ...(rowAttrs ? rowAttrs(i) : {}),
  }, row.map((cell, j) => el("td", { class: numeric.includes(columns[j]) ? "num" : undefined }, cell))));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
}

/** The current route: {page, params} from "#/page?key=value". */
export function currentRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, query] = hash.split("?");
  return { page: page || "runs", params: Object.fromEntries(new URLSearchParams(query || "")) };
}

/** Go to a page: go("episodes", {file: id}). */
export function go(page, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString();
  location.hash = `#/${page}${query ? "?" + query : ""}`;
}

/** A link to a page. */
export function link(text, page, params = {}) {
  const query = new URLSearchParams(params).toString();
  return el("a", { href: `#/${page}${query ? "?" + query : ""}` }, text);
}

export function fmt(value, digits = 3) {
  if (value === undefined || value === null) return "";
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(digits);
  return String(value);
}

export function errorBox(error) {
  return el("div", { class: "error" }, String(error.message || error));
}
