// Checkout: pay with a saved card in one click (confirmed by our server), or with a new card
// in Stripe's Payment Element (confirmed by Stripe.js). 3-D Secure runs in Stripe.js either
// way. Card details go from the browser to Stripe only; our server sees ids, never numbers.
(function () {
  "use strict";
  const form = document.getElementById("payment-form");
  if (!form) return;
  const stripe = Stripe(form.dataset.publishableKey);
  const elements = stripe.elements({ clientSecret: form.dataset.clientSecret });
  elements.create("payment").mount("#payment-element");
  const button = document.getElementById("pay-button");
  const message = document.getElementById("payment-message");
  const newCard = document.getElementById("new-card");
  const saveCard = document.getElementById("save-card");

  function chosenCard() {
    const checked = form.querySelector('input[name="payment_method"]:checked');
    return checked && checked.value !== "new" ? checked.value : null;
  }

  form.addEventListener("change", function (event) {
    if (event.target.name === "payment_method") newCard.hidden = chosenCard() !== null;
  });

  function post(url, fields) {
    return fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": form.dataset.csrfToken },
      body: new URLSearchParams(fields),
      credentials: "same-origin",
    }).then(function (response) {
      return response.json().catch(function () { return { error: "The payment did not go through." }; });
    });
  }

  async function payWithSavedCard(paymentMethod) {
    const result = await post(form.dataset.payUrl, { payment_method: paymentMethod });
    if (result.status === "requires_action") {
      const action = await stripe.handleNextAction({ clientSecret: result.clientSecret });
      if (action.error) return action;
    } else if (!result.next) {
      return { error: { message: result.error } };
    }
    window.location.assign(result.next);
    return new Promise(function () {}); // the page is going away
  }

  let offeredToSave = false;

  async function payWithNewCard() {
    if (saveCard && (saveCard.checked || offeredToSave)) {
      offeredToSave = saveCard.checked;
      const saved = await post(form.dataset.saveUrl, { save: saveCard.checked ? "true" : "false" });
      if (!saved.ok) return { error: { message: saved.error } };
    }
    // On success Stripe.js navigates to return_url.
    return stripe.confirmPayment({
      elements: elements,
      confirmParams: { return_url: form.dataset.returnUrl },
    });
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (button.disabled) return; // a second click while confirming does nothing
    button.disabled = true;
    message.hidden = true;
    const card = chosenCard();
    const result = card ? await payWithSavedCard(card) : await payWithNewCard();
    if (result.error) {
      message.textContent = result.error.message || "The payment did not go through.";
      message.hidden = false;
      button.disabled = false;
    }
  });
  button.disabled = false; // the template disables it until this script handles the form
})();
