// Operations view: detect calls, the share flagged anomalous and latency per hour or day.
import { jsonData } from "./kenpin.js";

const data = jsonData("operations-data");

function label(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  return data.period === "day" ? day : `${day} ${pad(d.getUTCHours())}:00`;
}

const labels = data.labels.map(label);
const common = {
  animation: false,
  maintainAspectRatio: false,
  plugins: { legend: { display: true, position: "bottom" } },
  scales: { x: { ticks: { maxTicksLimit: 12 } } },
};

function chart(id, config) {
  const canvas = document.getElementById(id);
  if (canvas && window.Chart) new window.Chart(canvas, config);
}

chart("calls-chart", {
  type: "bar",
  data: {
    labels,
    datasets: [
      { label: "Normal", data: data.calls.map((n, i) => n - data.anomalous[i]), backgroundColor: "#8fb3d9", stack: "calls" },
      { label: "Anomalous", data: data.anomalous, backgroundColor: "#b42318", stack: "calls" },
      { label: "Unlike the training photos", data: data.unlike, backgroundColor: "#9a6700", stack: "unlike" },
    ],
  },
  options: { ...common, scales: { ...common.scales, x: { ...common.scales.x, stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
});

chart("share-chart", {
  type: "line",
  data: {
    labels,
    datasets: [{ label: "Flagged anomalous (%)", data: data.share.map((s) => (s === null ? null : s * 100)), borderColor: "#b42318", backgroundColor: "#b42318", spanGaps: false, pointRadius: 2 }],
  },
  options: { ...common, scales: { ...common.scales, y: { min: 0, max: 100, ticks: { callback: (v) => `${v}%` } } } },
});

chart("latency-chart", {
  type: "line",
  data: {
    labels,
    datasets: [{ label: "Mean latency (ms)", data: data.latency, borderColor: "#1f4e79", backgroundColor: "#1f4e79", spanGaps: false, pointRadius: 2 }],
  },
  options: { ...common, scales: { ...common.scales, y: { beginAtZero: true } } },
});
