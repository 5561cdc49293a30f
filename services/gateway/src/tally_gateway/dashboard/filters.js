// The jobs list's filters, sort and page as its hash says them (#/jobs?status=&session=&sort=
// &cursor=&prev=): read from the hash, and written back in one canonical form.

import { STATUSES } from "./statuses.js";

/** A previous-page entry meaning "no cursor" (the first page). */
export const FIRST_PAGE = "*";

/**
 * @typedef {{status: string, session: string, sort: string, cursor: string, prev: string[]}} JobFilters
 */

/**
 * The filters of a hash's query; anything unknown reads as its default.
 * @param {URLSearchParams} query
 * @returns {JobFilters}
 */
export function readParams(query) {
  const status = query.get("status") ?? "";
  return {
    status: STATUSES.includes(status) ? status : "",
    session: (query.get("session") ?? "").trim(),
    sort: query.get("sort") === "created_at" ? "created_at" : "-created_at",
    cursor: query.get("cursor") ?? "",
    prev: (query.get("prev") ?? "").split(",").filter(Boolean),
  };
}

/**
 * The hash of those filters; defaults are left out.
 * @param {JobFilters} params
 * @returns {string}
 */
export function hashOf(params) {
  const query = new URLSearchParams();
  if (params.status) query.set("status", params.status);
  if (params.session) query.set("session", params.session);
  if (params.sort !== "-created_at") query.set("sort", params.sort);
  if (params.cursor) query.set("cursor", params.cursor);
  if (params.prev.length) query.set("prev", params.prev.join(","));
  const text = query.toString();
  return text ? `#/jobs?${text}` : "#/jobs";
}
