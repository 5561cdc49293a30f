// Keyed rows: a list's children follow its items in place, so unchanged rows are never rebuilt
// (their focus, thumbnails and scroll position stay).

/**
 * Makes `parent`'s children the rows of `items`, in order. A row is made once per key and
 * kept in `rows` between calls; a kept row is updated, and moved only when its place changed;
 * the rows of keys no longer there are removed (and handed to `drop`).
 *
 * @template T, R
 * @param {{children: ArrayLike<unknown>, insertBefore: (node: any, before: any) => unknown}} parent
 * @param {Map<string, R>} rows
 * @param {readonly T[]} items
 * @param {{
 *   key: (item: T) => string,
 *   create: (item: T) => R,
 *   update?: (row: R, item: T) => void,
 *   node: (row: R) => {remove: () => void},
 *   drop?: (key: string, row: R) => void,
 * }} how
 */
export function syncRows(parent, rows, items, how) {
  const keys = new Set();
  items.forEach((item, index) => {
    const key = how.key(item);
    keys.add(key);
    let row = rows.get(key);
    if (row === undefined) {
      row = how.create(item);
      rows.set(key, row);
    }
    how.update?.(row, item);
    const node = how.node(row);
    const at = parent.children[index];
    if (at !== node) parent.insertBefore(node, at ?? null);
  });
  for (const [key, row] of rows) {
    if (!keys.has(key)) {
      how.node(row).remove();
      rows.delete(key);
      how.drop?.(key, row);
    }
  }
}
