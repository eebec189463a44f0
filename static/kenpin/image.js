// Larger view of one image: keys for the label buttons, the mask and the neighbours.
const keys = new Map([...document.querySelectorAll("[data-key]")].map((button) => [button.dataset.key, button]));
const maskToggle = document.getElementById("show-mask");
const viewer = document.getElementById("image-viewer");

function showMask() {
  viewer.classList.toggle("hide-mask", !maskToggle.checked);
}

if (maskToggle) maskToggle.addEventListener("change", showMask);

document.addEventListener("keydown", (event) => {
  // The painter (a modal dialog) has keys of its own.
  if (event.defaultPrevented || event.target.closest("dialog[open]")) return;
  if (event.target.closest("input[type=file], input[type=text], textarea, select") || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  const link = { arrowleft: "previous-image", arrowright: "next-image" }[key];
  if (link) {
    const anchor = document.getElementById(link);
    if (anchor) window.location.href = anchor.href;
  } else if (key === "m" && maskToggle) {
    maskToggle.checked = !maskToggle.checked;
    showMask();
  } else if (keys.has(key)) {
    event.preventDefault();
    keys.get(key).click(); // submits its form with the button's value
  }
});
