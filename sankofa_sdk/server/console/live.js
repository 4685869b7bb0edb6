// Live events: operations as the server stores them, newest on top, each expandable to the
// JSON that arrived. New rows go on top only while the list is scrolled to the top and not
// paused; otherwise they wait behind a counter, so nothing moves under the reader.

import { api, code, envChip, every, expandable, h, link, notice, timeEl } from "./dom.js";

const POLL_MS = 400;
const MAX_ROWS = 500;
const KINDS = ["track", "people", "alias"];

function row(ctx, op) {
  const title = op.kind === "track" ? op.name || "(no name)" : op.summary;
  return expandable(
    [
      timeEl(op.at, { ms: true, title: `stored ${op.at}; stamped ${op.timestamp}` }),
      h("span", { class: `kind kind-${op.kind}` }, op.kind),
      h("span", { class: "name" }, title),
      h("a", { class: "id", href: link("person", { project: ctx.project, env: ctx.env, id: op.distinct_id }) }, op.distinct_id),
    ],
    async () => {
      const found = await api("operation", { project: ctx.project, env: ctx.env, ref: op.id });
      const from = found.sequence
        ? [" \u00b7 ", h("a", { href: link("requests", { project: ctx.project, env: ctx.env, sequence: found.sequence }) }, `request #${found.sequence}`)]
        : [];
      return [
        h("p", { class: found.exact ? "muted" : "muted inexact" }, found.note, ...from),
        code(found.text, `${op.kind} operation as JSON`),
      ];
    },
    { class: `row op kind-${op.kind}`, "data-id": op.id },
  );
}

export async function livePage(main, ctx) {
  const { project, env, params } = ctx;
  const filters = {
    kinds: new Set((params.get("kinds") || KINDS.join(",")).split(",").filter((k) => KINDS.includes(k))),
    event_name: params.get("event_name") || "",
    distinct_id: params.get("distinct_id") || "",
  };
  let cursor = null;
  let paused = false;
  let waiting = [];
  const list = h("div", { class: "rows stream", "aria-label": "Operations, newest first" });
  const pending = h("button", { type: "button", class: "pending", "aria-live": "polite" });
  const pauseButton = h("button", { type: "button", class: "pause", "aria-pressed": "false" }, "Pause");

  const sync = () => {
    const query = new URLSearchParams({ project, env });
    if (filters.kinds.size !== KINDS.length) query.set("kinds", [...filters.kinds].join(","));
    if (filters.event_name) query.set("event_name", filters.event_name);
    if (filters.distinct_id) query.set("distinct_id", filters.distinct_id);
    history.replaceState(null, "", `#/live?${query}`);
  };

  const showPending = () => {
    // The button keeps its place and size; only its text and visibility change.
    pending.textContent = waiting.length ? `Show ${waiting.length.toLocaleString()} new` : "No new operations";
    pending.classList.toggle("idle", !waiting.length);
  };

  const atTop = () => window.scrollY < 40;

  const insert = (ops) => {
    if (!ops.length) return;
    const empty = list.querySelector(".notice");
    if (empty) empty.remove();
    list.prepend(...ops.map((op) => row(ctx, op)));
    while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
  };

  const releaseWaiting = () => {
    insert(waiting);
    waiting = [];
    showPending();
  };

  pending.addEventListener("click", () => {
    releaseWaiting();
    window.scrollTo({ top: 0 });
  });
  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused && atTop()) releaseWaiting();
  });

  const poll = async () => {
    const query = { project, env, kinds: [...filters.kinds].join(","), event_name: filters.event_name, distinct_id: filters.distinct_id };
    if (cursor !== null) query.after = cursor;
    const first = cursor === null;
    const answer = await api("stream", query);
    cursor = answer.cursor;
    if (first) {
      list.replaceChildren();
      insert(answer.rows);
      if (!answer.rows.length) list.append(notice("Nothing yet. Operations appear here as they are stored."));
      return;
    }
    if (!answer.rows.length) return;
    if (paused || !atTop()) {
      waiting = answer.rows.concat(waiting).slice(0, MAX_ROWS);
      showPending();
    } else {
      insert(answer.rows);
    }
  };

  let stop = null;
  const restart = () => {
    if (stop) stop();
    cursor = null;
    waiting = [];
    showPending();
    list.replaceChildren(notice("Loading…"));
    sync();
    stop = every(POLL_MS, poll);
  };

  const kindBoxes = KINDS.map((kind) =>
    h(
      "label",
      { class: `kind-toggle kind-${kind}` },
      h("input", {
        type: "checkbox",
        value: kind,
        checked: filters.kinds.has(kind),
        onchange: (event) => {
          if (event.target.checked) filters.kinds.add(kind);
          else filters.kinds.delete(kind);
          restart();
        },
      }),
      ` ${kind}`,
    ),
  );
  let debounce = null;
  const textFilter = (key, label, placeholder) => {
    const id = `live-${key}`;
    return h(
      "span",
      { class: "field" },
      h("label", { for: id }, label),
      h("input", {
        type: "text",
        id,
        value: filters[key],
        placeholder,
        autocomplete: "off",
        oninput: (event) => {
          clearTimeout(debounce);
          debounce = setTimeout(() => {
            filters[key] = event.target.value.trim();
            restart();
          }, 250);
        },
      }),
    );
  };

  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", null, "Live events"), envChip(env)),
    h(
      "form",
      { class: "toolbar live-filters", onsubmit: (e) => e.preventDefault(), "aria-label": "Filter the stream" },
      h("fieldset", { class: "kinds" }, h("legend", null, "Kinds"), kindBoxes),
      textFilter("event_name", "Event name", "contains…"),
      textFilter("distinct_id", "Distinct id", "contains…"),
      pauseButton,
    ),
    h("div", { class: "pending-bar" }, pending),
    list,
    h("p", { class: "muted footnote" }, "Every operation is shown as it arrived, only indented (profile updates and aliases stored by an older version of the server are shown as stored, and marked so). See ", h("a", { href: link("requests", { project, env }) }, "Requests"), " for every answer."),
  );
  restart();
  return () => {
    clearTimeout(debounce);
    if (stop) stop();
  };
}
