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

// A form that comes back with errors: move focus to its summary (role=alert), so that a
// keyboard or screen-reader user starts from what to correct; each line links to its field.
(function () {
  "use strict";

  function focusSummary(root) {
    const summary = root.querySelector && root.querySelector(".error-summary");
    if (summary) summary.focus();
  }

  // An HTMX swap that removed the focused element (the button pressed) leaves the focus
  // nowhere: move it to what the swap says ([data-focus]: the message saying what happened),
  // so that a keyboard continues from there, not from the top of the page.
  function refocus(root) {
    if (document.activeElement && document.activeElement !== document.body) return;
    const target = root.querySelector && (root.matches("[data-focus]") ? root : root.querySelector("[data-focus]"));
    if (target) target.focus();
  }

  document.addEventListener("DOMContentLoaded", function () { focusSummary(document); });
  document.addEventListener("htmx:afterSettle", function (event) {
    focusSummary(event.detail.elt);
    refocus(event.detail.elt);
  });
})();
