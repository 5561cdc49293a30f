// A session's news: when it has finished, and which update of a job is kept.

import assert from "node:assert/strict";
import { test } from "node:test";

import { sessionFinished, supersedes } from "../../src/tally_gateway/dashboard/session.js";
import { FINAL, STATUSES } from "../../src/tally_gateway/dashboard/statuses.js";

test("a session has finished when it has jobs and none is queued or processing", () => {
  const summary = { total: 3, queued: 0, processing: 0, completed: 2, failed: 1, cancelled: 0 };
  assert.equal(sessionFinished(summary), true);
  assert.equal(sessionFinished({ ...summary, queued: 1 }), false);
  assert.equal(sessionFinished({ ...summary, processing: 1 }), false);
  assert.equal(sessionFinished({ total: 0, queued: 0, processing: 0 }), false); // nothing yet
  assert.equal(sessionFinished(null), false);
  assert.equal(sessionFinished(undefined), false);
});

test("a job's first news is kept, and newer news replaces older", () => {
  const at = (iso, status = "processing") => ({ status, updated_at: iso });
  assert.equal(supersedes(undefined, at("2026-01-01T00:00:01Z")), true);
  assert.equal(supersedes(at("2026-01-01T00:00:01Z"), at("2026-01-01T00:00:02Z")), true);
  assert.equal(supersedes(at("2026-01-01T00:00:01Z"), at("2026-01-01T00:00:01Z")), true);
  assert.equal(supersedes(at("2026-01-01T00:00:02Z"), at("2026-01-01T00:00:01Z")), false);
  assert.equal(supersedes({ status: "queued" }, { status: "processing" }), true); // no times
});

test("a final status is never left, whatever arrives after it", () => {
  for (const final of FINAL) {
    for (const status of STATUSES) {
      const old = { status: final, updated_at: "2026-01-01T00:00:01Z" };
      const next = { status, updated_at: "2026-01-01T00:00:09Z" };
      assert.equal(supersedes(old, next), FINAL.has(status), `${final} then ${status}`);
    }
  }
});
