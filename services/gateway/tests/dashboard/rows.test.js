// Keyed rows: the list's children follow its items, and a row that stays is the same node.

import assert from "node:assert/strict";
import { test } from "node:test";

import { syncRows } from "../../src/tally_gateway/dashboard/rows.js";

/** Just enough of an element for syncRows: ordered children, insertBefore that moves, remove. */
class FakeNode {
  /** @param {string} name */
  constructor(name) {
    this.name = name;
    /** @type {FakeNode[]} */
    this.children = [];
    /** @type {FakeNode | null} */
    this.parent = null;
    this.moves = 0;
  }

  /**
   * @param {FakeNode} node
   * @param {FakeNode | null} before
   */
  insertBefore(node, before) {
    node.remove();
    const at = before === null ? this.children.length : this.children.indexOf(before);
    assert.ok(at >= 0, "insertBefore a node that is not a child");
    this.children.splice(at, 0, node);
    node.parent = this;
    node.moves += 1;
  }

  remove() {
    if (!this.parent) return;
    this.parent.children.splice(this.parent.children.indexOf(this), 1);
    this.parent = null;
  }
}

function list() {
  const parent = new FakeNode("list");
  /** @type {Map<string, {node: FakeNode, text: string}>} */
  const rows = new Map();
  const dropped = [];
  const created = [];
  /** @param {{id: string, text: string}[]} items */
  const sync = (items) =>
    syncRows(parent, rows, items, {
      key: (item) => item.id,
      create: (item) => {
        created.push(item.id);
        return { node: new FakeNode(item.id), text: "" };
      },
      update: (row, item) => {
        row.text = item.text;
      },
      node: (row) => row.node,
      drop: (key) => dropped.push(key),
    });
  const names = () => parent.children.map((child) => child.name);
  return { parent, rows, dropped, created, sync, names };
}

test("rows are made once, in the items' order, and updated on every sync", () => {
  const view = list();
  view.sync([
    { id: "a", text: "1" },
    { id: "b", text: "2" },
  ]);
  assert.deepEqual(view.names(), ["a", "b"]);
  const first = view.rows.get("a")?.node;
  view.sync([
    { id: "a", text: "3" },
    { id: "b", text: "4" },
  ]);
  assert.deepEqual(view.created, ["a", "b"]);
  assert.equal(view.rows.get("a")?.node, first);
  assert.equal(view.rows.get("a")?.text, "3");
  assert.equal(first?.moves, 1, "a row in its place is not moved again");
});

test("a new item's row goes where the item is; only rows out of place move", () => {
  const view = list();
  view.sync(["a", "b", "c"].map((id) => ({ id, text: id })));
  view.sync(["a", "x", "b", "c"].map((id) => ({ id, text: id })));
  assert.deepEqual(view.names(), ["a", "x", "b", "c"]);
  assert.equal(view.rows.get("a")?.node.moves, 1);
  view.sync(["c", "a", "x", "b"].map((id) => ({ id, text: id })));
  assert.deepEqual(view.names(), ["c", "a", "x", "b"]);
  assert.equal(view.rows.get("a")?.node.moves, 1, "only the row that changed place moved");
  assert.deepEqual(view.created, ["a", "b", "c", "x"]);
});

test("rows of items no longer there are removed and dropped", () => {
  const view = list();
  view.sync(["a", "b", "c"].map((id) => ({ id, text: id })));
  view.sync([{ id: "b", text: "b" }]);
  assert.deepEqual(view.names(), ["b"]);
  assert.deepEqual([...view.rows.keys()], ["b"]);
  assert.deepEqual(view.dropped.sort(), ["a", "c"]);
  view.sync([]);
  assert.deepEqual(view.names(), []);
  assert.equal(view.rows.size, 0);
});
