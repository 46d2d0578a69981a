// htmx swaps only successful responses: when an HTMX request is refused (an input the portal
// does not accept, too many attempts, an error), say so in the page's alert line instead of
// leaving the click without an answer. The server puts its message in X-Error-Message.
(function () {
  "use strict";

  function show(text) {
    const line = document.getElementById("request-error");
    if (!line) return;
    line.textContent = text;
    line.hidden = false;
  }

  document.addEventListener("htmx:beforeRequest", function () {
    const line = document.getElementById("request-error");
    if (line) line.hidden = true;
  });
  // A form refused with itself again, each field's message under the field (the server marks
  // that answer X-Form-Errors): swap it like a success, so the messages show in place.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    if (xhr.status === 400 && xhr.getResponseHeader("X-Form-Errors")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    show((xhr.getResponseHeader("X-Error-Message") || "The request failed.") +
         " (" + xhr.status + ")");
  });
  document.addEventListener("htmx:sendError", function () {
    show("The portal could not be reached; check your connection and try again.");
  });
})();
