"""PromptLab in a real browser: JupyterLab on 127.0.0.1 (with a token), driven by Playwright + Debian's chromium.

Opens a copy of notebooks/02_prompt_sensitivity.ipynb, runs all cells, checks that the widget and its
plotly figures render, types a new template into the widget, checks that the figure changes, and saves
screenshots to test-artifacts/ (the page, and the widget alone). A second test runs 03_embedding_geometry
and hovers a point (thumbnail) and lassos the map (the table of selected images). The server (and its
kernels) are shut down whatever happens.

Needs /usr/bin/chromium (``apt-get install -y chromium``) and the ``playwright`` package; never
downloads a browser. Without them the test is skipped, unless CLIPLAB_BROWSER_TESTS=1 (``make
test-browser``), where it fails instead.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from chromium import ARTIFACTS, ROOT, launch, require_browser

NOTEBOOK = "02_prompt_sensitivity.ipynb"
EXPLORER_NOTEBOOK = "03_embedding_geometry.ipynb"  # reuses the short run that NOTEBOOK trained
NOTEBOOKS = (NOTEBOOK, EXPLORER_NOTEBOOK)
RUN_ALL_SECONDS = 300  # imports, a short training run (no run to reuse here) and the cells
NEW_TEMPLATE = "a watercolor painting of a {}."



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, token: str, proc: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer within {seconds} s:\n{log.read_text()[-3000:]}")


def _shutdown(proc: subprocess.Popen, url: str, token: str) -> None:
    """Ask the server to stop (it stops its kernels), then terminate, then kill what is left."""
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        family = []
    try:
        req = urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=5).close()
    except OSError:
        pass
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for p in family:  # kernels run in their own process groups: make sure none outlives the test
        try:
            p.kill()
        except psutil.Error:
            pass


@pytest.fixture(scope="module")
def playwright_api():
    return require_browser()


@pytest.fixture(scope="module")
def jupyter(playwright_api, tmp_path_factory):
    """JupyterLab serving a temp folder holding copies of the notebooks; yields (url, token)."""
    tmp_path = tmp_path_factory.mktemp("jupyterlab")
    root = tmp_path / "lab"
    root.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "CLIPLAB_NB_WORKDIR": str(tmp_path / "work"), "CLIPLAB_CACHE": str(tmp_path / "cache"),
           "CLIPLAB_NB_IMAGES": "400", "CLIPLAB_NB_EPOCHS": "1", "CLIPLAB_NB_PROJECTION": "pca",
           "CLIPLAB_NB_TRAIN_CONFIG": str(ROOT / "training" / "configs" / "tiny-synthetic.yaml")}
    labconfig = tmp_path / "config" / "labconfig"
    labconfig.mkdir(parents=True)  # no "get Jupyter news?" toast (and no fetch of it)
    (labconfig / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}')
    log = tmp_path / "jupyter.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
           f"--LabApp.user_settings_dir={tmp_path / 'settings'}", f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False"]
    if os.geteuid() == 0:  # containers often run as root; the server refuses that unless told
        cmd.append("--allow-root")
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, token, proc, log)
        yield url, token
    finally:
        _shutdown(proc, url, token)


def _accept_kernel_dialog(page) -> None:
    """JupyterLab may ask which kernel to start for a notebook without outputs: take the proposed one."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(timeout=15_000)
    except Exception:  # playwright's TimeoutError: no dialog, the kernel was started directly
        return
    dialog.locator("button", has_text="Select").click()
    dialog.wait_for(state="detached", timeout=15_000)


