"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against `relay serve`.

Every request the page makes is recorded: it must never leave the relay. A screenshot of the
page is saved under ``test-artifacts/`` (or ``$RELAY_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from .conftest import Server, ServerFactory, Workspace

TOKEN = "dashboard-test-token"
ARTIFACTS = Path(
    os.environ.get("RELAY_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts"
)
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Chromium's own background traffic: the machines have no network beyond loopback.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = os.environ.get("RELAY_TEST_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("chromium is not installed (Debian package chromium; .ci/run installs it)")
    return found


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


def open_dashboard(browser: Browser, server: Server, password: str = TOKEN) -> tuple[Page, list[str]]:
    context = browser.new_context(
        http_credentials={"username": "admin", "password": password}, base_url=url(server)
    )
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("dialog", lambda dialog: dialog.accept())
    return page, requested


def url(server: Server) -> str:
    return f"http://{server.host}:{server.port}"


def card(page: Page, pool: str) -> str:
    return f'.pool[data-pool="{pool}"]'


def test_dashboard_shows_and_follows_the_seats(
    ws: Workspace, serve: ServerFactory, browser: Browser
) -> None:
    ws.add(*(ws.license(f"prod{n}") for n in range(3)), pool="prod")
    server = serve("--admin-token", TOKEN, "--cull-interval", "1s")
    assert server.claim("node-a", "prod").status == 201
    page, requested = open_dashboard(browser, server)

    response = page.goto("/dashboard")
    assert response is not None
    assert response.status == 200
    expect(page.locator(f"{card(page, 'prod')} [data-seats]")).to_have_text("1 / 3")
    expect(page.locator("#holders tr")).to_have_count(1)
    expect(page.locator("#holders")).to_contain_text("node-a")

    # A claim over HTTP shows within the refresh interval (5 s; allow for a loaded machine).
    assert server.claim("node-b", "prod").status == 201
    expect(page.locator(f"{card(page, 'prod')} [data-seats]")).to_have_text("2 / 3", timeout=15_000)
    expect(page.locator(f"{card(page, 'prod')} [data-free]")).to_have_text("1")

    # A refused claim is counted, and marked on the charts once they are read again.
    assert server.claim("node-c", "prod").status == 201
    assert server.claim("node-d", "prod").status == 410
    page.wait_for_timeout(2500)  # the cull loop writes the denial counts every second
    page.locator(card(page, "prod")).click()
    expect(page.locator("#chart-day [data-denial]")).to_have_count(1, timeout=15_000)
    expect(page.locator("#chart-day rect").first).to_be_attached()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # Force-release node-a from the page: it disappears, and its next heartbeat is a new claim.
    page.locator('button[data-release="node-a"]').click()
    expect(page.locator("#holders")).not_to_contain_text("node-a", timeout=15_000)
    assert server.claim("node-a", "prod").status == 201
    logs = ws.relay("logs", "--json", "--event", "license.released,node.deactivated")
    assert logs.out.count('"license.released"') == 1
    assert logs.out.count('"node.deactivated"') == 1

    origin = url(server)
    assert requested, "the page made no request"
    strangers = [url for url in requested if not url.startswith(origin + "/")]
    assert strangers == []


def test_wrong_or_missing_credentials_are_refused(
    ws: Workspace, serve: ServerFactory, browser: Browser
) -> None:
    server = serve("--admin-token", TOKEN)
    page, _ = open_dashboard(browser, server, password="not-the-token")
    response = page.goto("/dashboard")
    assert response is not None
    assert response.status == 401
    assert server.request("GET", "/dashboard").status == 401
    assert server.request("GET", "/v1/admin/usage").status == 401


def test_without_an_admin_token_there_is_no_dashboard(ws: Workspace, serve: ServerFactory) -> None:
    server = serve()
    assert server.request("GET", "/dashboard").status == 404
    assert server.request("GET", "/v1/admin/usage").status == 404
