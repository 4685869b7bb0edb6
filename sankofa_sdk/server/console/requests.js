// Requests: every request the server answered, newest first, with the exact answer, the
// operation counts and, for a refusal, the reason (for a 400: which operation, and why).

import { api, code, envChip, every, expandable, h, notice, timeEl } from "./dom.js";

const POLL_MS = 1000;
const PAGE = 50;

function countsText(counts) {
  if (!counts) return "";
  const parts = [];
  for (const [key, label] of [["events", "event"], ["people", "profile"], ["aliases", "alias"], ["discarded", "discarded"]]) {
    const n = counts[key];
    if (n) parts.push(`${n} ${label === "discarded" || n === 1 ? label : label === "alias" ? "aliases" : `${label}s`}`);
  }
  const ops = `${counts.operations} op${counts.operations === 1 ? "" : "s"}`;
  return parts.length ? `${ops}: ${parts.join(", ")}` : ops;
}

function statusClass(status) {
  if (status === null) return "status-reset";
  return `status-${String(status)[0]}xx`;
}

function detail(record) {
  const parts = [];
  if (record.reason) parts.push(h("p", { class: "reason" }, record.reason));
  if (record.refused_operation) {
    parts.push(
      h("h3", null, `Refused operation (index ${record.refused_index})`),
      code(record.refused_operation, "Refused operation as JSON"),
    );
  }
  parts.push(h("h3", null, "Answer body"), code(record.answer || "(empty)", "Answer body"));
  if (record.idempotency_key) parts.push(h("p", { class: "muted" }, `Idempotency-Key: ${record.idempotency_key}`));
  if (record.body) parts.push(h("h3", null, "Request body"), code(record.body, "Request body"));
  else if (record.status !== 200) parts.push(h("p", { class: "muted" }, "The request body was not kept."));
  return parts;
}

function row(record) {
  const badges = [];
  if (record.fault) badges.push(h("span", { class: "badge fault" }, "injected fault"));
  if (record.replayed) badges.push(h("span", { class: "badge replayed" }, "replayed"));
  if (record.environment === "test") badges.push(h("span", { class: "badge env-test" }, "test"));
  if (record.project_id === null) badges.push(h("span", { class: "badge" }, "no project"));
  return expandable(
    [
      timeEl(record.at, { ms: true, title: `received ${record.at}` }),
      h("span", { class: `status ${statusClass(record.status)}` }, record.status === null ? "reset" : String(record.status)),
      h("span", { class: "path" }, h("span", { class: "method" }, record.method), ` ${record.path}`),
      h("span", { class: "counts" }, countsText(record.counts)),
      h("span", { class: "reason-line" }, record.reason || record.answer),
      h("span", { class: "badges" }, badges),
    ],
    async () => detail(await api("request", { sequence: record.sequence })),
    { class: `row request ${statusClass(record.status)}${record.fault ? " fault" : ""}`, "data-sequence": record.sequence },
  );
}

// The request a link named (#/requests?…&sequence=N), opened above the list.
function focused(sequence) {
  const holder = h("section", { class: "focused", "aria-label": `Request #${sequence}` }, notice("Loading…"));
  api("request", { sequence })
    .then((record) => holder.replaceChildren(h("h2", null, `Request #${sequence}: ${record.method} ${record.path} \u2192 ${record.status === null ? "reset" : record.status}`), ...detail(record)))
    .catch(() => holder.replaceChildren(notice(`Request #${sequence} is no longer in this server's request log.`)));
  return holder;
}

export async function requestsPage(main, ctx) {
  const { project, env } = ctx;
  const sequence = Number(ctx.params.get("sequence")) || 0;
  const list = h("div", { class: "rows requests", "aria-label": "Requests, newest first" });
  const older = h("button", { type: "button", class: "more", hidden: true }, "Load older requests");
  let newest = 0;
  let oldest = 0;

  const poll = async () => {
    const answer = await api("requests", { project, env, limit: PAGE });
    const fresh = answer.requests.filter((r) => r.sequence > newest);
    if (!newest) {
      list.replaceChildren();
      if (!answer.requests.length) list.append(notice("No requests yet."));
      oldest = answer.requests.length ? answer.requests[answer.requests.length - 1].sequence : 0;
      older.hidden = answer.requests.length < PAGE;
    } else if (fresh.length) {
      const empty = list.querySelector(".notice");
      if (empty) empty.remove();
    }
    if (fresh.length) {
      newest = fresh[0].sequence;
      list.prepend(...fresh.map(row));
    }
  };
  older.addEventListener("click", async () => {
    const answer = await api("requests", { project, env, limit: PAGE, before: oldest });
    list.append(...answer.requests.map(row));
    if (answer.requests.length) oldest = answer.requests[answer.requests.length - 1].sequence;
    older.hidden = answer.requests.length < PAGE;
  });

  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", null, "Requests"), envChip(env)),
    h("p", { class: "muted" }, "Every request this server answered for this project and environment (and those whose key named no project), newest first. Open one for its answer, its body and, for a refusal, the operation refused."),
    ...(sequence ? [focused(sequence)] : []),
    list,
    older,
  );
  list.append(notice("Loading…"));
  return every(POLL_MS, poll);
}
