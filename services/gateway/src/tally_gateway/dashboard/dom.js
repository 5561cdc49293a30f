// Small DOM and formatting helpers shared by the views.

import { FINAL } from "./statuses.js";

/** An element: h("a", {href: "#/jobs", class: "link"}, "Jobs"). */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c != null && c !== false));
  return node;
}

/** Change a node's text only when it differs, so unchanged cells are never touched. */
export function setText(node, text) {
  const value = text ?? "";
  if (node.textContent !== value) node.textContent = value;
}

export function setAttr(node, name, value) {
  if (value == null || value === false) {
    if (node.hasAttribute(name)) node.removeAttribute(name);
  } else {
    const text = value === true ? "" : String(value);
    if (node.getAttribute(name) !== text) node.setAttribute(name, text);
  }
}

export function badge(status) {
  const node = h("span", { class: "badge" });
  setBadge(node, status);
  return node;
}

/** A status badge: the word itself says the status; the colour only repeats it. */
export function setBadge(node, status, text = status) {
  setAttr(node, "data-status", status);
  setText(node, text);
}

/**
 * A <progress> for slices done of slices planned; indeterminate (no value) while the total is
 * unknown and the job can still move.
 */
export function setProgress(node, { processed = 0, total = 0, status = "processing" }) {
  setAttr(node, "data-status", status);
  if (status === "completed") {
    setAttr(node, "max", Math.max(total, 1));
    setAttr(node, "value", Math.max(total, 1));
  } else if (total > 0) {
    setAttr(node, "max", total);
    setAttr(node, "value", Math.min(processed, total));
  } else if (FINAL.has(status)) {
    setAttr(node, "max", 1);
    setAttr(node, "value", 0);
  } else {
    setAttr(node, "value", null);
    setAttr(node, "max", null);
  }
}

export function percentText(job) {
  return job.progress_percent == null ? "" : `${formatNumber(job.progress_percent)}%`;
}

export function formatNumber(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

export function slicesText(job) {
  if (job.total > 0) return `${Math.min(job.processed, job.total)} of ${job.total} slices`;
  if (job.status === "queued") return "Waiting to start";
  if (job.status === "processing") return "Planning slices";
  return "";
}

/** "45 s", "3 min 05 s", "2 h 10 min". */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** Seconds left until a deadline kept in Date.now() milliseconds. */
export function secondsUntil(deadline) {
  return deadline == null ? null : Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
}

/**
 * When a job's or a session's ETA runs out, and its 80 % interval's ends, in Date.now()
 * milliseconds (counted from when the answer arrived); null without an estimate.
 * @returns {{best: number, low: number | null, high: number | null} | null}
 */
export function etaDeadline(data) {
  if (data?.eta_seconds == null) return null;
  const now = Date.now();
  const range = Array.isArray(data.eta_range) && data.eta_range.length === 2 ? data.eta_range : null;
  return {
    best: now + data.eta_seconds * 1000,
    low: range ? now + range[0] * 1000 : null,
    high: range ? now + range[1] * 1000 : null,
  };
}

/** "About 4 min (3–6)" until an etaDeadline, "Finishing" at it, "" without one. */
export function deadlineText(deadline) {
  if (!deadline) return "";
  return etaText(secondsUntil(deadline.best), secondsUntil(deadline.low), secondsUntil(deadline.high));
}

/**
 * The time left: "About 4 min (3–6)" with its interval (in the unit of its upper end), "About
 * 3 min 05 s left" without one, "Finishing" when it has run out.
 * @param {number | null} seconds
 * @param {number | null} [low]
 * @param {number | null} [high]
 */
export function etaText(seconds, low = null, high = null) {
  if (seconds == null) return "";
  if (seconds <= 0) return "Finishing";
  if (low == null || high == null) return `About ${formatDuration(seconds)} left`;
  const [unit, size] = high < 90 ? ["s", 1] : high < 5400 ? ["min", 60] : ["h", 3600];
  const whole = (/** @type {number} */ value) => (size === 3600 ? (value / size).toFixed(1) : String(value));
  const best = size === 3600 ? whole(seconds) : String(Math.max(1, Math.round(seconds / size)));
  const from = size === 3600 ? whole(low) : String(Math.floor(low / size));
  const to = size === 3600 ? whole(high) : String(Math.ceil(high / size));
  return from === to ? `About ${best} ${unit}` : `About ${best} ${unit} (${from}–${to})`;
}

/** Why there is no ETA, as the API says (`eta_reason`). */
export function etaReasonText(reason) {
  if (reason === "no_detector") return "Waiting for a detector";
  if (reason === "measuring") return "Estimating time left";
  return "";
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateTimeSeconds = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const clock = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

/** A local date and time; `style` "seconds" adds them, "clock" is the time alone. */
export function formatTime(iso, style) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const format = style === "clock" ? clock : style === "seconds" ? dateTimeSeconds : dateTime;
  return format.format(date);
}

/** A job's run time: started to completed, or to now while it runs. */
export function jobDuration(job) {
  const start = Date.parse(job.started_at ?? "");
  if (Number.isNaN(start)) return "";
  const end = job.completed_at ? Date.parse(job.completed_at) : Date.now();
  return Number.isNaN(end) ? "" : formatDuration((end - start) / 1000);
}

export function shortId(id) {
  return (id ?? "").slice(0, 8);
}

/** Local "YYYY-MM-DD HH:MM" for names people read. */
export function localStamp(date = new Date(Date.now())) {
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

/** Focus a view's heading after navigation, so keyboard and screen reader users land there. */
export function focusHeading(root) {
  const heading = root.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}
