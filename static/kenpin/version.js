// Model version page: ROC and PR curves, and a threshold slider that recounts precision,
// recall, F1, the confusion matrix and the per-image results from the evaluated images' scores.
import { jsonData } from "./kenpin.js";

const data = jsonData("version-data");
const slider = document.getElementById("threshold");
const output = document.getElementById("threshold-value");
const input = document.getElementById("threshold-input"); // absent for viewers
const saveButton = document.getElementById("threshold-save");
const resetButton = document.getElementById("threshold-reset");
const tiles = [...document.querySelectorAll("#result-grid .result")];
const savedThreshold = data.threshold;
let filter = "all";

// Same rule as the engine and the server: flagged when score >= threshold.
function confusion(threshold) {
  const counts = { tp: 0, fp: 0, tn: 0, fn: 0 };
  for (const { score, anomaly } of data.results) {
    const flagged = score >= threshold;
    counts[(flagged === anomaly ? "t" : "f") + (flagged ? "p" : "n")] += 1;
  }
  const precision = counts.tp + counts.fp ? counts.tp / (counts.tp + counts.fp) : 0;
  const recall = counts.tp + counts.fn ? counts.tp / (counts.tp + counts.fn) : 0;
  const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
  const negatives = counts.fp + counts.tn;
  return { ...counts, precision, recall, f1, fpr: negatives ? counts.fp / negatives : 0 };
}

// --- 95 % intervals -----------------------------------------------------------------------------
// At the saved threshold the page shows the server's intervals (engine.metrics); while the slider
// moves, the same methods run here: Wilson intervals for precision and recall (exactly the
// server's), and a bootstrap of F1 over the evaluated images, resampled within each label (the
// server's method, with other random draws, so its last digit may differ until saved).

const Z95 = 1.959963984540054;
const ROUNDS = 1000;

function wilson(successes, total) {
  if (total <= 0) return null;
  const p = successes / total;
  const denominator = 1 + (Z95 * Z95) / total;
  const centre = (p + (Z95 * Z95) / (2 * total)) / denominator;
  const half = (Z95 * Math.sqrt((p * (1 - p)) / total + (Z95 * Z95) / (4 * total * total))) / denominator;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function quantile(sorted, q) {
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
}

function f1Interval(threshold) {
  const anomalies = data.results.filter((r) => r.anomaly).map((r) => r.score >= threshold);
  const normals = data.results.filter((r) => !r.anomaly).map((r) => r.score >= threshold);
  if (!anomalies.length) return null;
  const random = mulberry32(1);
  const values = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    let tp = 0;
    let fn = 0;
    let fp = 0;
    for (let i = 0; i < anomalies.length; i += 1) {
      if (anomalies[Math.floor(random() * anomalies.length)]) tp += 1;
      else fn += 1;
    }
    for (let i = 0; i < normals.length; i += 1) if (normals[Math.floor(random() * normals.length)]) fp += 1;
    if (2 * tp + fp + fn > 0) values.push((2 * tp) / (2 * tp + fp + fn));
  }
  if (values.length < ROUNDS / 2) return null;
  values.sort((a, b) => a - b);
  const bootstrap = [quantile(values, 0.025), quantile(values, 0.975)];
  // As the server (engine.metrics.widen_to_proportion): never narrower than the Wilson interval
  // of F1 read as a share of the tp + fp + fn images it rests on, or a flawless score on a few
  // photos would read as certain.
  const m = confusion(threshold);
  const n = m.tp + m.fp + m.fn;
  const share = n ? wilson(((2 * m.tp) / (2 * m.tp + m.fp + m.fn)) * n, n) : null;
  return share ? [Math.min(bootstrap[0], share[0]), Math.max(bootstrap[1], share[1])] : bootstrap;
}

function intervalText(interval) {
  return interval ? `${interval[0].toFixed(3)}–${interval[1].toFixed(3)}` : "";
}

let f1Timer = null;

function showIntervals(threshold, m) {
  const saved = Math.abs(threshold - savedThreshold) < 1e-9 && data.intervals;
  setText("precision-ci", intervalText(saved ? data.intervals.precision : wilson(m.tp, m.tp + m.fp)));
  setText("recall-ci", intervalText(saved ? data.intervals.recall : wilson(m.tp, m.tp + m.fn)));
  clearTimeout(f1Timer);
  if (saved) {
    setText("f1-ci", intervalText(data.intervals.f1));
  } else {
    // A thousand resamples take a few milliseconds per hundred photos: wait for the slider to rest.
    f1Timer = setTimeout(() => setText("f1-ci", intervalText(f1Interval(threshold))), 120);
  }
  setText("counts-in-words", `caught ${m.tp} of ${m.tp + m.fn} anomalous, ${m.fp} of ${m.fp + m.tn} normal flagged`);
  for (const key of ["fp", "fn"]) {
    const cell = document.getElementById(`cm-${key}`);
    if (cell) cell.className = m[key] ? "bad" : "none";
  }
}

function setText(id, text) {
  const element = document.getElementById(id);
  if (element) element.textContent = text;
}

// --- Charts ------------------------------------------------------------------------------------

