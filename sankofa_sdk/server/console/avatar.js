// Avatars: the image when the avatar trait is an http(s) URL that loads, the person's
// initials otherwise.

import { h, httpUrl } from "./dom.js";

function tone(text) {
  let hash = 0;
  for (const ch of text) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 8;
}

function initials(person) {
  const source = (person.name || person.email || person.distinct_id || "?").trim();
  const words = source.split(/[\s@._-]+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[1]] : [source];
  return letters.map((w) => Array.from(w)[0] || "").join("").toUpperCase().slice(0, 2) || "?";
}

// The initials are always there underneath the image, so an image that fails to load (and is
// removed) never changes the layout.
export function avatar(person, size = "small") {
  const circle = h(
    "span",
    { class: `avatar ${size} tone-${tone(person.distinct_id)}` },
    h("span", { class: "initials", "aria-hidden": "true" }, initials(person)),
  );
  const url = httpUrl(person.avatar);
  if (url) {
    const img = h("img", { src: url, alt: "", referrerpolicy: "no-referrer", decoding: "async" });
    img.addEventListener("error", () => img.remove());
    img.addEventListener("load", () => circle.classList.add("has-image"));
    circle.append(img);
  }
  return circle;
}
