// #/jobs/<job_id>: one job, live: status, progress, timings, its log, and when it has
// completed the counts and the photo with its detections drawn.

import { ApiError, imageURL, isTransient, request } from "../api.js";
import {
  badge,
  deadlineText,
  etaDeadline as etaDeadlineOf,
  etaReasonText,
  focusHeading,
  formatTime,
  h,
  jobDuration,
  percentText,
  secondsUntil,
  setAttr,
  setBadge,
  setProgress,
  setText,
  shortId,
} from "../dom.js";
import { createPoller } from "../poller.js";
import { syncRows } from "../rows.js";
import { FINAL } from "../statuses.js";

// Distinct on photos and from each other; one per label, in label order.
const PALETTE = ["#ff3b30", "#ffcc00", "#34c759", "#0a84ff", "#ff9500", "#bf5af2", "#00c7be", "#ff2d55"];
const MAX_CANVAS = 1600;

/** A colour sample; set through CSSOM, since the page's CSP refuses style attributes. */
function swatch(colour) {
  const node = h("span", { class: "swatch", "aria-hidden": "true" });
  node.style.backgroundColor = colour;
  return node;
}

export function mount(root, route) {
  const jobId = route.arg;
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  let etaDeadline = null;
  let etaReason = null;
  let ticker = null;
  let photoURL = null;
  let resultState = "none"; // none, loading, shown
  let disposed = false;
  const logItems = new Map(); // entry key -> <li>

  const title = h("h1", { id: "job-title" }, "Job");
  const statusBadge = badge("queued");
  const phase = h("span", { id: "job-phase", class: "muted" });
  const progressText = h("p", { id: "job-progress-text", class: "progress-text" });
  const progress = h("progress", { id: "job-progress", "aria-labelledby": "job-progress-text" });
  const percent = h("span", { id: "job-percent", class: "percent" });
  const eta = h("p", { id: "job-eta", class: "eta muted" });
  const fields = {
    started: h("dd", { id: "job-started" }),
    completed: h("dd", { id: "job-completed" }),
    duration: h("dd", { id: "job-duration" }),
    session: h("dd", { id: "job-session" }),
  };
  const errorBox = h("div", { id: "job-error", class: "problem", hidden: true });
  const warnings = h("p", { id: "job-warnings", class: "warnings", hidden: true });
  const cancelButton = h("button", { type: "button", id: "cancel-job", class: "button button-danger", hidden: true }, "Cancel job");
  const actionMessage = h("p", { id: "job-action-message", class: "form-message", role: "status" });
  // Scrolls on its own: focusable, so a keyboard can scroll it too.
  const logList = h("ol", { id: "job-log", class: "log", role: "log", tabindex: "0", "aria-labelledby": "job-log-title" });
  const logEmpty = h("p", { class: "muted" }, "No activity recorded yet.");
  const resultSection = h("section", { id: "job-result", class: "card result", "aria-labelledby": "job-result-title", hidden: true });

  const body = h(
    "div",
    { class: "job-detail" },
    h(
      "section",
      { class: "card job-status", "aria-labelledby": "job-title" },
      h("div", { class: "job-status-line", "aria-live": "polite" }, statusBadge, phase),
      h(
        "div",
        { class: "job-progress", "aria-live": "polite" },
        progressText,
        h("div", { class: "progress-cell progress-large" }, progress, percent),
      ),
      eta,
      errorBox,
      warnings,
      h(
        "dl",
        { class: "facts" },
        h("div", null, h("dt", null, "Started"), fields.started),
        h("div", null, h("dt", null, "Completed"), fields.completed),
        h("div", null, h("dt", null, "Duration"), fields.duration),
        h("div", null, h("dt", null, "Session"), fields.session),
      ),
      h("div", { class: "actions" }, cancelButton, actionMessage),
    ),
    resultSection,
    h(
      "section",
      { class: "card", "aria-labelledby": "job-log-title" },
      h("h2", { id: "job-log-title" }, "Activity"),
      logEmpty,
      logList,
    ),
  );

  root.append(
    h(
      "article",
      { class: "view view-job" },
      h("p", { class: "breadcrumb" }, h("a", { href: "#/jobs" }, "Jobs")),
      title,
      body,
    ),
  );
  focusHeading(root);

  async function load() {
    const { data } = await request(path);
    show(data);
    return data.poll_interval_ms;
  }

  function onError(error) {
    // 422: not a job id at all, which is as gone as a deleted job.
    if (error instanceof ApiError && (error.status === 404 || error.status === 422)) {
      gone();
      return false;
    }
    setText(actionMessage, `The job could not be loaded: ${error.message}`);
    return false;
  }

  function gone() {
    stopTicker();
    body.replaceWith(
      h(
        "div",
        { class: "card gone", role: "alert" },
        h("p", null, "This job no longer exists"),
        h("a", { href: "#/jobs" }, "Back to jobs"),
      ),
    );
    setText(title, "Job not found");
  }

  function show(data) {
    const name = data.filename || `Job ${shortId(data.job_id)}`;
    setText(title, name);
    document.title = `${name} — Tally`;
    setBadge(statusBadge, data.status);
    setText(phase, data.phase && !FINAL.has(data.status) && data.phase !== data.status ? `Phase: ${data.phase}` : "");
    setText(progressText, statusLine(data));
    setProgress(progress, data);
    setText(percent, percentText(data) || (FINAL.has(data.status) ? "" : "Progress unknown"));
    etaDeadline = FINAL.has(data.status) ? null : etaDeadlineOf(data);
    etaReason = FINAL.has(data.status) ? null : data.eta_reason;
    renderEta();
    setText(fields.started, formatTime(data.started_at, "seconds") || "Not started");
    setText(fields.completed, formatTime(data.completed_at, "seconds") || (FINAL.has(data.status) ? "" : "Not yet"));
    setText(fields.duration, jobDuration(data) || "—");
    if (!fields.session.firstChild) {
      fields.session.append(
        h("a", { href: `#/jobs?session=${encodeURIComponent(data.session_id)}` }, shortId(data.session_id)),
      );
    }
    errorBox.hidden = !(data.status === "failed" && data.error_message);
    if (!errorBox.hidden) {
      if (!errorBox.firstChild) errorBox.append(h("strong", null, "Error: "), h("span"));
      setText(errorBox.lastChild, data.error_message);
    }
    const warnList = data.warnings ?? [];
    warnings.hidden = warnList.length === 0;
    setText(warnings, warnList.length ? `Warnings: ${warnList.map((w) => w.replaceAll("_", " ")).join(", ")}` : "");
    cancelButton.hidden = FINAL.has(data.status);
    renderLog(data.logs ?? []);
    if (data.status === "completed" && resultState === "none") loadResult();
  }

  function statusLine(data) {
    switch (data.status) {
      case "queued":
        return "Waiting in the queue";
      case "processing":
        return data.total > 0 ? `Processing ${data.processed} of ${data.total} slices` : "Processing: planning slices";
      case "completed":
        return data.total > 0 ? `Completed: ${data.total} of ${data.total} slices` : "Completed";
      case "failed":
        return "Failed";
      case "cancelled":
        return "Cancelled";
      default:
        return data.status;
    }
  }

  function renderEta() {
    clearTimeout(ticker);
    ticker = null;
    const left = etaDeadline ? secondsUntil(etaDeadline.best) : null;
    setText(eta, etaDeadline ? deadlineText(etaDeadline) : etaReasonText(etaReason));
    if (left && document.visibilityState !== "hidden") ticker = setTimeout(renderEta, 1000);
  }

  function stopTicker() {
    clearTimeout(ticker);
    ticker = null;
  }

  function onVisibility() {
    if (document.visibilityState === "hidden") stopTicker();
    else renderEta();
  }
  document.addEventListener("visibilitychange", onVisibility);

  function renderLog(entries) {
    logEmpty.hidden = entries.length > 0;
    syncRows(logList, logItems, entries, {
      key: (entry) => `${entry.sequence}|${entry.event}|${entry.at}`,
      create: (entry) =>
        h(
          "li",
          null,
          h("time", { datetime: entry.at, title: formatTime(entry.at, "seconds") }, formatTime(entry.at, "clock")),
          h("span", { class: "log-event" }, entry.event.replaceAll("_", " ")),
          h("span", { class: "log-message" }, entry.message ?? ""),
          h("span", { class: "log-source muted" }, entry.source),
        ),
      node: (item) => item,
    });
  }

  async function loadResult() {
    resultState = "loading";
    try {
      const [{ data: result }, url] = await Promise.all([
        request(`${path}/result`),
        imageURL(`${path}/photo`).catch(() => null), // the counts show without it
      ]);
      if (disposed) {
        if (url) URL.revokeObjectURL(url);
        return;
      }
      photoURL = url;
      await showResult(result);
      resultState = "shown";
    } catch (error) {
      if (disposed) return;
      // 409 (not stored yet) or a blip: the next refresh tries again.
      resultState = "none";
      if (!isTransient(error) && !(error instanceof ApiError && error.status === 409)) {
        resultSection.hidden = false;
        resultSection.replaceChildren(
          h("h2", { id: "job-result-title" }, "Result"),
          h("p", { class: "problem" }, `The result could not be loaded: ${error.message}`),
        );
        resultState = "shown";
      }
    }
  }

  async function showResult(result) {
    const counts = Object.entries(result.counts ?? {}).sort(([a], [b]) => a.localeCompare(b));
    const labels = [...new Set([...counts.map(([l]) => l), ...(result.detections ?? []).map((d) => d.label)])].sort();
    const colour = new Map(labels.map((label, i) => [label, PALETTE[i % PALETTE.length]]));
    const total = counts.reduce((sum, [, n]) => sum + n, 0);
    const table = h(
      "table",
      { class: "counts", id: "job-counts" },
      h("caption", null, "Objects counted per label"),
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "Label"), h("th", { scope: "col", class: "num" }, "Count"))),
      h(
        "tbody",
        null,
        counts.map(([label, n]) =>
          h(
            "tr",
            null,
            h("th", { scope: "row" }, swatch(colour.get(label)), label),
            h("td", { class: "num" }, String(n)),
          ),
        ),
      ),
      h("tfoot", null, h("tr", null, h("th", { scope: "row" }, "Total"), h("td", { class: "num" }, String(total)))),
    );
    const model = result.model
      ? h("p", { id: "job-model", class: "muted" }, `Detector: ${result.model.name}:${result.model.version}`)
      : null;
    const parts = [
      h("h2", { id: "job-result-title" }, "Result"),
      ...(model ? [model] : []),
      h("div", { class: "result-grid" }, h("div", null, table)),
    ];
    resultSection.replaceChildren(...parts);
    resultSection.hidden = false;
    const figure = await drawDetections(result, colour);
    if (figure) resultSection.lastChild.append(figure);
  }

  async function drawDetections(result, colour) {
    const detections = result.detections ?? [];
    const legend = h(
      "ul",
      { class: "legend", "aria-label": "Legend" },
      [...colour].map(([label, c]) =>
        h("li", null, swatch(c), label),
      ),
    );
    if (!photoURL) {
      return h("p", { class: "muted" }, "The photo is not available, so its detections cannot be drawn.");
    }
    const img = new Image();
    img.src = photoURL;
    try {
      await img.decode();
    } catch {
      return h("p", { class: "muted" }, "The photo could not be shown.");
    }
    const width = result.width || img.naturalWidth;
    const height = result.height || img.naturalHeight;
    const scale = Math.min(1, MAX_CANVAS / Math.max(width, height));
    const canvas = h("canvas", {
      id: "job-canvas",
      role: "img",
      "aria-label": `The photo with ${detections.length} detections drawn`,
    });
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    const line = Math.max(1.5, canvas.width / 500);
    ctx.lineWidth = line;
    for (const { bbox, label } of detections) {
      const [x1, y1, x2, y2] = bbox;
      ctx.strokeStyle = colour.get(label) ?? PALETTE[0];
      ctx.strokeRect(x1 * scale, y1 * scale, (x2 - x1) * scale, (y2 - y1) * scale);
    }
    // The canvas holds the pixels now; the photo's bytes can go.
    URL.revokeObjectURL(photoURL);
    photoURL = null;
    return h(
      "figure",
      { class: "detections" },
      canvas,
      h("figcaption", null, legend, h("span", { class: "muted" }, `${detections.length} detections`)),
    );
  }

  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    setText(actionMessage, "Cancelling…");
    try {
      await request(`${path}/cancel`, { method: "POST" });
      if (disposed) return;
      setText(actionMessage, "Cancel requested: the job stops within moments.");
    } catch (error) {
      if (disposed) return;
      if (error instanceof ApiError && error.status === 409) {
        setText(actionMessage, "This job has already finished.");
      } else if (error instanceof ApiError && error.status === 404) {
        gone();
        poller.stop();
        return;
      } else {
        setText(actionMessage, `The job could not be cancelled: ${error.message}`);
      }
    } finally {
      cancelButton.disabled = false;
    }
    poller.refresh();
  });

  const poller = createPoller({ load, onError });
  poller.refresh();

  return {
    dispose() {
      disposed = true;
      poller.stop();
      stopTicker();
      document.removeEventListener("visibilitychange", onVisibility);
      if (photoURL) URL.revokeObjectURL(photoURL);
      photoURL = null;
    },
  };
}
