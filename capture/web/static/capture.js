// What every page shares; each page's own script (inbox.js, message.js,
// account.js) builds on it.  No framework, no build step.
"use strict";

const Capture = {
  /** The CSRF token of this browser, for requests that change state. */
  csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },

  /** POST a form-encoded body with the CSRF token; resolves to the response. */
  post(url, fields = {}) {
    const body = new URLSearchParams(fields);
    body.set("csrf", Capture.csrf());
    return fetch(url, {
      method: "POST", body, credentials: "same-origin",
      headers: { "X-Capture-CSRF": Capture.csrf(), Accept: "application/json" },
    });
  },

  /** A human size: 1.2 KB, 34 KB, 2.1 MB. */
  size(octets) {
    if (octets < 1000) return `${octets} B`;
    if (octets < 1e6) return `${(octets / 1e3).toFixed(octets < 1e4 ? 1 : 0)} KB`;
    return `${(octets / 1e6).toFixed(1)} MB`;
  },

  /** Whether a key press belongs to a text field (then shortcuts stay off). */
  typing(event) {
    const t = event.target;
    return t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  },
};
window.Capture = Capture;
