/*
 * Stripe.js double for the offline Stripe sandbox (served at /js.stripe.com/v3/).
 *
 * Real Stripe.js renders the Payment Element in iframes from js.stripe.com,
 * which does not exist offline. This double offers the calls the portal's
 * pages use, with plain labelled inputs (so tests can fill them by label)
 * and a 3-D Secure dialog in the page:
 *
 *   Stripe(publishableKey)
 *   stripe.elements({clientSecret}) -> elements, for a PaymentIntent
 *       (pi_..._secret_...) or, in setup mode, a SetupIntent (seti_..._secret_...)
 *     elements.create('payment') -> element: mount(), unmount(), destroy(),
 *       on(), off(), update(), focus(), clear()
 *     elements.getElement('payment'), elements.submit(), elements.update()
 *   stripe.confirmPayment({elements, clientSecret, confirmParams, redirect})
 *       -> {paymentIntent} | {error}; with redirect 'always', success goes
 *       to return_url?payment_intent=&payment_intent_client_secret=
 *       &redirect_status=succeeded
 *   stripe.confirmSetup({elements, clientSecret, confirmParams, redirect})
 *       -> {setupIntent} | {error}; with redirect 'always', success goes to
 *       return_url?setup_intent=&setup_intent_client_secret=
 *       &redirect_status=succeeded
 *   stripe.handleNextAction({clientSecret}), for either kind of intent
 *   stripe.retrievePaymentIntent(clientSecret)
 *   stripe.retrieveSetupIntent(clientSecret)
 *
 * confirmParams: return_url, payment_method_data.billing_details. A
 * confirmation creates the PaymentMethod from the Payment Element, confirms
 * the intent (use_stripe_sdk) and, when 3-D Secure is required, shows the
 * dialog. A redirect_to_url next action (an intent confirmed by a server
 * with a return_url) is followed by confirmPayment/confirmSetup, through the
 * sandbox's 3-D Secure page back to the return_url; handleNextAction shows
 * the dialog for it.
 *
 * It talks to the sandbox like Stripe.js talks to Stripe: form-encoded
 * requests carrying the publishable key (and the client secret), which need
 * no CORS preflight. It never logs anything, card numbers least of all.
 */
