"""The operator's dashboard in a real headless Chromium (Debian's, driven by Playwright) against
the real local stack: upload and watch, the jobs list, job detail, polling manners, sign-in.

The gateway runs outside the stack's supervisor so that a test can stop and start it; the
browser's clock is Playwright's where a test needs minutes of back-off to pass in moments.
Screenshots of every view, at desktop and phone width, land in $TALLY_ARTIFACTS_DIR
(.artifacts/ by default)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    Page,
    Request,
    Response,
    ViewportSize,
    expect,
    sync_playwright,
)

from tally_client.sdk import TallyClient
from tally_contracts.statuses import FINAL
from tally_model.layouts import wrapped_bytes
from tally_stack import launcher
from tally_synth import write_dataset
from tests.e2e.harness import BIN, Stack, final_state, local_stack
from tests.eventually import eventually
from tests.webhook_receiver import receiver, signatures_valid

pytestmark = pytest.mark.e2e
CHROMIUM = os.environ.get("TALLY_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TALLY_ARTIFACTS_DIR", Path(__file__).parents[2] / ".artifacts"))
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 375, "height": 740}
ADD_PHOTO = """
import sys
from pathlib import Path
from tally_client.sdk import TallyClient
url, key, session, photo = sys.argv[1:]
with TallyClient(url, key) as client:
    client.upload(session, [Path(photo)])
"""


class Gateway:
    """The stack's gateway, run by the tests (TALLY_STACK_EXTERNAL=gateway) on its usual port."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.process: launcher.Process | None = None

    def start(self) -> None:
        config = self.stack.config
        env = {**self.stack.env, **config.service_env(), "TALLY_PORT": str(config.gateway_port)}
        # Snapshots of 2 jobs: a batch of 3 has a second page, so every test that follows one
        # over SSE goes through the dashboard's reading of a big session's later pages.
        env["TALLY_SSE_SNAPSHOT_JOBS"] = "2"
        self.process = launcher.start(
            "the gateway",
            [BIN / "tally-gateway"],
            env=env,
            log_path=self.stack.run_dir / "gateway.log",
            append_log=True,  # one log across the tests' restarts
        )
        self.process.wait_until(
            launcher.http_ok(f"http://127.0.0.1:{config.gateway_port}/readyz"), timeout_s=60
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace_s=60)


@pytest.fixture(scope="module")
def stack(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("browser") / "stack"
    with local_stack(module_database, run_dir, TALLY_STACK_EXTERNAL="gateway") as stack:
        yield stack


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Iterator[Gateway]:
    gateway = Gateway(stack)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def api_key(stack: Stack, gateway: Gateway) -> str:
    return stack.admin_key("browser-tenant")


@pytest.fixture(scope="module")
def browser(api_key: str) -> Iterator[Browser]:
    """Chromium, started after the stack and gone before it (Playwright's synchronous API keeps
    an event loop of its own that the stack's start and stop must not run into)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A page, and what went wrong on it: console errors and warnings, failed requests,
    error answers."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        page.on(
            "console",
            lambda m: (
                self.console.append(f"{m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda e: self.console.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url} {r.failure}"))
        page.on(
            "response",
            lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )

    def clean(self) -> None:
        assert self.console == []
        assert self.failed == []
        assert self.errors == []


@pytest.fixture
def watched(browser: Browser, stack: Stack, api_key: str) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP, base_url=stack.url)
    page = context.new_page()
    try:
        yield Watched(page)
    finally:
        context.close()


def sign_in(page: Page, api_key: str, where: str = "#/upload") -> None:
    page.goto("/")
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.goto(f"/{where}")


def shoot(page: Page, name: str) -> None:
    """The view as it is, at desktop and at phone width."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.wait_for_timeout(300)  # layout settles
        page.screenshot(path=ARTIFACTS / f"{name}-{label}.png", full_page=True)
    if size is not None:
        page.set_viewport_size(size)


def photos(directory: Path, count: int, seed: int) -> list[Path]:
    write_dataset(directory, count=count, seed=seed, width=1500, height=1000, workers=2)
    return sorted(directory.glob("*.jpg"))


def test_three_photos_uploaded_through_the_page_complete_without_a_reload(
    watched: Watched, api_key: str, tmp_path: Path
) -> None:
    page = watched.page
    sign_in(page, api_key)
    shoot(page, "upload-empty")
    page.evaluate("window.__sameDocument = true")
    page.get_by_label("Choose photos").set_input_files(photos(tmp_path, 3, seed=11))
    expect(
        page.get_by_text(re.compile(r"\b0 of 3 photos|\b1 of 3 photos|\b2 of 3 photos"))
    ).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1500)
    shoot(page, "upload-progress")
    expect(page.get_by_text("All 3 photos completed")).to_be_visible(timeout=180_000)
    expect(page.get_by_text("3 of 3 photos")).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    shoot(page, "upload-done")

    page.reload()  # the active session comes back
    expect(page.get_by_text("3 of 3 photos")).to_be_visible(timeout=15_000)
    watched.clean()


