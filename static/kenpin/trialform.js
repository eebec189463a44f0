// New trial form: photos dropped on the zone join the form's file input; "Select all" ticks
// every unlabeled image offered.
for (const zone of document.querySelectorAll("[data-drop-into]")) {
  const input = document.getElementById(zone.dataset.dropInto);
  const count = document.getElementById(`${input.id}-count`);

  const showCount = () => {
    const n = input.files.length;
    count.textContent = n ? `${n} photo${n === 1 ? "" : "s"} chosen` : "No photo chosen";
  };

  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    // File inputs cannot be appended to: rebuild the list with the old and the new files.
    const merged = new DataTransfer();
    for (const file of [...input.files, ...event.dataTransfer.files]) merged.items.add(file);
    input.files = merged.files;
    showCount();
  });
  input.addEventListener("change", showCount);
  showCount();
}

for (const all of document.querySelectorAll("[data-check-all]")) {
  all.addEventListener("change", () => {
    for (const box of all.closest("fieldset").querySelectorAll("input[name=image_ids]")) box.checked = all.checked;
  });
}
