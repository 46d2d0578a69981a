// Cards page: "Add a card" mounts Stripe's Payment Element on a SetupIntent (the form comes
// as an HTMX partial); Stripe.js confirms it (3-D Secure included), then the form posts the
// SetupIntent id and the server swaps in the new list. Card details go to Stripe only.
(function () {
  "use strict";

  function mount(form) {
    const stripe = Stripe(form.dataset.publishableKey);
    const elements = stripe.elements({ clientSecret: form.dataset.clientSecret });
    const element = elements.create("payment");
    element.mount("#setup-element");
    // The form replaced the "Add a card" button, which had the focus: continue in the form.
    element.on("ready", function () { element.focus(); });
    const button = document.getElementById("save-card-button");
    const message = document.getElementById("setup-message");

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (button.disabled) return;
      button.disabled = true;
      message.hidden = true;
      const result = await stripe.confirmSetup({
        elements: elements,
        confirmParams: { return_url: form.dataset.returnUrl },
        redirect: "if_required",
      });
      if (result.error) {
        message.textContent = result.error.message || "The card was not saved.";
        message.hidden = false;
        button.disabled = false;
        return;
      }
      htmx.trigger(form, "card-confirmed"); // hx-post: save it, swap the list
    });
    button.disabled = false; // the template disables it until this script handles the form
  }

  document.addEventListener("htmx:afterSettle", function () {
    const form = document.getElementById("setup-form");
    if (form && !form.dataset.mounted) {
      form.dataset.mounted = "true";
      mount(form);
    }
  });
})();
