// Polling with the server's interval, back-off on failure, and a pause while the page is hidden.

import { AuthError, isTransient } from "./api.js";
import { pauseCountdown, reportOffline, reportOnline, resumeCountdown } from "./indicators.js";
import { backoff, pollInterval } from "./schedule.js";

/**
 * Calls `load()` now and then again and again. `load` resolves the server's
 * poll_interval_ms (or nothing for the default). A transient failure shows the connection
 * indicator and retries on the back-off schedule; any other failure goes to `onError`, which
 * returns true to keep polling. Only setTimeout and Date.now schedule anything.
 *
 * A request in flight is never aborted (an aborted request is a failed one): a newer run, or
 * stop(), only makes its answer ignored.
 *
 * @param {{
 *   load: () => Promise<number | undefined>,
 *   onError?: (error: unknown) => boolean,
 * }} options
 */
export function createPoller({ load, onError = () => false }) {
  const owner = {};
  let timer = null;
  let running = null; // the run whose request is in flight
  let failures = 0;
  let stopped = false;

  const hidden = () => document.visibilityState === "hidden";

  function schedule(delay) {
    clearTimeout(timer);
    timer = stopped || hidden() ? null : setTimeout(run, delay);
  }

  async function run() {
    clearTimeout(timer);
    timer = null;
    if (stopped || hidden()) return;
    const mine = {};
    running = mine;
    let delay;
    try {
      const interval = await load();
      if (running !== mine || stopped) return; // a newer run took over
      failures = 0;
      reportOnline(owner);
      delay = pollInterval(interval);
    } catch (error) {
      if (running !== mine || stopped) return;
      if (error instanceof AuthError) {
        stop();
        return;
      }
      if (isTransient(error)) {
        failures += 1;
        delay = backoff(failures);
        reportOffline(owner, Date.now() + delay);
      } else {
        reportOnline(owner);
        if (!onError(error)) {
          stop();
          return;
        }
        delay = pollInterval();
      }
    } finally {
      if (running === mine) running = null;
    }
    schedule(delay);
  }

  function onVisibility() {
    if (stopped) return;
    if (document.visibilityState === "hidden") {
      // A request already in flight may finish; nothing new starts until visible again.
      clearTimeout(timer);
      timer = null;
      pauseCountdown();
    } else {
      resumeCountdown();
      if (!running) run();
    }
  }

  function stop() {
    stopped = true;
    clearTimeout(timer);
    timer = null;
    running = null;
    document.removeEventListener("visibilitychange", onVisibility);
    reportOnline(owner);
  }

  document.addEventListener("visibilitychange", onVisibility);
  return {
    /** Load now (first load, filters changed, after an action), then on schedule. */
    refresh: run,
    stop,
  };
}
