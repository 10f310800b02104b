"""Pages in a real headless Chromium: Debian's ``chromium`` package driven by Playwright.

Playwright never downloads a browser here: it launches the system Chromium at
``$TRAD_CHROMIUM`` (default ``/usr/bin/chromium``, installed by ``make test``). Without
it (or without the ``playwright`` package) browser tests skip, and fail under CI=true.

As fixtures ``chromium_browser``, ``page`` and ``console_errors``, imported (all three)
into a test module or into tests/e2e/conftest.py::

    from tests.e2e.browser import (  # noqa: F401
        chromium_browser_fixture,
        console_errors_fixture,
        page_fixture,
    )

    def test_dashboard(page, console_errors):
        page.goto(url)
        page.wait_for_function("() => window.ready === true")
        assert console_errors == []

``chromium_browser`` is one browser per test session; ``page`` is a fresh context and page
per test; ``console_errors`` lists the page's console errors, uncaught exceptions and
failed requests. Outside pytest fixtures, ``with chromium_page() as (page, errors): ...``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

DEFAULT_CHROMIUM = "/usr/bin/chromium"
DEFAULT_TIMEOUT_MS = 15_000
VIEWPORT = {"width": 1000, "height": 700}


def chromium_path() -> str:
    return os.environ.get("TRAD_CHROMIUM") or DEFAULT_CHROMIUM


def _unavailable(message: str):
    """Skip, or under CI=true fail: browser tests must not silently skip there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " and CI=true: browser tests must not skip", pytrace=False)
    pytest.skip(message)


def _executable() -> str:
    path = chromium_path()
    resolved = path if os.path.isabs(path) else shutil.which(path)
    if not resolved or not os.access(resolved, os.X_OK):
        _unavailable(f"Chromium not found at {path} (`make test` installs Debian's chromium; "
                     "or set TRAD_CHROMIUM)")
    return resolved


def _launch_args() -> list[str]:
    # Chromium refuses to start its sandbox as root (containers, CI runners).
    return ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


@contextlib.contextmanager
def chromium_browser_session() -> Iterator[Browser]:
    """Playwright and one headless system Chromium, closed on exit."""
    executable = _executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc}; pip install -e '.[test]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=_launch_args())
        try:
            yield browser
        finally:
            browser.close()


def watch_errors(page: Page, errors: list[str]) -> list[str]:
    """Append the page's console errors, uncaught exceptions and failed requests to errors."""
    def on_console(msg):
        if msg.type == "error":
            loc = msg.location or {}
            where = f" ({loc.get('url')}:{loc.get('lineNumber')})" if loc.get("url") else ""
            errors.append(f"console.error: {msg.text}{where}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("requestfailed",
            lambda req: errors.append(f"requestfailed: {req.method} {req.url} {req.failure}"))
    return errors


@contextlib.contextmanager
def new_page(browser: Browser, errors: list[str] | None = None) -> Iterator[Page]:
    """A page in a fresh browser context (own cookies and storage), closed on exit."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        page = context.new_page()
        watch_errors(page, errors if errors is not None else [])
        yield page
    finally:
        context.close()


@contextlib.contextmanager
def chromium_page() -> Iterator[tuple[Page, list[str]]]:
    """Standalone: ``with chromium_page() as (page, errors):`` launches its own browser."""
    errors: list[str] = []
    with chromium_browser_session() as browser, new_page(browser, errors) as page:
        yield page, errors


# Named fixtures, so that importing them (by these function names) does not shadow the
# fixture names that tests take as arguments (ruff F811).
@pytest.fixture(scope="session", name="chromium_browser")
def chromium_browser_fixture() -> Iterator[Browser]:
    with chromium_browser_session() as browser:
        yield browser


@pytest.fixture(name="console_errors")
def console_errors_fixture() -> list[str]:
    return []


@pytest.fixture(name="page")
def page_fixture(chromium_browser, console_errors) -> Iterator[Page]:
    with new_page(chromium_browser, console_errors) as p:
        yield p
