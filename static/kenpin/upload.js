// Upload page: photos and folders dropped or chosen go to the server one file per request,
// a few at a time, each with its own progress bar and, when refused, the server's reason.
import { csrfToken, jsonData, messageForStatus } from "./kenpin.js";

const config = jsonData("upload-config");
const CONCURRENT = 3; // enough to keep the line busy, few enough for a small server
const LABEL_FOLDERS = { normal: "normal", good: "normal", anomaly: "anomaly", anomalous: "anomaly" };
const MASK_FOLDERS = new Set(["mask", "masks"]);
const IGNORED = /^(\.|thumbs\.db$|desktop\.ini$)/i;

const options = document.getElementById("upload-options");
const dropzone = document.getElementById("dropzone");
const list = document.getElementById("upload-list");
const summary = document.getElementById("upload-summary");
const statusLine = document.getElementById("upload-status");
const overall = document.getElementById("overall-progress");
const retryButton = document.getElementById("retry-failed");
const labelLink = document.getElementById("go-label");

const items = [];
let running = 0;

// --- Collecting files: {file, path} where path is relative to what was dropped or chosen ----------

function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

async function walk(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\//, "") });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    // readEntries answers in batches (100 in Chromium) until it returns an empty one.
    for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
      for (const child of batch) await walk(child, out);
    }
  }
}

async function droppedFiles(dataTransfer) {
  const entries = [...(dataTransfer.items || [])]
    .filter((item) => item.kind === "file")
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (entries.length && entries.every(Boolean)) {
    const out = [];
    for (const entry of entries) await walk(entry, out);
    return out;
  }
  // No file-system entries (some browsers, synthetic drops): the flat list of files.
  return [...dataTransfer.files].map((file) => ({ file, path: file.name }));
}

// --- What each file becomes ------------------------------------------------------------------------

function folders(path) {
  return path.split("/").slice(0, -1).map((part) => part.toLowerCase());
}

function stem(name) {
  return name.replace(/\.[^.]*$/, "");
}

function chosen(name) {
  return new FormData(options).get(name);
}

function addFiles(found) {
  const kept = found.filter(({ file }) => !IGNORED.test(file.name));
  const masks = new Map();
  const images = [];
  for (const entry of kept) {
    const dirs = folders(entry.path);
    if (dirs.length && MASK_FOLDERS.has(dirs[dirs.length - 1])) masks.set(stem(entry.file.name), entry.file);
    else images.push(entry);
  }
  const split = chosen("split");
  for (const { file, path } of images) {
    const fromFolder = folders(path).reverse().map((dir) => LABEL_FOLDERS[dir]).find(Boolean);
    const label = fromFolder || chosen("label");
    const mask = label === "anomaly" ? masks.get(stem(file.name)) || null : null;
    items.push(newItem({ file, path, label, split, mask }));
  }
  summary.hidden = false;
  update();
  pump();
}

// --- One row per file --------------------------------------------------------------------------------

const LABEL_WORDS = { unlabeled: "unlabeled", normal: "normal", anomaly: "anomaly" };
const SPLIT_WORDS = { train: "training", test: "test" };

function newItem({ file, path, label, split, mask }) {
  const row = document.createElement("li");
  row.className = "upload-item";
  row.dataset.name = file.name;
  const name = document.createElement("span");
  name.className = "upload-name";
  name.textContent = path;
  name.title = path;
  const what = document.createElement("span");
  what.className = "upload-what muted small";
  what.textContent = `${LABEL_WORDS[label]}${mask ? " + mask" : ""} · ${SPLIT_WORDS[split]}`;
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  const message = document.createElement("span");
  message.className = "upload-message";
  row.append(name, what, bar, message);
  list.append(row);
  const item = { file, label, split, mask, row, bar, message, loaded: 0, state: "waiting" };
  setState(item, "waiting", "Waiting");
  return item;
}

function setState(item, state, text) {
  item.state = state;
  item.row.dataset.state = state;
  item.message.textContent = text;
}