(function () {
  'use strict';

  // The API is served by the same sandbox as this script.
  const script = document.currentScript ||
    document.querySelector('script[src*="/js.stripe.com/v3"]');
  const scriptUrl = new URL(script.src);
  const API_BASE = scriptUrl.origin +
    scriptUrl.pathname.replace(/\/js\.stripe\.com\/v3\/?$/, '');

  const SUCCESSFUL = ['succeeded', 'processing', 'requires_capture'];
  // What Stripe.js tells customers when 3-D Secure fails.
  const AUTHENTICATION_FAILED = 'We are unable to authenticate your payment ' +
    'method. Please choose a different payment method and try again.';

  class IntegrationError extends Error {
    constructor(message) {
      super(message);
      this.name = 'IntegrationError';
    }
  }

  // Stripe's form encoding: a[b]=c, a[0]=d.
  function encode(params, prefix, pairs = []) {
    for (const [name, value] of Object.entries(params)) {
      if (value === undefined || value === null) continue;
      const key = prefix ? `${prefix}[${name}]` : name;
      if (typeof value === 'object') encode(value, key, pairs);
      else pairs.push(`${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
    }
    return pairs.join('&');
  }

  async function request(method, path, params) {
    const query = encode(params);
    const init = method === 'GET' ? {method} : {
      method,
      headers: {'Content-Type': 'application/x-www-form-urlencoded'},
      body: query,
    };
    let response;
    try {
      response = await fetch(API_BASE + path + (method === 'GET' ? `?${query}` : ''), init);
    } catch (e) {
      return {error: {type: 'api_connection_error',
                      message: 'Could not reach the Stripe sandbox.'}};
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      return {error: body.error || {type: 'api_error',
                                    message: `Unexpected HTTP ${response.status}.`}};
    }
    return {data: body};
  }

  // What differs between the two kinds of intent, for the calls below.
  const KINDS = {
    pi: {
      name: 'PaymentIntent', path: 'payment_intents', object: 'payment_intent',
      resultKey: 'paymentIntent', lastError: 'last_payment_error',
      authenticationFailure: 'payment_intent_authentication_failure',
    },
    seti: {
      name: 'SetupIntent', path: 'setup_intents', object: 'setup_intent',
      resultKey: 'setupIntent', lastError: 'last_setup_error',
      authenticationFailure: 'setup_intent_authentication_failure',
    },
  };

  // {kind, id} of an intent's client secret; `expected`: 'pi' or 'seti' only.
  function parseClientSecret(clientSecret, expected) {
    const match = /^((pi|seti)_[A-Za-z0-9]+)_secret_/.exec(clientSecret || '');
    if (!match || (expected && match[2] !== expected)) {
      const what = expected ? `a ${KINDS[expected].name}` : 'a PaymentIntent or SetupIntent';
      throw new IntegrationError(`Invalid value for clientSecret: expected ${what} client secret.`);
    }
    return {kind: KINDS[match[2]], id: match[1]};
  }

  // --- Card reading and validation, with Stripe.js's codes and messages ---

  function validationError(code, message, field) {
    return {type: 'validation_error', code, message, param: field};
  }

  function luhnValid(digits) {
    let sum = 0;
    for (let i = 0; i < digits.length; i++) {
      let d = Number(digits[digits.length - 1 - i]);
      if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
      sum += d;
    }
    return sum % 10 === 0;
  }

  function readCard(values) {
    const number = values.number.replace(/[\s-]/g, '');
    const amex = /^3[47]/.test(number);
    if (!number) return {error: validationError('incomplete_number', 'Your card number is incomplete.', 'number')};
    if (!/^\d+$/.test(number) || number.length > 19) {
      return {error: validationError('invalid_number', 'Your card number is invalid.', 'number')};
    }
    if (number.length < (amex ? 15 : 16)) {
      return {error: validationError('incomplete_number', 'Your card number is incomplete.', 'number')};
    }
    if (!luhnValid(number)) return {error: validationError('invalid_number', 'Your card number is invalid.', 'number')};

    const expiry = values.expiry.replace(/\D/g, '');
    if (expiry.length !== 4 && expiry.length !== 6) {
      return {error: validationError('incomplete_expiry', "Your card's expiration date is incomplete.", 'expiry')};
    }
    const month = Number(expiry.slice(0, 2));
    const year = expiry.length === 4 ? 2000 + Number(expiry.slice(2)) : Number(expiry.slice(2));
    const now = new Date();
    if (month < 1 || month > 12) {
      return {error: validationError('invalid_expiry_month', "Your card's expiration month is invalid.", 'expiry')};
    }
    if (year < now.getFullYear()) {
      return {error: validationError('invalid_expiry_year_past', "Your card's expiration year is in the past.", 'expiry')};
    }
    if (year === now.getFullYear() && month < now.getMonth() + 1) {
      return {error: validationError('invalid_expiry_month_past', "Your card's expiration date is in the past.", 'expiry')};
    }
    if (year > now.getFullYear() + 50) {
      return {error: validationError('invalid_expiry_year', "Your card's expiration year is invalid.", 'expiry')};
    }

    const cvc = values.cvc.trim();
    if (!/^\d*$/.test(cvc)) return {error: validationError('invalid_cvc', "Your card's security code is invalid.", 'cvc')};
    if (cvc.length < (amex ? 4 : 3)) {
      return {error: validationError('incomplete_cvc', "Your card's security code is incomplete.", 'cvc')};
    }
    return {card: {number, exp_month: month, exp_year: year, cvc}};
  }

  // --- The Payment Element ---

  const FIELDS = [
    // name, label, placeholder, autocomplete
    ['number', 'Card number', '1234 1234 1234 1234', 'cc-number'],
    ['expiry', 'Expiration date', 'MM / YY', 'cc-exp'],
    ['cvc', 'CVC', 'CVC', 'cc-csc'],
  ];
  let elementCount = 0;

  class PaymentElement {
    constructor() {
      this._handlers = {};
      this._root = null;
      this._inputs = null;
    }

    mount(target) {
      const parent = typeof target === 'string' ? document.querySelector(target) : target;
      if (!(parent instanceof window.Element)) {
        throw new IntegrationError('Invalid DOM element. Make sure to call mount() with ' +
                                   'a valid DOM element or selector.');
      }
      if (this._root) {
        throw new IntegrationError('This Element is already mounted. Use `unmount()` to ' +
                                   'unmount the Element before re-mounting.');
      }
      const prefix = `stripe-sandbox-${++elementCount}`;
      const root = document.createElement('div');
      root.className = 'StripeElement stripe-sandbox-payment-element';
      this._inputs = {};
      for (const [name, label, placeholder, autocomplete] of FIELDS) {
        const row = document.createElement('div');
        row.style.marginBottom = '0.75em';
        const labelEl = document.createElement('label');
        labelEl.htmlFor = `${prefix}-${name}`;
        labelEl.textContent = label;
        labelEl.style.display = 'block';
        const input = document.createElement('input');
        Object.assign(input, {id: `${prefix}-${name}`, type: 'text', placeholder, autocomplete,
                              inputMode: 'numeric', spellcheck: false});
        input.addEventListener('input', () => {
          input.removeAttribute('aria-invalid');
          this._emit('change', this._changeEvent());
        });
        input.addEventListener('focus', () => this._emit('focus', {elementType: 'payment'}));
        input.addEventListener('blur', () => this._emit('blur', {elementType: 'payment'}));
        row.append(labelEl, input);
        root.append(row);
        this._inputs[name] = input;
      }
      const note = document.createElement('p');
      note.textContent = 'Stripe sandbox: test cards only.';
      note.style.fontSize = '0.8em';
      root.append(note);
      parent.append(root);
      this._root = root;
      // Like Stripe.js: 'ready' comes asynchronously, after mount() returns.
      setTimeout(() => this._emit('ready', {elementType: 'payment'}), 0);
      return this;
    }

    unmount() {
      if (this._root) this._root.remove();
      this._root = null;
      this._inputs = null;
      return this;
    }

    destroy() {
      this.unmount();
      this._handlers = {};
    }

    on(event, handler) {
      (this._handlers[event] = this._handlers[event] || []).push(handler);
      return this;
    }

    off(event, handler) {
      this._handlers[event] = (this._handlers[event] || []).filter(h => h !== handler);
      return this;
    }

    update() { return this; }

    focus() { if (this._inputs) this._inputs.number.focus(); }

    clear() {
      if (!this._inputs) return;
      for (const input of Object.values(this._inputs)) input.value = '';
      this._emit('change', this._changeEvent());
    }

    _emit(event, payload) {
      for (const handler of this._handlers[event] || []) handler(payload);
    }

    _values() {
      const values = {};
      for (const [name, input] of Object.entries(this._inputs)) values[name] = input.value;
      return values;
    }

    _changeEvent() {
      const values = this._values();
      return {elementType: 'payment', collapsed: false, value: {type: 'card'},
              empty: Object.values(values).every(v => !v.trim()),
              complete: !readCard(values).error};
    }

    _read() {
      if (!this._inputs) {
        throw new IntegrationError('The Payment Element is not mounted.');
      }
      const result = readCard(this._values());
      if (result.error) this._inputs[result.error.param].setAttribute('aria-invalid', 'true');
      return result;
    }
  }

  // --- 3-D Secure dialog ---

  function threeDSecureDialog() {
    return new Promise(resolve => {
      const overlay = document.createElement('div');
      Object.assign(overlay.style, {
        position: 'fixed', inset: '0', background: 'rgba(0, 0, 0, 0.5)',
        display: 'flex', alignItems: 'center', justifyContent: 'center',
        zIndex: '2147483647',
      });
      const dialog = document.createElement('div');
      const headingId = `stripe-sandbox-3ds-${++elementCount}`;
      dialog.setAttribute('role', 'dialog');
      dialog.setAttribute('aria-modal', 'true');
      dialog.setAttribute('aria-labelledby', headingId);
      Object.assign(dialog.style, {
        background: '#fff', color: '#000', padding: '1.5em', borderRadius: '8px',
        maxWidth: '24em', fontFamily: 'sans-serif',
      });
      const heading = document.createElement('h2');
      heading.id = headingId;
      heading.textContent = '3D Secure authentication';
      const text = document.createElement('p');
      text.textContent = 'Stripe sandbox: your bank asks you to authenticate this test payment.';
      // As on Stripe's own test page, the two outcomes look different: completing is the
      // filled primary button, failing an outlined one in red (the 3-D Secure page too:
      // stripe_js.py).
      const button = {font: 'inherit', fontWeight: 'bold', padding: '0.6em 1.2em',
                      borderRadius: '6px', cursor: 'pointer', margin: '0.25em 0.5em 0.25em 0'};
      const complete = document.createElement('button');
      complete.type = 'button';
      complete.textContent = 'Complete authentication';
      Object.assign(complete.style, button, {background: '#3d32c8', color: '#fff',
                                             border: '2px solid #3d32c8'});
      const fail = document.createElement('button');
      fail.type = 'button';
      fail.textContent = 'Fail authentication';
      Object.assign(fail.style, button, {background: '#fff', color: '#a3122e',
                                         border: '2px solid #a3122e'});
      dialog.append(heading, text, complete, fail);
      overlay.append(dialog);
      document.body.append(overlay);

      const previousFocus = document.activeElement;
      const close = success => {
        overlay.remove();
        if (previousFocus && previousFocus.focus) previousFocus.focus();
        resolve(success);
      };
      complete.addEventListener('click', () => close(true));
      fail.addEventListener('click', () => close(false));
      // Closing the challenge, as with the real one, fails it.
      dialog.addEventListener('keydown', event => {
        if (event.key === 'Escape') close(false);
      });
      complete.focus();
    });
  }

  // --- Stripe() ---

  function Stripe(publishableKey) {
    if (typeof publishableKey !== 'string' || !publishableKey.startsWith('pk_')) {
      throw new IntegrationError('Invalid API Key provided: expected a publishable key (pk_...).');
    }
    const key = publishableKey;

    const retrieve = (kind, id, clientSecret) => request(
      'GET', `/v1/${kind.path}/${id}`, {key, client_secret: clientSecret});

    function failure(kind, intent) {
      const error = intent[kind.lastError] || {};
      return {error: {
        type: error.type || 'card_error',
        code: error.code,
        decline_code: error.decline_code,
        message: error.code === kind.authenticationFailure
          ? AUTHENTICATION_FAILED : error.message,
        doc_url: error.doc_url,
        charge: error.charge,
        payment_method: error.payment_method,
        [kind.object]: intent,
      }};
    }

    function redirectTo(url) {
      window.location.assign(url);
      return new Promise(() => {});  // the page is going away
    }

    // Runs 3-D Secure when the intent asks for it, then tells success
    // ({paymentIntent} or {setupIntent}) from failure ({error}). With
    // followRedirect, a redirect_to_url action is followed instead.
    async function settle(kind, intent, clientSecret, followRedirect = false) {
      if (intent.status === 'requires_action') {
        const action = intent.next_action || {};
        if (followRedirect && action.type === 'redirect_to_url') {
          return redirectTo(action.redirect_to_url.url);
        }
        const success = await threeDSecureDialog();
        const authenticated = await request(
          'POST', `/v1/${kind.path}/${intent.id}/_authenticate`,
          {key, client_secret: clientSecret, success});
        if (authenticated.error) return {error: authenticated.error};
        const reread = await retrieve(kind, intent.id, clientSecret);
        if (reread.error) return {error: reread.error};
        intent = reread.data;
      }
      if (intent.status === 'requires_payment_method' && intent[kind.lastError]) {
        return failure(kind, intent);
      }
      return {[kind.resultKey]: intent};
    }

    // confirmPayment and confirmSetup.
    async function confirm(expected, call, {elements, clientSecret, confirmParams = {},
                                            redirect = 'always'} = {}) {
      clientSecret = clientSecret || (elements && elements._clientSecret);
      const {kind, id} = parseClientSecret(clientSecret, expected);
      const returnUrl = confirmParams.return_url;
      if (redirect !== 'if_required' && !returnUrl) {
        throw new IntegrationError(`stripe.${call}(): the \`confirmParams.return_url\` ` +
                                   "argument is required unless passing `redirect: 'if_required'`");
      }
      const element = elements && elements.getElement('payment');
      if (!element) throw new IntegrationError(`stripe.${call}(): no Payment Element was created.`);
      const card = element._read();
      if (card.error) return {error: card.error};

      const paymentMethodData = confirmParams.payment_method_data || {};
      const created = await request('POST', '/v1/payment_methods', {
        key, type: 'card', card: card.card, billing_details: paymentMethodData.billing_details,
      });
      if (created.error) return {error: created.error};
      const confirmed = await request('POST', `/v1/${kind.path}/${id}/confirm`, {
        key, client_secret: clientSecret, payment_method: created.data.id,
        return_url: returnUrl, use_stripe_sdk: true,
      });
      if (confirmed.error) return {error: confirmed.error};

      const result = await settle(kind, confirmed.data, clientSecret, true);
      if (result.error || redirect === 'if_required' ||
          !SUCCESSFUL.includes(result[kind.resultKey].status)) {
        return result;
      }
      const target = new URL(returnUrl, window.location.href);
      target.searchParams.set(kind.object, id);
      target.searchParams.set(`${kind.object}_client_secret`, clientSecret);
      target.searchParams.set('redirect_status', 'succeeded');
      return redirectTo(target.toString());
    }

    return {
      elements(options = {}) {
        let paymentElement = null;
        return {
          _clientSecret: options.clientSecret,
          create(type) {
            if (type !== 'payment') {
              throw new IntegrationError(`The Stripe sandbox only has the 'payment' Element, not '${type}'.`);
            }
            if (paymentElement) throw new IntegrationError('Can only create one Element of type payment.');
            paymentElement = new PaymentElement();
            return paymentElement;
          },
          getElement(type) { return type === 'payment' ? paymentElement : null; },
          async submit() {
            const result = paymentElement ? paymentElement._read() : {};
            return result.error ? {error: result.error} : {};
          },
          update() {},
          async fetchUpdates() { return {}; },
        };
      },

      confirmPayment(options) { return confirm('pi', 'confirmPayment', options); },

      confirmSetup(options) { return confirm('seti', 'confirmSetup', options); },

      async handleNextAction({clientSecret} = {}) {
        const {kind, id} = parseClientSecret(clientSecret);
        const retrieved = await retrieve(kind, id, clientSecret);
        if (retrieved.error) return {error: retrieved.error};
        return settle(kind, retrieved.data, clientSecret);
      },

      async retrievePaymentIntent(clientSecret) {
        const {kind, id} = parseClientSecret(clientSecret, 'pi');
        const retrieved = await retrieve(kind, id, clientSecret);
        return retrieved.error ? {error: retrieved.error} : {paymentIntent: retrieved.data};
      },

      async retrieveSetupIntent(clientSecret) {
        const {kind, id} = parseClientSecret(clientSecret, 'seti');
        const retrieved = await retrieve(kind, id, clientSecret);
        return retrieved.error ? {error: retrieved.error} : {setupIntent: retrieved.data};
      },
    };
  }

  window.Stripe = Stripe;
})();
