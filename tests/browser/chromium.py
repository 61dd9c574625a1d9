"""What the browser tests share: Debian's chromium, its flags, Playwright, and where screenshots go."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CLIPLAB_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def require_browser():
    """Playwright's sync API, or skip (fail when CLIPLAB_BROWSER_TESTS=1) saying what is missing."""
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        missing.append("the playwright package (pip install playwright; no `playwright install` needed)")
    if missing:
        why = "browser test needs " + " and ".join(missing)
        if os.environ.get("CLIPLAB_BROWSER_TESTS") == "1":
            pytest.fail(why + " (CLIPLAB_BROWSER_TESTS=1 makes this a failure, not a skip)")
        pytest.skip(why + "; `make test-browser` installs them")
    return sync_playwright


def launch(pw):
    """Debian's chromium, headless, with the flags this closed network needs."""
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
