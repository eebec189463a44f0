// Upload page: photos and folders dropped or chosen go to the server one file per request,
// a few at a time, each with its own progress bar and, when refused, the server's reason.
// Files stay in this browser until stored (uploadstore.js): after an interruption the page
// shows what was not stored and sends just those.
import { csrfToken, jsonData, messageForStatus, postForm } from "./kenpin.js";
import { forget, keep, pending, sha256 } from "./uploadstore.js";

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
const leaveNote = document.getElementById("upload-leave-note");
const resumeCard = document.getElementById("upload-resume");

const items = [];
let running = 0;
let leaving = false; // the person chose to leave in our own dialog: no second, browser one

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

async function addFiles(found) {
  const kept = found.filter(({ file }) => !IGNORED.test(file.name));
  const masks = new Map();
  const images = [];
  for (const entry of kept) {
    const dirs = folders(entry.path);
    if (dirs.length && MASK_FOLDERS.has(dirs[dirs.length - 1])) masks.set(stem(entry.file.name), entry.file);
    else images.push(entry);
  }
  const split = chosen("split");
  const entries = images.map(({ file, path }) => {
    const fromFolder = folders(path).reverse().map((dir) => LABEL_FOLDERS[dir]).find(Boolean);
    const label = fromFolder || chosen("label");
    const mask = label === "anomaly" ? masks.get(stem(file.name)) || null : null;
    return { file, path, label, split, mask };
  });
  if (!entries.length) return;
  summary.hidden = false;
  const added = entries.map((entry) => newItem(entry, "preparing", "Preparing"));
  update();
  // Kept in the browser before the first byte is sent, so that nothing sent can be lost.
  const ids = await keep(config.queue, entries);
  added.forEach((item, i) => {
    item.id = ids[i];
    setState(item, "waiting", "Waiting");
  });
  update();
  pump();
}

// --- One row per file --------------------------------------------------------------------------------

const LABEL_WORDS = { unlabeled: "unlabeled", normal: "normal", anomaly: "anomaly" };
const SPLIT_WORDS = { train: "training", test: "test" };

function newItem({ file, path, label, split, mask }, state = "waiting", text = "Waiting") {
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
  const item = { id: null, file, label, split, mask, row, bar, message, loaded: 0, state, resumed: false };
  setState(item, state, text);
  items.push(item);
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
      else {
        resolve({
          ok: false,
          retry: xhr.status >= 500 || xhr.status === 0 || toLogin,
          duplicate: data && data.error === "duplicate",
          message: (data && data.message) || messageForStatus(xhr.status, toLogin),
        });
      }
    });
    xhr.addEventListener("error", () => resolve({ ok: false, retry: true, message: messageForStatus(0) }));
    xhr.send(body);
  });
}

function stored(item, text) {
  item.loaded = item.file.size;
  item.bar.value = 1;
  setState(item, "done", text);
  forget(item.id);
}

