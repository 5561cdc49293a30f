// Following one upload session over Server-Sent Events, resuming from the last event id.

import { ApiError, AuthError, NetworkError, request } from "./api.js";
import { pauseCountdown, reportOffline, reportOnline, resumeCountdown } from "./indicators.js";
import { backoff, pollInterval } from "./schedule.js";
import { allPages, sessionFinished } from "./session.js";

const KINDS = ["snapshot", "job", "summary", "deleted", "done"];
const RECHECK_MS = 2000; // while uploads the stream has not shown yet are on their way
const RECHECKS = 30; // then a job that never shows (deleted meanwhile) stops being waited for
const SETTLE_MS = 1000; // a resumed batch's stream waits until the page is surely staying

/**
 * Streams the session's events to `handlers` (snapshot, job, summary, deleted, done: each gets
 * the event's data; poll gets a GET /v1/sessions/{sid}/jobs body; gone: the session no longer
 * exists). `handlers.expecting()` says the view waits for jobs the stream has not shown, so a
 * finished session is watched a little longer. EventSource cannot send headers and its tokens
 * expire, so every (re)connection asks for a new token and reconnects by hand.
 *
 * `resume`: the page opened on a batch it did not start. One poll shows it at once (and ends
 * there when it has finished); the stream opens a moment later, so a page that is only passed
 * through (sign-in lands here) opens no stream it would have to cut.
 *
 * While the stream is down but the API answers (a proxy that buffers event streams), the
 * session is polled at the server's interval between the stream's retries: every page once,
 * then only the changes since the last answer's version (`since`), handed to the same
 * handlers as the stream's events.
 *
 * A snapshot holds the first page of a big session's jobs: the rest are read page by page
 * before `snapshot` is handed on with all of them, and the events that come meanwhile wait
 * for it.
 */
