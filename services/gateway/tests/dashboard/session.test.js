// A session's news: when it has finished, and which update of a job is kept.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  allPages,
  sessionFinished,
  supersedes,
} from "../../src/tally_gateway/dashboard/session.js";
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

test("of two copies of a job, the higher revision is kept, whatever their times", () => {
  const copy = (revision, status = "processing", iso = "2026-01-01T00:00:05Z") => ({
    status,
    revision,
    updated_at: iso,
  });
  assert.equal(supersedes(copy(7), copy(5, "processing", "2026-01-01T00:00:09Z")), false);
  assert.equal(supersedes(copy(5), copy(7, "processing", "2026-01-01T00:00:01Z")), true);
  assert.equal(supersedes(copy(5), copy(5)), true); // the same news again
  assert.equal(supersedes(copy(9, "completed"), copy(12, "processing")), false); // final stays
  // One without a revision (read from the system of record): the times decide.
  assert.equal(supersedes(copy(null), copy(3, "processing", "2026-01-01T00:00:01Z")), false);
});

test("every page after the first is read in turn, its jobs added in order", async () => {
  const pages = {
    a: { jobs: [{ id: 3 }, { id: 4 }], next_cursor: "b", summary: { total: 6, n: 2 } },
    b: { jobs: [{ id: 5 }, { id: 6 }], next_cursor: null, summary: { total: 6, n: 3 } },
  };
  const asked = [];
  const first = { jobs: [{ id: 1 }, { id: 2 }], next_cursor: "a", summary: { total: 6, n: 1 } };
  const whole = await allPages(first, async (cursor) => {
    asked.push(cursor);
    return pages[cursor];
  });
  assert.deepEqual(whole.jobs.map((j) => j.id), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(whole.summary, { total: 6, n: 3 }); // the last page's: the newest
  assert.deepEqual(asked, ["a", "b"]);
  const alone = await allPages({ jobs: [{ id: 1 }], next_cursor: null }, async () => {
    throw new Error("no page after the last");
  });
  assert.deepEqual(alone.jobs, [{ id: 1 }]);
});
