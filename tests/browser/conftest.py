"""Fixtures for the real-browser test (``make test-browser``): a JupyterLab server on a temporary
copy of the course (``lab_server``) and the system's Chromium, headless, driven by Playwright's
Python API (``CHROMIUM``, else ``/usr/bin/chromium`` or ``chromium`` on the PATH; nothing is
downloaded).  Without Playwright or Chromium the test is skipped, or fails under ``make test-browser``.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from lab_server import ROOT, Lab, copy_course, start_lab, stop

SCREENSHOTS = ROOT / "test-output" / "browser"
REQUIRED_VAR = "PPO_TEACH_REQUIRE_BROWSER"  # `make test-browser` sets it: a missing browser fails, not skips
CHROMIUM_ARGS = [
    "--disable-gpu", "--disable-quic", "--no-first-run",
    # Without these Chromium keeps trying to reach Google's services, which a closed network stalls.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def unavailable(reason: str) -> NoReturn:
    """Skip the browser test, or fail it when ``make test-browser`` asked for it (``PPO_TEACH_REQUIRE_BROWSER=1``)."""
    if os.environ.get(REQUIRED_VAR) == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    """The Chromium to drive: ``$CHROMIUM``, else Debian's ``/usr/bin/chromium``, else one on the PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Iterator[Lab]:
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        unavailable(f"JupyterLab is not installed in {sys.executable}: run `make test-browser`, which installs it")
    home = tmp_path_factory.mktemp("jupyter")
    server = start_lab(copy_course(home / "course"), home)
    yield server
    stop(server.process)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed: `pip install playwright` (or run `make test-browser`, which installs it)")
    executable = find_chromium()
    if executable is None or not Path(executable).exists():
        unavailable(
            "Chromium not found: on Debian/Ubuntu `sudo apt-get install chromium`, "
            "or set CHROMIUM=/path/to/chrome (no browser is downloaded)"
        )
    args = CHROMIUM_ARGS + (["--no-sandbox"] if os.geteuid() == 0 else [])  # Chromium's sandbox refuses root
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """``test-output/browser/``, emptied: each run's screenshots, one per state."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS
