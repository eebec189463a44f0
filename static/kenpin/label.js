// Label grid: select photos with the mouse or the keyboard, then label, move or delete them.
// The server answers each change with the images' new state, which the tiles then show.
import { jsonData, notify, postForm } from "./kenpin.js";

const urls = jsonData("grid-config");
const grid = document.getElementById("image-grid");
const bar = document.getElementById("bulk-bar");
const countText = document.getElementById("selection-count");

const LABEL_TEXT = { unlabeled: "Unlabeled", normal: "Normal", anomaly: "Anomaly" };
const tiles = () => [...grid.querySelectorAll(".tile")];
let current = 0; // index of the highlighted tile (keyboard focus)
let anchor = null; // index where the last range selection started

// --- Selection -------------------------------------------------------------------------------

function isSelected(tile) {
  return tile.classList.contains("selected");
}

function select(tile, on) {
  tile.classList.toggle("selected", on);
  tile.querySelector("input[type=checkbox]").checked = on;
}

function selectedTiles() {
  return tiles().filter(isSelected);
}

function selectRange(from, to) {
  const all = tiles();
  const [low, high] = from < to ? [from, to] : [to, from];
  for (let i = low; i <= high; i += 1) select(all[i], true);
}

function refreshCount() {
  const n = selectedTiles().length;
  countText.textContent = n ? `${n} selected` : "Nothing selected";
  bar.classList.toggle("has-selection", n > 0);
}

function highlight(index, { focus = true } = {}) {
  const all = tiles();
  if (!all.length) return;
  current = Math.max(0, Math.min(all.length - 1, index));
  all.forEach((tile, i) => tile.setAttribute("tabindex", i === current ? "0" : "-1"));
  if (focus) all[current].focus({ preventScroll: false });
}

function columns() {
  const all = tiles();
  if (!all.length) return 1;
  const top = all[0].offsetTop;
  const n = all.findIndex((tile) => tile.offsetTop !== top);
  return n === -1 ? all.length : n;
}

// The selection, or the highlighted tile when nothing is selected.
function targets() {
  const chosen = selectedTiles();
  if (chosen.length) return chosen;
  const all = tiles();
  return all.length ? [all[current]] : [];
}

// --- Changes ---------------------------------------------------------------------------------

function show(tile, state) {
  tile.dataset.label = state.label;
  tile.dataset.split = state.split;
  tile.querySelector(".tile-label").textContent = LABEL_TEXT[state.label];
}

async function act(action, value, chosen = targets()) {
  if (!chosen.length) {
    notify("Select at least one image first.", "warning");
    return;
  }
  const body = new FormData();
  for (const tile of chosen) body.append("ids", tile.dataset.id);
  if (action === "label") body.append("label", value);
  if (action === "move") body.append("split", value);
  if (action === "delete") {
    const n = chosen.length;
    if (!window.confirm(`Delete ${n} image${n === 1 ? "" : "s"}? Trained models keep their record, but the photos are gone.`)) return;
  }
  grid.setAttribute("aria-busy", "true");
  const result = await postForm(urls[action], body);
  grid.removeAttribute("aria-busy");
  if (!result.ok) {
    notify(result.message, "error");
    return;
  }
  if (action === "delete") {
    const index = tiles().indexOf(chosen[0]);
    chosen.forEach((tile) => tile.remove());
    highlight(index, { focus: grid.contains(document.activeElement) || document.activeElement === document.body });
  } else {
    const byId = new Map(result.data.images.map((state) => [String(state.id), state]));
    for (const tile of chosen) {
      const state = byId.get(tile.dataset.id);
      if (state) show(tile, state);
    }
  }
  chosen.forEach((tile) => select(tile, false));
  refreshCount();
  notify(result.message, "success");
  document.body.dispatchEvent(new CustomEvent("kenpin:images-changed", { bubbles: true }));
}

// --- Mouse -----------------------------------------------------------------------------------

grid.addEventListener("click", (event) => {
  const tile = event.target.closest(".tile");
  if (!tile) return;
  const index = tiles().indexOf(tile);
  const labelButton = event.target.closest("[data-set-label]");
  if (labelButton) {
    act("label", labelButton.dataset.setLabel, [tile]);
    return;
  }
  if (event.target.closest("a")) return; // "View" opens the larger view
  if (event.target.matches("input[type=checkbox]")) {
    select(tile, event.target.checked);
  } else if (event.shiftKey && anchor !== null) {
    selectRange(anchor, index);
  } else {
    select(tile, !isSelected(tile));
  }
  anchor = index;
  highlight(index);
  refreshCount();
});

grid.addEventListener("dblclick", (event) => {
  const tile = event.target.closest(".tile");
  if (tile) window.location.href = tile.querySelector("[data-open]").href;
});

bar.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const { action, value } = button.dataset;
  if (action === "select-all") {
    tiles().forEach((tile) => select(tile, true));
    refreshCount();
  } else if (action === "clear") {
    tiles().forEach((tile) => select(tile, false));
    refreshCount();
  } else {
    act(action, value);
  }
});

// --- Keyboard --------------------------------------------------------------------------------

const KEYS = {
  n: () => act("label", "normal"),
  a: () => act("label", "anomaly"),
  u: () => act("label", "unlabeled"),
  t: () => act("move", "test"),
  r: () => act("move", "train"),
  Delete: () => act("delete"),
  Backspace: () => act("delete"),
  Escape: () => {
    tiles().forEach((tile) => select(tile, false));
    refreshCount();
  },
  " ": () => {
    const tile = tiles()[current];
    if (tile) select(tile, !isSelected(tile));
    anchor = current;
    refreshCount();
  },
  // The larger view with the painter open on the highlighted image (editors only have the link).
  p: () => {
    const link = tiles()[current]?.querySelector("[data-paint-link]");
    if (link) window.location.href = link.href;
  },
  Enter: () => {
    const tile = tiles()[current];
    if (tile) window.location.href = tile.querySelector("[data-open]").href;
  },
};
const MOVES = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: "up", ArrowDown: "down", Home: "home", End: "end" };

document.addEventListener("keydown", (event) => {
  // Typing in a field, or a shortcut of the browser itself, is not for us.
  if (event.target.closest("input, textarea, select, [contenteditable]") || event.altKey) return;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "a") {
    event.preventDefault();
    tiles().forEach((tile) => select(tile, true));
    refreshCount();
    return;
  }
  if (event.ctrlKey || event.metaKey) return;
  if (event.key in MOVES) {
    event.preventDefault();
    const move = MOVES[event.key];
    const step = { up: -columns(), down: columns(), home: -Infinity, end: Infinity }[move] ?? move;
    const from = current;
    highlight(Number.isFinite(step) ? current + step : step < 0 ? 0 : tiles().length - 1);
    if (event.shiftKey) {
      if (anchor === null) anchor = from;
      selectRange(anchor, current);
      refreshCount();
    }
    return;
  }
  // Enter and Space on a focused button or link press that button or follow that link.
  if ((event.key === "Enter" || event.key === " ") && event.target.closest("button, a")) return;
  const handler = KEYS[event.key] || KEYS[event.key.toLowerCase()];
  if (handler) {
    event.preventDefault();
    handler();
  }
});

highlight(0, { focus: false });
refreshCount();
