// The API reference (templates/api/docs.html): Swagger UI, from our own static files, showing
// the OpenAPI document the API serves. A reference to read, not a console: "Try it out" is
// off (an admin's token on this page could otherwise move money with one click), no other
// document may be named in the URL (?url=...), and no validator badge sends the document to
// a third-party server.
(function () {
  "use strict";

  const node = document.getElementById("api-reference");
  if (!node || typeof window.SwaggerUIBundle !== "function") return;
  node.querySelector("[data-loading]")?.remove();
  window.SwaggerUIBundle({
    domNode: node,
    url: node.dataset.specUrl,
    deepLinking: false,  // a link inside each operation's button: nested controls (axe)
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    defaultModelExpandDepth: 2,
    supportedSubmitMethods: [],
    tryItOutEnabled: false,
    queryConfigEnabled: false,
    validatorUrl: null,
    onComplete: function () {
      // The viewer renders its operations in a <main> of its own, inside the page's: one
      // main landmark per page, so that one is a region.
      node.querySelectorAll("main").forEach(function (main) {
        main.setAttribute("role", "region");
        main.setAttribute("aria-label", "Endpoints");
      });
    },
  });
})();
