// Progressive enhancement only: show every <time> in the reader's own zone.
// The page is complete without this script (times are shown in UTC).
"use strict";
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var d = new Date(el.getAttribute("datetime"));
  if (isNaN(d.getTime())) return;
  el.title = el.textContent;
  el.textContent = d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });
});
