// Checkout: mount Stripe's Payment Element and confirm the PaymentIntent with Stripe.js.
// Card details go from the browser to Stripe only; our server sees ids, never numbers.
(function () {
  "use strict";
  const form = document.getElementById("payment-form");
  if (!form) return;
  const stripe = Stripe(form.dataset.publishableKey);
  const elements = stripe.elements({ clientSecret: form.dataset.clientSecret });
  elements.create("payment").mount("#payment-element");
  const button = document.getElementById("pay-button");
  const message = document.getElementById("payment-message");

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (button.disabled) return; // a second click while confirming does nothing
    button.disabled = true;
    message.hidden = true;
    // 3-D Secure runs inside confirmPayment; on success Stripe.js navigates to return_url.
    const result = await stripe.confirmPayment({
      elements: elements,
      confirmParams: { return_url: form.dataset.returnUrl },
    });
    if (result.error) {
      message.textContent = result.error.message || "The payment did not go through.";
      message.hidden = false;
      button.disabled = false;
    }
  });
})();
