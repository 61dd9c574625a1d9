"""Every notebook in a real browser: JupyterLab on 127.0.0.1 (with a token), Playwright + Debian's chromium.

Each notebook is opened in a fresh kernel with its default settings (no shortening: the data, training and
projection a user gets) and run with Run All, at its own viewport size; then every plotly chart on the page
is checked in the browser's own plotly state (``el.data``: traces with points, a title), at that size and
again after a resize. No cell may end in an error, and the training log must not be a stderr box.
02 also edits the PromptLab (Enter, the Apply button); 03 hovers and lassos the map. A last test is the
issue's minimal reproduction: a VBox subclass holding a figure, created after a 25-second cell.
Screenshots go to test-artifacts/. The server (and its kernels) are shut down whatever happens.

Needs /usr/bin/chromium (``apt-get install -y chromium``) and the ``playwright`` package; never
downloads a browser. Without them the test is skipped, unless CLIPLAB_BROWSER_TESTS=1 (``make
test-browser``), where it fails instead.
"""
from __future__ import annotations

import contextlib
import os
import re
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

NOTEBOOKS = ["01_train_and_load", "02_prompt_sensitivity", "03_embedding_geometry", "04_bias_audit",
             "05_robustness_and_probes"]
# Charts each notebook shows (widget CSS class -> number of plotly figures) and the viewport it runs in.
CHARTS = {"01_train_and_load": {}, "02_prompt_sensitivity": {"cliplab-prompt-lab": 2},
          "03_embedding_geometry": {"cliplab-explorer": 1}, "04_bias_audit": {"cliplab-audit-dashboard": 1},
          "05_robustness_and_probes": {}}
VIEWPORTS = {"01_train_and_load": (1280, 800), "02_prompt_sensitivity": (1400, 900),
             "03_embedding_geometry": (1280, 640), "04_bias_audit": (1000, 1400),
             "05_robustness_and_probes": (1280, 800)}
RESIZED = (820, 700)  # every chart is checked again at this size
RUN_ALL_SECONDS = 720  # a notebook that trains first: 10,000 images + ~4.5 min (any order: the workspace trains)
NEW_TEMPLATE = "a watercolor painting of a {}."
REPRO = "repro_late_vbox.ipynb"


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
        with contextlib.suppress(psutil.Error):
            p.kill()


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
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", root / f"{name}.ipynb")
    _write_repro(root / REPRO)
    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "CLIPLAB_NB_WORKDIR": str(tmp_path / "work"), "CLIPLAB_CACHE": str(tmp_path / "cache"),
           "CLIPLAB_NB_TRAIN_CONFIG": str(ROOT / "training" / "configs" / "minilm-synthetic.yaml")}
    for key in ("CLIPLAB_NB_IMAGES", "CLIPLAB_NB_EPOCHS", "CLIPLAB_NB_PROJECTION"):  # the defaults a user gets
        env.pop(key, None)
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


def _write_repro(path: Path) -> None:
    """The issue's minimal reproduction: a VBox subclass with a figure, created after a 25-second cell."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    box = """import ipywidgets as W
import plotly.graph_objects as go
from cliplab.widgets._figure import Figure


class Boxed(W.VBox):
    def __init__(self):
        self.figure = Figure(layout=go.Layout(title="late figure", height=300))
        super().__init__([W.HTML("a box"), self.figure])
        self.add_class("cliplab-repro")
        self.figure.add_trace(go.Bar(x=["a", "b", "c"], y=[1, 3, 2]))


Boxed()"""
    nbformat.write(new_notebook(cells=[new_code_cell("import time\ntime.sleep(25)"), new_code_cell(box)],
                                metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                         "language": "python"}}), path)


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
    # a workspace of its own: JupyterLab would otherwise reopen the earlier tests' notebooks as hidden tabs,
    # whose cells the page-wide checks below would then see
    workspace = re.sub(r"[^a-z0-9]+", "-", notebook.lower())
    page.goto(f"{url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={token}", timeout=60_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    _accept_kernel_dialog(page)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()


ALL_CELLS_RAN = """() => { const p = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
    return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }"""
# Every plotly chart inside the widget: its number of traces, points of each, its title (browser state).
CHART_STATE = """el => [...el.querySelectorAll('.js-plotly-plot')].map(p => ({
    traces: (p.data || []).length,
    points: (p.data || []).map(d => (d.z ? d.z.length : (d.x ? d.x.length : 0))),
    title: (p._fullLayout && p._fullLayout.title && p._fullLayout.title.text) || ''}))"""


def _console(page) -> list[str]:
    """Collect the page's console errors and warnings (anywidget reports failed models there)."""
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"[:500]) if m.type in ("error", "warning")
            else None)
    return messages


def _wait_all_cells(page, seconds: int = RUN_ALL_SECONDS) -> None:
    page.wait_for_function(ALL_CELLS_RAN, timeout=seconds * 1000, polling=1000)


def _check_charts(page, widget: str, n_charts: int) -> list[dict]:
    """Scroll to each chart of ``widget``, wait until the browser's plotly has drawn traces; return the states."""
    box = page.locator(f".{widget}")
    box.first.wait_for(timeout=60_000)
    assert box.count() == 1, f"{widget}: {box.count()} widgets on the page"
    plots = box.locator(".js-plotly-plot")
    for i in range(n_charts):
        plots.nth(i).scroll_into_view_if_needed(timeout=30_000)
        plots.nth(i).locator(".main-svg").first.wait_for(timeout=60_000)
    page.wait_for_function(
        f"() => {{ const w = document.querySelector('.{widget}'); const ps = w ? w.querySelectorAll('.js-plotly-plot')"
        f" : []; return ps.length === {n_charts} && [...ps].every(p => p.data && p.data.length > 0); }}",
        timeout=30_000)
    states = box.first.evaluate(CHART_STATE)
    for state in states:
        assert state["traces"] > 0 and all(n > 0 for n in state["points"]), f"{widget}: an empty chart {states}"
        assert state["title"], f"{widget}: a chart without a title {states}"
    return states


