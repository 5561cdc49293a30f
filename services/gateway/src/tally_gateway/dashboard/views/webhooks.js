// #/webhooks: the tenant's webhook endpoints: add one (its signing secret shown once), enable
// or disable, delete, and each one's recent deliveries with a replay. Read on opening and after
// each change; deliveries when their section is opened, and again on Refresh.

import { ApiError, request } from "../api.js";
import { badge, focusHeading, h, setBadge, setText } from "../dom.js";
import { syncRows } from "../rows.js";
import { WEBHOOK_EVENTS, deliveryRow, endpointState, readEndpointForm } from "../webhooks.js";

const DELIVERIES_SHOWN = 20;

export function mount(root) {
  const rows = new Map(); // webhook_id -> row parts
  let disposed = false;

  const urlInput = h("input", {
    id: "webhook-url",
    name: "url",
    type: "url",
    inputmode: "url",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "https://example.com/tally-events",
    required: true,
    "aria-describedby": "webhook-url-hint",
  });
  const eventBoxes = WEBHOOK_EVENTS.map((event) =>
    h(
      "label",
      { class: "check" },
      h("input", { type: "checkbox", name: "events", value: event, checked: event === "job.completed" }),
      event,
    ),
  );
  const descriptionInput = h("input", {
    id: "webhook-description",
    name: "description",
    type: "text",
    autocomplete: "off",
    maxlength: "200",
  });
  const formMessage = h("p", { id: "webhook-form-message", class: "form-message", role: "alert" });
  const addButton = h("button", { type: "submit", class: "button button-primary" }, "Add endpoint");
  const form = h(
    "form",
    { class: "webhook-form", novalidate: true, "aria-labelledby": "webhook-add-title" },
    h(
      "div",
      { class: "field field-wide" },
      h("label", { for: "webhook-url" }, "URL"),
      urlInput,
      h("p", { id: "webhook-url-hint", class: "hint" }, "Tally POSTs a signed JSON event to it."),
    ),
    h("fieldset", { class: "field events-field" }, h("legend", null, "Events"), eventBoxes),
    h(
      "div",
      { class: "field field-wide" },
      h("label", { for: "webhook-description" }, "Description (optional)"),
      descriptionInput,
    ),
    h("div", { class: "field field-action" }, addButton),
    formMessage,
  );

  const secretValue = h("input", {
    id: "webhook-secret-value",
    type: "text",
    readonly: true,
    spellcheck: "false",
    "aria-label": "Signing secret",
  });
  const secretFor = h("span");
  const copyButton = h("button", { type: "button", class: "button button-small" }, "Copy");
  const copyMessage = h("span", { class: "muted", role: "status" });
  const secretDone = h("button", { type: "button", class: "button button-small button-quiet" }, "I have saved it");
  const secretBox = h(
    "section",
    { id: "webhook-secret", class: "card secret", "aria-labelledby": "webhook-secret-title", hidden: true },
    h("h2", { id: "webhook-secret-title" }, "Signing secret"),
    h("p", null, "For ", secretFor, ". ", h("strong", null, "Copy it now: it is not shown again."), " It signs every delivery (the webhook-signature header, as Standard Webhooks has it)."),
    h("div", { class: "secret-line" }, secretValue, copyButton, copyMessage),
    secretDone,
  );

  const problem = h("div", { id: "webhooks-error", class: "problem", role: "alert" });
  const summary = h("p", { id: "webhooks-summary", class: "muted", "aria-live": "polite" });
  const list = h("ul", { id: "webhooks-list", class: "webhook-list", "aria-label": "Endpoints" });
  const empty = h("p", { id: "webhooks-empty", class: "empty", hidden: true }, "No webhook endpoints yet.");

  root.append(
    h(
      "section",
      { class: "view view-webhooks", "aria-labelledby": "webhooks-title" },
      h("div", { class: "view-head" }, h("h1", { id: "webhooks-title" }, "Webhooks"), summary),
      h(
        "section",
        { class: "card webhook-add", "aria-labelledby": "webhook-add-title" },
        h("h2", { id: "webhook-add-title" }, "Add an endpoint"),
        form,
      ),
      secretBox,
      problem,
      list,
      empty,
    ),
  );

  /** The API's own message where it gave one (a refused URL says why). */
  function say(what, error) {
    problem.replaceChildren(h("p", null, `${what}: ${error.message}`));
  }

  async function load() {
    try {
      const { data } = await request("/v1/webhooks");
      if (disposed) return;
      problem.replaceChildren();
      render(data.webhooks ?? []);
    } catch (error) {
      if (!disposed) say("The webhooks could not be loaded", error);
    }
  }

  function render(endpoints) {
    syncRows(list, rows, endpoints, {
      key: (endpoint) => endpoint.webhook_id,
      create: createRow,
      update: updateRow,
      node: (row) => row.li,
    });
    empty.hidden = endpoints.length > 0;
    setText(summary, endpoints.length === 1 ? "1 endpoint" : `${endpoints.length} endpoints`);
  }

  function createRow(endpoint) {
    const path = `/v1/webhooks/${encodeURIComponent(endpoint.webhook_id)}`;
    const row = {
      endpoint,
      url: h("span", { class: "webhook-url" }),
      badge: badge("enabled"),
      reason: h("span", { class: "muted" }),
      failing: h("p", { class: "webhook-failing" }),
      events: h("p", { class: "webhook-events" }),
      description: h("p", { class: "muted" }),
      toggle: h("button", { type: "button", class: "button button-small" }),
      remove: h("button", { type: "button", class: "button button-small button-danger" }, "Delete"),
      deliveries: h("tbody"),
      deliveriesEmpty: h("p", { class: "muted", hidden: true }, "No deliveries yet."),
      deliveriesProblem: h("div", { class: "problem", role: "alert" }),
      refresh: h("button", { type: "button", class: "button button-small button-quiet" }, "Refresh"),
      details: h("details", { class: "deliveries" }),
      li: h("li", { class: "card webhook", "data-webhook-id": endpoint.webhook_id }),
    };
    const table = h(
      "table",
      { class: "deliveries-table" },
      h("caption", null, `The ${DELIVERIES_SHOWN} most recent deliveries, newest first`),
      h(
        "thead",
        null,
        h("tr", null, ["Event", "Status", "Attempts", "Created", ""].map((name) => h("th", { scope: "col" }, name))),
      ),
      row.deliveries,
    );
    row.details.append(
      h("summary", null, "Recent deliveries"),
      h("div", { class: "deliveries-body" }, row.deliveriesProblem, h("div", { class: "table-wrap" }, table), row.deliveriesEmpty, row.refresh),
    );
    row.li.append(
      h("div", { class: "webhook-head" }, row.url, h("span", { class: "webhook-state" }, row.badge, row.reason)),
      row.events,
      row.failing,
      row.description,
      h("div", { class: "actions" }, row.toggle, row.remove),
      row.details,
    );

    row.toggle.addEventListener("click", () =>
      act(row.toggle, "The endpoint could not be changed", () =>
        request(path, { method: "PATCH", json: { enabled: !row.endpoint.enabled } }),
      ),
    );
    row.remove.addEventListener("click", () => {
      if (!confirm(`Delete the webhook endpoint ${row.endpoint.url}? Its deliveries go with it.`)) return;
      act(row.remove, "The endpoint could not be deleted", () => request(path, { method: "DELETE" }));
    });
    row.details.addEventListener("toggle", () => {
      if (row.details.open) loadDeliveries(row, path);
    });
    row.refresh.addEventListener("click", () => loadDeliveries(row, path));
    return row;
  }

  function updateRow(row, endpoint) {
    row.endpoint = endpoint;
    setText(row.url, endpoint.url);
    const state = endpointState(endpoint);
    setBadge(row.badge, state.status, state.status);
    setText(row.reason, state.reason);
    setText(row.failing, state.failing);
    row.failing.hidden = !state.failing;
    setText(row.events, `Events: ${(endpoint.events ?? []).join(", ")}`);
    setText(row.description, endpoint.description ?? "");
    row.description.hidden = !endpoint.description;
    setText(row.toggle, endpoint.enabled ? "Disable" : "Enable");
  }

  /** One change through the API, then the list again; its button is busy meanwhile. */
  async function act(button, failure, call) {
    if (button.disabled) return;
    button.disabled = true;
    try {
      await call();
      if (disposed) return;
      problem.replaceChildren();
      await load();
    } catch (error) {
      if (disposed) return;
      if (error instanceof ApiError && error.status === 404) await load(); // gone already
      else say(failure, error);
    } finally {
      button.disabled = false;
    }
  }

  async function loadDeliveries(row, path) {
    row.refresh.disabled = true;
    try {
      const { data } = await request(`${path}/deliveries?limit=${DELIVERIES_SHOWN}`);
      if (disposed) return;
      row.deliveriesProblem.replaceChildren();
      const deliveries = data.deliveries ?? [];
      row.deliveries.replaceChildren(...deliveries.map((d) => deliveryLine(row, path, d)));
      row.deliveriesEmpty.hidden = deliveries.length > 0;
    } catch (error) {
      if (disposed) return;
      row.deliveriesProblem.replaceChildren(h("p", null, `The deliveries could not be loaded: ${error.message}`));
    } finally {
      row.refresh.disabled = false;
    }
  }

  function deliveryLine(row, path, delivery) {
    const shown = deliveryRow(delivery);
    const replay = h("button", { type: "button", class: "button button-small" }, "Replay");
    replay.addEventListener("click", async () => {
      replay.disabled = true;
      try {
        await request(`${path}/deliveries/${encodeURIComponent(delivery.delivery_id)}/replay`, { method: "POST" });
        if (disposed) return;
        await loadDeliveries(row, path);
      } catch (error) {
        if (disposed) return;
        row.deliveriesProblem.replaceChildren(h("p", null, `The delivery could not be replayed: ${error.message}`));
        replay.disabled = false;
      }
    });
    return h(
      "tr",
      { "data-delivery-id": delivery.delivery_id },
      h("td", { "data-label": "Event" }, shown.event),
      h("td", { "data-label": "Status" }, badge(shown.status)),
      h(
        "td",
        { "data-label": "Attempts" },
        h(
          "div",
          null,
          h("ol", { class: "attempts" }, shown.attempts.map((line) => h("li", null, line))),
          shown.next ? h("p", { class: "muted" }, shown.next) : null,
        ),
      ),
      h("td", { "data-label": "Created" }, h("time", { datetime: delivery.created_at }, shown.created)),
      h("td", null, replay),
    );
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (addButton.disabled) return;
    const reading = readEndpointForm(new FormData(form).entries());
    if (!reading.ok) {
      setText(formMessage, reading.message);
      (reading.field === "url" ? urlInput : eventBoxes[0].querySelector("input"))?.focus();
      return;
    }
    addButton.disabled = true;
    setText(formMessage, "");
    try {
      const { data } = await request("/v1/webhooks", { method: "POST", json: reading.body });
      if (disposed) return;
      showSecret(data.url, data.secret);
      urlInput.value = "";
      descriptionInput.value = "";
      await load();
    } catch (error) {
      if (disposed) return;
      setText(formMessage, `The endpoint was not added: ${error.message}`);
      if (error instanceof ApiError && error.code === "invalid_webhook_url") urlInput.focus();
    } finally {
      addButton.disabled = false;
    }
  });

  function showSecret(url, secret) {
    setText(secretFor, url);
    secretValue.value = secret;
    setText(copyMessage, "");
    secretBox.hidden = false;
    secretValue.focus();
    secretValue.select();
  }

  secretValue.addEventListener("focus", () => secretValue.select());
  copyButton.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secretValue.value);
      setText(copyMessage, "Copied");
    } catch {
      // No clipboard here (an insecure origin, or refused): the secret is selected for Ctrl+C.
      secretValue.focus();
      setText(copyMessage, "Selected: press Ctrl+C (⌘C) to copy");
    }
  });
  secretDone.addEventListener("click", () => {
    secretValue.value = ""; // not kept in the page once read
    secretBox.hidden = true;
    urlInput.focus();
  });

  focusHeading(root);
  load();

  return {
    dispose() {
      disposed = true;
    },
  };
}
