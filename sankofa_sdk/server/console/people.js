// People: the searchable, filterable list, most recently active first, a page at a time.

import { avatar } from "./avatar.js";
import { api, envChip, h, link, notice, plural, timeEl } from "./dom.js";

const PAGE_SIZE = 25;

export async function peoplePage(main, ctx) {
  const { project, env, params } = ctx;
  const state = {
    search: params.get("search") || "",
    offset: Number(params.get("offset")) || 0,
    filters: [...params].filter(([k]) => k.startsWith("trait.")).map(([k, v]) => [k.slice(6), v]),
  };
  const keysList = h("datalist", { id: "trait-keys" });
  const results = h("div", { class: "results" });
  const chips = h("ul", { class: "filters", "aria-label": "Trait filters" });
  const status = h("p", { class: "count", role: "status" });

  const sync = () => {
    const query = new URLSearchParams({ project, env });
    if (state.search) query.set("search", state.search);
    for (const [key, value] of state.filters) query.append(`trait.${key}`, value);
    if (state.offset) query.set("offset", state.offset);
    history.replaceState(null, "", `#/people?${query}`);
  };

  let loading = 0;
  const load = async () => {
    const mine = ++loading;
    const query = { project, env, search: state.search, limit: PAGE_SIZE, offset: state.offset };
    for (const [key, value] of state.filters) query[`trait.${key}`] = value;
    const listing = await api("people", query);
    if (mine !== loading) return; // a newer search answered first
    renderChips();
    renderTable(listing);
  };

  const renderChips = () => {
    chips.replaceChildren(
      ...state.filters.map(([key, value], i) =>
        h(
          "li",
          { class: "chip" },
          h("span", null, `${key} = ${value}`),
          h(
            "button",
            {
              type: "button",
              class: "chip-remove",
              "aria-label": `Remove filter ${key} = ${value}`,
              onclick: () => {
                state.filters.splice(i, 1);
                state.offset = 0;
                sync();
                load();
              },
            },
            "×",
          ),
        ),
      ),
    );
  };

  const renderTable = (listing) => {
    const { people, total } = listing;
    const first = total ? state.offset + 1 : 0;
    const last = state.offset + people.length;
    status.textContent = total ? `${first}–${last} of ${plural(total, "person", "people")}` : "";
    if (!people.length) {
      const hint = state.search || state.filters.length ? "Nobody matches." : "Nobody yet: send something with the project's key.";
      results.replaceChildren(notice(hint));
      return;
    }
    const rows = people.map((p) =>
      h(
        "tr",
        null,
        h(
          "td",
          { class: "who" },
          h(
            "span",
            { class: "person" },
            avatar(p),
            h("a", { href: link("person", { project, env, id: p.distinct_id }) }, p.name || p.distinct_id),
          ),
        ),
        h("td", { class: "email" }, p.email || ""),
        h("td", { class: "id" }, h("code", null, p.distinct_id), p.aliases ? h("span", { class: "muted" }, ` +${p.aliases}`) : null),
        h("td", { class: "seen" }, timeEl(p.last_seen)),
        h("td", { class: "num" }, p.event_count.toLocaleString()),
      ),
    );
    const pager = h(
      "div",
      { class: "pager" },
      h("button", {
        type: "button",
        disabled: state.offset === 0,
        onclick: () => {
          state.offset = Math.max(0, state.offset - PAGE_SIZE);
          sync();
          load();
        },
      }, "Previous"),
      h("button", {
        type: "button",
        disabled: last >= total,
        onclick: () => {
          state.offset += PAGE_SIZE;
          sync();
          load();
        },
      }, "Next"),
    );
    results.replaceChildren(
      h(
        "table",
        { class: "people" },
        h("caption", { class: "visually-hidden" }, "People, most recently active first"),
        h("thead", null, h("tr", null, ...["Person", "Email", "Distinct id", "Last seen", "Events"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", null, rows),
      ),
      pager,
    );
  };

  let debounce = null;
  const searchBox = h("input", {
    type: "search",
    id: "people-search",
    value: state.search,
    placeholder: "Name, email or distinct id",
    autocomplete: "off",
    oninput: (event) => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        state.search = event.target.value.trim();
        state.offset = 0;
        sync();
        load();
      }, 250);
    },
  });
  const keyInput = h("input", { type: "text", id: "filter-key", list: "trait-keys", required: true, autocomplete: "off" });
  const valueInput = h("input", { type: "text", id: "filter-value", autocomplete: "off" });
  const filterForm = h(
    "form",
    {
      class: "filter-form",
      onsubmit: (event) => {
        event.preventDefault();
        const key = keyInput.value.trim();
        if (!key) return;
        state.filters.push([key, valueInput.value]);
        state.offset = 0;
        keyInput.value = valueInput.value = "";
        sync();
        load();
      },
    },
    h("label", { for: "filter-key" }, "Trait"),
    keyInput,
    h("label", { for: "filter-value" }, "equals"),
    valueInput,
    h("button", { type: "submit" }, "Add filter"),
  );

  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", null, "People"), envChip(env)),
    h(
      "div",
      { class: "toolbar" },
      h("form", { role: "search", class: "search", onsubmit: (e) => e.preventDefault() }, h("label", { for: "people-search" }, "Search"), searchBox),
      filterForm,
      keysList,
    ),
    chips,
    status,
    results,
  );
  api("trait-keys", { project, env })
    .then(({ keys }) => keysList.replaceChildren(...keys.map((k) => h("option", { value: k }))))
    .catch(() => {});
  await load();
  return () => clearTimeout(debounce);
}