export function followSession(sessionId, handlers, { resume = false } = {}) {
  const owner = {};
  const sid = encodeURIComponent(sessionId);
  let source = null;
  let timer = null;
  let busy = false;
  let stopped = false;
  let finished = false;
  let lastId = null;
  let failures = 0;
  let pollTag = null;
  let pollVersion = null; // the last poll's version: the next asks for the changes since
  let pollFinished = false;
  let pollOk = false;
  let pollEvery = pollInterval();
  let pollTimer = null;
  let primed = !resume;
  let rechecks = 0;

  const hidden = () => document.visibilityState === "hidden";

  function later(fn, delay) {
    clearTimeout(timer);
    timer = stopped || hidden() ? null : setTimeout(fn, delay);
  }

  async function connect() {
    clearTimeout(timer);
    timer = null;
    if (stopped || finished || busy || source || hidden()) return;
    busy = true;
    try {
      // Resuming: the session may have finished meanwhile, which one poll tells.
      if (!primed || lastId) {
        if (await poll()) {
          primed = true;
          settle();
          return;
        }
        if (!primed) {
          primed = true;
          later(connect, SETTLE_MS);
          return;
        }
      }
      const { data } = await request("/v1/stream-tokens", {
        method: "POST",
        json: { session_id: sessionId },
      });
      if (stopped || hidden()) return;
      let url = `/v1/sessions/${sid}/events?access_token=${encodeURIComponent(data.token)}`;
      if (lastId) url += `&last_event_id=${encodeURIComponent(lastId)}`;
      open(url);
    } catch (error) {
      failed(error);
    } finally {
      busy = false;
    }
  }

  const page = async (cursor) =>
    (await request(`/v1/sessions/${sid}/jobs?cursor=${encodeURIComponent(cursor)}`)).data;

  /** Poll the session once (a delta may come in parts: each is read); true when it has finished. */
  async function poll() {
    for (let part = 0; part < 100; part += 1) {
      let answer;
      try {
        const since = pollVersion ? `?since=${encodeURIComponent(pollVersion)}` : "";
        answer = await request(`/v1/sessions/${sid}/jobs${since}`, { etag: pollTag });
        if (answer.status !== 304 && !answer.data.deleted) {
          // A page (the first poll, a reload, no versions): the whole list, every page.
          const whole = await allPages(answer.data, page);
          answer = { ...answer, data: { ...answer.data, ...whole } };
        }
      } catch (error) {
        pollOk = false;
        throw error;
      }
      pollOk = true;
      const { status, data, etag } = answer;
      if (stopped) return false;
      if (status === 304) break;
      pollTag = etag;
      pollVersion = data.version;
      pollFinished = sessionFinished(data.summary);
      pollEvery = pollInterval(data.poll_interval_ms);
      if (data.deleted) {
        for (const job of data.jobs) handlers.job?.(job);
        for (const jobId of data.deleted) handlers.deleted?.({ job_id: jobId });
        handlers.summary?.({ summary: data.summary });
      } else {
        handlers.poll?.(data);
      }
      if (!data.more) break;
    }
    return pollFinished;
  }

  /** Polling between the stream's retries, for as long as polls get answers. */
  function fallback() {
    clearTimeout(pollTimer);
    pollTimer = null;
    if (stopped || finished || source || hidden() || !pollOk) return;
    pollTimer = setTimeout(async () => {
      pollTimer = null;
      if (stopped || source || busy) return;
      try {
        if (await poll()) settle();
        else fallback();
      } catch {
        // the stream's next retry shows the connection state
      }
    }, pollEvery);
  }

  function open(url) {
    const es = new EventSource(url);
    source = es;
    let opened = false;
    let ended = false;
    es.addEventListener("open", () => {
      opened = true;
      failures = 0;
      clearTimeout(pollTimer);
      pollTimer = null;
      reportOnline(owner);
    });
    let waiting = null; // events that came while a snapshot's later pages were read
    let snapshots = 0; // only the latest snapshot is handed on
    function snapshot(data) {
      const mine = (snapshots += 1);
      if (!data.next_cursor) {
        waiting = null; // what it held is older than this snapshot
        handlers.snapshot?.(data);
        return;
      }
      waiting = waiting ?? [];
      allPages(data, page).then(
        (whole) => {
          if (stopped || mine !== snapshots || (source && source !== es)) return;
          const held = waiting ?? [];
          waiting = null;
          handlers.snapshot?.({ ...data, ...whole });
          for (const [kind, later] of held) handlers[kind]?.(later);
        },
        (error) => {
          if (mine !== snapshots || source !== es) return;
          waiting = null;
          close(es, false);
          failed(error);
        },
      );
    }
    for (const kind of KINDS) {
      es.addEventListener(kind, (event) => {
        if (source !== es) return;
        if (event.lastEventId) lastId = event.lastEventId;
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        if (kind === "snapshot") snapshot(data);
        else if (waiting) waiting.push([kind, data]);
        else handlers[kind]?.(data);
        if (kind === "done") {
          // The server ends the stream after `done`; closing once it has keeps the request
          // whole. Should it linger, close it anyway.
          ended = true;
          later(() => close(es, true), 3000);
        }
      });
    }
    es.addEventListener("error", () => {
      if (source !== es) return;
      if (ended) close(es, true);
      else if (opened) {
        close(es, false);
        failed(new NetworkError("The live stream was cut"));
      } else {
        // Never opened: a 204 (the session finished) or a failure; one poll tells which.
        close(es, false);
        probe();
      }
    });
  }

  function close(es, done) {
    es.close();
    if (source !== es) return;
    source = null;
    clearTimeout(timer);
    timer = null;
    if (done) settle();
  }

  async function probe() {
    busy = true;
    try {
      if (await poll()) settle();
      else failed(new NetworkError("The live stream could not be opened"));
    } catch (error) {
      failed(error);
    } finally {
      busy = false;
    }
  }

  /** The session finished; keep watching only while the view still expects jobs. */
  function settle() {
    clearTimeout(timer);
    timer = null;
    clearTimeout(pollTimer);
    pollTimer = null;
    failures = 0;
    reportOnline(owner);
    if (handlers.expecting?.() && rechecks++ < RECHECKS) later(connect, RECHECK_MS);
    else finished = true;
  }

  function failed(error) {
    if (stopped || error instanceof AuthError) return;
    if (error instanceof ApiError && error.status === 404) {
      stop();
      handlers.gone?.();
      return;
    }
    failures += 1;
    const delay = backoff(failures);
    reportOffline(owner, Date.now() + delay);
    later(connect, delay);
    fallback();
  }

  function onVisibility() {
    if (stopped) return;
    if (hidden()) {
      clearTimeout(timer);
      timer = null;
      clearTimeout(pollTimer);
      pollTimer = null;
      if (source) {
        source.close();
        source = null;
      }
      pauseCountdown();
    } else {
      resumeCountdown();
      connect();
    }
  }

  function stop() {
    stopped = true;
    clearTimeout(timer);
    timer = null;
    clearTimeout(pollTimer);
    pollTimer = null;
    source?.close();
    source = null;
    document.removeEventListener("visibilitychange", onVisibility);
    reportOnline(owner);
  }

  document.addEventListener("visibilitychange", onVisibility);
  connect();
  return {
    /** New jobs joined the session: follow it again if it had finished. */
    kick() {
      finished = false;
      rechecks = 0;
      if (!source && !busy && !timer) connect();
    },
    stop,
  };
}
