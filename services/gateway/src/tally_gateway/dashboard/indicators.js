// The two header indicators: #connection (offline, and when the next retry is) and #refreshing
// (a request is in flight). Several pollers and streams report to them; each is an owner.

const offline = new Map(); // owner -> Date.now() of its next retry (null: retrying now)
let countdown = null;
let inFlight = 0;

export function reportOffline(owner, retryAt) {
  const fresh = !offline.size;
  offline.set(owner, retryAt);
  renderConnection(fresh);
}

export function reportOnline(owner) {
  if (offline.delete(owner)) renderConnection(false);
}

/** Stop the countdown while the page is hidden; it picks up again when shown. */
export function pauseCountdown() {
  clearTimeout(countdown);
  countdown = null;
}

export function resumeCountdown() {
  if (offline.size) renderConnection(false);
}

function renderConnection(fresh) {
  const node = document.getElementById("connection");
  clearTimeout(countdown);
  countdown = null;
  if (!node) return;
  if (!offline.size) {
    node.dataset.state = "online";
    node.removeAttribute("aria-live");
    node.textContent = "";
    return;
  }
  // Announce losing the connection once; the per-second countdown stays silent.
  if (fresh) node.removeAttribute("aria-live");
  else node.setAttribute("aria-live", "off");
  node.dataset.state = "offline";
  const times = [...offline.values()].filter((t) => t != null);
  const next = times.length ? Math.min(...times) : null;
  const left = next == null ? 0 : Math.ceil((next - Date.now()) / 1000);
  const text =
    left > 0 ? `Connection lost — retrying in ${left} s` : "Connection lost — retrying now";
  if (node.textContent !== text) node.textContent = text;
  if (next != null && left > 0 && document.visibilityState !== "hidden") {
    const wait = next - Date.now() - (left - 1) * 1000;
    countdown = setTimeout(() => renderConnection(false), Math.max(50, wait));
  }
}

export function requestStarted() {
  inFlight += 1;
  renderRefreshing();
}

export function requestEnded() {
  inFlight = Math.max(0, inFlight - 1);
  renderRefreshing();
}

function renderRefreshing() {
  const node = document.getElementById("refreshing");
  if (!node) return;
  const busy = inFlight > 0 ? "true" : "false";
  if (node.getAttribute("aria-busy") !== busy) {
    node.setAttribute("aria-busy", busy);
    const label = node.querySelector(".visually-hidden");
    if (label) label.textContent = inFlight > 0 ? "Refreshing" : "";
  }
}
