"""The playground page in a real headless chromium, against a real API and worker: the first
five minutes of a new user (key, text, submit, listen, see the job listed, read an error)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tasks import keys
from tests.conftest import API_KEYS, TEST_OUTPUT, ApiServer, RedisServer, fleet_settings, serving

CHROMIUM = Path("/usr/bin/chromium")
# This box has no internet: without these chromium floods refused connections to Google.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SENTENCE = "The meeting has been moved to half past three in the small conference room."


@pytest.fixture(scope="module")
def fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """API and one worker process sharing a file store, for the whole module. A text past
    600 characters fans out into units of one piece (tasks.units), so the long job below
    is a book made unit by unit."""
    settings = fleet_settings(
        redis_server, tmp_path_factory.mktemp("playground"), max_text_chars=600, unit_chars=300
    )
    with serving(settings, settings.home.parent / "worker.log", concurrency=1) as (api, _):
        yield api


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's chromium, headless, with a fresh profile (never a browser Playwright fetched)."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing (make test installs it with apt-get)")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        # Generous waits: this box's two cores are shared with the worker and other tests.
        context.set_default_timeout(15_000)
        expect.set_options(timeout=15_000)
        try:
            yield context
        finally:
            context.close()


@dataclass
class Tab:
    """A browser tab and what it did: every URL it requested, every uncaught script error."""

    page: Page
    requested: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser: BrowserContext, fleet: ApiServer) -> Iterator[Tab]:
    tab = Tab(browser.new_page())
    tab.page.on("request", lambda req: tab.requested.append(req.url))
    tab.page.on("pageerror", lambda exc: tab.script_errors.append(str(exc)))
    yield tab
    tab.page.evaluate("localStorage.clear()")
    tab.page.close()


def enter_key(page: Page, key: str) -> None:
    page.get_by_label("Your API key").fill(key)
    page.get_by_role("button", name="Use key").click()


def test_page_and_assets_need_no_key_and_docs_still_work(fleet: ApiServer) -> None:
    with fleet.client(tenant=None) as http:
        index = http.get("/")
        script = http.get("/static/playground.js")
        missing = http.get("/static/nothing-here.js")
        docs = http.get("/docs")
        schema = http.get("/openapi.json").json()
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "<title>ttsfleet playground</title>" in index.text
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert docs.status_code == 200
    assert "/" not in schema["paths"] and "/v1/jobs" in schema["paths"]


def test_a_new_user_submits_text_listens_and_sees_the_job_listed(
    tab: Tab, fleet: ApiServer
) -> None:
    page = tab.page
    page.goto(fleet.url + "/")
    expect(page.get_by_label("Your API key")).to_be_focused()  # a first visit starts there
    TEST_OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(TEST_OUTPUT / "playground-first-visit.png"), full_page=True)
    enter_key(page, API_KEYS["acme"])
    with fleet.client() as http:
        voices = http.get("/v1/voices").json()
    expect(page.locator("#voice option")).to_have_count(len(voices))
    assert page.evaluate("localStorage.getItem('ttsfleet.apiKey')") == API_KEYS["acme"]

    page.get_by_label("Text", exact=True).fill(SENTENCE)
    page.get_by_label("Format").select_option("opus")
    page.get_by_label("Loudness (LUFS)").fill("-16")
    speed = page.get_by_label("Speed")
    speed.focus()
    for _ in range(5):  # the slider works from the keyboard: 1.00 + 5 * 0.05
        page.keyboard.press("ArrowRight")
    expect(page.locator("#speed-value")).to_have_text("1.25\u00d7")

    # Every status the page shows, in order, as the user would have seen it.
    page.evaluate(
        """() => {
        window.seen = [];
        const status = document.getElementById('job-status');
        new MutationObserver(() => {
          if (window.seen.at(-1) !== status.textContent) window.seen.push(status.textContent);
        }).observe(status, {childList: true, characterData: true, subtree: true});
    }"""
    )
    expect(page.locator("#download")).to_be_hidden()
    page.get_by_role("button", name="Synthesize").click()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=60_000)
    seen: list[str] = page.evaluate("window.seen")
    assert seen[0] == "queued" and seen[-1] == "succeeded", seen
    assert seen == sorted(seen, key=["queued", "running", "succeeded"].index), seen

    job_id = page.locator("#job-id").inner_text()
    with fleet.client() as http:
        job = http.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["format"] == "opus"
    assert job["loudness_lufs"] == -16 and job["audio"]["sample_rate"] == 48000
    assert job["metadata"] == {"source": "playground", "preview": SENTENCE}

    # The player holds the fetched blob and the browser itself decodes it.
    duration: float = page.evaluate(
        """() => new Promise((resolve, reject) => {
        const audio = document.getElementById('player');
        const done = () => resolve(audio.duration);
        if (audio.readyState >= 1) return done();
        audio.addEventListener('loadedmetadata', done, {once: true});
        audio.addEventListener('error', () => reject(new Error('audio error ' + audio.error.code)));
    })"""
    )
    assert (page.locator("#player").get_attribute("src") or "").startswith("blob:")
    assert len(SENTENCE) / 25 < duration < len(SENTENCE) / 6, duration
    assert duration == pytest.approx(job["audio"]["duration_s"], abs=0.15)
    download = page.get_by_role("link", name="Download OPUS")
    expect(download).to_be_visible()
    assert download.get_attribute("download") == f"{job_id}.opus"
    assert (download.get_attribute("href") or "").startswith("blob:")

    row = page.locator(f'#recent tr[data-job-id="{job_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text(SENTENCE[:40])

    page.screenshot(path=str(TEST_OUTPUT / "playground.png"), full_page=True)

    # Only loopback and the page's own blobs: nothing is fetched from outside.
    assert all(url.startswith((fleet.url, "blob:")) for url in tab.requested), tab.requested
    assert tab.script_errors == []


def test_an_api_error_is_shown_as_the_api_words_it(tab: Tab, fleet: ApiServer) -> None:
    page = tab.page
    with fleet.client() as http:
        rejected = http.post("/v1/jobs", json={"text": "   "})
    assert rejected.status_code == 422
    error = rejected.json()["error"]

    page.goto(fleet.url + "/")
    enter_key(page, API_KEYS["acme"])
    text = page.get_by_label("Text", exact=True)
    text.fill("   ")
    text.press("Control+Enter")  # the keyboard path to submit
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.locator("#error-code")).to_have_text(error["code"])
    expect(page.locator("#error-message")).to_have_text(error["message"])
    page.screenshot(path=str(TEST_OUTPUT / "playground-error.png"), full_page=True)

    # A wrong key: the API's 401 reaches the user in the API's words too.
    enter_key(page, "not-a-key")
    expect(page.locator("#error-code")).to_have_text("unauthorized")
    assert tab.script_errors == []


def test_a_long_job_plays_while_it_is_made_and_shows_its_progress(
    tab: Tab, fleet: ApiServer
) -> None:
    page = tab.page
    page.goto(fleet.url + "/")
    enter_key(page, API_KEYS["acme"])
    text = " ".join([SENTENCE] * 12)  # about 900 characters: four pieces, four units
    page.get_by_label("Text", exact=True).fill(text)
    page.get_by_label("Format").select_option("wav")
    page.evaluate(
        """() => {
        window.details = [];
        window.heard = [];
        const details = document.getElementById('job-details');
        const live = document.getElementById('live');
        new MutationObserver(() => window.details.push(details.textContent))
          .observe(details, {childList: true, characterData: true, subtree: true});
        new MutationObserver(() => window.heard.push(
            [live.dataset.seconds, document.getElementById('job-status').textContent]))
          .observe(live, {attributes: true, attributeFilter: ['data-seconds']});
    }"""
    )
    page.get_by_role("button", name="Synthesize").click()
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#live")).to_contain_text("Heard while it was made")
    job_id = page.locator("#job-id").inner_text()
    with fleet.client() as http:
        job = http.get(f"/v1/jobs/{job_id}").json()
    with redis.Redis.from_url(fleet.settings.redis_url) as client:
        assert client.hget(keys.job_key(job_id), "units") == b"4"  # it fanned out

    heard: list[list[str]] = page.evaluate("window.heard")
    # Audio was scheduled while the job still ran, and in the end all of it was heard.
    assert any(status == "running" for _, status in heard), heard
    assert float(heard[-1][0]) == pytest.approx(job["audio"]["duration_s"], abs=0.05)
    details: list[str] = page.evaluate("window.details")
    assert any("piece 1 of 4" in d or "piece 3 of 4" in d for d in details), details
    assert tab.script_errors == []
