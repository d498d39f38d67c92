"use strict";
// Replaces the placeholder text so a browser shows the script was served and ran.
document.addEventListener("DOMContentLoaded", function () {
  var el = document.getElementById("greeting");
  if (el) { el.textContent = "Served by nginx as a non-root user."; }
});
