// When the dashboard asks again: the polling interval and the back-off after failures.

/**
 * A server-provided poll interval, clamped to what a dashboard should use (5 s without one).
 * @param {unknown} [ms]
 * @returns {number}
 */
export function pollInterval(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return 5000;
  return Math.min(60000, Math.max(2000, ms));
}

/**
 * Back-off after `failures` consecutive failures: 10 s three times, then 20, 40, 80, 120 s.
 * @param {number} failures
 * @returns {number}
 */
export function backoff(failures) {
  if (failures <= 3) return 10000;
  return Math.min(120000, 10000 * 2 ** (failures - 3));
}
