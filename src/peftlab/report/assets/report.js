/* peftlab report: sortable tables, per-run toggles, output filters. Inlined; no dependencies. */
(function () {
  "use strict";

  function cellValue(td) {
    if (!td) return null;
    var v = td.getAttribute("data-v");
    if (v === null) return td.textContent.trim().toLowerCase();
    if (v === "") return null;
    var n = parseFloat(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }

  function sortTable(table, col, th) {
    var body = table.tBodies[0];
    var asc = !th.classList.contains("asc");
    Array.prototype.forEach.call(table.querySelectorAll("th"), function (h) {
      h.classList.remove("asc", "desc");
    });
    th.classList.add(asc ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a.cells[col]), y = cellValue(b.cells[col]);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   /* missing values last, whatever the direction */
      if (y === null) return -1;
      if (x < y) return asc ? -1 : 1;
      if (x > y) return asc ? 1 : -1;
      return 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function initFamilies() {
    Array.prototype.forEach.call(document.querySelectorAll("input.family-toggle"), function (c) {
      c.addEventListener("change", function () {
        var fam = c.getAttribute("data-family");
        Array.prototype.forEach.call(document.querySelectorAll('#leaderboard-table tr[data-family="' + fam + '"]'),
          function (tr) { tr.style.display = c.checked ? "" : "none"; });
      });
    });
  }

  function initSortable() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
        th.addEventListener("click", function () { sortTable(table, i, th); });
      });
    });
  }

  function setSeries(idx, on) {
    Array.prototype.forEach.call(document.querySelectorAll('.series[data-series="' + idx + '"]'), function (g) {
      g.classList.toggle("off", !on);
    });
    Array.prototype.forEach.call(document.querySelectorAll('input.toggle[data-series="' + idx + '"]'), function (c) {
      c.checked = on;
    });
  }

  function initToggles() {
    Array.prototype.forEach.call(document.querySelectorAll("input.toggle"), function (c) {
      c.addEventListener("change", function () { setSeries(c.getAttribute("data-series"), c.checked); });
    });
    Array.prototype.forEach.call(document.querySelectorAll("button.all-on, button.all-off"), function (b) {
      b.addEventListener("click", function () {
        var on = b.classList.contains("all-on");
        Array.prototype.forEach.call(b.closest(".legend").querySelectorAll("input.toggle"), function (c) {
          setSeries(c.getAttribute("data-series"), on);
        });
      });
    });
  }

  function initFilters() {
    var table = document.getElementById("outputs-table");
    if (!table) return;
    var boxes = document.querySelectorAll("input.ofilter");
    function apply() {
      var need = [];
      Array.prototype.forEach.call(boxes, function (b) { if (b.checked) need.push(b.value); });
      var shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        var ok = need.every(function (cls) { return r.classList.contains(cls); });
        r.classList.toggle("hidden", !ok);
        if (ok) shown += 1;
      });
      var count = document.getElementById("outputs-count");
      if (count) count.textContent = shown + " shown";
    }
    Array.prototype.forEach.call(boxes, function (b) { b.addEventListener("change", apply); });
    apply();
  }

  document.addEventListener("DOMContentLoaded", function () {
    initSortable();
    initFamilies();
    initToggles();
    initFilters();
  });
})();
