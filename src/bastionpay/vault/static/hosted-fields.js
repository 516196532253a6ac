/*
 * BastionPay hosted fields (runs inside the vault's page, in an iframe on the merchant's checkout).
 *
 * The card number and CVC typed here go only to the vault's own origin (same-origin fetch to
 * /v1/payment_methods with the merchant's publishable key); the merchant's page receives the
 * resulting PaymentMethod (`pm_…`, brand, last 4, expiry) by postMessage, never the card data.
 * Messages are accepted only from the parent window at the origin the vault allowed for this key,
 * and answers are posted to that origin only (never "*").
 */
(function () {
  "use strict";

  var form = document.getElementById("bp-card-form");
  if (!form) {
    return;
  }
  var key = form.getAttribute("data-key");
  var parentOrigin = form.getAttribute("data-parent-origin");
  var fields = {
    number: document.getElementById("bp-number"),
    expMonth: document.getElementById("bp-exp-month"),
    expYear: document.getElementById("bp-exp-year"),
    cvc: document.getElementById("bp-cvc")
  };
  var errorBox = document.getElementById("bp-error");
  var busy = false;

  function post(message) {
    if (window.parent && window.parent !== window) {
      window.parent.postMessage(message, parentOrigin);
    }
  }

  function showError(text) {
    errorBox.textContent = text || "";
  }

  function clearSecrets() {
    fields.number.value = "";
    fields.cvc.value = "";
  }

  function tokenize() {
    if (busy) {
      return;
    }
    busy = true;
    showError("");
    var body = new URLSearchParams();
    body.set("type", "card");
    body.set("card[number]", fields.number.value);
    body.set("card[exp_month]", fields.expMonth.value);
    body.set("card[exp_year]", fields.expYear.value);
    body.set("card[cvc]", fields.cvc.value);
    fetch("/v1/payment_methods", {
      method: "POST",
      headers: {
        "Authorization": "Bearer " + key,
        "Content-Type": "application/x-www-form-urlencoded"
      },
      body: body.toString(),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer"
    })
      .then(function (response) {
        return response.json().then(function (json) {
          return { ok: response.ok, json: json };
        });
      })
      .then(function (result) {
        busy = false;
        if (result.ok) {
          clearSecrets();
          post({ type: "bastionpay:payment_method", paymentMethod: result.json });
        } else {
          var error = (result.json && result.json.error) || { message: "Card entry failed." };
          showError(error.message);
          post({ type: "bastionpay:error", error: error });
        }
      })
      .catch(function () {
        busy = false;
        showError("The card could not be sent. Check your connection and try again.");
        post({ type: "bastionpay:error", error: { type: "api_connection_error" } });
      });
  }

  window.addEventListener("message", function (event) {
    if (event.origin !== parentOrigin || event.source !== window.parent) {
      return; // only the embedding checkout, at the origin allowed for this key
    }
    if (event.data && event.data.type === "bastionpay:tokenize") {
      tokenize();
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    tokenize();
  });

  post({ type: "bastionpay:ready" });
})();
