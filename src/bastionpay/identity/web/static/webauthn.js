// WebAuthn ceremonies for the identity pages (issue 5, I3). Served from this origin: the pages'
// Content-Security-Policy (script-src 'self') allows no inline script.
//
// The server sends PublicKeyCredential options as JSON with binary fields in base64url (the
// `webauthn` package's options_to_json); the browser API wants ArrayBuffers, and its answer is
// turned back into base64url JSON for the server. Requests carry the page's CSRF token in the
// X-CSRF-Token header (the <meta name="bp-csrf"> tag), and are same-origin only.
(function () {
  "use strict";

  function base64urlToBuffer(text) {
    var padded = text.replace(/-/g, "+").replace(/_/g, "/");
    while (padded.length % 4 !== 0) {
      padded += "=";
    }
    var binary = window.atob(padded);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function bufferToBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return window.btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="bp-csrf"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function postJson(url, body) {
    return window.fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          var message = data && data.error && data.error.message;
          throw new Error(message || "The request failed. Try again.");
        }
        return data;
      });
    });
  }

  function showError(message) {
    var box = document.getElementById("bp-webauthn-error");
    if (box) {
      box.textContent = message; // textContent: never parsed as HTML
      box.hidden = false;
    }
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      var copy = Object.assign({}, item);
      copy.id = base64urlToBuffer(item.id);
      return copy;
    });
  }

  function creationOptions(publicKey) {
    var options = Object.assign({}, publicKey);
    options.challenge = base64urlToBuffer(publicKey.challenge);
    options.user = Object.assign({}, publicKey.user, { id: base64urlToBuffer(publicKey.user.id) });
    options.excludeCredentials = descriptors(publicKey.excludeCredentials);
    return options;
  }

  function requestOptions(publicKey) {
    var options = Object.assign({}, publicKey);
    options.challenge = base64urlToBuffer(publicKey.challenge);
    options.allowCredentials = descriptors(publicKey.allowCredentials);
    return options;
  }

  function registrationJson(credential) {
    var response = credential.response;
    return {
      id: credential.id,
      rawId: bufferToBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: {
        clientDataJSON: bufferToBase64url(response.clientDataJSON),
        attestationObject: bufferToBase64url(response.attestationObject),
        transports: typeof response.getTransports === "function" ? response.getTransports() : []
      }
    };
  }

  function assertionJson(credential) {
    var response = credential.response;
    var json = {
      id: credential.id,
      rawId: bufferToBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: {
        clientDataJSON: bufferToBase64url(response.clientDataJSON),
        authenticatorData: bufferToBase64url(response.authenticatorData),
        signature: bufferToBase64url(response.signature)
      }
    };
    if (response.userHandle) {
      json.response.userHandle = bufferToBase64url(response.userHandle);
    }
    return json;
  }

  function go(target) {
    // The server only ever answers a same-origin path; refuse anything else anyway.
    if (typeof target === "string" && target.charAt(0) === "/" && target.charAt(1) !== "/") {
      window.location.assign(target);
    }
  }

  function register(button) {
    var nameInput = document.getElementById(button.getAttribute("data-name-input") || "");
    var next = button.getAttribute("data-next") || "";
    button.disabled = true;
    postJson(button.getAttribute("data-options"), {})
      .then(function (start) {
        var publicKey = creationOptions(start.publicKey);
        return navigator.credentials.create({ publicKey: publicKey }).then(function (credential) {
          return postJson(button.getAttribute("data-finish"), {
            challenge_id: start.challenge_id,
            credential: registrationJson(credential),
            name: nameInput ? nameInput.value : "",
            next: next
          });
        });
      })
      .then(function (done) { go(done.redirect); })
      .catch(function (error) { showError(error.message || String(error)); })
      .then(function () { button.disabled = false; });
  }

  function authenticate(button) {
    var next = button.getAttribute("data-next") || "";
    button.disabled = true;
    postJson(button.getAttribute("data-options"), {})
      .then(function (start) {
        var publicKey = requestOptions(start.publicKey);
        return navigator.credentials.get({ publicKey: publicKey }).then(function (credential) {
          return postJson(button.getAttribute("data-finish"), {
            challenge_id: start.challenge_id,
            credential: assertionJson(credential),
            next: next
          });
        });
      })
      .then(function (done) { go(done.redirect); })
      .catch(function (error) { showError(error.message || String(error)); })
      .then(function () { button.disabled = false; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var supported = Boolean(window.PublicKeyCredential && navigator.credentials);
    var registerButton = document.getElementById("bp-webauthn-register");
    var authenticateButton = document.getElementById("bp-webauthn-authenticate");
    [registerButton, authenticateButton].forEach(function (button) {
      if (button && !supported) {
        button.disabled = true;
        showError("This browser does not support security keys.");
      }
    });
    if (registerButton && supported) {
      registerButton.addEventListener("click", function () { register(registerButton); });
    }
    if (authenticateButton && supported) {
      authenticateButton.addEventListener("click", function () { authenticate(authenticateButton); });
    }
  });
}());
