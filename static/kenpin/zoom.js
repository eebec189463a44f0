// Opens a photo large, with its anomaly heatmap over it, from any element with data-zoom
// (data-full: the photo, data-heatmap: the overlay, data-caption).
const dialog = document.getElementById("zoom");

if (dialog) {
  const photo = document.getElementById("zoom-photo");
  const heatmap = document.getElementById("zoom-heatmap");
  const opacity = document.getElementById("zoom-opacity");
  const opacityLabel = document.getElementById("zoom-opacity-label");

  const show = (img, url) => {
    img.hidden = !url;
    if (url) img.src = url;
    else img.removeAttribute("src");
  };

  opacity.addEventListener("input", () => {
    heatmap.style.opacity = opacity.value;
  });

  document.addEventListener("click", (event) => {
    const trigger = event.target.closest("[data-zoom]");
    if (!trigger || (!trigger.dataset.full && !trigger.dataset.heatmap)) return;
    // Without the photo (deleted since), the heatmap alone still shows where the model looked.
    show(photo, trigger.dataset.full);
    show(heatmap, trigger.dataset.heatmap);
    heatmap.style.opacity = opacity.value;
    opacityLabel.hidden = !trigger.dataset.heatmap;
    document.getElementById("zoom-caption").textContent = trigger.dataset.caption || "";
    dialog.showModal();
  });

  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });
}