async function upload(item) {
  if (item.file.size > config.maxBytes) {
    const mb = (n) => (n / 1e6).toFixed(1);
    setState(item, "error", `Refused: the file is ${mb(item.file.size)} MB; the largest accepted is ${mb(config.maxBytes)} MB.`);
    forget(item.id);
    return;
  }
  setState(item, "uploading", "Uploading");
  const result = await send(item);
  if (result.ok) {
    // Added, but framed or sized unlike the training photos: say so now, not after training.
    stored(item, result.data.unlike ? `Added. ${result.data.unlike}` : "Added");
    item.row.classList.toggle("is-unlike", Boolean(result.data.unlike));
    document.body.dispatchEvent(new CustomEvent("kenpin:images-changed", { bubbles: true }));
  } else if (result.duplicate && item.resumed) {
    // Sent before the interruption, and stored although the answer never came back.
    stored(item, "Already in the project");
  } else {
    item.loaded = 0;
    item.bar.value = 0;
    // A refusal is final (the server said why); a lost request stays kept, to be sent again,
    // and may have been stored although its answer was lost: then the server's "duplicate" is
    // the proof that it arrived.
    if (!result.retry) forget(item.id);
    else item.resumed = true;
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

function inFlight() {
  return items.some((item) => ["preparing", "waiting", "uploading"].includes(item.state));
}

function update() {
  const count = (state) => items.filter((item) => item.state === state).length;
  const total = items.reduce((sum, item) => sum + item.file.size, 0) || 1;
  const done = items.reduce((sum, item) => sum + (item.state === "done" ? item.file.size : item.loaded), 0);
  overall.value = done / total;
  const added = count("done");
  const refused = count("error");
  const failed = count("failed") + count("held");
  const busy = inFlight();
  const parts = [`${added} of ${items.length} added`];
  if (refused) parts.push(`${refused} refused`);
  if (failed) parts.push(`${failed} not sent`);
  statusLine.textContent = (busy ? "Uploading… " : "Finished: ") + parts.join(" · ");
  summary.dataset.state = busy ? "busy" : "idle";
  leaveNote.hidden = !busy;
  retryButton.hidden = busy || failed === 0;
  retryButton.textContent = count("held") ? `Send the ${failed} photo${failed === 1 ? "" : "s"} not stored` : "Retry failed uploads";
  labelLink.hidden = busy || !items.some((item) => item.state === "done" && item.label === "unlabeled");
}

function sendAgain() {
  resumeCard.hidden = true;
  for (const item of items) if (item.state === "failed" || item.state === "held") setState(item, "waiting", "Waiting");
  update();
  pump();
}

retryButton.addEventListener("click", sendAgain);
// Back online after a lost connection: send what failed, without waiting to be asked.
window.addEventListener("online", () => {
  if (items.some((item) => item.state === "failed")) sendAgain();
});

// --- Resuming an interrupted upload ---------------------------------------------------------------

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// Ask the server which of these files it has already; a Set of their item indexes.
async function alreadyStored(files) {
  const hashes = await Promise.all(files.map((file) => sha256(file).catch(() => null)));
  if (hashes.some((hash) => hash === null)) return new Set(); // no digest here: the server dedups
  const known = new Set();
  for (let start = 0; start < hashes.length; start += 1000) {
    const body = new FormData();
    for (const hash of hashes.slice(start, start + 1000)) body.append("sha256", hash);
    const answer = await postForm(config.knownUrl, body);
    if (!answer.ok) return new Set();
    for (const hash of answer.data.known) known.add(hash);
  }
  return new Set(hashes.flatMap((hash, i) => (known.has(hash) ? [i] : [])));
}

async function resume() {
  const kept = await pending(config.queue);
  if (!kept.length) return;
  const present = await alreadyStored(kept.map((entry) => entry.file));
  const missing = kept.filter((_, i) => !present.has(i));
  for (const i of present) forget(kept[i].id);
  const since = new Date(Math.min(...kept.map((entry) => entry.keptAt)));
  const them = missing.length === 1 ? "it" : "them";
  const parts = [`An upload started ${since.toLocaleString()} was interrupted before Kenpin confirmed ${plural(kept.length, "photo")}.`];
  if (present.size && missing.length) parts.push(`${present.size} ${present.size === 1 ? "is" : "are"} in the project after all.`);
  parts.push(
    missing.length
      ? `${plural(missing.length, "photo")} ${missing.length === 1 ? "was" : "were"} not stored; this browser kept ${them}. Send ${them} now: nothing else is sent again.`
      : "All of them are in the project: nothing is missing.",
  );
  resumeCard.querySelector("[data-role=what]").textContent = parts.join(" ");
  resumeCard.querySelector("[data-role=send]").hidden = !missing.length;
  resumeCard.querySelector("[data-role=send]").textContent = `Send the ${plural(missing.length, "photo")} not stored`;
  resumeCard.hidden = false;
  if (!missing.length) return;
  summary.hidden = false;
  for (const entry of missing) {
    const item = newItem(entry, "held", "Not stored: kept in this browser");
    item.id = entry.id;
    item.resumed = true;
  }
  update();
}

resumeCard.querySelector("[data-role=send]").addEventListener("click", sendAgain);
resumeCard.querySelector("[data-role=forget]").addEventListener("click", async () => {
  for (const item of items.filter((entry) => entry.state === "held")) {
    await forget(item.id);
    item.row.remove();
    items.splice(items.indexOf(item), 1);
  }
  resumeCard.hidden = true;
  summary.hidden = !items.length;
  update();
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
// Leaving while files are in flight: links of the console ask in our words (browsers show only
// their own generic text in the beforeunload dialog, which still guards typed URLs and closing).
const LEAVE_QUESTION =
  "Photos are still uploading. Leave this page anyway?\n\nThose not yet stored stay in this browser: come back to this upload page to send them.";
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || !inFlight() || link.target || event.defaultPrevented) return;
  if (window.confirm(LEAVE_QUESTION)) leaving = true;
  else event.preventDefault();
});
window.addEventListener("beforeunload", (event) => {
  if (inFlight() && !leaving) event.preventDefault();
});

resume();
