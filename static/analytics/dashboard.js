// Draws the report charts from the page's json_script block (id "an-chart-data") with the
// vendored Chart.js; a click on a point opens the conversations of that day.
(function () {
  "use strict";

  var COLORS = ["#417690", "#e08e0b", "#5b8c3a", "#b04a4a", "#7a5ea8"];

  function drillDownUrl(data, metric, day) {
    var params = new URLSearchParams({ metric: metric, start: day, end: day });
    data.sites.forEach(function (site) { params.append("site", String(site)); });
    return data.drilldown + "?" + params.toString();
  }

  function draw(canvas, data) {
    var spec = data.charts[canvas.dataset.chart];
    if (!spec) { return; }
    var names = Object.keys(spec.series);
    var datasets = names.map(function (name, i) {
      var dataset = {
        label: name,
        data: spec.series[name],
        borderColor: COLORS[i % COLORS.length],
        backgroundColor: COLORS[i % COLORS.length],
        spanGaps: true,
        tension: 0.2
      };
      if (spec.second_axis && name === spec.second_axis) { dataset.yAxisID = "y1"; }
      return dataset;
    });
    var scales = { y: { beginAtZero: true } };
    if (spec.percent) { scales.y.max = 100; }
    if (spec.second_axis) {
      scales.y1 = { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } };
    }
    // eslint-disable-next-line no-new
    new window.Chart(canvas, {
      type: "line",
      data: { labels: data.labels, datasets: datasets },
      options: {
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: scales,
        onClick: function (event, elements) {
          if (!elements.length) { return; }
          var day = data.labels[elements[0].index];
          window.location.href = drillDownUrl(data, spec.metric, day);
        }
      }
    });
  }

  function init() {
    var node = document.getElementById("an-chart-data");
    if (!node || !window.Chart) { return; }
    var data = JSON.parse(node.textContent);
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      draw(canvas, data);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
