// The webhooks page's pure parts: the events an endpoint can take, the add form read into a
// request body, and how an endpoint's state and a delivery's attempts read on the page.

import { formatTime } from "./dom.js";

/**
 * The events an endpoint can subscribe to, in the order the form lists them: the dashboard's copy
 * of tally_contracts.webhooks.EVENT_TYPES (a gateway unit test keeps the two the same).
 */
export const WEBHOOK_EVENTS = Object.freeze([
  "job.completed",
  "job.failed",
  "job.cancelled",
  "session.completed",
]);

/**
 * @typedef {{url: string, events: string[], description?: string}} NewEndpoint
 * @typedef {{ok: true, body: NewEndpoint} | {ok: false, field: "url" | "events", message: string}} FormReading
 */

/**
 * The add form's fields (a FormData's entries, or any pairs) as the POST body, or what to fix.
 * Events keep WEBHOOK_EVENTS' order, once each; an unknown one is ignored. The URL is checked
 * for shape only (absolute, http or https): which hosts are allowed is the API's to say.
 * @param {Iterable<[string, unknown]>} entries
 * @returns {FormReading}
 */
export function readEndpointForm(entries) {
  let url = "";
  let description = "";
  const chosen = new Set();
  for (const [name, value] of entries) {
    if (typeof value !== "string") continue;
    if (name === "url") url = value.trim();
    else if (name === "description") description = value.trim();
    else if (name === "events") chosen.add(value);
  }
  if (!url) return { ok: false, field: "url", message: "Enter the URL Tally should send events to" };
  if (!isWebURL(url)) {
    return { ok: false, field: "url", message: "Enter a whole URL that starts with https:// (or http://)" };
  }
  const events = WEBHOOK_EVENTS.filter((event) => chosen.has(event));
  if (events.length === 0) return { ok: false, field: "events", message: "Choose at least one event" };
  /** @type {NewEndpoint} */
  const body = { url, events };
  if (description) body.description = description;
  return { ok: true, body };
}

function isWebURL(text) {
  try {
    const parsed = new URL(text);
    return (parsed.protocol === "https:" || parsed.protocol === "http:") && parsed.hostname !== "";
  } catch {
    return false;
  }
}

/**
 * An endpoint's state: `status` for its badge ("enabled" or "disabled"), the reason it was
 * disabled (the API's sentence; "" when enabled, or none was given), both in a sentence, and since when
 * every attempt has failed ("" while it is not failing).
 * @param {{enabled: boolean, disabled_reason?: string | null, failing_since?: string | null}} endpoint
 */
export function endpointState(endpoint) {
  const since = formatTime(endpoint.failing_since, "seconds");
  const failing = since ? `Every attempt since ${since} has failed` : "";
  if (endpoint.enabled) return { status: "enabled", reason: "", text: "Enabled", failing };
  const reason = (endpoint.disabled_reason ?? "").trim();
  return { status: "disabled", reason, text: reason ? `Disabled: ${reason}` : "Disabled", failing };
}

/**
 * @typedef {{attempt: number, at: string, status_code?: number | null, latency_ms?: number | null, error?: string | null}} Attempt
 * @typedef {{
 *   delivery_id: string, event_type: string, status: string, attempts?: Attempt[],
 *   next_attempt_at?: string | null, created_at: string,
 * }} Delivery
 */

/**
 * One attempt in a line: "Attempt 2: HTTP 503, 120 ms, upstream timed out", or "Attempt 1: no
 * answer, connection refused" when nothing answered.
 * @param {Attempt} attempt
 */
export function attemptText(attempt) {
  const parts = [attempt.status_code == null ? "no answer" : `HTTP ${attempt.status_code}`];
  if (attempt.latency_ms != null) parts.push(`${Math.round(attempt.latency_ms)} ms`);
  if (attempt.error) parts.push(attempt.error);
  return `Attempt ${attempt.attempt}: ${parts.join(", ")}`;
}

/**
 * A delivery as its row says it: the event, the status for its badge, each attempt's line
 * (oldest first), when the next attempt is due (only while it is pending), and when it was made.
 * @param {Delivery} delivery
 */
export function deliveryRow(delivery) {
  const attempts = [...(delivery.attempts ?? [])].sort((a, b) => a.attempt - b.attempt);
  const next =
    delivery.status === "pending" && delivery.next_attempt_at
      ? `Next attempt ${formatTime(delivery.next_attempt_at, "seconds")}`
      : "";
  return {
    event: delivery.event_type,
    status: delivery.status,
    attempts: attempts.length ? attempts.map(attemptText) : ["Not attempted yet"],
    next,
    created: formatTime(delivery.created_at, "seconds"),
  };
}
