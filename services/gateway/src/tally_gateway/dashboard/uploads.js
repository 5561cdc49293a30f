// Photo uploads: one request per file, two at a time, each with its byte progress. XHR rather
// than fetch because only XHR reports upload progress.

import { auth, unauthorized } from "./api.js";

const CONCURRENCY = 2;
const items = []; // {id, sessionId, file, name, state, loaded, size, job, message}
const listeners = new Set();
let nextId = 1;

/** States: waiting, uploading, accepted, rejected, error. */
export function enqueue(sessionId, files) {
  for (const file of files) {
    items.push({
      id: nextId++,
      sessionId,
      file,
      name: file.name,
      state: "waiting",
      loaded: 0,
      size: file.size,
      job: null,
      message: "",
      xhr: null,
    });
  }
  pump();
  emit();
}

export function itemsOf(sessionId) {
  return items.filter((item) => item.sessionId === sessionId);
}

/** Uploads of this session that have not been answered yet. */
export function pendingOf(sessionId) {
  return itemsOf(sessionId).filter((i) => i.state === "waiting" || i.state === "uploading");
}

export function retry(id) {
  const item = items.find((i) => i.id === id);
  if (item?.state !== "error") return;
  Object.assign(item, { state: "waiting", loaded: 0, message: "" });
  pump();
  emit();
}

/** Drop a finished batch's answered uploads (and their File objects). */
export function forget(sessionId) {
  for (let i = items.length - 1; i >= 0; i -= 1) {
    const item = items[i];
    if (item.sessionId === sessionId && item.state !== "waiting" && item.state !== "uploading") {
      items.splice(i, 1);
    }
  }
}

/** A job of the session was deleted: its upload, answered long ago, goes from the batch. */
export function discard(sessionId, jobId) {
  const at = items.findIndex((i) => i.sessionId === sessionId && i.job?.job_id === jobId);
  if (at >= 0) items.splice(at, 1);
}

/** Sign-out: stop everything. */
export function clearAll() {
  for (const item of items) item.xhr?.abort();
  items.length = 0;
  emit();
}

export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function emit(item) {
  for (const listener of listeners) listener(item);
}

function pump() {
  let running = items.filter((i) => i.state === "uploading").length;
  for (const item of items) {
    if (running >= CONCURRENCY) break;
    if (item.state === "waiting") {
      send(item);
      running += 1;
    }
  }
}

function send(item) {
  const xhr = new XMLHttpRequest();
  item.xhr = xhr;
  item.state = "uploading";
  xhr.open("POST", `/v1/sessions/${encodeURIComponent(item.sessionId)}/photos`);
  const key = auth.key;
  if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.addEventListener("progress", (event) => {
    item.loaded = event.loaded;
    if (event.lengthComputable) item.size = event.total;
    emit(item);
  });
  xhr.addEventListener("load", () => settle(item, xhr));
  xhr.addEventListener("error", () => fail(item, "The network request failed"));
  xhr.addEventListener("timeout", () => fail(item, "The upload timed out"));
  xhr.addEventListener("abort", () => {
    item.xhr = null;
  });
  const form = new FormData();
  form.append("file", item.file, item.file.name);
  xhr.send(form);
}

function settle(item, xhr) {
  item.xhr = null;
  let body = null;
  try {
    body = JSON.parse(xhr.responseText);
  } catch {
    // not the API's JSON (an edge error page)
  }
  if (xhr.status === 401) {
    fail(item, "The API key was not accepted");
    unauthorized();
    return;
  }
  const rejected = body?.rejected?.[0];
  if (xhr.status === 202 && body?.jobs?.length) {
    Object.assign(item, { state: "accepted", job: body.jobs[0], loaded: item.size });
  } else if (rejected) {
    Object.assign(item, { state: "rejected", message: rejected.message || rejected.code });
  } else if (xhr.status >= 400 && xhr.status < 500 && body?.error) {
    Object.assign(item, { state: "rejected", message: body.error.message || body.error.code });
  } else {
    fail(item, body?.error?.message || `The server answered ${xhr.status}`);
    return;
  }
  pump();
  emit(item);
}

function fail(item, message) {
  item.xhr = null;
  Object.assign(item, { state: "error", message });
  pump();
  emit(item);
}
