// Keeps the console's job progress bars current: every <progress data-job="ID"> is
// updated from /console/jobs/ID until its job is done or failed. The pages work
// without this script; they show the state as of the page load.
(function () {
  "use strict";
  var FINISHED = { done: true, failed: true };

  function each(selector, fn) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), fn);
  }

  function show(job) {
    each('progress[data-job="' + job.id + '"]', function (bar) {
      if (job.total) {
        bar.max = job.total;
        bar.value = job.done;
      } else if (job.state === "done") {
        bar.max = 1;
        bar.value = 1;
      }
    });
    each('[data-job-label="' + job.id + '"]', function (el) { el.textContent = job.label; });
    each('[data-job-state="' + job.id + '"]', function (el) {
      el.textContent = job.state;
      el.className = "state state-" + job.state;
    });
    if (job.result) {
      var r = job.result;
      var text = (r.added || 0) + " added, " + (r.removed || 0) + " removed, " +
        (r.unchanged || 0) + " unchanged" +
        (r.unknown_users ? ", " + r.unknown_users + " unknown ids skipped" : "");
      each('[data-job-result="' + job.id + '"]', function (el) { el.textContent = text; });
    }
  }

  function watch(id) {
    fetch("/console/jobs/" + id, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) {
        if (!job) { return; }
        show(job);
        if (!FINISHED[job.state]) { setTimeout(function () { watch(id); }, 700); }
      })
      .catch(function () { setTimeout(function () { watch(id); }, 3000); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var seen = {};
    each("progress[data-job]", function (bar) {
      var id = bar.getAttribute("data-job");
      var state = document.querySelector('[data-job-state="' + id + '"]');
      if (!seen[id] && !(state && FINISHED[state.textContent.trim()])) {
        seen[id] = true;
        watch(id);
      }
    });
  });
})();
