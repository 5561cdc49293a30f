// When the dashboard asks again: the server's interval within bounds, and the back-off after
// failures (the browser test checks the same schedule on a stopped gateway, in minutes).

import assert from "node:assert/strict";
import { test } from "node:test";

import { backoff, pollInterval } from "../../src/tally_gateway/dashboard/schedule.js";

test("retries wait 10 s three times, then double up to two minutes", () => {
  const waits = [1, 2, 3, 4, 5, 6, 7, 8, 20].map(backoff);
  assert.deepEqual(waits, [10000, 10000, 10000, 20000, 40000, 80000, 120000, 120000, 120000]);
});

test("the server's poll interval is used within 2 s and 60 s, 5 s without one", () => {
  assert.equal(pollInterval(3000), 3000);
  assert.equal(pollInterval(500), 2000);
  assert.equal(pollInterval(600000), 60000);
  for (const missing of [undefined, null, "3000", Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.equal(pollInterval(missing), 5000);
  }
});
