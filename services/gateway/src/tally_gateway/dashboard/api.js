// The HTTP API: the key in sessionStorage, one request helper, and errors by kind.

import { requestEnded, requestStarted } from "./indicators.js";

const KEY = "tally.apiKey";
const SESSION = "tally.session";

export const auth = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  signIn(key) {
    sessionStorage.setItem(KEY, key);
  },
  signOut() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(SESSION);
  },
};

/** The upload batch being followed, so a reload resumes it. */
export const activeSession = {
  get id() {
    return sessionStorage.getItem(SESSION);
  },
  set(id) {
    if (id) sessionStorage.setItem(SESSION, id);
    else sessionStorage.removeItem(SESSION);
  },
};

/** The API answered with an error status. */
export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
  }

  /** Worth retrying: the service or the edge in front of it is having a moment. */
  get transient() {
    return this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

/** The request never got an answer. */
export class NetworkError extends Error {
  constructor(message = "The network request failed") {
    super(message);
    this.name = "NetworkError";
    this.transient = true;
  }
}

/** The key was refused; the app has already gone back to sign-in. */
export class AuthError extends Error {
  constructor() {
    super("The API key was not accepted");
    this.name = "AuthError";
  }
}

export function isTransient(error) {
  return Boolean(error?.transient);
}

let onUnauthorized = () => {};

/** What to do when the API refuses the stored key (the app goes back to sign-in). */
export function handleUnauthorized(callback) {
  onUnauthorized = callback;
}

export function unauthorized() {
  onUnauthorized();
}

/**
 * One API request. Resolves {status, data, etag}; 304 resolves with data null.
 * Rejects with ApiError, NetworkError or AuthError (401). Nothing aborts a request: an
 * aborted request is a failed one; a caller that no longer wants the answer ignores it.
 */
export async function request(path, options = {}) {
  const { method = "GET", json, etag, as = "json", cache = "no-store" } = options;
  const key = options.key ?? auth.key;
  const headers = { Accept: as === "json" ? "application/json" : "*/*" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (etag) headers["If-None-Match"] = etag;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  requestStarted();
  try {
    let response;
    try {
      response = await fetch(path, { method, headers, body, cache });
    } catch {
      throw new NetworkError();
    }
    const tag = response.headers.get("ETag");
    if (response.status === 304) return { status: 304, data: null, etag: tag ?? etag };
    if (response.status === 401) {
      // Read the answer through: an unread body (JSON is no-store, so no cache reads it
      // either) holds the request open, and leaving the page then aborts it.
      await response.arrayBuffer().catch(() => null);
      if (!options.key) onUnauthorized();
      throw new AuthError();
    }
    if (!response.ok) throw await errorOf(response);
    let data = null;
    try {
      if (as === "blob") data = await response.blob();
      else if (response.status !== 204) data = await response.json();
    } catch {
      throw new NetworkError("The response was cut short");
    }
    return { status: response.status, data, etag: tag };
  } finally {
    requestEnded();
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // an edge error page, not the API's JSON
  }
  const error = body?.error ?? {};
  return new ApiError(response.status, error.code, error.message, body);
}

/** An image the API serves behind the auth header, as an object URL the caller revokes. */
export async function imageURL(path) {
  const { data } = await request(path, { as: "blob", cache: "default" });
  return URL.createObjectURL(data);
}
