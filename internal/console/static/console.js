// The console's only script: confirmations, select-all and auto-refresh.
// Served by the binary (no CDN); the pages work without it, minus these.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  });
  document.querySelectorAll("input[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      var form = box.closest("form");
      form.querySelectorAll('input[type=checkbox][name="' + box.dataset.selectAll + '"]').forEach(function (b) {
        b.checked = box.checked;
      });
    });
  });
  var auto = document.querySelector("input[data-autorefresh]");
  if (auto) {
    auto.addEventListener("change", function () { auto.form.submit(); });
    if (auto.checked) {
      window.setTimeout(function () { window.location.reload(); }, 5000);
    }
  }
});