def test_a_job_created_elsewhere_appears_within_one_interval_keeping_filter_and_sort(
    watched: Watched, stack: Stack, api_key: str, tmp_path: Path
) -> None:
    page = watched.page
    files = photos(tmp_path, 4, seed=12)
    with TallyClient(stack.url, api_key) as client:
        session = client.create_session("dashboard")
        client.upload(session, files[:3])
        final_state(client, session, 180)
    sign_in(page, api_key, f"#/jobs?session={session}&sort=created_at")
    rows = page.locator("tr[data-job-id]")
    expect(rows).to_have_count(3, timeout=15_000)
    hash_before = page.evaluate("location.hash")
    expect(page.get_by_label("Sort")).to_have_value("created_at")
    shoot(page, "jobs")

    page.evaluate("window.__sameDocument = true")
    started = time.monotonic()
    subprocess.run(  # another process, through the SDK
        [sys.executable, "-c", ADD_PHOTO, stack.url, api_key, session, str(files[3])],
        check=True,
        capture_output=True,
    )
    expect(rows).to_have_count(4, timeout=7_000)  # the idle interval is 5 s
    appeared = time.monotonic() - started
    expect(rows.last).to_contain_text(files[3].name)  # oldest first: the new one is last
    assert page.evaluate("location.hash") == hash_before
    expect(page.get_by_label("Sort")).to_have_value("created_at")
    assert page.evaluate("window.__sameDocument") is True
    print(f"a job created by another process appeared after {appeared:.1f} s")
    watched.clean()


def _requests_to(page: Page, pattern: str) -> list[Request]:
    seen: list[Request] = []
    page.on("request", lambda r: seen.append(r) if re.search(pattern, r.url) else None)
    return seen


def _jobs_on_our_clock(page: Page, api_key: str) -> None:
    """The jobs list, signed in, with the page's clock paused: from then on time moves only
    when the test says (page.clock.run_for)."""
    page.clock.install()
    sign_in(page, api_key, "#/jobs")
    expect(page.locator("tr[data-job-id]").first).to_be_visible(timeout=15_000)
    page.clock.pause_at(int(page.evaluate("Date.now()")) + 100)


