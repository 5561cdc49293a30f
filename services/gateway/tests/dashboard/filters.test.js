// The jobs list's filters in its hash: read leniently, written in one form, round trips.

import assert from "node:assert/strict";
import { test } from "node:test";

import { hashOf, readParams } from "../../src/tally_gateway/dashboard/filters.js";

const SESSION = "0b9f2a52-5c1e-4c57-9f55-2a8f1d3e4b6c";

test("no query reads as the defaults, which write back as #/jobs", () => {
  const params = readParams(new URLSearchParams(""));
  assert.deepEqual(params, { status: "", session: "", sort: "-created_at", cursor: "", prev: [] });
  assert.equal(hashOf(params), "#/jobs");
});

test("filters, sort and page survive the round trip through the hash", () => {
  const params = {
    status: "failed",
    session: SESSION,
    sort: "created_at",
    cursor: "c2",
    prev: ["*", "c1"],
  };
  const hash = hashOf(params);
  assert.equal(hash, `#/jobs?status=failed&session=${SESSION}&sort=created_at&cursor=c2&prev=*%2Cc1`);
  assert.deepEqual(readParams(new URLSearchParams(hash.slice("#/jobs?".length))), params);
});

test("an unknown status or sort reads as none; a session id is trimmed", () => {
  const params = readParams(new URLSearchParams(`status=done&sort=name&session=%20${SESSION}%20`));
  assert.equal(params.status, "");
  assert.equal(params.sort, "-created_at");
  assert.equal(params.session, SESSION);
});
