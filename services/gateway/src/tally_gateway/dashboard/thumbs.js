// Thumbnails, served behind the auth header: fetched once per job as object URLs, revoked when
// their row goes or the view closes. Three at a time, so a page of them leaves the browser's
// few connections free for the polls.

import { imageURL } from "./api.js";

const AT_ONCE = 3;
const waiting = [];
let running = 0;

function next() {
  while (running < AT_ONCE && waiting.length) {
    const task = waiting.shift();
    running += 1;
    task().finally(() => {
      running -= 1;
      next();
    });
  }
}

export function thumbnails() {
  const urls = new Map(); // job_id -> object URL, or the pending load's token
  let closed = false;

  function drop(jobId) {
    const url = urls.get(jobId);
    if (typeof url === "string") URL.revokeObjectURL(url);
    urls.delete(jobId);
  }

  async function load(jobId, img, token) {
    const current = () => !closed && urls.get(jobId) === token;
    if (!current()) return; // no longer shown: not worth a request
    try {
      const url = await imageURL(`/v1/jobs/${encodeURIComponent(jobId)}/thumbnail`);
      if (!current()) {
        URL.revokeObjectURL(url);
        return;
      }
      urls.set(jobId, url);
      img.src = url;
      img.hidden = false;
    } catch {
      if (current()) urls.delete(jobId); // the placeholder stays
    }
  }

  return {
    show(jobId, img) {
      if (urls.has(jobId)) return;
      const token = {};
      urls.set(jobId, token);
      waiting.push(() => load(jobId, img, token));
      next();
    },
    drop,
    clear() {
      for (const jobId of [...urls.keys()]) drop(jobId);
    },
    close() {
      closed = true;
      this.clear();
    },
  };
}
