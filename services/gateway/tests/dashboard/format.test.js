// What the views write for durations, progress and ETAs.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  deadlineText,
  etaDeadline,
  etaReasonText,
  etaText,
  formatDuration,
  formatNumber,
  jobDuration,
  percentText,
  secondsUntil,
  shortId,
  slicesText,
} from "../../src/tally_gateway/dashboard/dom.js";

test("durations read as seconds, minutes and seconds, or hours and minutes", () => {
  assert.equal(formatDuration(0), "0 s");
  assert.equal(formatDuration(44.6), "45 s");
  assert.equal(formatDuration(185), "3 min 05 s");
  assert.equal(formatDuration(7800), "2 h 10 min");
  assert.equal(formatDuration(-5), "0 s");
  assert.equal(formatDuration(null), "");
  assert.equal(formatDuration(Number.NaN), "");
});

test("an ETA says the time left, or that the job is finishing", () => {
  assert.equal(etaText(185), "About 3 min 05 s left");
  assert.equal(etaText(0), "Finishing");
  assert.equal(etaText(null), "");
});

test("seconds until a deadline round up and never go below zero", (t) => {
  t.mock.method(Date, "now", () => 10_000);
  assert.equal(secondsUntil(12_001), 3);
  assert.equal(secondsUntil(9_000), 0);
  assert.equal(secondsUntil(null), null);
});

test("progress shows slices done of planned, or what the job is waiting for", () => {
  assert.equal(slicesText({ status: "processing", processed: 5, total: 12 }), "5 of 12 slices");
  assert.equal(slicesText({ status: "processing", processed: 14, total: 12 }), "12 of 12 slices");
  assert.equal(slicesText({ status: "queued", processed: 0, total: 0 }), "Waiting to start");
  assert.equal(slicesText({ status: "processing", processed: 0, total: 0 }), "Planning slices");
  assert.equal(slicesText({ status: "failed", processed: 0, total: 0 }), "");
  assert.equal(percentText({ progress_percent: 41.666 }), "41.7%");
  assert.equal(percentText({ progress_percent: 100 }), "100%");
  assert.equal(percentText({ progress_percent: null }), "");
  assert.equal(formatNumber(3), "3");
});

test("a job's duration runs from its start to its end, or to now while it runs", (t) => {
  t.mock.method(Date, "now", () => Date.parse("2026-01-01T00:02:00Z"));
  const started_at = "2026-01-01T00:00:00Z";
  assert.equal(jobDuration({ started_at, completed_at: "2026-01-01T00:00:42Z" }), "42 s");
  assert.equal(jobDuration({ started_at, completed_at: null }), "2 min 00 s");
  assert.equal(jobDuration({ started_at: null }), "");
  assert.equal(shortId("0b9f2a52-5c1e-4c57-9f55-2a8f1d3e4b6c"), "0b9f2a52");
});

test("an ETA with its interval reads 'About 4 min (3–6)', in the unit of its upper end", () => {
  assert.equal(etaText(240, 190, 350), "About 4 min (3–6)");
  assert.equal(etaText(40, 31, 52), "About 40 s (31–52)");
  assert.equal(etaText(9000, 7560, 10800), "About 2.5 h (2.1–3.0)");
  assert.equal(etaText(120, 120, 120), "About 2 min"); // no width to show
  assert.equal(etaText(0, 0, 0), "Finishing");
});

test("an ETA's deadline counts down from its arrival, and a missing ETA says why", (t) => {
  t.mock.method(Date, "now", () => 10_000);
  const deadline = etaDeadline({ eta_seconds: 240, eta_range: [190, 350] });
  assert.deepEqual(deadline, { best: 250_000, low: 200_000, high: 360_000 });
  assert.equal(deadlineText(deadline), "About 4 min (3–6)");
  assert.equal(etaDeadline({ eta_seconds: null, eta_reason: "no_detector" }), null);
  assert.deepEqual(etaDeadline({ eta_seconds: 30 }), { best: 40_000, low: null, high: null });
  assert.equal(etaReasonText("no_detector"), "Waiting for a detector");
  assert.equal(etaReasonText("measuring"), "Estimating time left");
  assert.equal(etaReasonText(null), "");
});