def _advance_until_poll(page: Page, polls: list[Request], limit_ms: int) -> None:
    """Move the page's clock on in 100 ms steps until a poll goes out (within `limit_ms`), then
    hold it still while the answer comes: the page handles the answer, and schedules what comes
    next, at a moment the test knows. (One long run_for let a slow answer land mid-run, so the
    next retry was due up to the rest of that run earlier than the test counted from.)"""
    before = len(polls)
    with page.expect_response(re.compile(r"/v1/jobs\?"), timeout=5_000):
        for _ in range(limit_ms // 100):
            page.clock.run_for(100)
            if len(polls) > before:
                break


def _set_visibility(page: Page, state: str) -> None:
    """Page Visibility emulation: what the browser does when the tab is hidden or shown."""
    page.evaluate(
        """state => {
            const define = (name, value) =>
                Object.defineProperty(document, name, {value, configurable: true});
            define('visibilityState', state);
            define('hidden', state === 'hidden');
            document.dispatchEvent(new Event('visibilitychange'));
        }""",
        state,
    )


def test_a_hidden_tab_stops_polling_and_a_visible_one_refreshes_at_once(
    watched: Watched, api_key: str
) -> None:
    page = watched.page
    polls = _requests_to(page, r"/v1/jobs\?")
    _jobs_on_our_clock(page, api_key)
    page.clock.run_for(12_000)
    page.wait_for_timeout(500)
    assert len(polls) >= 2  # polling (every 5 s)

    _set_visibility(page, "hidden")
    page.clock.run_for(2_000)
    page.wait_for_timeout(500)
    hidden_at = len(polls)
    page.clock.run_for(120_000)  # two minutes hidden
    page.wait_for_timeout(500)
    assert len(polls) == hidden_at

    with page.expect_request(re.compile(r"/v1/jobs\?"), timeout=2_000):
        _set_visibility(page, "visible")  # at once, without waiting for the interval
    watched.clean()


def test_with_the_gateway_stopped_the_page_backs_off_and_recovers_without_a_reload(
    watched: Watched, gateway: Gateway, api_key: str
) -> None:
    """Retries 10 s apart for the first three failures, then doubling: 20, 40, 80, and at most
    120 s; the connection indicator shows meanwhile; the gateway back, the page recovers."""
    page = watched.page
    polls = _requests_to(page, r"/v1/jobs\?")
    _jobs_on_our_clock(page, api_key)
    page.evaluate("window.__sameDocument = true")
    indicator = page.locator("#connection")
    gateway.stop()
    try:
        _advance_until_poll(page, polls, 5_000)  # the next poll fails
        expect(indicator).to_have_attribute("data-state", "offline")
        expect(indicator).to_be_visible()
        shoot(page, "jobs-offline")
        for delay_s in (10, 10, 10, 20, 40, 80, 120, 120):
            before = len(polls)
            page.clock.run_for(delay_s * 1000 - 500)
            page.wait_for_timeout(300)
            assert len(polls) == before, f"retried before {delay_s} s"
            _advance_until_poll(page, polls, 1_000)
    finally:
        gateway.start()
    with page.expect_response(re.compile(r"/v1/jobs\?"), timeout=5_000) as answer:
        page.clock.run_for(120_000)
    assert answer.value.status == 200
    expect(indicator).to_have_attribute("data-state", "online")
    expect(page.locator("tr[data-job-id]").first).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    # The edge's 503s (its JSON envelope) while the gateway was away were expected; nothing
    # else went wrong.
    watched.errors = [e for e in watched.errors if not e.startswith("503 ")]
    watched.console = [c for c in watched.console if "503" not in c]
    watched.clean()


def test_job_detail_shows_progress_result_and_that_a_deleted_job_no_longer_exists(
    watched: Watched, stack: Stack, api_key: str, tmp_path: Path
) -> None:
    page = watched.page
    with TallyClient(stack.url, api_key) as client:
        session = client.create_session("detail")
        (job,) = client.upload(session, photos(tmp_path, 1, seed=13))["jobs"]
        final_state(client, session, 180)
    sign_in(page, api_key, f"#/jobs/{job['job_id']}")
    expect(page.get_by_role("heading", name=job["filename"])).to_be_visible(timeout=15_000)
    expect(page.get_by_text("completed").first).to_be_visible()
    expect(page.locator("canvas")).to_be_visible(timeout=15_000)
    shoot(page, "job-detail")
    watched.clean()

    httpx.delete(
        f"{stack.url}/v1/jobs/{job['job_id']}", headers={"Authorization": f"Bearer {api_key}"}
    ).raise_for_status()
    page.reload()
    expect(page.get_by_role("alert")).to_contain_text("This job no longer exists", timeout=15_000)
    shoot(page, "job-deleted")
    page.get_by_role("link", name="Back to jobs").click()
    expect(page).to_have_url(re.compile(r"#/jobs"))


def test_the_dashboard_is_light_and_quiet(watched: Watched, api_key: str) -> None:
    """Lighthouse's basics: no console errors, no failed requests, and under 300 KB of page
    (HTML, scripts, styles) without images."""
    page = watched.page
    weights: dict[str, int] = {}

    def weigh(response: Response) -> None:
        if response.request.resource_type in ("document", "script", "stylesheet", "font"):
            weights[response.url] = len(response.body())

    page.on("response", weigh)
    sign_in(page, api_key, "#/jobs")
    expect(page.locator("tr[data-job-id]").first).to_be_visible(timeout=15_000)
    page.goto("/#/upload")
    page.wait_for_timeout(1000)
    total = sum(weights.values())
    print(f"dashboard weight without images: {total / 1024:.1f} KB in {len(weights)} files")
    assert 0 < total < 300 * 1024
    watched.clean()


def test_sign_in_refuses_a_wrong_key_and_keeps_the_key_for_the_tab_only(
    watched: Watched, api_key: str
) -> None:
    page = watched.page
    page.goto("/")
    shoot(page, "sign-in")
    page.get_by_label("API key").fill("tly_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("That API key was not accepted")).to_be_visible()
    sign_in(page, api_key)
    assert page.evaluate("sessionStorage.getItem('tally.apiKey')") == api_key
    assert page.evaluate("localStorage.length") == 0
    assert "tly_" not in page.evaluate("document.cookie")
    watched.errors = [e for e in watched.errors if not e.startswith("401 ")]
    watched.console = [c for c in watched.console if "401" not in c]
    watched.clean()


def test_leaving_a_view_stops_its_polling_and_refreshes_keep_the_scroll_position(
    watched: Watched, api_key: str
) -> None:
    page = watched.page
    page.set_viewport_size(PHONE)  # the list is taller than the screen
    _jobs_on_our_clock(page, api_key)
    rows = page.locator("tr[data-job-id]")
    page.evaluate("window.scrollTo(0, 400)")
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    with page.expect_response(re.compile(r"/v1/jobs\?"), timeout=5_000):
        page.clock.run_for(6_000)  # a refresh
    page.wait_for_timeout(300)
    assert page.evaluate("window.scrollY") == scrolled

    polls = _requests_to(page, r"/v1/jobs\?")
    rows.first.get_by_role("link").first.click()  # to a job's detail
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    # The list has gone (its view unmounted on hashchange, a moment after the URL changed)
    # before the clock moves: CI once ran the list's due poll in between.
    expect(rows).to_have_count(0)
    page.clock.run_for(120_000)
    page.wait_for_timeout(500)
    assert polls == []  # the list's timer went with the list
    watched.clean()


def test_another_tenants_job_is_never_shown(
    watched: Watched, stack: Stack, api_key: str, tmp_path: Path
) -> None:
    """A job of another tenant, opened by its id, is a job that does not exist here."""
    other_key = stack.admin_key("another-browser-tenant")
    with TallyClient(stack.url, other_key) as client:
        session = client.create_session("theirs")
        (job,) = client.upload(session, photos(tmp_path, 1, seed=14))["jobs"]
    page = watched.page
    sign_in(page, api_key, f"#/jobs/{job['job_id']}")
    expect(page.get_by_role("alert")).to_contain_text("This job no longer exists", timeout=15_000)
    expect(page.get_by_text(job["filename"])).to_have_count(0)
    page.goto(f"/#/jobs?session={session}")
    expect(page.locator("tr[data-job-id]")).to_have_count(0, timeout=15_000)
    watched.errors = [e for e in watched.errors if not e.startswith("404 ")]
    watched.console = [c for c in watched.console if "404" not in c]
    watched.clean()


def test_a_job_deleted_elsewhere_leaves_the_running_batch_without_a_reload(
    watched: Watched, stack: Stack, api_key: str, tmp_path: Path
) -> None:
    """While the batch runs (its stream open), a job of it that has finished is deleted
    elsewhere: the stream's `deleted` frame takes its row away and the batch recounts (the
    dashboard once ignored the frame: the deleted job stayed on screen until a reload)."""
    page = watched.page
    # Big enough that the batch is still running when the page has come back to it.
    write_dataset(tmp_path, count=12, seed=19, width=4000, height=3000, workers=2)
    files = sorted(tmp_path.glob("*.jpg"))
    with TallyClient(stack.url, api_key) as client:
        session = client.create_session("one deleted")
        doomed, *_ = client.upload(session, files)["jobs"]
        client.cancel_job(doomed["job_id"])  # final at once; the other eleven keep it running
        sign_in(page, api_key)  # the running batch comes back
        page.evaluate("window.__sameDocument = true")
        expect(page.get_by_text(doomed["filename"])).to_be_visible(timeout=15_000)
        eventually(
            lambda: client.job(doomed["job_id"])["status"],
            30,
            until=lambda status: status == "cancelled",
            what="the first job cancelled",
        )
        httpx.delete(
            f"{stack.url}/v1/jobs/{doomed['job_id']}",
            headers={"Authorization": f"Bearer {api_key}"},
        ).raise_for_status()
        expect(page.get_by_text(doomed["filename"])).to_have_count(0, timeout=15_000)
        assert not all(j["status"] in FINAL for j in client.jobs(session)["jobs"]), (
            "the batch finished before the deletion: its stream had ended"
        )
    expect(page.get_by_text(files[1].name)).to_be_visible()
    expect(page.get_by_text("All 11 photos completed")).to_be_visible(timeout=180_000)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    watched.clean()


def test_a_resumed_batch_bigger_than_a_snapshot_shows_every_job_from_its_pages(
    watched: Watched, api_key: str, stack: Stack, tmp_path: Path
) -> None:
    """The page opens on a running batch of 8 (uploaded elsewhere) whose stream snapshot holds
    2 (TALLY_SSE_SNAPSHOT_JOBS, above): the dashboard reads the later pages from its cursor and
    shows all 8 through to the end."""
    page = watched.page
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    sign_in(page, api_key)
    with TallyClient(stack.url, api_key) as client:
        session = client.create_session("bench 12")
        client.upload(session, photos(tmp_path, 8, seed=12))
    page.evaluate(f"sessionStorage.setItem('tally.session', '{session}')")  # api.js's key
    page.reload()
    expect(page.get_by_text("All 8 photos completed")).to_be_visible(timeout=180_000)
    pages = [url for url in asked if f"/v1/sessions/{session}/jobs?cursor=" in url]
    assert pages, [url for url in asked if "/v1/" in url]
    expect(page.get_by_text("8 of 8 photos")).to_be_visible()
    watched.clean()


def test_a_webhook_endpoint_shows_its_secret_once_then_its_deliveries_replays_and_goes(
    watched: Watched, stack: Stack, api_key: str, tmp_path: Path
) -> None:
    """Added on the Webhooks page (to a receiver on loopback, which the local stack allows):
    the secret shows once and is gone on the next visit; a job's completion arrives and shows
    in its deliveries with its attempt; Replay sends it again; disabled, then deleted."""
    page = watched.page
    headers = {"Authorization": f"Bearer {api_key}"}
    with receiver() as hooks:
        sign_in(page, api_key)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
        page.get_by_label("URL").fill(hooks.url())
        page.get_by_label("Description (optional)").fill("browser test")
        page.get_by_role("button", name="Add endpoint").click()

        secret = page.locator("#webhook-secret-value")
        expect(secret).to_have_value(re.compile(r"^whsec_[A-Za-z0-9+/=]{40,}$"))
        shown = secret.input_value()
        endpoint = page.locator("li[data-webhook-id]").filter(has_text=hooks.url())
        expect(endpoint).to_have_count(1)
        expect(endpoint).to_contain_text("Events: job.completed")
        expect(endpoint.locator(".badge")).to_have_text("enabled")
        shoot(page, "webhooks")
        page.get_by_role("button", name="I have saved it").click()
        expect(page.locator("#webhook-secret")).to_be_hidden()
        webhook_id = endpoint.get_attribute("data-webhook-id")

        with TallyClient(stack.url, api_key) as client:
            session = client.create_session("webhooks")
            client.upload(session, photos(tmp_path, 1, seed=15))
            final_state(client, session, 180)
        (first,) = hooks.wait_for(1, timeout_s=60)
        assert first.event["type"] == "job.completed"
        assert signatures_valid(shown, first) == [True]  # the secret shown is the one that signs

        page.reload()
        expect(endpoint).to_have_count(1, timeout=15_000)
        assert shown not in page.content()  # shown once: a later visit has it nowhere
        endpoint.get_by_text("Recent deliveries", exact=True).click()
        delivery = endpoint.locator("tr[data-delivery-id]")
        expect(delivery).to_have_count(1, timeout=15_000)
        expect(delivery).to_contain_text("job.completed")
        expect(delivery.locator(".badge")).to_have_text("succeeded")
        expect(delivery).to_contain_text(re.compile(r"Attempt 1: HTTP 200, \d+ ms"))
        shoot(page, "webhooks-deliveries")

        delivery.get_by_role("button", name="Replay").click()
        _, again = hooks.wait_for(2, timeout_s=60)
        assert again.headers["webhook-id"] == first.headers["webhook-id"]  # the same event
        eventually(  # the receiver has answered; the sender records the attempt after that
            lambda: httpx.get(
                f"{stack.url}/v1/webhooks/{webhook_id}/deliveries", headers=headers
            ).json()["deliveries"][0],
            30,
            until=lambda d: len(d["attempts"]) == 2 and d["status"] == "succeeded",
            what="the replay's attempt recorded",
        )
        endpoint.get_by_role("button", name="Refresh").click()
        expect(delivery).to_contain_text("Attempt 2: HTTP 200")

        endpoint.get_by_role("button", name="Disable").click()
        expect(endpoint.locator(".badge").first).to_have_text("disabled")
        expect(endpoint.get_by_role("button", name="Enable")).to_be_visible()
        stored = httpx.get(f"{stack.url}/v1/webhooks/{webhook_id}", headers=headers).json()
        assert stored["enabled"] is False

        page.once("dialog", lambda dialog: dialog.accept())
        endpoint.get_by_role("button", name="Delete").click()
        expect(endpoint).to_have_count(0)
        expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()
        gone = httpx.get(f"{stack.url}/v1/webhooks/{webhook_id}", headers=headers)
        assert gone.status_code == 404
    watched.clean()


def test_a_batch_runs_the_detector_chosen_on_upload_and_its_result_names_it(
    watched: Watched, stack: Stack, api_key: str, tmp_path: Path
) -> None:
    onnx = tmp_path / "plugs.onnx"
    onnx.write_bytes(wrapped_bytes("yolov5"))
    with TallyClient(stack.url, api_key) as client:
        model = client.upload_model(onnx, "plugs", "yolov5", ["seedling", "weed"])
        eventually(
            lambda: client.model(model["model_id"])["status"],
            120,
            every_s=0.5,
            until=lambda status: status == "ready",
            what="the model validated",
        )
    page = watched.page
    sign_in(page, api_key)
    picker = page.get_by_label("Detector")
    expect(picker).to_be_visible(timeout=15_000)
    picker.select_option("plugs:1")
    shoot(page, "upload-model-choice")
    page.get_by_label("Choose photos").set_input_files(photos(tmp_path, 1, seed=17))
    expect(page.locator("#batch-model")).to_have_text("Detector: plugs:1", timeout=15_000)
    expect(page.get_by_text("All 1 photo completed")).to_be_visible(timeout=180_000)
    page.locator("#upload-list a.row-name").first.click()
    expect(page.locator("#job-model")).to_have_text("Detector: plugs:1", timeout=15_000)
    watched.clean()
