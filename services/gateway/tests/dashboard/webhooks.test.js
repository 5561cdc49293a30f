// The webhooks page's add form read into a request, and what it writes for endpoints and
// deliveries.

import assert from "node:assert/strict";
import { test } from "node:test";

import { formatTime } from "../../src/tally_gateway/dashboard/dom.js";
import {
  WEBHOOK_EVENTS,
  attemptText,
  deliveryRow,
  endpointState,
  readEndpointForm,
} from "../../src/tally_gateway/dashboard/webhooks.js";

const AT = "2026-12-01T20:30:05Z";

test("the form reads as the POST body: trimmed URL, events in their order, a description", () => {
  const reading = readEndpointForm([
    ["url", "  https://hooks.example.com/tally "],
    ["events", "session.completed"],
    ["events", "job.completed"],
    ["description", " ops alerts "],
  ]);
  assert.deepEqual(reading, {
    ok: true,
    body: {
      url: "https://hooks.example.com/tally",
      events: ["job.completed", "session.completed"],
      description: "ops alerts",
    },
  });
});

test("a blank description is left out, and an event ticked twice is sent once", () => {
  const reading = readEndpointForm([
    ["url", "http://127.0.0.1:9000/hook"],
    ["events", "job.failed"],
    ["events", "job.failed"],
    ["description", "   "],
  ]);
  assert.deepEqual(reading, { ok: true, body: { url: "http://127.0.0.1:9000/hook", events: ["job.failed"] } });
});

test("an event the API does not know is ignored", () => {
  const reading = readEndpointForm([
    ["url", "https://a.example/h"],
    ["events", "job.exploded"],
    ["events", "job.cancelled"],
  ]);
  assert.ok(reading.ok);
  assert.deepEqual(reading.body.events, ["job.cancelled"]);
});

test("no URL, or one that is not an absolute http(s) URL, is the URL field's to fix", () => {
  for (const url of ["", "   ", "hooks.example.com/tally", "ftp://hooks.example.com/", "javascript:alert(1)", "https://"]) {
    const reading = readEndpointForm([["url", url], ["events", "job.completed"]]);
    assert.equal(reading.ok, false, url);
    assert.equal(!reading.ok && reading.field, "url", url);
  }
});

test("no event chosen is the events' to fix", () => {
  const reading = readEndpointForm([["url", "https://a.example/h"]]);
  assert.deepEqual(reading, { ok: false, field: "events", message: "Choose at least one event" });
});

test("non-string form values (files) are ignored", () => {
  const reading = readEndpointForm([["url", "https://a.example/h"], ["events", new Blob(["x"])]]);
  assert.equal(!reading.ok && reading.field, "events");
});

test("the form offers the four events the API sends", () => {
  assert.deepEqual([...WEBHOOK_EVENTS], ["job.completed", "job.failed", "job.cancelled", "session.completed"]);
});

test("an endpoint reads as enabled, or disabled with the API's reason", () => {
  assert.deepEqual(endpointState({ enabled: true, disabled_reason: null }), {
    status: "enabled",
    reason: "",
    text: "Enabled",
    failing: "",
  });
  const reason = "every attempt failed for 3 days";
  assert.deepEqual(endpointState({ enabled: false, disabled_reason: ` ${reason} ` }), {
    status: "disabled",
    reason,
    text: `Disabled: ${reason}`,
    failing: "",
  });
  assert.deepEqual(endpointState({ enabled: false, disabled_reason: null }), {
    status: "disabled",
    reason: "",
    text: "Disabled",
    failing: "",
  });
});

test("an endpoint whose attempts keep failing says since when", () => {
  const state = endpointState({ enabled: true, disabled_reason: null, failing_since: AT });
  assert.equal(state.failing, `Every attempt since ${formatTime(AT, "seconds")} has failed`);
  assert.equal(endpointState({ enabled: true, failing_since: null }).failing, "");
});

test("an attempt says its status code, latency and error; one without an answer says so", () => {
  assert.equal(attemptText({ attempt: 1, at: AT, status_code: 200, latency_ms: 41.6, error: null }), "Attempt 1: HTTP 200, 42 ms");
  assert.equal(
    attemptText({ attempt: 2, at: AT, status_code: 503, latency_ms: 120, error: "server error" }),
    "Attempt 2: HTTP 503, 120 ms, server error",
  );
  assert.equal(
    attemptText({ attempt: 3, at: AT, status_code: null, latency_ms: null, error: "connection refused" }),
    "Attempt 3: no answer, connection refused",
  );
});

test("a pending delivery lists its attempts oldest first and when the next is due", () => {
  const row = deliveryRow({
    delivery_id: "d1",
    event_type: "job.failed",
    status: "pending",
    attempts: [
      { attempt: 2, at: AT, status_code: 500, latency_ms: 10, error: null },
      { attempt: 1, at: AT, status_code: null, latency_ms: null, error: "timed out" },
    ],
    next_attempt_at: AT,
    created_at: AT,
  });
  assert.equal(row.event, "job.failed");
  assert.equal(row.status, "pending");
  assert.deepEqual(row.attempts, ["Attempt 1: no answer, timed out", "Attempt 2: HTTP 500, 10 ms"]);
  assert.equal(row.next, `Next attempt ${formatTime(AT, "seconds")}`);
  assert.equal(row.created, formatTime(AT, "seconds"));
});

test("a finished delivery has no next attempt; one not yet tried says so", () => {
  const done = deliveryRow({
    delivery_id: "d2",
    event_type: "job.completed",
    status: "failed",
    attempts: [{ attempt: 1, at: AT, status_code: 410, latency_ms: 5, error: null }],
    next_attempt_at: AT, // a final delivery's leftover is not shown
    created_at: AT,
  });
  assert.equal(done.next, "");
  const fresh = deliveryRow({
    delivery_id: "d3",
    event_type: "session.completed",
    status: "pending",
    attempts: [],
    next_attempt_at: null,
    created_at: AT,
  });
  assert.deepEqual(fresh.attempts, ["Not attempted yet"]);
  assert.equal(fresh.next, "");
});
