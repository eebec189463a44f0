// The files of an upload, kept in this browser (IndexedDB) until the server has stored them, so
// that an upload interrupted by leaving the page, a lost connection or a server restart can be
// finished later by sending only what is missing. Each queue is one project and one person.
// Without IndexedDB (some private windows) nothing is kept, and uploads work as before.

const DB_NAME = "kenpin-uploads";
const STORE = "files";

let opened = null;

function database() {
  if (!opened) {
    opened = new Promise((resolve) => {
      let request;
      try {
        request = indexedDB.open(DB_NAME, 1);
      } catch {
        resolve(null);
        return;
      }
      request.addEventListener("upgradeneeded", () => {
        const store = request.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
        store.createIndex("queue", "queue");
      });
      request.addEventListener("success", () => resolve(request.result));
      request.addEventListener("error", () => resolve(null));
      request.addEventListener("blocked", () => resolve(null));
    });
  }
  return opened;
}

// Run `work(store)` in one transaction; resolves with what `work` returned once it commits.
async function transact(mode, work) {
  const db = await database();
  if (!db) return null;
  return new Promise((resolve) => {
    let result = null;
    let tx;
    try {
      tx = db.transaction(STORE, mode);
      result = work(tx.objectStore(STORE));
    } catch {
      resolve(null);
      return;
    }
    tx.addEventListener("complete", () => resolve(result));
    tx.addEventListener("error", () => resolve(null));
    tx.addEventListener("abort", () => resolve(null));
  });
}

function requestValue(request) {
  const box = { value: null };
  request.addEventListener("success", () => {
    box.value = request.result;
  });
  return box;
}

// Keep entries ({file, path, label, split, mask}); resolves with their ids (null where not kept).
export async function keep(queue, entries) {
  const boxes = await transact("readwrite", (store) =>
    entries.map(({ file, path, label, split, mask }) =>
      requestValue(store.add({ queue, file, name: file.name, path, label, split, mask, keptAt: Date.now() })),
    ),
  );
  return boxes ? boxes.map((box) => box.value) : entries.map(() => null);
}

// Every entry still kept for `queue`, oldest first.
export async function pending(queue) {
  const box = await transact("readonly", (store) => requestValue(store.index("queue").getAll(queue)));
  return (box && box.value) || [];
}

export async function forget(id) {
  if (id !== null && id !== undefined) await transact("readwrite", (store) => store.delete(id));
}

// The SHA-256 of a file as lowercase hex, or null where the browser offers no digest (pages
// served over plain http from another machine are not a "secure context").
export async function sha256(file) {
  if (!window.crypto || !window.crypto.subtle) return null;
  const digest = await window.crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}
