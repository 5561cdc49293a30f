// What a session's stream and polls tell: whether it has finished, and which news of a job to
// keep (events can arrive twice or late: a reconnect's catch-up, a poll beside the stream).

import { FINAL } from "./statuses.js";

/**
 * Every job of the session has finished (and it has some).
 * @param {{total?: number, queued?: number, processing?: number} | null | undefined} summary
 */
export function sessionFinished(summary) {
  return Boolean(summary?.total) && summary?.queued === 0 && summary?.processing === 0;
}

const MAX_PAGES = 1000; // a session's pages read one after another, at most

/**
 * Whether `next` replaces `old` (the job as last shown, if any): a final status stays final,
 * and older news changes nothing: a lower `revision` where both have one (the session's count
 * of changes at the job's last one), else an earlier `updated_at`.
 * @param {{status: string, updated_at?: string, revision?: number | null} | undefined} old
 * @param {{status: string, updated_at?: string, revision?: number | null}} next
 */
export function supersedes(old, next) {
  if (!old) return true;
  if (FINAL.has(old.status) && !FINAL.has(next.status)) return false;
  const before = old.revision;
  const after = next.revision;
  if (typeof before === "number" && typeof after === "number") return after >= before;
  return !(Date.parse(next.updated_at ?? "") < Date.parse(old.updated_at ?? ""));
}

/**
 * Every job of a session from its first page on (a poll's answer or a stream's snapshot):
 * the pages after it, each read with `page(cursor)`, until the last. Resolves their jobs,
 * oldest first, and the last page's summary.
 * @template J
 * @param {{jobs?: J[], next_cursor?: string | null, summary?: object}} first
 * @param {(cursor: string) => Promise<{jobs: J[], next_cursor?: string | null, summary?: object}>} page
 */
export async function allPages(first, page) {
  const jobs = [...(first.jobs ?? [])];
  let cursor = first.next_cursor;
  let summary = first.summary;
  for (let n = 0; cursor && n < MAX_PAGES; n += 1) {
    const next = await page(cursor);
    jobs.push(...next.jobs);
    cursor = next.next_cursor;
    summary = next.summary ?? summary;
  }
  return { jobs, summary };
}