def _open_and_run_all(page, url: str, token: str, notebook: str) -> None:
    page.goto(f"{url}/lab/tree/{notebook}?token={token}", timeout=60_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    _accept_kernel_dialog(page)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()


def _figure_x(page, index: int) -> list[str]:
    """The x values of the first trace of the lab's index-th plotly figure, read from the DOM."""
    return page.locator(".cliplab-prompt-lab .js-plotly-plot").nth(index).evaluate("el => el.data[0].x")


def test_prompt_lab_in_jupyterlab(playwright_api, jupyter):
    sync_playwright = playwright_api
    url, token = jupyter
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "jupyterlab-prompt-lab.png"
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            _open_and_run_all(page, url, token, NOTEBOOK)
            lab = page.locator(".cliplab-prompt-lab")
            lab.wait_for(timeout=RUN_ALL_SECONDS * 1000)
            plots = lab.locator(".js-plotly-plot")
            plots.nth(1).locator(".main-svg").first.wait_for(timeout=60_000)
            assert plots.count() == 2
            page.wait_for_function(  # the notebook's last cell adds a template from code
                "() => [...document.querySelectorAll('.cliplab-prompt-lab .js-plotly-plot')]"
                ".some(el => el.data && el.data[0] && el.data[0].x.some(x => x.includes('blurry')))",
                timeout=120_000)
            before = _figure_x(page, 0)
            lab.locator("input[placeholder='a photo of a {}.']").fill(NEW_TEMPLATE)
            lab.locator("button", has_text="Add template").click()
            page.wait_for_function(
                "() => document.querySelector('.cliplab-prompt-lab .js-plotly-plot').data[0].x"
                ".some(x => x.includes('watercolor'))", timeout=30_000)
            after = _figure_x(page, 0)
            assert len(after) == len(before) + 1 and any("watercolor" in x for x in after)
            assert "updated in" in lab.locator(".cliplab-status").inner_text()
            lab.screenshot(path=str(ARTIFACTS / "prompt-lab-widget.png"))
        finally:
            page.screenshot(path=str(shot))
            browser.close()
    assert shot.stat().st_size > 10_000 and (ARTIFACTS / "prompt-lab-widget.png").stat().st_size > 10_000


def test_explorer_hover_and_lasso_in_jupyterlab(playwright_api, jupyter):
    """03's explorer: hovering a point shows its thumbnail; a lasso over the map lists the images."""
    url, token = jupyter
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            _open_and_run_all(page, url, token, EXPLORER_NOTEBOOK)
            explorer = page.locator(".cliplab-explorer")
            explorer.wait_for(timeout=RUN_ALL_SECONDS * 1000)
            plot = explorer.locator(".js-plotly-plot").first
            plot.locator(".main-svg").first.wait_for(timeout=60_000)
            page.wait_for_function(  # the notebook's last cell selects from code; wait for it, then clear
                "() => document.querySelector('.cliplab-explorer').innerText.includes('selected')", timeout=60_000)
            explorer.scroll_into_view_if_needed()
            x, y = plot.evaluate(PIXEL_OF_FIRST_POINT)
            page.mouse.move(x + 40, y + 40)
            page.mouse.move(x, y)
            explorer.locator(".cliplab-hover img").wait_for(timeout=15_000)  # the hovered image's thumbnail
            left, top, width, height = plot.evaluate(PLOT_AREA)
            page.mouse.move(left + 2, top + 2)
            page.mouse.down()
            for px, py in ((left + width - 2, top + 2), (left + width - 2, top + height - 2),
                           (left + 2, top + height - 2), (left + 2, top + 3)):
                page.mouse.move(px, py, steps=8)
            page.mouse.up()
            n_images = plot.evaluate("el => el.data.filter(d => d.customdata).reduce((n, d) => n + d.x.length, 0)")
            page.wait_for_function(
                f"() => document.querySelector('.cliplab-explorer').innerText.includes('{n_images:,} selected')",
                timeout=15_000)
            assert explorer.locator(".cliplab-table tbody tr").count() > 0
            plot.scroll_into_view_if_needed()
        finally:
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-explorer.png"))
            browser.close()


PIXEL_OF_FIRST_POINT = """el => { const fl = el._fullLayout, r = el.getBoundingClientRect(), d = el.data[0];
    return [r.left + fl._size.l + fl.xaxis.d2p(d.x[0]), r.top + fl._size.t + fl.yaxis.d2p(d.y[0])]; }"""
PLOT_AREA = """el => { const fl = el._fullLayout, r = el.getBoundingClientRect();
    return [r.left + fl._size.l, r.top + fl._size.t, fl._size.w, fl._size.h]; }"""
