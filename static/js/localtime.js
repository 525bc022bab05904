// Shows every <time data-local> in the viewer's own time zone. The server renders UTC as the
// fallback, so without this script the page still says when, in UTC.
(function () {
  "use strict";
  var formats = {
    datetime: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }),
    time: new Intl.DateTimeFormat(undefined, { timeStyle: "medium" }),
  };

  function localize(root) {
    root.querySelectorAll("time[data-local]").forEach(function (element) {
      var when = new Date(element.getAttribute("datetime"));
      var format = formats[element.dataset.local] || formats.datetime;
      if (!isNaN(when.getTime())) {
        element.title = element.textContent;
        element.textContent = format.format(when);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  // The progress page replaces its timeline every second; localize what came in.
  document.addEventListener("htmx:afterSettle", function (event) { localize(event.detail.elt); });
})();
