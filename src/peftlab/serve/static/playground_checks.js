// Playground checks made before a request, said in the user's words: an input to answer, and
// each shown setting within its range (the range is the input's own min and max).
"use strict";

const PG_SETTINGS = [
  ["pg-max-tokens", "Max new tokens", true], ["pg-temperature", "Temperature", false],
  ["pg-top-p", "Top-p", false], ["pg-beams", "Beams", true], ["pg-seed", "Seed", true],
];

function rangeWords(el) {
  const min = el.min !== "" ? Number(el.min) : null, max = el.max !== "" ? Number(el.max) : null;
  if (min !== null && max !== null) return `from ${min} to ${max}`;
  if (min !== null) return `${min} or more`;
  return max !== null ? `${max} or less` : "a number";
}

// The first setting out of its range, as a sentence; null when all are fine.
function pgSettingsProblem() {
  for (const [id, label, whole] of PG_SETTINGS) {
    const el = $(`#${id}`);
    if (!el || el.closest(".hidden")) continue;  // a hidden setting is not sent
    const raw = el.value.trim();
    if (el.validity.badInput) return `${label} must be a number ${rangeWords(el)}.`;
    if (raw === "") {
      if (id === "pg-seed") continue;  // no seed: another draw each time
      return `${label} is empty: type a number ${rangeWords(el)}.`;
    }
    const v = Number(raw);
    const min = el.min !== "" ? Number(el.min) : -Infinity, max = el.max !== "" ? Number(el.max) : Infinity;
    if (!Number.isFinite(v) || v < min || v > max || (whole && !Number.isInteger(v))) {
      return `${label} must be ${whole ? "a whole number " : ""}${rangeWords(el)}; you typed ${raw}.`;
    }
  }
  return null;
}

// An input to answer: refused when every box is empty.
function pgInputProblem() {
  const cols = state.pgCols || [];
  const values = cols.length > 1 ? $$(".pg-col").map((t) => t.value) : [($("#pg-input") || {}).value || ""];
  if (values.some((v) => v.trim())) return null;
  return `Type an input first: the value of ${cols.length ? cols.join(", ") : "the input"}.`;
}

// A reference loaded with a test example belongs to that example: gone once the input changes.
function wireReferenceClearing() {
  $$("#pg-input, .pg-col").forEach((t) => t.addEventListener("input", () => {
    const ref = $("#pg-reference");
    if (!ref.classList.contains("hidden")) { ref.classList.add("hidden"); ref.innerHTML = ""; }
  }));
}
