// /live refreshes itself: every data-refresh-s seconds it fetches the page again and swaps in the new #live.
(function () {
  "use strict";

  function refresh(container) {
    fetch(window.location.href, {credentials: "same-origin", cache: "no-store"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (fresh) { container.innerHTML = fresh.innerHTML; }
      })
      .catch(function () { /* the server is restarting: try again next time */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var container = document.getElementById("live");
    if (!container) { return; }
    var seconds = parseInt(container.getAttribute("data-refresh-s"), 10) || 5;
    window.setInterval(function () { refresh(container); }, seconds * 1000);
  });
})();
