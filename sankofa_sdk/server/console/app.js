// The console's shell: which project and environment are shown, and which view, all kept in
// the address (#/view?project=...&env=...) so a view can be linked and reloaded.

import { api, h, notice, Unauthorized } from "./dom.js";
import { livePage } from "./live.js";
import { peoplePage } from "./people.js";
import { personPage } from "./profile.js";
import { requestsPage } from "./requests.js";

const VIEWS = {
  people: peoplePage,
  person: personPage,
  live: livePage,
  requests: requestsPage,
};
const NAV = { person: "people" };

const main = document.getElementById("main");
const projectSelect = document.getElementById("project");
const banner = document.getElementById("env-banner");
let projects = [];
let stopView = null;

function parseHash() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const params = new URLSearchParams(query || "");
  const view = VIEWS[path] ? path : "people";
  const known = projects.some((p) => p.id === params.get("project"));
  if (!known && projects.length) params.set("project", projects[0].id);
  if (params.get("env") !== "test") params.set("env", "live");
  return { view, params };
}

function go(view, params) {
  location.hash = `#/${view}?${params}`;
}

function showScope(params) {
  const env = params.get("env");
  const project = projects.find((p) => p.id === params.get("project"));
  projectSelect.value = params.get("project");
  for (const radio of document.querySelectorAll("input[name=env]")) {
    radio.checked = radio.value === env;
  }
  document.body.classList.toggle("env-test", env === "test");
  banner.textContent =
    env === "test"
      ? `Test environment of ${project ? project.name : "this project"}: data sent with its test key (sk_test_…), kept apart from live data.`
      : "";
  for (const a of document.querySelectorAll("nav.views a")) {
    const base = a.dataset.view;
    a.href = `#/${base}?${new URLSearchParams({ project: params.get("project"), env })}`;
  }
}

// Each environment's size beside its switch, so test data is seen even while live is shown.
async function showCounts(projectId) {
  try {
    projects = (await api("projects")).projects;
  } catch {
    return;
  }
  const project = projects.find((p) => p.id === projectId);
  for (const span of document.querySelectorAll(".env .n")) {
    const people = project ? project.people[span.dataset.env] : null;
    span.textContent = people === null ? "" : `(${people.toLocaleString()})`;
    span.title = people === null ? "" : `${people.toLocaleString()} people`;
    span.setAttribute("aria-label", span.title);
  }
}

function showNav(view) {
  const active = NAV[view] || view;
  for (const a of document.querySelectorAll("nav.views a")) {
    if (a.dataset.view === active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function needsToken() {
  if (stopView) stopView();
  stopView = null;
  main.replaceChildren(
    h("h1", null, "This console needs its token"),
    notice(
      "Open the console URL the server printed when it started (console: http://…/?token=…), or ReferenceServer.console_url.",
      "error",
    ),
  );
}

async function route() {
  const { view, params } = parseHash();
  if (`#/${view}?${params}` !== location.hash) {
    history.replaceState(null, "", `#/${view}?${params}`);
  }
  showScope(params);
  showNav(view);
  showCounts(params.get("project"));
  if (stopView) stopView();
  stopView = null;
  const context = {
    project: params.get("project"),
    env: params.get("env"),
    params,
    go,
    projects,
  };
  try {
    stopView = (await VIEWS[view](main, context)) || null;
  } catch (error) {
    if (error instanceof Unauthorized) needsToken();
    else main.replaceChildren(notice(`Could not load this view: ${error.message}`, "error"));
  }
}

async function start() {
  try {
    projects = (await api("projects")).projects;
  } catch (error) {
    if (error instanceof Unauthorized) return needsToken();
    main.replaceChildren(notice(`Could not reach the server: ${error.message}`, "error"));
    return;
  }
  projectSelect.replaceChildren(...projects.map((p) => h("option", { value: p.id }, `${p.name} · ${p.id}`)));
  projectSelect.addEventListener("change", () => {
    const { view, params } = parseHash();
    go(view === "person" ? "people" : view, new URLSearchParams({ project: projectSelect.value, env: params.get("env") }));
  });
  for (const radio of document.querySelectorAll("input[name=env]")) {
    radio.addEventListener("change", () => {
      const { view, params } = parseHash();
      go(view === "person" ? "people" : view, new URLSearchParams({ project: params.get("project"), env: radio.value }));
    });
  }
  window.addEventListener("hashchange", route);
  window.addEventListener("console-unauthorized", needsToken);
  // "/" moves to the view's search or first filter, as in many consoles.
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, select, textarea, [contenteditable]");
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      const field = main.querySelector("input[type=search], input[type=text]");
      if (field) {
        event.preventDefault();
        field.focus();
      }
    }
  });
  await route();
}

start();
