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

/**
 * Whether `next` replaces `old` (the job as last shown, if any): a final status stays final,
 * and older news (an earlier `updated_at`) changes nothing.
 * @param {{status: string, updated_at?: string} | undefined} old
 * @param {{status: string, updated_at?: string}} next
 */
export function supersedes(old, next) {
  if (!old) return true;
  if (FINAL.has(old.status) && !FINAL.has(next.status)) return false;
  return !(Date.parse(next.updated_at ?? "") < Date.parse(old.updated_at ?? ""));
}
