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

// The browser's offset from UTC at that moment, "UTC+05:30" (summer and winter may differ).
function zoneAt(t) {
  const minutes = -t.getTimezoneOffset();
  const size = Math.abs(minutes);
  return `UTC${minutes < 0 ? "-" : "+"}${pad(Math.floor(size / 60))}:${pad(size % 60)}`;
}

// A stored time (RFC 3339, UTC) in the browser's local time: the date, the time of day and the
// zone, "2026-05-10 01:45:42 UTC+05:30", with ".318" after the seconds when ms is asked for.
// Always the same width, so rows line up. The parts, for an element to lay out.
function parts(iso, ms) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return null; // past what a browser's Date holds: shown as stored
  const day = `${pad(t.getFullYear(), 4)}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}`;
  const seconds = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
  return { day, clock: ms ? `${seconds}.${pad(t.getMilliseconds(), 3)}` : seconds, zone: zoneAt(t) };
}

export function when(iso, { ms = false } = {}) {
  if (!iso) return "never";
  const p = parts(iso, ms);
  return p ? `${p.day} ${p.clock} ${p.zone}` : iso;
}

const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

// <time> for a stored time: shown as when() shows it, the stored UTC value in its title.
export function timeEl(iso, { ms = false, title = null } = {}) {
  const p = iso ? parts(iso, ms) : null;
  const shown = p
    ? [h("span", { class: "day" }, p.day), " ", h("span", { class: "clock" }, p.clock), " ", h("span", { class: "zone" }, p.zone)]
    : when(iso);
  const stored = iso ? `${title || iso} (UTC); shown in this browser's time zone${browserZone ? `, ${browserZone}` : ""}` : null;
  return h("time", { datetime: iso || null, title: stored }, shown);
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
