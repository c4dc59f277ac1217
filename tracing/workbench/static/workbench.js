// The workbench works without this file; it only adds a print button and, on a depth-2
// job's page, polls the job's progress instead of reloading the page.
(function () {
  "use strict";
  document.documentElement.classList.add("has-js");
  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.addEventListener("click", function () { window.print(); });
  });
  var job = document.getElementById("job");
  if (!job || ["queued", "running"].indexOf(job.dataset.state) < 0) { return; }
  function poll() {
    fetch(job.dataset.status, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (p) {
        if (!p) { return; }
        ["f1", "rows"].forEach(function (k) {
          document.getElementById("job-" + k).textContent = p[k];
        });
        document.getElementById("job-elapsed").textContent = Math.round(p.elapsed_s);
        var bar = document.getElementById("job-bar");
        bar.value = { queued: 0, f1: 1, f2: 2, reading: 3, done: 4 }[p.stage] || 0;
        if (p.done) { window.location.reload(); } else { window.setTimeout(poll, 1500); }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
