// Seek the page's audio player: every [data-seek-s] button, and the message plays in the timeline SVG.
(function () {
  "use strict";

  function seek(seconds) {
    var player = document.getElementById("player");
    if (!player) { return; }
    player.currentTime = seconds;
    var playing = player.play();
    if (playing && playing.catch) { playing.catch(function () { /* no audio device: seeking is enough */ }); }
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-seek-s], svg.timeline .play");
    if (!target) { return; }
    var seconds = parseFloat(target.getAttribute("data-seek-s") || target.getAttribute("data-start-s"));
    if (!isNaN(seconds)) { seek(seconds); }
  });

  // The timeline's message plays are clickable only when there is a player to seek.
  document.addEventListener("DOMContentLoaded", function () {
    if (document.getElementById("player")) { document.body.classList.add("has-player"); }
  });
})();
