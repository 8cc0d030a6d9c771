"""The status page in a real headless browser (Debian's chromium driven by Playwright with
``executable_path``): it renders the providers, and shows the breaker opening after a fault
is injected, by refreshing itself."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tunegate.emulator import Emulator

from .conftest import known_track
from .test_passthrough import _live

CHROMIUM = os.environ.get("TUNEGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container, with no network beyond loopback: no sandbox, no background calls.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in the test extra"
)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium binary at {CHROMIUM} (.ci/run installs Debian's chromium)")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def test_status_page_shows_the_breaker_opening(
    browser: Any, emulator: Emulator, tmp_path: Path
) -> None:
    track = known_track(emulator.catalog)
    with _live(emulator) as url:
        page = browser.new_page()
        page.goto(url + "/status")
        spotify = page.locator('tr[data-provider="spotify"] td.breaker')
        spotify.wait_for(timeout=15_000)
        assert spotify.inner_text() == "closed"
        # This page's own poll of /status.json is the one request in flight it can see.
        assert page.locator("#inflight").inner_text() == "1"
        assert page.locator('tr[data-provider="lastfm"]').count() == 1

        emulator.set_faults("spotify/track:error=503")
        with httpx.Client(base_url=url, timeout=10) as c:
            for _ in range(8):  # bounded: the breaker opens after 5 failures
                body = c.get(f"/v1/spotify/tracks/{track['id']}").json()
                if body["type"].endswith("/breaker-open"):
                    break
        # No reload: the page refreshes itself (every second).
        page.wait_for_function(
            "() => document.querySelector('tr[data-provider=\"spotify\"] td.breaker')"
            ".textContent === 'open'",
            timeout=15_000,
        )
        assert "open" in spotify.get_attribute("class")
        page.wait_for_function(
            "() => document.querySelector('#errors').textContent.includes('breaker-open')",
            timeout=15_000,
        )
        assert "/v1/spotify/tracks/{id}" in page.locator("#errors").inner_text()
        shot = tmp_path / "status.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 1000
        if os.environ.get("TUNEGATE_STATUS_SCREENSHOT"):  # how docs/status-page.png is made
            shutil.copy(shot, os.environ["TUNEGATE_STATUS_SCREENSHOT"])


def test_docs_page_lists_the_operations(browser: Any, emulator: Emulator) -> None:
    with _live(emulator) as url:
        page = browser.new_page()
        page.goto(url + "/docs")
        op = page.locator('.op[data-path="/v1/spotify/search"]')
        op.wait_for(timeout=15_000)
        assert "artist" in op.inner_text()
        assert page.locator(".op").count() >= 25
