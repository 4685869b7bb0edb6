// One person's profile, laid out as the engine's People view lays it out: the name beside the
// avatar, a contact strip, every other trait under Properties, then events and trait history.

import { avatar } from "./avatar.js";
import { api, code, envChip, expandable, h, link, notice, timeEl } from "./dom.js";

const SERVER_TRAITS = new Set(["$os", "$browser", "$device_model"]);

function contactStrip(person) {
  const items = [];
  if (person.email) {
    items.push(h("li", null, h("span", { class: "label" }, "Email"), h("a", { href: `mailto:${encodeURIComponent(person.email)}` }, person.email)));
  }
  if (person.phone) {
    items.push(h("li", null, h("span", { class: "label" }, "Phone"), h("a", { href: `tel:${encodeURIComponent(person.phone)}` }, person.phone)));
  }
  if (!items.length) items.push(h("li", { class: "muted" }, "No email or phone"));
  return h("ul", { class: "contact", "aria-label": "Contact" }, items);
}

function traitTable(caption, traits, onDelete) {
  return h(
    "table",
    { class: "traits" },
    h("caption", null, caption),
    h("thead", null, h("tr", null, h("th", { scope: "col" }, "Trait"), h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, "Type"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
    h(
      "tbody",
      null,
      traits.map((t) =>
        h(
          "tr",
          { "data-key": t.key },
          h("th", { scope: "row" }, h("code", null, t.key)),
          h("td", { class: `value type-${t.type}` }, t.text),
          h("td", { class: "type" }, t.type),
          h("td", null, h("button", { type: "button", class: "quiet danger", "aria-label": `Delete trait ${t.key}`, onclick: () => onDelete(t.key) }, "Delete")),
        ),
      ),
    ),
  );
}

function propertiesPanel(person, onDelete) {
  const custom = person.traits.filter((t) => !t.reserved && !SERVER_TRAITS.has(t.key));
  const server = person.traits.filter((t) => SERVER_TRAITS.has(t.key));
  const reserved = person.traits.filter((t) => t.reserved);
  const parts = [
    custom.length ? traitTable("Custom traits", custom, onDelete) : notice("No custom traits."),
  ];
  if (reserved.length) {
    parts.push(traitTable("Reserved traits (shown above; with two spellings, the one set last wins)", reserved, onDelete));
  }
  if (server.length) parts.push(traitTable("Added by the server from the User-Agent", server, onDelete));
  return parts;
}

function eventRow(ctx, event) {
  return expandable(
    [
      timeEl(event.timestamp, { ms: true, title: `stamped ${event.timestamp}` }),
      h("span", { class: "kind kind-track" }, "track"),
      h("span", { class: "name" }, event.name || "(no name)"),
      h("code", { class: "id" }, event.distinct_id),
    ],
    async () => {
      const op = await api("operation", { project: ctx.project, env: ctx.env, ref: event.id });
      return [h("p", { class: "muted" }, op.note), code(op.text, "Operation as JSON")];
    },
    { class: "row event" },
  );
}

function eventsPanel(ctx, id) {
  const list = h("div", { class: "rows" });
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load older events");
  let offset = 0;
  const load = async () => {
    const page = await api("person/events", { project: ctx.project, env: ctx.env, id, limit: 50, offset });
    list.append(...page.events.map((e) => eventRow(ctx, e)));
    offset += page.events.length;
    more.hidden = offset >= page.total;
    if (!page.total) list.replaceChildren(notice("No events."));
  };
  more.addEventListener("click", load);
  load().catch((error) => list.replaceChildren(notice(error.message, "error")));
  return [list, more];
}

function effect(entry) {
  const removed = entry.type === "null";
  if (entry.source === "delete") return "removed from the console";
  if (entry.took_effect) return removed ? "removed" : "set";
  return "lost to a later timestamp";
}

// The request an update came in: a link to it while the request log has it, its identity always.
function requestOf(ctx, request) {
  if (!request) return [];
  const name = request.sequence ? `request #${request.sequence}` : "a request";
  const parts = [h("br"), "in "];
  if (request.in_log) parts.push(h("a", { class: "request-link", href: link("requests", { project: ctx.project, env: ctx.env, sequence: request.sequence }) }, name));
  else parts.push(h("span", { title: "no longer in this server's request log" }, name));
  parts.push(h("span", { class: "muted" }, " received ", timeEl(request.received_at)));
  if (request.idempotency_key !== null) parts.push(h("span", { class: "muted" }, " \u00b7 Idempotency-Key "), h("code", null, request.idempotency_key));
  return parts;
}

function historyPanel(ctx, id) {
  const holder = h("div", null, notice("Loading…"));
  api("person/history", { project: ctx.project, env: ctx.env, id })
    .then(({ history }) => {
      if (!history.length) return holder.replaceChildren(notice("No trait was ever set."));
      holder.replaceChildren(
        h(
          "table",
          { class: "history" },
          h("caption", null, "Every value each trait was sent with, newest first"),
          h("thead", null, h("tr", null, ...["Stamped", "Trait", "Value", "Effect", "From"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            null,
            history.map((e) =>
              h(
                "tr",
                { class: e.took_effect ? "" : "superseded" },
                h("td", null, timeEl(e.timestamp)),
                h("th", { scope: "row" }, h("code", null, e.key)),
                h("td", { class: `value type-${e.type}` }, e.type === "null" ? "(removed)" : e.text),
                h("td", null, effect(e)),
                h("td", { class: "from" }, h("span", null, `update #${e.update_id} for `), h("code", null, e.distinct_id), h("span", { class: "muted" }, " applied ", timeEl(e.applied_at)), ...requestOf(ctx, e.request)),
              ),
            ),
          ),
        ),
      );
    })
    .catch((error) => holder.replaceChildren(notice(error.message, "error")));
  return [holder];
}

// Tabs that follow the ARIA pattern: arrow keys move between them, Tab goes into the panel.
function tabs(ctx, id, defs, selected) {
  const tablist = h("div", { role: "tablist", "aria-label": "Profile sections", class: "tabs" });
  const panel = h("div", { role: "tabpanel", tabindex: "0", class: "panel" });
  const buttons = defs.map((def) =>
    h("button", { type: "button", role: "tab", id: `tab-${def.key}`, "aria-controls": "profile-panel" }, def.label),
  );
  panel.id = "profile-panel";
  const select = (index, focus) => {
    buttons.forEach((b, i) => {
      b.setAttribute("aria-selected", String(i === index));
      b.tabIndex = i === index ? 0 : -1;
    });
    panel.setAttribute("aria-labelledby", buttons[index].id);
    panel.replaceChildren(...defs[index].render());
    if (focus) buttons[index].focus();
    const query = new URLSearchParams({ project: ctx.project, env: ctx.env, id, tab: defs[index].key });
    history.replaceState(null, "", `#/person?${query}`);
  };
  buttons.forEach((button, index) => {
    button.addEventListener("click", () => select(index, false));
    button.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -index, End: buttons.length - 1 - index };
      if (!(event.key in moves)) return;
      event.preventDefault();
      select((index + moves[event.key] + buttons.length) % buttons.length, true);
    });
  });
  tablist.append(...buttons);
  select(Math.max(0, defs.findIndex((d) => d.key === selected)), false);
  return [tablist, panel];
}

export async function personPage(main, ctx) {
  const { project, env, params } = ctx;
  const id = params.get("id") || "";
  let person;
  try {
    person = await api("person", { project, env, id });
  } catch (error) {
    if (error.status !== 404) throw error;
    main.replaceChildren(
      h("h1", null, "No such person"),
      notice(`Nobody with the id “${id}” in the ${env} data of this project (never seen, or deleted).`),
      h("p", null, h("a", { href: link("people", { project, env }) }, "Back to people")),
    );
    return null;
  }
  const reload = () => personPage(main, ctx);
  const deleteTrait = async (key) => {
    if (!confirm(`Delete the trait “${key}” from this person? An update stamped later can set it again.`)) return;
    await api("person/trait", { project, env, id: person.distinct_id, key }, "DELETE");
    await reload();
  };
  const deletePerson = async () => {
    if (!confirm("Delete this person? They disappear from the console and the read API; their events are kept.")) return;
    await api("person", { project, env, id: person.distinct_id }, "DELETE");
    ctx.go("people", new URLSearchParams({ project, env }));
  };
  const facts = h(
    "dl",
    { class: "facts" },
    h("div", null, h("dt", null, "First seen"), h("dd", null, timeEl(person.first_seen))),
    h("div", null, h("dt", null, "Last seen"), h("dd", null, timeEl(person.last_seen))),
    h("div", null, h("dt", null, "Events"), h("dd", null, person.event_count.toLocaleString())),
    h(
      "div",
      { class: "aliases" },
      h("dt", null, "Stitched ids"),
      h("dd", null, person.aliases.length ? h("ul", null, person.aliases.map((a) => h("li", null, h("code", null, a)))) : "none"),
    ),
  );
  main.replaceChildren(
    h("p", { class: "crumb" }, h("a", { href: link("people", { project, env }) }, "← People")),
    h(
      "section",
      { class: "profile-head", "aria-label": "Profile" },
      avatar(person, "large"),
      h(
        "div",
        { class: "who" },
        h("h1", null, person.name || person.distinct_id),
        h("p", { class: "muted" }, h("code", { class: "distinct-id" }, person.distinct_id), " ", envChip(env)),
        contactStrip(person),
      ),
      h("button", { type: "button", class: "danger", onclick: deletePerson }, "Delete person"),
    ),
    facts,
    ...tabs(
      ctx,
      person.distinct_id,
      [
        { key: "properties", label: `Properties (${person.traits.length})`, render: () => propertiesPanel(person, deleteTrait) },
        { key: "events", label: `Events (${person.event_count.toLocaleString()})`, render: () => eventsPanel(ctx, person.distinct_id) },
        { key: "history", label: "Trait history", render: () => historyPanel(ctx, person.distinct_id) },
      ],
      params.get("tab"),
    ),
  );
  return null;
}