function curveChart(canvasId, points, xTitle, yTitle, marker) {
  const canvas = document.getElementById(canvasId);
  if (!canvas || !points || !window.Chart) return null;
  return new window.Chart(canvas, {
    type: "scatter",
    data: {
      datasets: [
        { label: "Curve", data: points, showLine: true, borderColor: "#1f4e79", backgroundColor: "#1f4e79", pointRadius: 0, borderWidth: 2, stepped: false },
        { label: "Threshold", data: [marker], borderColor: "#b42318", backgroundColor: "#b42318", pointRadius: 6, pointHoverRadius: 7 },
      ],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      plugins: { legend: { display: false }, tooltip: { enabled: false } },
      scales: {
        x: { min: 0, max: 1, title: { display: true, text: xTitle } },
        y: { min: 0, max: 1.02, title: { display: true, text: yTitle }, ticks: { callback: (v) => (v > 1 ? "" : v) } },
      },
    },
  });
}

function zip(xs, ys) {
  return xs && ys ? xs.map((x, i) => ({ x, y: ys[i] })) : null;
}

const start = confusion(savedThreshold);
const roc = curveChart(
  "roc-chart",
  data.roc && zip(data.roc.fpr, data.roc.tpr),
  "False positive rate (false alarms among normal images)",
  "True positive rate (recall)",
  { x: start.fpr, y: start.recall },
);
const pr = curveChart(
  "pr-chart",
  data.pr && zip(data.pr.recall, data.pr.precision),
  "Recall",
  "Precision",
  { x: start.recall, y: start.precision },
);

// --- Results -----------------------------------------------------------------------------------

// The engine's confidence in a verdict: 0.5 at the threshold, 1 at a score of 0 or 1.
function confidence(score, threshold) {
  if (score >= threshold) return 0.5 + (0.5 * (score - threshold)) / Math.max(1e-9, 1 - threshold);
  return 0.5 + (0.5 * (threshold - score)) / Math.max(1e-9, threshold);
}

function percent(fraction) {
  const value = fraction * 100;
  return value === 0 || value >= 10 ? `${value.toFixed(0)}%` : `${value.toFixed(1)}%`;
}

function outcome(tile, threshold) {
  const flagged = Number(tile.dataset.score) >= threshold;
  const anomaly = tile.dataset.anomaly === "1";
  if (flagged === anomaly) return { flagged, kind: "correct" };
  return { flagged, kind: flagged ? "fp" : "fn" };
}

const OUTCOME_TEXT = { correct: "correct", fp: "false positive", fn: "false negative" };

function showResults(threshold) {
  let shown = 0;
  for (const tile of tiles) {
    const { flagged, kind } = outcome(tile, threshold);
    tile.querySelector("[data-role=predicted]").textContent = flagged ? "Anomaly" : "Normal";
    tile.querySelector("[data-role=outcome]").textContent = OUTCOME_TEXT[kind];
    tile.querySelector("[data-role=confidence]").textContent = percent(confidence(Number(tile.dataset.score), threshold));
    tile.classList.toggle("is-error", kind !== "correct");
    const visible = filter === "all" || (filter === "errors" ? kind !== "correct" : kind === filter);
    tile.hidden = !visible;
    if (visible) shown += 1;
  }
  const none = document.getElementById("no-results");
  if (none) none.hidden = shown > 0 || !tiles.length;
}

// --- The slider --------------------------------------------------------------------------------

function update() {
  const threshold = Number(slider.value);
  const m = confusion(threshold);
  output.textContent = threshold.toFixed(3);
  setText("precision", m.precision.toFixed(3));
  setText("recall", m.recall.toFixed(3));
  setText("f1", m.f1.toFixed(3));
  for (const key of ["tp", "fp", "tn", "fn"]) setText(`cm-${key}`, String(m[key]));
  showIntervals(threshold, m);
  const counts = { all: data.results.length, errors: m.fp + m.fn, fp: m.fp, fn: m.fn };
  for (const [key, n] of Object.entries(counts)) {
    const badge = document.querySelector(`[data-count=${key}]`);
    if (badge) badge.textContent = String(n);
  }
  if (roc) {
    roc.data.datasets[1].data = [{ x: m.fpr, y: m.recall }];
    roc.update("none");
  }
  if (pr) {
    pr.data.datasets[1].data = [{ x: m.recall, y: m.precision }];
    pr.update("none");
  }
  showResults(threshold);
  if (input) {
    input.value = threshold.toFixed(4);
    saveButton.disabled = Math.abs(threshold - savedThreshold) < 1e-9;
    resetButton.disabled = Math.abs(threshold - data.trainedThreshold) < 1e-9;
  }
}

slider.addEventListener("input", update);
if (resetButton) {
  resetButton.addEventListener("click", () => {
    slider.value = String(data.trainedThreshold);
    update();
  });
}

document.getElementById("result-filters").addEventListener("click", (event) => {
  const chip = event.target.closest("[data-filter]");
  if (!chip) return;
  filter = chip.dataset.filter;
  for (const other of chip.parentElement.children) other.classList.toggle("active", other === chip);
  showResults(Number(slider.value));
});

update();
