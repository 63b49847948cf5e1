"""Headless Chromium for the UI tests, driven by Playwright (never ``playwright install``).

Chromium is Debian's package (``scripts/install_chromium.sh``). A page under test
must load with no console error, no page error, no failed request, no HTTP error
and no dialog (a dialog means injected script ran). Screenshots go to
``artifacts/ui/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("MONITOR_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "ui"


def require_browser() -> None:
    """Skip only where the browser stack is absent and not demanded (CI demands it)."""
    missing = []
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (scripts/install_chromium.sh)")
    if missing:
        if os.environ.get("MONITOR_REQUIRE_BROWSER") == "1":
            pytest.fail("browser tests demanded but missing: " + ", ".join(missing))
        pytest.skip("no browser here: " + ", ".join(missing))


@dataclass
class Problems:
    """Everything a page must not produce."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return (
            self.console_errors
            + self.page_errors
            + self.failed_requests
            + self.http_errors
            + self.dialogs
        )


def watch(page: Any, problems: Problems, *, allow_status: set[int] | None = None) -> None:
    allowed = allow_status or set()
    page.on(
        "console",
        lambda m: problems.console_errors.append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.page_errors.append(str(e)))
    page.on(
        "requestfailed",
        lambda r: problems.failed_requests.append(f"{r.url}: {r.failure}"),
    )
    page.on(
        "response",
        lambda r: (
            problems.http_errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.status not in allowed
            else None
        ),
    )

    async def on_dialog(d: Any) -> None:
        problems.dialogs.append(f"{d.type}: {d.message}")
        await d.dismiss()

    page.on("dialog", on_dialog)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
