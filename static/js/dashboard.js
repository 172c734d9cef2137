/* Tanso dashboard: the overview's daily revenue vs cost chart (Chart.js).
   The figures come as decimal strings in a json_script block; they become
   numbers only to be drawn (tooltips show the exact strings). Runs on load
   and on every htmx swap (a new window swaps a new canvas in). */
(function () {
  "use strict";

  var COLORS = { revenue: "#1a7f37", cost: "#b42318" };

  function money(text) {
    var negative = text.charAt(0) === "-";
    return (negative ? "\u2212$" : "$") + (negative ? text.slice(1) : text);
  }

  function draw(canvas) {
    if (canvas.dataset.ready || !window.Chart) return;
    var source = document.getElementById(canvas.dataset.source);
    if (!source) return;
    var days = JSON.parse(source.textContent);
    canvas.dataset.ready = "1";
    var series = function (key) {
      return days.map(function (day) { return Number(day[key]); });
    };
    new window.Chart(canvas, {
      type: "bar",
      data: {
        // "2026-03-15" -> "03-15": the year is in the window label above the chart.
        labels: days.map(function (day) { return day.date.slice(5); }),
        datasets: [
          { label: "Revenue", key: "revenue", data: series("revenue"), backgroundColor: COLORS.revenue },
          { label: "Cost", key: "cost", data: series("cost"), backgroundColor: COLORS.cost }
        ]
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        datasets: { bar: { categoryPercentage: 0.8, barPercentage: 0.9 } },
        scales: { y: { beginAtZero: true, ticks: { callback: function (v) { return "$" + v; } } } },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (ctx) {
                return ctx.dataset.label + ": " + money(days[ctx.dataIndex][ctx.dataset.key]);
              }
            }
          }
        }
      }
    });
  }

  function scan(root) {
    var scope = root && root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches("canvas[data-chart]")) draw(scope);
    scope.querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  if (window.htmx) {
    window.htmx.onLoad(scan);
  } else {
    document.addEventListener("DOMContentLoaded", function () { scan(document); });
  }
})();