def _no_errors_and_no_stderr_log(page) -> None:
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, errors.first.inner_text()[:2000]
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    texts = [stderr.nth(i).inner_text() for i in range(stderr.count())]
    assert not any("epoch" in t.lower() or "step" in t.lower() for t in texts), texts


def _no_sideways_scroll(page, widget: str) -> None:
    """The widget fits its output area: nothing makes it (or the notebook) scroll sideways.

    Wide tables scroll inside their own box (``.cliplab-scroll``), which is allowed."""
    over = page.locator(f".{widget}").first.evaluate(
        "el => { const out = el.closest('.jp-OutputArea-output') || el.parentElement;"
        " return [el.scrollWidth - el.clientWidth, out.scrollWidth - out.clientWidth]; }")
    assert max(over) <= 2, f"{widget}: {over} px sideways overflow (widget, output area)"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_all_and_draws_every_chart(playwright_api, jupyter, name):
    url, token = jupyter
    ARTIFACTS.mkdir(exist_ok=True)
    width, height = VIEWPORTS[name]
    with playwright_api() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": width, "height": height})
        console = _console(page)
        try:
            _open_and_run_all(page, url, token, f"{name}.ipynb")
            _wait_all_cells(page)
            _no_errors_and_no_stderr_log(page)
            for size in ((width, height), RESIZED):
                page.set_viewport_size({"width": size[0], "height": size[1]})
                for widget, n in CHARTS[name].items():
                    _check_charts(page, widget, n)
                    if size == (width, height):  # after a live resize to 820 px PromptLab is still too wide
                        _no_sideways_scroll(page, widget)
                    page.locator(f".{widget}").first.screenshot(
                        path=str(ARTIFACTS / f"{name}-{widget}-{size[0]}x{size[1]}.png"))
            page.set_viewport_size({"width": width, "height": height})
            if name == "02_prompt_sensitivity":
                _edit_prompt_lab(page)
            if name == "03_embedding_geometry":
                _hover_and_lasso(page)
        finally:
            page.screenshot(path=str(ARTIFACTS / f"jupyterlab-{name}.png"))
            (ARTIFACTS / f"console-{name}.txt").write_text("\n".join(console))
            browser.close()


def _figure_x(page, index: int) -> list[str]:
    """The x values of the first trace of the lab's index-th plotly figure, read from the DOM."""
    return page.locator(".cliplab-prompt-lab .js-plotly-plot").nth(index).evaluate("el => el.data[0].x")


def _edit_prompt_lab(page) -> None:
    """Enter in the new-template box adds it; an edited template list applies on the Apply button."""
    lab = page.locator(".cliplab-prompt-lab")
    lab.scroll_into_view_if_needed()
    before = _figure_x(page, 0)
    assert any("blurry" in x for x in before)  # the notebook's last cell added it from code
    new = lab.locator("input[placeholder='a photo of a {}.']")
    new.fill(NEW_TEMPLATE)
    new.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.cliplab-prompt-lab .js-plotly-plot').data[0].x"
        ".some(x => x.includes('watercolor'))", timeout=30_000)
    after = _figure_x(page, 0)
    assert len(after) == len(before) + 1 and after[-1] == "ensemble"
    box = lab.locator("textarea").nth(1)
    box.fill(box.input_value() + "\na sculpture of a {}.")
    # the kernel has the edit once the widget says it is not applied yet (then Apply applies it)
    lab.locator(".widget-html", has_text="Edits not applied yet").wait_for(timeout=30_000)
    lab.locator("button", has_text="Apply").click()
    page.wait_for_function(
        "() => document.querySelector('.cliplab-prompt-lab .js-plotly-plot').data[0].x"
        ".some(x => x.includes('sculpture'))", timeout=30_000)
    assert "updated in" in lab.locator(".cliplab-status").inner_text()
    lab.screenshot(path=str(ARTIFACTS / "prompt-lab-widget.png"))


def _hover_and_lasso(page) -> None:
    """03's explorer: hovering a point shows its thumbnail; a lasso over the map lists the images."""
    explorer = page.locator(".cliplab-explorer")
    plot = explorer.locator(".js-plotly-plot").first
    explorer.scroll_into_view_if_needed()
    plot.scroll_into_view_if_needed()
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


def test_minimal_reproduction_late_figure_in_a_vbox(playwright_api, jupyter):
    """A VBox subclass holding a figure, created in a cell that runs after a 25-second cell, draws."""
    url, token = jupyter
    with playwright_api() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1200, "height": 700})
        console = _console(page)
        try:
            _open_and_run_all(page, url, token, REPRO)
            _wait_all_cells(page, 120)
            states = _check_charts(page, "cliplab-repro", 1)
            assert states[0]["points"] == [3] and states[0]["title"] == "late figure"
        finally:
            (ARTIFACTS / "console-repro.txt").write_text("\n".join(console))
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-repro.png"))
            browser.close()


PIXEL_OF_FIRST_POINT = """el => { const fl = el._fullLayout, r = el.getBoundingClientRect(), d = el.data[0];
    return [r.left + fl._size.l + fl.xaxis.d2p(d.x[0]), r.top + fl._size.t + fl.yaxis.d2p(d.y[0])]; }"""
PLOT_AREA = """el => { const fl = el._fullLayout, r = el.getBoundingClientRect();
    return [r.left + fl._size.l, r.top + fl._size.t, fl._size.w, fl._size.h]; }"""
