// #/jobs?status=&session=&sort=&cursor=&prev=: every job of the tenant, a page at a time,
// refreshed in place (rows keyed by data-job-id; only changed cells are written).

import { ApiError, request } from "../api.js";
import {
  badge,
  focusHeading,
  formatTime,
  h,
  jobDuration,
  percentText,
  setAttr,
  setBadge,
  setProgress,
  setText,
  shortId,
} from "../dom.js";
import { FIRST_PAGE, hashOf, readParams } from "../filters.js";
import { createPoller } from "../poller.js";
import { syncRows } from "../rows.js";
import { STATUSES } from "../statuses.js";
import { thumbnails } from "../thumbs.js";

const PAGE_SIZE = 25;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SESSION_HINT = "Paste a session id, or pick one";

export function mount(root, route) {
  let params = readParams(route.params);
  let poller = null;
  let nextCursor = null;
  let shown = []; // the page's jobs as last received
  let scrollToTop = false;
  const rows = new Map(); // job_id -> row parts
  const thumbs = thumbnails();
  let disposed = false;

  const option = (value, text) => h("option", { value }, text);
  const statusSelect = h(
    "select",
    { id: "filter-status", name: "status" },
    option("", "All"),
    STATUSES.map((s) => option(s, s)),
  );
  const sessionInput = h("input", {
    id: "filter-session",
    name: "session",
    type: "text",
    list: "session-options",
    placeholder: "All sessions",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "filter-session-hint",
  });
  const sessionHint = h("p", { id: "filter-session-hint", class: "hint" }, SESSION_HINT);
  const sessionOptions = h("datalist", { id: "session-options" });
  const sortSelect = h(
    "select",
    { id: "filter-sort", name: "sort" },
    option("-created_at", "Newest first"),
    option("created_at", "Oldest first"),
  );
  const clearButton = h("button", { type: "button", class: "button button-quiet" }, "Clear filters");
  const caption = h("caption");
  const tbody = h("tbody");
  const table = h(
    "table",
    { id: "jobs-table", class: "jobs-table" },
    caption,
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        ["Photo", "File", "Session", "Status", "Progress", "Created", "Duration"].map((name) =>
          h("th", { scope: "col", class: `col-${name.toLowerCase()}` }, name),
        ),
      ),
    ),
    tbody,
  );
  const empty = h("p", { id: "jobs-empty", class: "empty", hidden: true }, "No jobs match these filters.");
  const problem = h("div", { id: "jobs-error", class: "problem", role: "alert" });
  const summary = h("p", { id: "jobs-summary", class: "muted", "aria-live": "polite" });
  const prevButton = h("button", { type: "button", class: "button", disabled: true }, "Previous page");
  const nextButton = h("button", { type: "button", class: "button", disabled: true }, "Next page");

  root.append(
    h(
      "section",
      { class: "view view-jobs", "aria-labelledby": "jobs-title" },
      h(
        "div",
        { class: "view-head" },
        h("h1", { id: "jobs-title" }, "Jobs"),
        summary,
      ),
      h(
        "form",
        { class: "filters", role: "search", "aria-label": "Filter jobs", onsubmit: (e) => e.preventDefault() },
        h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), statusSelect),
        h(
          "div",
          { class: "field field-wide" },
          h("label", { for: "filter-session" }, "Session"),
          sessionInput,
          sessionOptions,
          sessionHint,
        ),
        h("div", { class: "field" }, h("label", { for: "filter-sort" }, "Sort"), sortSelect),
        h("div", { class: "field field-action" }, clearButton),
      ),
      problem,
      h("div", { class: "table-wrap" }, table),
      empty,
      h("nav", { class: "pager", "aria-label": "Pages" }, prevButton, nextButton),
    ),
  );

  function navigate(changes) {
    const target = hashOf({ ...params, ...changes });
    if (target !== location.hash) location.hash = target;
  }

  function resetPage(changes) {
    navigate({ ...changes, cursor: "", prev: [] });
  }

  statusSelect.addEventListener("change", () => resetPage({ status: statusSelect.value }));
  sortSelect.addEventListener("change", () => resetPage({ sort: sortSelect.value }));
  sessionInput.addEventListener("input", () => {
    const value = sessionInput.value.trim();
    if (value === "" || UUID.test(value)) {
      setText(sessionHint, SESSION_HINT);
      sessionHint.classList.remove("hint-error");
      if (value !== params.session) resetPage({ session: value });
    }
  });
  sessionInput.addEventListener("change", () => {
    const value = sessionInput.value.trim();
    if (value && !UUID.test(value)) {
      setText(sessionHint, "Enter a whole session id, or pick one from the list");
      sessionHint.classList.add("hint-error");
    }
  });
  clearButton.addEventListener("click", () =>
    resetPage({ status: "", session: "", sort: "-created_at" }),
  );
  nextButton.addEventListener("click", () => {
    if (!nextCursor) return;
    scrollToTop = true;
    navigate({ prev: [...params.prev, params.cursor || FIRST_PAGE], cursor: nextCursor });
  });
  prevButton.addEventListener("click", () => {
    const prev = [...params.prev];
    const cursor = prev.pop();
    scrollToTop = true;
    navigate({ prev, cursor: cursor && cursor !== FIRST_PAGE ? cursor : "" });
  });

  function syncControls() {
    statusSelect.value = params.status;
    sortSelect.value = params.sort;
    if (sessionInput.value.trim() !== params.session) sessionInput.value = params.session;
    clearButton.hidden = !params.status && !params.session && params.sort === "-created_at";
    const page = params.prev.length + 1;
    const order = params.sort === "created_at" ? "oldest first" : "newest first";
    const filters = [params.status, params.session && `session ${shortId(params.session)}`]
      .filter(Boolean)
      .join(", ");
    setText(caption, `Jobs${filters ? ` (${filters})` : ""}, ${order}, page ${page}`);
  }

  async function load() {
    const query = new URLSearchParams({ sort: params.sort, limit: String(PAGE_SIZE) });
    if (params.status) query.set("status", params.status);
    if (params.session) query.set("session_id", params.session);
    if (params.cursor) query.set("cursor", params.cursor);
    const { data } = await request(`/v1/jobs?${query}`);
    shown = data.jobs ?? [];
    nextCursor = data.next_cursor ?? null;
    problem.replaceChildren();
    render();
    return data.poll_interval_ms;
  }

  function onError(error) {
    shown = [];
    render();
    empty.hidden = true; // the problem says why the list is empty
    if (error instanceof ApiError && error.code === "invalid_cursor") {
      problem.replaceChildren(
        h("p", null, "This page of the list is no longer available. "),
        h("a", { href: hashOf({ ...params, cursor: "", prev: [] }) }, "Go to the first page"),
      );
    } else {
      problem.replaceChildren(h("p", null, `The jobs could not be loaded: ${error.message}`));
    }
    return false;
  }

  function render() {
    syncRows(tbody, rows, shown, {
      key: (job) => job.job_id,
      create: createRow,
      update: updateRow,
      node: (row) => row.tr,
      drop: (id) => thumbs.drop(id),
    });
    empty.hidden = shown.length > 0;
    prevButton.disabled = !params.cursor;
    nextButton.disabled = !nextCursor;
    const page = params.prev.length + 1;
    const count = shown.length === 1 ? "1 job" : `${shown.length} jobs`;
    setText(summary, `Page ${page}: ${count}`);
    if (scrollToTop) {
      scrollToTop = false;
      if (table.getBoundingClientRect().top < 0) table.scrollIntoView({ block: "start" });
    }
  }

  function createRow(job) {
    const img = h("img", { alt: "", width: 40, height: 40, class: "thumb", hidden: true });
    const row = {
      img,
      link: h("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}` }),
      session: h("a", {}),
      badge: badge(job.status),
      progress: h("progress"),
      percent: h("span", { class: "percent" }),
      created: h("time"),
      duration: h("td", { class: "col-duration", "data-label": "Duration" }),
    };
    row.tr = h(
      "tr",
      { "data-job-id": job.job_id },
      h("td", { class: "col-photo" }, h("span", { class: "thumb-frame" }, img)),
      h("td", { class: "col-file", "data-label": "File" }, row.link),
      h("td", { class: "col-session", "data-label": "Session" }, row.session),
      h("td", { class: "col-status", "data-label": "Status" }, row.badge),
      h(
        "td",
        { class: "col-progress", "data-label": "Progress" },
        h("span", { class: "progress-cell" }, row.progress, row.percent),
      ),
      h("td", { class: "col-created", "data-label": "Created" }, row.created),
      row.duration,
    );
    thumbs.show(job.job_id, img);
    return row;
  }

  function updateRow(row, job) {
    const name = job.filename || shortId(job.job_id);
    setText(row.link, name);
    setText(row.session, shortId(job.session_id));
    setAttr(row.session, "href", `#/jobs?session=${encodeURIComponent(job.session_id)}`);
    setAttr(row.session, "title", `Only the jobs of session ${job.session_id}`);
    setBadge(row.badge, job.status);
    setProgress(row.progress, job);
    setAttr(row.progress, "aria-label", `Progress of ${name}`);
    setText(row.percent, percentText(job));
    setText(row.created, formatTime(job.created_at));
    setAttr(row.created, "datetime", job.created_at);
    setText(row.duration, jobDuration(job));
  }

  async function loadSessions() {
    try {
      const { data } = await request("/v1/sessions");
      if (disposed) return;
      const sessions = (data?.sessions ?? []).slice(0, 100);
      sessionOptions.replaceChildren(
        ...sessions.map((s) =>
          h("option", { value: s.session_id }, `${s.name || "Session"} (${shortId(s.session_id)})`),
        ),
      );
    } catch {
      // suggestions only: the field still takes a pasted id
    }
  }

  function start() {
    poller?.stop();
    poller = createPoller({ load, onError });
    poller.refresh();
  }

  syncControls();
  focusHeading(root);
  start();
  loadSessions();

  return {
    update(next) {
      const fresh = readParams(next.params);
      if (hashOf(fresh) === hashOf(params)) return;
      params = fresh;
      nextCursor = null;
      syncControls();
      start();
    },
    dispose() {
      disposed = true;
      poller?.stop();
      thumbs.close();
    },
  };
}
