// Tally's dashboard: hash routes, the header, and one view mounted at a time.

import { auth, handleUnauthorized } from "./api.js";
import { clearAll } from "./uploads.js";
import * as jobView from "./views/job.js";
import * as jobsView from "./views/jobs.js";
import * as signinView from "./views/signin.js";
import * as uploadView from "./views/upload.js";
import * as webhooksView from "./views/webhooks.js";

const ROUTES = [
  { name: "signin", pattern: /^\/signin$/, view: signinView, title: "Sign in" },
  { name: "upload", pattern: /^\/upload$/, view: uploadView, title: "Upload" },
  { name: "jobs", pattern: /^\/jobs$/, view: jobsView, title: "Jobs" },
  { name: "job", pattern: /^\/jobs\/([^/?]+)$/, view: jobView, title: "Job" },
  { name: "webhooks", pattern: /^\/webhooks$/, view: webhooksView, title: "Webhooks" },
];

// index.html has them all.
const main = /** @type {HTMLElement} */ (document.getElementById("main"));
const nav = /** @type {HTMLElement} */ (document.getElementById("nav"));
const signOutButton = /** @type {HTMLElement} */ (document.getElementById("sign-out"));
let current = null; // {route, instance}
let returnTo = null;
let notice = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  const params = new URLSearchParams(at < 0 ? "" : raw.slice(at + 1));
  for (const route of ROUTES) {
    const match = route.pattern.exec(path);
    if (match) return { ...route, params, arg: match[1] ?? null, hash: location.hash };
  }
  return null;
}

function go(hash) {
  if (location.hash === hash) render();
  else location.replace(hash);
}

function render() {
  const route = parseHash();
  const signedIn = Boolean(auth.key);
  if (!route) return go(signedIn ? "#/upload" : "#/signin");
  if (!signedIn && route.name !== "signin") {
    returnTo = route.hash;
    return go("#/signin");
  }
  if (signedIn && route.name === "signin") return go("#/upload");

  const same = current?.route.name === route.name && current.route.arg === route.arg;
  if (same && current.instance.update) {
    current.route = route;
    current.instance.update(route);
    return;
  }
  current?.instance.dispose();
  current = null;
  main.replaceChildren();
  showChrome(signedIn, route.name);
  document.title = `${route.title} — Tally`;
  const context = {
    notice: route.name === "signin" ? takeNotice() : null,
    onSignedIn: () => {
      const target = returnTo ?? "#/upload";
      returnTo = null;
      go(target);
    },
  };
  current = { route, instance: route.view.mount(main, route, context) };
}

function takeNotice() {
  const text = notice;
  notice = null;
  return text;
}

function showChrome(signedIn, name) {
  nav.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
  for (const link of nav.querySelectorAll("a")) {
    const active = link.dataset.route === name || (name === "job" && link.dataset.route === "jobs");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function signOut(message) {
  current?.instance.dispose();
  current = null;
  clearAll();
  auth.signOut();
  notice = message ?? null;
  go("#/signin");
}

signOutButton.addEventListener("click", () => {
  returnTo = null;
  signOut();
});

handleUnauthorized(() => {
  if (!auth.key) return;
  returnTo = location.hash;
  signOut("Your API key is no longer accepted. Sign in again.");
});

window.addEventListener("hashchange", render);
render();
