/* Tanso: "Copy" buttons. A button carries data-copy-target="<element id>" and copies
   that element's text. Buttons are rendered hidden and shown here, so a page without
   JavaScript shows no button that cannot work (the text stays selectable). */
(function () {
  "use strict";

  function show(root) {
    root.querySelectorAll("button[data-copy-target]").forEach(function (button) {
      button.hidden = false;
    });
  }

  function fallback(value) {
    var area = document.createElement("textarea");
    area.value = value;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { area.remove(); }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy-target]");
    if (!button) return;
    var source = document.getElementById(button.dataset.copyTarget);
    if (!source) return;
    var value = source.innerText.trim();
    var label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    function done() {
      button.textContent = "Copied";
      button.dataset.copied = "1";
      window.setTimeout(function () { button.textContent = label; }, 2000);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(value).then(done, function () { fallback(value); done(); });
    } else {
      fallback(value);
      done();
    }
  });

  document.addEventListener("DOMContentLoaded", function () { show(document); });
  document.addEventListener("htmx:load", function (event) { show(event.target); });
})();
