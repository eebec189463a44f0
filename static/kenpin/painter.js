// The mask painter: paint where the defect is, class by class, over the photo, then save the
// whole mask as one PNG (Lookout for Vision's colours: each class in its colour on white).
//
// Opened from any element with data-paint (templates/_painter.html says which attributes).
// Every stroke changes a label array in this page: nothing travels to the server until Save.
// Layers: the photo (an <img>), the mask (a canvas of the photo's size, shown with the overlay
// opacity) and a guide canvas in screen pixels (brush outline, polygon in progress). Zoom and
// pan move the board that holds the first two with one CSS transform.
import { messageForStatus, notify, postForm } from "./kenpin.js";

const dialog = document.getElementById("painter");

const MIN_SCALE = 0.05;
const MAX_SCALE = 16;
const MAX_HISTORY = 100;
const CLOSE_DISTANCE = 10; // screen px: a click this near the first vertex closes a polygon
const DRAG_DISTANCE = 4; // screen px: a press that moves further draws a freehand lasso

function hexToRgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

if (dialog) {
  const stage = document.getElementById("painter-stage");
  const board = document.getElementById("painter-board");
  const photo = document.getElementById("painter-photo");
  const maskCanvas = document.getElementById("painter-mask");
  const guide = document.getElementById("painter-guide");
  const statusLine = document.getElementById("painter-status");
  const titleText = document.getElementById("painter-title");
  const sizeInput = document.getElementById("painter-size");
  const sizeOutput = document.getElementById("painter-size-value");
  const opacityInput = document.getElementById("painter-opacity");
  const zoomOutput = document.getElementById("painter-zoom");
  const undoButton = document.getElementById("painter-undo");
  const redoButton = document.getElementById("painter-redo");
  const saveButton = document.getElementById("painter-save");
  const toolButtons = [...dialog.querySelectorAll("[data-tool]")];
  const classButtons = [...dialog.querySelectorAll("[data-class]")];
  const maskContext = maskCanvas.getContext("2d");
  const guideContext = guide.getContext("2d");

  // Class index -> [r, g, b], and packed colour -> class index (to read a mask back).
  const colours = new Map();
  const indexOfColour = new Map();
  for (const button of classButtons) {
    const index = Number(button.dataset.class);
    const rgb = hexToRgb(button.dataset.color);
    colours.set(index, rgb);
    indexOfColour.set((rgb[0] << 16) | (rgb[1] << 8) | rgb[2], index);
    button.querySelector(".swatch").style.backgroundColor = button.dataset.color;
  }

  const state = {
    target: null, // the element that opened the painter
    width: 0,
    height: 0,
    labels: null, // Uint8Array(width * height): 0 background, k class index
    image: null, // ImageData of the mask canvas
    tool: "brush",
    classIndex: classButtons.length ? Number(classButtons[0].dataset.class) : 1,
    size: Number(sizeInput.value), // brush diameter in photo pixels
    scale: 1,
    x: 0, // board offset in the stage, screen px
    y: 0,
    dirty: false, // changed since opened or saved
    busy: false,
    hadMask: false,
  };
  const steps = { undo: [], redo: [] }; // edits to undo and to redo
  let edit = null; // {before: Uint8Array, x0, y0, x1, y1} while a stroke or fill is in progress
  let stroke = null; // {pointerId, last: [x, y]} while painting
  let pan = null; // {pointerId, startX, startY, x, y}
  let lasso = null; // {points: [[x, y]...], down: [sx, sy], freehand, pointerId} while drawing a polygon
  let spaceHeld = false;
  let pointer = null; // last pointer position in stage px, for the brush outline
  const touches = new Map(); // pointerId -> [clientX, clientY] of touching fingers
  let pinch = null;
  let pendingDraw = null; // dirty rectangle waiting for the next animation frame

  // --- Drawing the mask ------------------------------------------------------------------------

  function drawRect(x0, y0, x1, y1) {
    const { width, labels, image } = state;
    const data = image.data;
    for (let y = y0; y < y1; y += 1) {
      let i = y * width + x0;
      for (let x = x0; x < x1; x += 1, i += 1) {
        const rgb = colours.get(labels[i]);
        const o = i * 4;
        if (rgb) {
          data[o] = rgb[0];
          data[o + 1] = rgb[1];
          data[o + 2] = rgb[2];
          data[o + 3] = 255;
        } else {
          data[o + 3] = 0;
        }
      }
    }
    maskContext.putImageData(image, 0, 0, x0, y0, x1 - x0, y1 - y0);
  }

  function scheduleDraw(x0, y0, x1, y1) {
    if (pendingDraw) {
      pendingDraw = [Math.min(pendingDraw[0], x0), Math.min(pendingDraw[1], y0), Math.max(pendingDraw[2], x1), Math.max(pendingDraw[3], y1)];
      return;
    }
    pendingDraw = [x0, y0, x1, y1];
    requestAnimationFrame(() => {
      const rect = pendingDraw;
      pendingDraw = null;
      drawRect(...rect);
    });
  }

  // --- Edits and their history -------------------------------------------------------------------

  function beginEdit() {
    edit = { before: state.labels.slice(), x0: state.width, y0: state.height, x1: 0, y1: 0 };
  }

  function touched(x0, y0, x1, y1) {
    edit.x0 = Math.min(edit.x0, x0);
    edit.y0 = Math.min(edit.y0, y0);
    edit.x1 = Math.max(edit.x1, x1);
    edit.y1 = Math.max(edit.y1, y1);
    scheduleDraw(x0, y0, x1, y1);
  }

  function copyRect(source, { x0, y0, x1, y1 }) {
    const w = x1 - x0;
    const out = new Uint8Array(w * (y1 - y0));
    for (let y = y0; y < y1; y += 1) out.set(source.subarray(y * state.width + x0, y * state.width + x1), (y - y0) * w);
    return out;
  }

  function pasteRect(values, { x0, y0, x1, y1 }) {
    const w = x1 - x0;
    for (let y = y0; y < y1; y += 1) state.labels.set(values.subarray((y - y0) * w, (y - y0 + 1) * w), y * state.width + x0);
    scheduleDraw(x0, y0, x1, y1);
  }

  function commitEdit() {
    const current = edit;
    edit = null;
    if (!current || current.x1 <= current.x0 || current.y1 <= current.y0) return;
    const rect = { x0: current.x0, y0: current.y0, x1: current.x1, y1: current.y1 };
    const before = copyRect(current.before, rect);
    const after = copyRect(state.labels, rect);
    if (before.every((v, i) => v === after[i])) return;
    steps.undo.push({ rect, before, after });
    if (steps.undo.length > MAX_HISTORY) steps.undo.shift();
    steps.redo.length = 0;
    changed();
  }

  function cancelEdit() {
    if (!edit) return;
    if (edit.x1 > edit.x0) {
      const rect = { x0: edit.x0, y0: edit.y0, x1: edit.x1, y1: edit.y1 };
      pasteRect(copyRect(edit.before, rect), rect);
    }
    edit = null;
    stroke = null;
  }

  function undo() {
    const step = steps.undo.pop();
    if (!step) return;
    pasteRect(step.before, step.rect);
    steps.redo.push(step);
    changed();
  }

  function redo() {
    const step = steps.redo.pop();
    if (!step) return;
    pasteRect(step.after, step.rect);
    steps.undo.push(step);
    changed();
  }

  function changed() {
    state.dirty = true;
    undoButton.disabled = !steps.undo.length;
    redoButton.disabled = !steps.redo.length;
  }

  // --- Brush and eraser --------------------------------------------------------------------------

  function stamp(cx, cy, radius, value) {
    const { width, height, labels } = state;
    const x0 = Math.max(0, Math.floor(cx - radius));
    const x1 = Math.min(width, Math.ceil(cx + radius));
    const y0 = Math.max(0, Math.floor(cy - radius));
    const y1 = Math.min(height, Math.ceil(cy + radius));
    if (x1 <= x0 || y1 <= y0) return;
    const r2 = radius * radius;
    for (let y = y0; y < y1; y += 1) {
      const dy = y + 0.5 - cy;
      for (let x = x0; x < x1; x += 1) {
        const dx = x + 0.5 - cx;
        if (dx * dx + dy * dy <= r2) labels[y * width + x] = value;
      }
    }
    touched(x0, y0, x1, y1);
  }

  function radiusFor(event) {
    // A pen paints thinner when pressed lightly; mouse and touch report no useful pressure.
    const pressure = event.pointerType === "pen" && event.pressure > 0 ? 0.25 + 0.75 * event.pressure : 1;
    return Math.max(0.5, (state.size / 2) * pressure);
  }

  function paintTo(point, event) {
    const value = state.tool === "eraser" ? 0 : state.classIndex;
    const radius = radiusFor(event);
    const [x0, y0] = stroke.last;
    const [x1, y1] = point;
    const distance = Math.hypot(x1 - x0, y1 - y0);
    const steps = Math.max(1, Math.ceil(distance / Math.max(0.5, radius * 0.4)));
    for (let i = 1; i <= steps; i += 1) stamp(x0 + ((x1 - x0) * i) / steps, y0 + ((y1 - y0) * i) / steps, radius, value);
    stroke.last = point;
  }

  // --- Polygon and lasso fill ----------------------------------------------------------------------

  function fillPolygon(points, value) {
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const x0 = Math.max(0, Math.floor(Math.min(...xs)));
    const y0 = Math.max(0, Math.floor(Math.min(...ys)));
    const x1 = Math.min(state.width, Math.ceil(Math.max(...xs)) + 1);
    const y1 = Math.min(state.height, Math.ceil(Math.max(...ys)) + 1);
    if (x1 <= x0 || y1 <= y0) return;
    const w = x1 - x0;
    const h = y1 - y0;
    const scratch = new OffscreenCanvas(w, h);
    const context = scratch.getContext("2d");
    context.translate(-x0, -y0);
    context.beginPath();
    points.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
    context.closePath();
    context.fillStyle = "#000";
    context.fill();
    const alpha = context.getImageData(0, 0, w, h).data;
    beginEdit();
    for (let y = 0; y < h; y += 1) {
      for (let x = 0; x < w; x += 1) {
        if (alpha[(y * w + x) * 4 + 3] >= 128) state.labels[(y + y0) * state.width + x + x0] = value;
      }
    }
    touched(x0, y0, x1, y1);
    commitEdit();
  }

  function finishLasso(erase = false) {
    const points = lasso ? lasso.points : [];
    lasso = null;
    if (points.length >= 3) fillPolygon(points, erase || state.tool === "eraser" ? 0 : state.classIndex);
    drawGuide();
  }

  // --- View: zoom and pan ----------------------------------------------------------------------------

  function applyView() {
    board.style.transform = `translate(${state.x}px, ${state.y}px) scale(${state.scale})`;
    zoomOutput.textContent = `${Math.round(state.scale * 100)}%`;
    drawGuide();
  }

  function fit() {
    const rect = stage.getBoundingClientRect();
    state.scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, Math.min(rect.width / state.width, rect.height / state.height)));
    state.x = (rect.width - state.width * state.scale) / 2;
    state.y = (rect.height - state.height * state.scale) / 2;
    applyView();
  }

  function zoomAt(factor, sx, sy) {
    const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, state.scale * factor));
    state.x = sx - ((sx - state.x) * scale) / state.scale;
    state.y = sy - ((sy - state.y) * scale) / state.scale;
    state.scale = scale;
    applyView();
  }

  function zoomAtCentre(factor) {
    const rect = stage.getBoundingClientRect();
    zoomAt(factor, rect.width / 2, rect.height / 2);
  }

  function stagePoint(event) {
    const rect = stage.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  function photoPoint([sx, sy]) {
    return [(sx - state.x) / state.scale, (sy - state.y) / state.scale];
  }

  function screenPoint([x, y]) {
    return [x * state.scale + state.x, y * state.scale + state.y];
  }

  // --- The guide layer: brush outline, polygon in progress ----------------------------------------

  function drawGuide() {
    const ratio = window.devicePixelRatio || 1;
    const rect = stage.getBoundingClientRect();
    if (guide.width !== Math.round(rect.width * ratio) || guide.height !== Math.round(rect.height * ratio)) {
      guide.width = Math.round(rect.width * ratio);
      guide.height = Math.round(rect.height * ratio);
    }
    guideContext.setTransform(ratio, 0, 0, ratio, 0, 0);
    guideContext.clearRect(0, 0, rect.width, rect.height);
    guideContext.lineWidth = 1.5;
    if (lasso && lasso.points.length) {
      const points = lasso.points.map(screenPoint);
      guideContext.beginPath();
      points.forEach(([x, y], i) => (i ? guideContext.lineTo(x, y) : guideContext.moveTo(x, y)));
      if (!lasso.freehand && pointer) guideContext.lineTo(...pointer);
      guideContext.strokeStyle = "#fff";
      guideContext.setLineDash([5, 4]);
      guideContext.stroke();
      guideContext.strokeStyle = "#000";
      guideContext.lineDashOffset = 5;
      guideContext.stroke();
      guideContext.setLineDash([]);
      guideContext.lineDashOffset = 0;
      const [fx, fy] = points[0];
      guideContext.strokeRect(fx - 4, fy - 4, 8, 8);
    } else if (pointer && state.tool !== "lasso" && !pan && !pinch) {
      const radius = Math.max(1, (state.size / 2) * state.scale);
      guideContext.beginPath();
      guideContext.arc(pointer[0], pointer[1], radius, 0, 2 * Math.PI);
      guideContext.strokeStyle = "rgba(0,0,0,.8)";
      guideContext.stroke();
      guideContext.beginPath();
      guideContext.arc(pointer[0], pointer[1], radius + 1.5, 0, 2 * Math.PI);
      guideContext.strokeStyle = "rgba(255,255,255,.9)";
      guideContext.stroke();
    }
  }

  // --- Pointer input: mouse, pen and touch -----------------------------------------------------------

  function startPinch() {
    const [a, b] = [...touches.values()];
    pinch = { distance: Math.hypot(a[0] - b[0], a[1] - b[1]), centre: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2] };
  }

  stage.addEventListener("pointerdown", (event) => {
    if (state.busy) return;
    stage.focus({ preventScroll: true });
    const point = stagePoint(event);
    pointer = point;
    if (event.pointerType === "touch") {
      touches.set(event.pointerId, [event.clientX, event.clientY]);
      if (touches.size === 2) {
        // A second finger: the gesture is a pinch, not a stroke.
        cancelEdit();
        lasso = null;
        startPinch();
        drawGuide();
        return;
      }
      if (touches.size > 2) return;
    }
    if (event.button === 1 || (event.button === 0 && spaceHeld)) {
      event.preventDefault();
      pan = { pointerId: event.pointerId, startX: event.clientX, startY: event.clientY, x: state.x, y: state.y };
      stage.setPointerCapture(event.pointerId);
      stage.classList.add("panning");
      return;
    }
    if (event.button !== 0) return;
    stage.setPointerCapture(event.pointerId);
    const at = photoPoint(point);
    if (state.tool === "lasso") {
      if (lasso && !lasso.freehand) {
        const first = screenPoint(lasso.points[0]);
        if (lasso.points.length >= 3 && Math.hypot(first[0] - point[0], first[1] - point[1]) <= CLOSE_DISTANCE) {
          finishLasso(event.shiftKey);
          return;
        }
        const last = screenPoint(lasso.points[lasso.points.length - 1]);
        if (Math.hypot(last[0] - point[0], last[1] - point[1]) > 2) lasso.points.push(at);
        lasso.pointerId = event.pointerId;
        lasso.down = point;
      } else {
        lasso = { points: [at], down: point, freehand: false, pointerId: event.pointerId, pressed: true };
      }
      lasso.pressed = true;
      drawGuide();
      return;
    }
    beginEdit();
    stroke = { pointerId: event.pointerId, last: at };
    paintTo(at, event);
  });

  stage.addEventListener("pointermove", (event) => {
    const point = stagePoint(event);
    pointer = point;
    if (touches.has(event.pointerId)) {
      touches.set(event.pointerId, [event.clientX, event.clientY]);
      if (pinch && touches.size === 2) {
        const [a, b] = [...touches.values()];
        const distance = Math.hypot(a[0] - b[0], a[1] - b[1]);
        const centre = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
        const rect = stage.getBoundingClientRect();
        state.x += centre[0] - pinch.centre[0];
        state.y += centre[1] - pinch.centre[1];
        zoomAt(distance / Math.max(1, pinch.distance), centre[0] - rect.left, centre[1] - rect.top);
        pinch = { distance, centre };
        return;
      }
    }
    if (pan && event.pointerId === pan.pointerId) {
      state.x = pan.x + event.clientX - pan.startX;
      state.y = pan.y + event.clientY - pan.startY;
      applyView();
      return;
    }
    if (stroke && event.pointerId === stroke.pointerId) {
      // Coalesced events keep fast strokes smooth: the browser may have seen several moves.
      const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
      for (const e of events.length ? events : [event]) paintTo(photoPoint(stagePoint(e)), e);
    } else if (lasso && lasso.pressed && event.pointerId === lasso.pointerId) {
      if (!lasso.freehand && lasso.points.length === 1 && Math.hypot(point[0] - lasso.down[0], point[1] - lasso.down[1]) > DRAG_DISTANCE) {
        lasso.freehand = true;
      }
      if (lasso.freehand) {
        const at = photoPoint(point);
        const last = lasso.points[lasso.points.length - 1];
        if (Math.hypot(at[0] - last[0], at[1] - last[1]) * state.scale >= 2) lasso.points.push(at);
      }
    }
    drawGuide();
  });

  function pointerEnd(event) {
    touches.delete(event.pointerId);
    if (touches.size < 2) pinch = null;
    if (pan && event.pointerId === pan.pointerId) {
      pan = null;
      stage.classList.remove("panning");
    }
    if (stroke && event.pointerId === stroke.pointerId) {
      stroke = null;
      if (event.type === "pointercancel") cancelEdit();
      else commitEdit();
    }
    if (lasso && lasso.pressed && event.pointerId === lasso.pointerId) {
      lasso.pressed = false;
      if (lasso.freehand) finishLasso(event.shiftKey);
    }
    drawGuide();
  }

  stage.addEventListener("pointerup", pointerEnd);
  stage.addEventListener("pointercancel", pointerEnd);
  stage.addEventListener("pointerleave", () => {
    pointer = null;
    drawGuide();
  });
  stage.addEventListener("dblclick", () => {
    if (lasso && !lasso.freehand) finishLasso();
  });
  stage.addEventListener("contextmenu", (event) => event.preventDefault());
  stage.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const [sx, sy] = stagePoint(event);
      zoomAt(Math.exp(-event.deltaY * (event.deltaMode === 1 ? 0.05 : 0.0015)), sx, sy);
    },
    { passive: false },
  );
  window.addEventListener("resize", () => dialog.open && drawGuide());

  // --- Tools, classes, size, opacity --------------------------------------------------------------

  function chooseTool(tool) {
    if (lasso && tool !== "lasso") lasso = null;
    state.tool = tool;
    for (const button of toolButtons) button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
    stage.dataset.tool = tool;
    drawGuide();
  }

  function chooseClass(index) {
    state.classIndex = index;
    for (const button of classButtons) button.setAttribute("aria-checked", String(Number(button.dataset.class) === index));
    if (state.tool === "eraser") chooseTool("brush");
  }

  function setSize(size) {
    state.size = Math.max(Number(sizeInput.min), Math.min(Number(sizeInput.max), Math.round(size)));
    sizeInput.value = String(state.size);
    sizeOutput.textContent = `${state.size} px`;
    drawGuide();
  }

  function setOpacity(value) {
    opacityInput.value = String(value);
    maskCanvas.style.opacity = String(value);
  }

  let shownOpacity = Number(opacityInput.value);

  toolButtons.forEach((button) => button.addEventListener("click", () => chooseTool(button.dataset.tool)));
  classButtons.forEach((button) => button.addEventListener("click", () => chooseClass(Number(button.dataset.class))));
  sizeInput.addEventListener("input", () => setSize(Number(sizeInput.value)));
  opacityInput.addEventListener("input", () => setOpacity(Number(opacityInput.value)));
  undoButton.addEventListener("click", undo);
  redoButton.addEventListener("click", redo);
  document.getElementById("painter-zoom-in").addEventListener("click", () => zoomAtCentre(1.25));
  document.getElementById("painter-zoom-out").addEventListener("click", () => zoomAtCentre(0.8));
  document.getElementById("painter-fit").addEventListener("click", fit);
  document.getElementById("painter-clear").addEventListener("click", () => {
    beginEdit();
    state.labels.fill(0);
    touched(0, 0, state.width, state.height);
    commitEdit();
  });

  // --- Keyboard ----------------------------------------------------------------------------------

  dialog.addEventListener("keydown", (event) => {
    if (event.target.closest("input[type=text], textarea")) return;
    const key = event.key;
    const ctrl = event.ctrlKey || event.metaKey;
    if (ctrl && key.toLowerCase() === "z") {
      event.preventDefault();
      if (event.shiftKey) redo();
      else undo();
      return;
    }
    if (ctrl && key.toLowerCase() === "y") {
      event.preventDefault();
      redo();
      return;
    }
    if (ctrl || event.altKey) return;
    if (key === " ") {
      event.preventDefault(); // pans instead of pressing the focused button
      spaceHeld = true;
      stage.classList.add("can-pan");
      return;
    }
    if (key === "Escape" && lasso) {
      event.preventDefault(); // drops the polygon, keeps the painter open
      lasso = null;
      drawGuide();
      return;
    }
    if (key === "Enter" && lasso) {
      event.preventDefault();
      finishLasso(event.shiftKey);
      return;
    }
    const digit = Number(key);
    if (Number.isInteger(digit) && digit >= 1 && digit <= 9 && key.length === 1) {
      const button = classButtons[digit - 1];
      if (button) chooseClass(Number(button.dataset.class));
      event.preventDefault();
      return;
    }
    const actions = {
      b: () => chooseTool("brush"),
      e: () => chooseTool("eraser"),
      l: () => chooseTool("lasso"),
      "[": () => setSize(state.size * 0.8),
      "]": () => setSize(Math.max(state.size + 1, state.size * 1.25)),
      "+": () => zoomAtCentre(1.25),
      "=": () => zoomAtCentre(1.25),
      "-": () => zoomAtCentre(0.8),
      0: fit,
      m: () => {
        const current = Number(opacityInput.value);
        if (current > 0) shownOpacity = current;
        setOpacity(current > 0 ? 0 : shownOpacity || 0.6);
      },
    };
    const action = actions[key.toLowerCase()];
    if (action && !event.target.matches("input[type=range]")) {
      event.preventDefault();
      action();
    }
  });

  dialog.addEventListener("keyup", (event) => {
    if (event.key === " ") {
      spaceHeld = false;
      stage.classList.remove("can-pan");
    }
  });

  // --- Opening, loading, saving, closing ----------------------------------------------------------

  function say(text, kind = "") {
    statusLine.textContent = text;
    statusLine.className = `painter-status small ${kind}`;
  }

  async function loadMask(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(messageForStatus(response.status));
    // The server draws each class in its exact colour; no colour management may touch them.
    const bitmap = await createImageBitmap(await response.blob(), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const scratch = new OffscreenCanvas(state.width, state.height);
    const context = scratch.getContext("2d", { colorSpace: "srgb" });
    context.drawImage(bitmap, 0, 0, state.width, state.height);
    const data = context.getImageData(0, 0, state.width, state.height).data;
    for (let i = 0; i < state.labels.length; i += 1) {
      const o = i * 4;
      state.labels[i] = indexOfColour.get((data[o] << 16) | (data[o + 1] << 8) | data[o + 2]) || 0;
    }
  }

  async function open(target) {
    const width = Number(target.dataset.width);
    const height = Number(target.dataset.height);
    Object.assign(state, { target, width, height, labels: new Uint8Array(width * height), dirty: false, hadMask: Boolean(target.dataset.mask) });
    steps.undo.length = 0;
    steps.redo.length = 0;
    edit = stroke = pan = lasso = pinch = null;
    touches.clear();
    undoButton.disabled = redoButton.disabled = true;
    titleText.textContent = target.dataset.title || "";
    board.style.width = `${width}px`;
    board.style.height = `${height}px`;
    maskCanvas.width = width;
    maskCanvas.height = height;
    state.image = maskContext.createImageData(width, height);
    photo.src = target.dataset.photo;
    photo.width = width;
    photo.height = height;
    setOpacity(opacityInput.value);
    dialog.showModal();
    fit();
    state.busy = true;
    saveButton.disabled = true;
    say("Loading…");
    try {
      if (target.dataset.mask) await loadMask(target.dataset.mask);
      say(target.dataset.help || "");
    } catch (error) {
      say(`The saved mask could not be loaded (${error.message}). You can paint a new one.`, "error");
    }
    drawRect(0, 0, width, height);
    state.busy = false;
    saveButton.disabled = false;
    stage.focus({ preventScroll: true });
  }

  function encodeMask() {
    // Lookout for Vision's colour mask: white background, each class in its colour.
    const canvas = new OffscreenCanvas(state.width, state.height);
    const context = canvas.getContext("2d");
    const image = context.createImageData(state.width, state.height);
    const data = image.data;
    for (let i = 0; i < state.labels.length; i += 1) {
      const rgb = colours.get(state.labels[i]) || [255, 255, 255];
      const o = i * 4;
      data[o] = rgb[0];
      data[o + 1] = rgb[1];
      data[o + 2] = rgb[2];
      data[o + 3] = 255;
    }
    context.putImageData(image, 0, 0);
    return canvas.convertToBlob({ type: "image/png" });
  }

  async function save() {
    if (state.busy) return;
    const target = state.target;
    const empty = !state.labels.some((v) => v !== 0);
    if (empty && !(state.hadMask && target.dataset.remove)) {
      say("Nothing is painted yet: paint the defect first (or cancel).", "error");
      return;
    }
    if (empty && !window.confirm("Nothing is painted: remove this image's mask?")) return;
    state.busy = true;
    saveButton.disabled = true;
    say("Saving…");
    const body = new FormData();
    if (!empty) body.append("mask", await encodeMask(), "mask.png");
    const result = await postForm(empty ? target.dataset.remove : target.dataset.save, body);
    state.busy = false;
    saveButton.disabled = false;
    if (!result.ok) {
      // The painting stays here: nothing is lost by a refusal.
      say(`The mask was not saved: ${result.message}`, "error");
      return;
    }
    state.dirty = false;
    dialog.close();
    notify(result.message, "success");
    target.dispatchEvent(new CustomEvent("kenpin:mask-saved", { bubbles: true, detail: result.data }));
    if (target.dataset.reload !== undefined) window.location.reload();
  }

  function mayClose() {
    return !state.dirty || window.confirm("Close the painter and lose what you painted since the last save?");
  }

  saveButton.addEventListener("click", save);
  document.getElementById("painter-cancel").addEventListener("click", () => {
    if (mayClose()) {
      state.dirty = false;
      dialog.close();
    }
  });
  dialog.addEventListener("cancel", (event) => {
    // Escape: the browser closes a modal dialog unless told otherwise.
    if (!mayClose()) event.preventDefault();
    else state.dirty = false;
  });
  window.addEventListener("beforeunload", (event) => {
    if (dialog.open && state.dirty) event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    const trigger = event.target.closest("[data-paint]");
    if (trigger && !dialog.open) {
      event.preventDefault();
      open(trigger);
    }
  });

  // A link to the image page ending in #paint opens the painter at once (the label grid's P key).
  const opener = document.querySelector("[data-paint][data-paint-on-hash]");
  if (opener && window.location.hash === "#paint") {
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    open(opener);
  }

  chooseClass(state.classIndex);
  setSize(state.size);
}
