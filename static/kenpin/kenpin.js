// Shared by every page: confirmation of destructive forms, messages, and POSTs from scripts.

// The CSRF token base.html gives htmx; our own requests send it the same way.
export function csrfToken() {
  try {
    return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  } catch {
    return "";
  }
}

// Show a message in the page's message list (role=status, so screen readers hear it too).
export function notify(text, kind = "info") {
  const list = document.getElementById("messages");
  if (!list) return;
  const item = document.createElement("li");
  item.className = `message ${kind}`;
  item.textContent = text;
  list.replaceChildren(item);
}

// What to tell people when the server answered without one of our JSON messages.
export function messageForStatus(status, redirectedToLogin = false) {
  if (redirectedToLogin) return "Your session has ended. Sign in again, then retry.";
  switch (status) {
    case 0: return "The console could not be reached. Check the network connection and try again.";
    case 403: return "Your role in this project does not allow this. Ask an owner to make you an editor.";
    case 404: return "Not found: it was deleted, or you are no longer a member of this project.";
    case 413: return "The file is too large for the server.";
    default: return `The server could not do this (error ${status}). Try again; if it keeps failing, tell your Kenpin admin.`;
  }
}

// POST a FormData and read the JSON answer. Never throws: returns {ok, status, data, message}.
export async function postForm(url, formData) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      body: formData,
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      credentials: "same-origin",
    });
  } catch {
    return { ok: false, status: 0, data: null, message: messageForStatus(0) };
  }
  const toLogin = response.redirected && new URL(response.url).pathname.startsWith("/login/");
  let data = null;
  if ((response.headers.get("Content-Type") || "").includes("application/json")) {
    data = await response.json();
  }
  const ok = response.ok && !toLogin && data !== null;
  const message = (data && data.message) || (ok ? "" : messageForStatus(response.status, toLogin));
  return { ok, status: response.status, data, message };
}

// Forms that destroy something ask first: <form data-confirm="Delete this trial?">.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// Read a json_script block by id.
export function jsonData(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : null;
}

// htmx leaves the page as it is when a request fails; say what happened instead.
document.addEventListener("htmx:responseError", (event) => {
  notify(messageForStatus(event.detail.xhr.status), "error");
});
document.addEventListener("htmx:sendError", () => notify(messageForStatus(0), "error"));

// Copy buttons: <button data-copy="ID"> copies the value of the input with that id.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Press Ctrl+C";  // no clipboard access (plain http): the text is selected
  }
});

// A field with a `pattern` says its rules (its `title`) in the browser's own warning, instead of
// "Please match the requested format".
document.addEventListener(
  "invalid",
  (event) => {
    const field = event.target;
    if (field.validity && field.validity.patternMismatch && field.title) field.setCustomValidity(field.title);
  },
  true,
);
document.addEventListener("input", (event) => {
  if (event.target.setCustomValidity) event.target.setCustomValidity("");
});