// --- Sending -----------------------------------------------------------------------------------------

function send(item) {
  return new Promise((resolve) => {
    const body = new FormData();
    body.append("file", item.file, item.file.name);
    body.append("label", item.label);
    body.append("split", item.split);
    if (item.mask) body.append("mask", item.mask, item.mask.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", config.url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        item.loaded = item.file.size * (event.loaded / event.total);
        item.bar.value = event.loaded / event.total;
        update();
      }
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        // Not JSON: a sign-in page after the session ended, or a server error page.
      }
      const toLogin = xhr.responseURL && new URL(xhr.responseURL).pathname.startsWith("/login/");
      if (xhr.status === 201 && data) resolve({ ok: true, data });
      else resolve({ ok: false, retry: xhr.status >= 500 || toLogin, message: (data && data.message) || messageForStatus(xhr.status, toLogin) });
    });
    xhr.addEventListener("error", () => resolve({ ok: false, retry: true, message: messageForStatus(0) }));
    xhr.send(body);
  });
}

async function upload(item) {
  if (item.file.size > config.maxBytes) {
    const mb = (n) => (n / 1e6).toFixed(1);
    setState(item, "error", `Refused: the file is ${mb(item.file.size)} MB; the largest accepted is ${mb(config.maxBytes)} MB.`);
    return;
  }
  setState(item, "uploading", "Uploading");
  const result = await send(item);
  if (result.ok) {
    item.loaded = item.file.size;
    item.bar.value = 1;
    setState(item, "done", "Added");
    document.body.dispatchEvent(new CustomEvent("kenpin:images-changed", { bubbles: true }));
  } else {
    item.loaded = 0;
    item.bar.value = 0;
    setState(item, result.retry ? "failed" : "error", `${result.retry ? "Not sent" : "Refused"}: ${result.message}`);
  }
}

function pump() {
  while (running < CONCURRENT) {
    const next = items.find((item) => item.state === "waiting");
    if (!next) break;
    running += 1;
    upload(next).finally(() => {
      running -= 1;
      update();
      pump();
    });
  }
}

// --- Totals ------------------------------------------------------------------------------------------

function update() {
  const count = (state) => items.filter((item) => item.state === state).length;
  const total = items.reduce((sum, item) => sum + item.file.size, 0) || 1;
  const done = items.reduce((sum, item) => sum + (item.state === "done" ? item.file.size : item.loaded), 0);
  overall.value = done / total;
  const added = count("done");
  const refused = count("error");
  const failed = count("failed");
  const pending = count("waiting") + count("uploading");
  const parts = [`${added} of ${items.length} added`];
  if (refused) parts.push(`${refused} refused`);
  if (failed) parts.push(`${failed} not sent`);
  statusLine.textContent = (pending ? "Uploading… " : "Finished: ") + parts.join(" · ");
  summary.dataset.state = pending ? "busy" : "idle";
  retryButton.hidden = pending > 0 || failed === 0;
  labelLink.hidden = pending > 0 || !items.some((item) => item.state === "done" && item.label === "unlabeled");
}

retryButton.addEventListener("click", () => {
  for (const item of items) if (item.state === "failed") setState(item, "waiting", "Waiting");
  update();
  pump();
});

// --- Wiring ------------------------------------------------------------------------------------------

for (const input of [document.getElementById("file-input"), document.getElementById("folder-input")]) {
  input.addEventListener("change", () => {
    addFiles([...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
    input.value = ""; // the same files can be chosen again after fixing them
  });
}

dropzone.addEventListener("dragover", (event) => {
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
  dropzone.classList.add("over");
});
dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
dropzone.addEventListener("drop", async (event) => {
  event.preventDefault();
  dropzone.classList.remove("over");
  addFiles(await droppedFiles(event.dataTransfer));
});

// A file dropped beside the zone would make the browser leave the page and lose the queue.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());
window.addEventListener("beforeunload", (event) => {
  if (items.some((item) => item.state === "waiting" || item.state === "uploading")) event.preventDefault();
});
