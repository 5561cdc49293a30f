// #/upload: add photos to a batch (a session), watch each one upload and then be counted, live
// over Server-Sent Events. The batch survives a reload (its id is in sessionStorage).

import { ApiError, AuthError, activeSession, request } from "../api.js";
import {
  deadlineText,
  etaDeadline,
  etaReasonText,
  focusHeading,
  h,
  localStamp,
  percentText,
  secondsUntil,
  setAttr,
  setBadge,
  setProgress,
  setText,
  shortId,
  slicesText,
} from "../dom.js";
import { syncRows } from "../rows.js";
import { supersedes } from "../session.js";
import { FINAL } from "../statuses.js";
import { followSession } from "../stream.js";
import { thumbnails } from "../thumbs.js";
import { discard, enqueue, forget, itemsOf, pendingOf, retry, subscribe } from "../uploads.js";

/** @typedef {{key: string, name: string, item?: any, job: any}} RowModel */

const ITEM_BADGE = { waiting: "waiting", uploading: "uploading", rejected: "rejected", error: "upload failed" };

export function mount(root) {
  let sid = null;
  let follower = null;
  let creating = null;
  let summary = null;
  let summaryDeadline = null;
  let ticker = null;
  let completionKey = "";
  let complete = false;
  const jobs = new Map(); // job_id -> latest job object
  const deadlines = new Map(); // job_id -> Date.now() when its ETA runs out
  const rows = new Map(); // row key -> row parts
  const thumbs = thumbnails();
  let disposed = false;

  const input = h("input", {
    id: "photo-input",
    class: "visually-hidden",
    type: "file",
    multiple: true,
    accept: "image/*",
  });
  const dropzone = h(
    "div",
    { id: "dropzone", class: "dropzone" },
    h("p", { class: "dropzone-title" }, "Drag photos here"),
    h("p", { class: "muted" }, "or"),
    input,
    h("label", { for: "photo-input", class: "button button-primary" }, "Choose photos"),
    h("p", { class: "hint" }, "Each photo becomes a job; its objects are counted as soon as it arrives."),
  );
  // The detector new batches run: the registry's ready models, the default first (GET /v1/models).
  const modelSelect = h("select", { id: "model-select", name: "model", "aria-describedby": "model-hint" });
  const modelHint = h("p", { id: "model-hint", class: "hint" }, "What counts the photos of a new batch.");
  const modelField = h(
    "div",
    { class: "field model-field", hidden: true },
    h("label", { for: "model-select" }, "Detector"),
    modelSelect,
    modelHint,
  );
  const problem = h("div", { id: "upload-error", class: "problem", role: "alert" });
  const batchTitle = h("h2", { id: "batch-title" });
  const batchModel = h("p", { id: "batch-model", class: "muted" });
  const jobsLink = h("a", { id: "batch-jobs-link" }, "See this batch in Jobs");
  const newBatch = h("button", { type: "button", class: "button", hidden: true }, "New batch");
  const overallText = h("p", { id: "overall-text", class: "overall-text", "aria-live": "polite" });
  const overallProgress = h("progress", { id: "overall-progress", max: 100, value: 0, "aria-labelledby": "overall-text" });
  const overallPercent = h("span", { id: "overall-percent", class: "percent" });
  const sessionEta = h("p", { id: "session-eta", class: "eta muted" });
  const completion = h("div", { id: "completion", class: "completion", role: "status" });
  const list = h("ul", { id: "upload-list", class: "upload-list", "aria-label": "Photos in this batch" });
  const batch = h(
    "section",
    { id: "batch", class: "card batch", "aria-labelledby": "batch-title", hidden: true },
    h("div", { class: "batch-head" }, batchTitle, h("div", { class: "batch-links" }, jobsLink, newBatch)),
    batchModel,
    h(
      "div",
      { class: "overall" },
      overallText,
      h("div", { class: "progress-cell progress-large" }, overallProgress, overallPercent),
      sessionEta,
    ),
    completion,
    list,
  );
  root.append(
    h(
      "section",
      { class: "view view-upload", "aria-labelledby": "upload-title" },
      h("div", { class: "view-head" }, h("h1", { id: "upload-title" }, "Upload photos")),
      modelField,
      dropzone,
      problem,
      batch,
    ),
  );

  // --- adding photos -------------------------------------------------------------------------

  async function addFiles(fileList) {
    const files = [...(fileList ?? [])];
    if (!files.length) return;
    problem.replaceChildren();
    try {
      enqueue(await ensureSession(), files);
    } catch (error) {
      if (disposed || error instanceof AuthError) return;
      problem.replaceChildren(h("p", null, `The upload could not start: ${error.message}`));
    }
  }

  /** The batch new photos join: the one shown, unless it has finished. */
  async function ensureSession() {
    if (sid && !complete) return sid;
    const model = modelSelect.value;
    creating ??= request("/v1/sessions", {
      method: "POST",
      json: { name: `Upload ${localStamp()}`, ...(model ? { params: { model } } : {}) },
    }).finally(() => {
      creating = null;
    });
    const { data } = await creating;
    if (!disposed && data.session_id !== sid) {
      follow(data.session_id, data.name);
      showModel(data.params);
    }
    return data.session_id;
  }

  function showModel(params) {
    setText(batchModel, params?.model ? `Detector: ${params.model}` : "");
  }

  /** The models a batch may run; the field stays hidden while there is no choice. */
  async function loadModels() {
    try {
      const { data } = await request("/v1/models");
      if (disposed) return;
      const ready = (data?.models ?? []).filter((m) => m.status === "ready");
      modelSelect.replaceChildren(
        ...ready.map((m) =>
          h(
            "option",
            { value: m.default ? "" : `${m.name}:${m.version}` },
            `${m.name}:${m.version} (${m.labels.join(", ")})${m.default ? " - default" : ""}`,
          ),
        ),
      );
      modelField.hidden = ready.length < 2;
    } catch {
      modelField.hidden = true; // the default then, as without a choice
    }
  }

  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = "";
  });

  let dragDepth = 0;
  dropzone.addEventListener("dragenter", (event) => {
    event.preventDefault();
    dragDepth += 1;
    dropzone.classList.add("dragging");
  });
  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
  });
  dropzone.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) dropzone.classList.remove("dragging");
  });
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dragDepth = 0;
    dropzone.classList.remove("dragging");
    addFiles(event.dataTransfer?.files);
  });
  // A photo dropped beside the zone must not make the browser leave the dashboard to show it.
  const ignoreDrop = (event) => {
    if (!dropzone.contains(event.target)) event.preventDefault();
  };
  window.addEventListener("dragover", ignoreDrop);
  window.addEventListener("drop", ignoreDrop);

  newBatch.addEventListener("click", () => {
    reset();
    activeSession.set(null);
    render();
    input.focus();
  });

  // --- following the batch -------------------------------------------------------------------

  function follow(id, name, resume = false) {
    reset();
    sid = id;
    activeSession.set(id);
    setText(batchTitle, name || `Batch ${shortId(id)}`);
    setAttr(jobsLink, "href", `#/jobs?session=${encodeURIComponent(id)}`);
    follower = followSession(id, {
      snapshot: (data) => replaceJobs(data.jobs, data.summary),
      poll: (data) => replaceJobs(data.jobs, data.summary),
      job: (job) => {
        upsert(job);
        render();
      },
      summary: (data) => setSummary(data.summary),
      deleted: (data) => {
        remove(data.job_id);
        render();
      },
      done: (data) => setSummary(data.summary),
      expecting: () =>
        itemsOf(sid).some((item) => item.state === "accepted" && !jobs.has(item.job.job_id)),
      gone: () => {
        reset();
        activeSession.set(null);
        render();
      },
    }, { resume });
    render();
  }

  function reset() {
    follower?.stop();
    follower = null;
    if (sid) forget(sid);
    sid = null;
    summary = null;
    summaryDeadline = null;
    complete = false;
    completionKey = "";
    completion.replaceChildren();
    setText(batchModel, "");
    jobs.clear();
    deadlines.clear();
    for (const row of rows.values()) row.li.remove();
    rows.clear();
    thumbs.clear();
  }

  function replaceJobs(list, nextSummary) {
    const ids = new Set((list ?? []).map((j) => j.job_id));
    for (const id of [...jobs.keys()]) {
      if (!ids.has(id)) {
        jobs.delete(id);
        deadlines.delete(id);
      }
    }
    for (const job of list ?? []) upsert(job);
    setSummary(nextSummary);
  }

  function upsert(job) {
    if (!supersedes(jobs.get(job.job_id), job)) return;
    jobs.set(job.job_id, job);
    const deadline = FINAL.has(job.status) ? null : etaDeadline(job);
    if (deadline) {
      deadlines.set(job.job_id, deadline);
    } else {
      deadlines.delete(job.job_id);
    }
  }

  /** A deleted job leaves the batch: its row, upload and thumbnail (the next summary recounts). */
  function remove(jobId) {
    jobs.delete(jobId);
    deadlines.delete(jobId);
    discard(sid, jobId);
    thumbs.drop(jobId);
  }

  function setSummary(next) {
    if (!next) return;
    summary = next;
    summaryDeadline = etaDeadline(next);
    render();
  }

  // --- rendering -----------------------------------------------------------------------------

  /**
   * What the rows show: jobs this tab did not upload (a reload), then this tab's uploads.
   * @returns {RowModel[]}
   */
  function models() {
    const items = itemsOf(sid);
    const mine = new Set(items.filter((i) => i.job).map((i) => i.job.job_id));
    const sending = new Set(items.filter((i) => i.state === "uploading").map((i) => i.name));
    const others = [...jobs.values()]
      .filter((j) => !mine.has(j.job_id) && !sending.has(j.filename))
      .sort((a, b) => (a.created_at ?? "").localeCompare(b.created_at ?? "") || a.job_id.localeCompare(b.job_id));
    return [
      ...others.map((job) => ({ key: `j:${job.job_id}`, name: job.filename, job })),
      ...items.map((item) => ({
        key: `u:${item.id}`,
        name: item.name,
        item,
        job: item.job ? (jobs.get(item.job.job_id) ?? { processed: 0, total: 0, ...item.job }) : null,
      })),
    ];
  }

  function render() {
    batch.hidden = !sid;
    const all = models();
    syncRows(list, rows, all, {
      key: (model) => model.key,
      create: (model) => createRow(model.key),
      update: updateRow,
      node: (row) => row.li,
    });
    renderOverall(all);
    renderEtas();
  }

  function renderOverall(all) {
    const tracked = all.filter((m) => m.job || m.item?.state === "waiting" || m.item?.state === "uploading");
    const final = tracked.filter((m) => m.job && FINAL.has(m.job.status));
    const pending = sid ? pendingOf(sid).length : 0;
    complete = tracked.length > 0 && final.length === tracked.length && pending === 0;
    newBatch.hidden = !complete;
    const total = tracked.length;
    setText(overallText, total ? `${final.length} of ${total} ${total === 1 ? "photo" : "photos"} done` : "");
    const pct = complete ? 100 : summary?.overall_progress_percent;
    if (pct != null) {
      setAttr(overallProgress, "max", 100);
      setAttr(overallProgress, "value", pct);
      setText(overallPercent, `${Math.round(pct)}%`);
    } else if (tracked.length) {
      setAttr(overallProgress, "value", null);
      setText(overallPercent, "");
    } else {
      setAttr(overallProgress, "value", 0);
      setText(overallPercent, "");
    }
    setAttr(overallProgress, "data-status", complete ? "completed" : "processing");
    renderCompletion(tracked, final);
  }

  function renderCompletion(tracked, final) {
    const bad = final.filter((m) => m.job.status !== "completed");
    const key = complete ? `${tracked.length}|${bad.map((m) => m.job.job_id).join(",")}` : "";
    if (key === completionKey) return;
    completionKey = key;
    if (!complete) {
      completion.replaceChildren();
      return;
    }
    const n = tracked.length;
    const jobsHref = `#/jobs?session=${encodeURIComponent(sid)}`;
    if (!bad.length) {
      completion.dataset.outcome = "success";
      completion.replaceChildren(
        h("p", { class: "completion-title" }, `All ${n} ${n === 1 ? "photo" : "photos"} completed`),
        h("a", { href: jobsHref }, "See the results"),
      );
      return;
    }
    completion.dataset.outcome = "errors";
    completion.replaceChildren(
      h("p", { class: "completion-title" }, "Completed with errors"),
      h(
        "ul",
        { class: "failed-list", "aria-label": "Photos that did not complete" },
        bad.map((m) =>
          h(
            "li",
            null,
            h("a", { href: `#/jobs/${encodeURIComponent(m.job.job_id)}` }, m.name || shortId(m.job.job_id)),
            `: ${m.job.status === "cancelled" ? "cancelled" : m.job.error_message || "failed"}`,
          ),
        ),
      ),
    );
  }

  function createRow(key) {
    const row = {
      img: h("img", { alt: "", width: 56, height: 56, class: "thumb", hidden: true }),
      name: h("a", { class: "row-name" }),
      badge: h("span", { class: "badge" }),
      progress: h("progress"),
      percent: h("span", { class: "percent" }),
      detail: h("span", { class: "row-detail" }),
      eta: h("span", { class: "row-eta eta muted" }),
      retry: h("button", { type: "button", class: "button button-small", hidden: true }, "Retry upload"),
      jobId: null,
      itemId: null,
    };
    row.li = h(
      "li",
      { class: "upload-row", "data-key": key },
      h("span", { class: "thumb-frame thumb-large" }, row.img),
      h(
        "div",
        { class: "row-main" },
        h("div", { class: "row-top" }, row.name, row.badge),
        h("div", { class: "progress-cell" }, row.progress, row.percent),
        h("div", { class: "row-meta" }, row.detail, row.eta),
      ),
      row.retry,
    );
    row.retry.addEventListener("click", () => retry(row.itemId));
    return row;
  }

  /**
   * @param {any} row
   * @param {Omit<RowModel, "key">} model
   */
  function updateRow(row, model) {
    const { name, item, job } = model;
    row.itemId = item?.id ?? null;
    const label = name || (job ? shortId(job.job_id) : "photo");
    setText(row.name, label);
    setAttr(row.progress, "aria-label", `Progress of ${label}`);
    row.retry.hidden = item?.state !== "error";
    if (job) {
      if (row.jobId !== job.job_id) {
        row.jobId = job.job_id;
        setAttr(row.li, "data-job-id", job.job_id);
        setAttr(row.name, "href", `#/jobs/${encodeURIComponent(job.job_id)}`);
        thumbs.show(job.job_id, row.img);
      }
      setBadge(row.badge, job.status);
      row.progress.hidden = false;
      setProgress(row.progress, job);
      setText(row.percent, percentText(job));
      setText(row.detail, jobDetail(job));
      return;
    }
    setBadge(row.badge, item.state, ITEM_BADGE[item.state]);
    const sending = item.state === "waiting" || item.state === "uploading";
    row.progress.hidden = !sending;
    setAttr(row.progress, "data-status", "uploading");
    if (item.state === "uploading" && item.size > 0) {
      setAttr(row.progress, "max", item.size);
      setAttr(row.progress, "value", item.loaded);
    } else if (item.state === "waiting") {
      setAttr(row.progress, "max", 1);
      setAttr(row.progress, "value", 0);
    } else {
      setAttr(row.progress, "value", null);
    }
    const share = item.size > 0 ? Math.round((100 * item.loaded) / item.size) : 0;
    setText(row.percent, item.state === "uploading" ? `${share}%` : "");
    const details = {
      waiting: "Waiting to upload",
      uploading: `Uploading ${share}%`,
      rejected: `rejected: ${item.message}`,
      error: `Upload failed: ${item.message}`,
    };
    setText(row.detail, details[item.state] ?? "");
  }

  function jobDetail(job) {
    const slices = slicesText(job);
    if (job.status === "failed") return [slices, job.error_message || "Failed"].filter(Boolean).join(" · ");
    if (job.status === "cancelled") return [slices, "Cancelled"].filter(Boolean).join(" · ");
    if (job.status === "completed" && job.result?.counts) {
      const total = Object.values(job.result.counts).reduce((a, b) => a + b, 0);
      return `${slices} · ${total} ${total === 1 ? "object" : "objects"} counted`;
    }
    return slices;
  }

  /** The ETAs count down each second between updates. */
  function renderEtas() {
    clearTimeout(ticker);
    ticker = null;
    let running = false;
    for (const row of rows.values()) {
      const job = row.jobId ? jobs.get(row.jobId) : null;
      const deadline = job && !FINAL.has(job.status) ? deadlines.get(row.jobId) : null;
      setText(row.eta, deadline ? deadlineText(deadline) : etaReasonText(job && !FINAL.has(job.status) ? job.eta_reason : null));
      running ||= Boolean(deadline && secondsUntil(deadline.best));
    }
    const deadline = complete ? null : summaryDeadline;
    const active = !complete && rows.size > 0 && Boolean(summary?.total);
    const left = deadline ? secondsUntil(deadline.best) : null;
    setText(
      sessionEta,
      left ? deadlineText(deadline) : active && !deadline ? etaReasonText(summary?.eta_reason) || "Estimating time left" : "",
    );
    running ||= Boolean(left);
    if (running && document.visibilityState !== "hidden") ticker = setTimeout(renderEtas, 1000);
  }

  function onVisibility() {
    if (document.visibilityState === "hidden") {
      clearTimeout(ticker);
      ticker = null;
    } else {
      renderEtas();
    }
  }
  document.addEventListener("visibilitychange", onVisibility);

  // --- uploads report here; the batch is resumed on load -------------------------------------

  const unsubscribe = subscribe((item) => {
    if (item && item.sessionId !== sid) return;
    if (item?.state === "accepted") follower?.kick();
    const row = item && rows.get(`u:${item.id}`);
    if (row && item.state === "uploading") updateRow(row, { name: item.name, item, job: null });
    else render();
  });

  async function resume() {
    const stored = activeSession.id;
    if (stored) {
      follow(stored, "", true);
      try {
        const { data } = await request(`/v1/sessions/${encodeURIComponent(stored)}`);
        if (disposed) return;
        if (sid === stored && data?.name) setText(batchTitle, data.name);
        if (sid === stored) showModel(data?.params);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404 && sid === stored) {
          reset();
          activeSession.set(null);
          render();
        }
      }
      return;
    }
    try {
      const { data } = await request("/v1/sessions?active=true");
      if (disposed) return;
      const latest = data?.sessions?.[0];
      if (latest && !sid) {
        follow(latest.session_id, latest.name, true);
        showModel(latest.params);
      }
    } catch {
      // nothing to resume: a fresh page
    }
  }

  render();
  focusHeading(root);
  resume();
  loadModels();

  return {
    dispose() {
      disposed = true;
      unsubscribe();
      follower?.stop();
      clearTimeout(ticker);
      document.removeEventListener("visibilitychange", onVisibility);
      window.removeEventListener("dragover", ignoreDrop);
      window.removeEventListener("drop", ignoreDrop);
      thumbs.close();
    },
  };
}
