// Building blocks shared by the views: elements from data (text only, never HTML), the
// console's JSON routes, and the formats the views print.
//
// Everything the server stores came from someone's app and is untrusted: values reach the
// page through textContent and attributes checked here, never through innerHTML.

const SAFE_URL = /^(#|\/(?!\/)|mailto:|tel:|https?:\/\/)/i;

// h("a", {href: "#/people", class: "x"}, "text", child) builds an element.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if ((name === "href" || name === "src") && !SAFE_URL.test(String(value))) continue;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// An http(s) URL, or null: a trait may hold "javascript:..." or anything else.
export function httpUrl(text) {
  if (typeof text !== "string") return null;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

export class Unauthorized extends Error {}

// The console's JSON routes; a change carries the header the server requires of changes.
export async function api(route, params, method = "GET") {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-Sankofa-Console"] = "1";
  const response = await fetch(`/console/api/${route}?${query}`, {
    method,
    headers,
    credentials: "same-origin",
    cache: "no-store",
  });
  if (response.status === 401) throw new Unauthorized("console token required");
  const body = await response.json();
  if (!response.ok) {
    const error = new Error(body.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// "#/person?project=p&env=live&id=x" for a view and its parameters.
export function link(view, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  return `#/${view}?${query}`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

// Local wall-clock time with milliseconds: fixed width, so streaming rows line up.
export function clock(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
}

export function when(iso) {
  if (!iso) return "never";
  const t = new Date(iso);
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

export function timeEl(iso, format = when) {
  return h("time", { datetime: iso || null, title: iso || null }, format(iso));
}

export function plural(n, one, many) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

// Which data a view shows; the test side is marked in its own colour everywhere.
export function envChip(env) {
  return h("span", { class: `chip env-${env}` }, env === "test" ? "Test data" : "Live data");
}

// A message in place of a view's content (errors, empty lists).
export function notice(text, kind = "muted") {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null }, text);
}

// Runs fn every `ms` while the page is visible; returns a function that stops it. Each run
// waits for the last one, so a slow answer never piles up requests.
export function every(ms, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
      } catch (error) {
        if (error instanceof Unauthorized) {
          stopped = true;
          window.dispatchEvent(new CustomEvent("console-unauthorized"));
          return;
        }
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, 0);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// A <details> row whose body is fetched the first time it opens.
export function expandable(summary, load, attrs) {
  const body = h("div", { class: "detail-body" });
  const details = h("details", attrs, h("summary", null, summary), body);
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    body.replaceChildren(notice("Loading…"));
    try {
      body.replaceChildren(...(await load()));
    } catch (error) {
      loaded = false;
      body.replaceChildren(notice(`Could not load: ${error.message}`, "error"));
    }
  });
  return details;
}

// JSON text as the server gave it, in a focusable block a keyboard can scroll.
export function code(text, label) {
  return h("pre", { class: "json", tabindex: "0", "aria-label": label || null }, text);
}
