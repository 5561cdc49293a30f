// #/signin: an API key, checked against the API before it is kept (in sessionStorage only).

import { AuthError, auth, request } from "../api.js";
import { focusHeading, h } from "../dom.js";

/**
 * Resolves once the browser has wholly finished loading `path` (its resource timing entry is
 * there): the answer's body can be read a moment before that, and leaving the page in that
 * moment would cut the request.
 */
function finished(path) {
  const url = new URL(path, location.href).href;
  return /** @type {Promise<void>} */ (new Promise((resolve) => {
    const done = () => {
      observer.disconnect();
      clearTimeout(fallback);
      resolve();
    };
    const observer = new PerformanceObserver(() => {
      if (performance.getEntriesByName(url).length) done();
    });
    const fallback = setTimeout(done, 1000);
    observer.observe({ type: "resource" });
    if (performance.getEntriesByName(url).length) done();
  }));
}

export function mount(root, _route, { notice, onSignedIn }) {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "current-password",
    spellcheck: "false",
    required: true,
    "aria-describedby": "api-key-hint",
  });
  const message = h("p", { id: "signin-message", class: "form-message", role: "alert" });
  const button = h("button", { type: "submit", class: "button button-primary" }, "Sign in");
  let disposed = false;

  async function submit(event) {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      message.textContent = "Enter your API key";
      input.focus();
      return;
    }
    if (button.disabled) return;
    button.disabled = true;
    message.textContent = "";
    performance.clearResourceTimings();
    try {
      await request("/v1/sessions", { key });
      if (disposed) return;
      auth.signIn(key);
      onSignedIn();
    } catch (error) {
      await finished("/v1/sessions");
      if (disposed) return;
      message.textContent =
        error instanceof AuthError
          ? "That API key was not accepted"
          : "Tally could not be reached. Check your connection and try again.";
      input.select();
      input.focus();
    } finally {
      button.disabled = false;
    }
  }

  root.append(
    h(
      "section",
      { class: "signin card", "aria-labelledby": "signin-title" },
      h("h1", { id: "signin-title" }, "Sign in to Tally"),
      h(
        "p",
        { class: "muted" },
        "Count the objects in your photos and follow every photo as it is processed.",
      ),
      h(
        "form",
        { class: "form", onsubmit: submit, novalidate: true },
        // Password managers want a username beside a password; an API key has none.
        h("input", { type: "text", name: "username", autocomplete: "username", value: "Tally API key", hidden: true, "aria-hidden": "true", tabindex: "-1" }),
        h("label", { for: "api-key" }, "API key"),
        input,
        h(
          "p",
          { id: "api-key-hint", class: "hint" },
          "Your key stays in this browser tab and is forgotten when you close it.",
        ),
        message,
        button,
      ),
    ),
  );
  if (notice) message.textContent = notice;
  focusHeading(root);
  input.focus();
  return {
    dispose() {
      disposed = true;
    },
  };
}
