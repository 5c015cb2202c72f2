"""A real browser check of the explorers (attention, sweep): JupyterLab 4 on localhost, headless Chromium.

The explorers use stock ipywidgets only, so they must render in JupyterLab without any custom
JavaScript. This test starts JupyterLab on a free port with a token, opens a notebook holding the
explorer in Debian's ``chromium`` (Playwright drives the system browser: no browser download),
runs the cell with Shift+Enter, waits for the widget's ``img``, changes a control and checks that the
image (its blob URL and its bytes) changed. Screenshots before and after go to the test's temporary
folder, or to ``$DSVL_LAB_SCREENSHOTS`` when set.

Skipped, with the reason, when Chromium (``apt-get install chromium``, which ``make test`` does as
root) or the ``playwright`` package (the ``test`` extra) is missing.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dsvl_lab.inspection.shipped_traces import TRACES_DIR

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("DSVL_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TRACE = TRACES_DIR / "foundation-chart.safetensors"
ATTENTION_CELL = f"""from dsvl_lab.inspection import AttentionExplorer
explorer = AttentionExplorer.from_trace({str(TRACE)!r})
explorer"""
STUDIES = Path(__file__).resolve().parents[1] / "ablations"
SWEEP_CELL = f"""from dsvl_lab.ablations.explorer import SweepExplorer
explorer = SweepExplorer({str(STUDIES / "encoder")!r})
explorer"""


def browser_or_skip():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: install it with `apt-get install -y chromium` (make test does, "
                    f"as root) or point DSVL_LAB_CHROMIUM at a Chromium binary")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing: pip install -e '.[test]' (no browser download is needed)")
    return sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(folder: Path, source: str) -> Path:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    notebook = {"cells": [cell], "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)",
                                                             "language": "python", "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}
    path = folder / "explorer.ipynb"
    path.write_text(json.dumps(notebook))
    return path


def start_lab(folder: Path, port: int, token: str) -> subprocess.Popen:
    """JupyterLab on 127.0.0.1 only, its config and runtime files inside ``folder`` (nothing of the user's)."""
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(folder / ".config"), "JUPYTER_RUNTIME_DIR": str(folder / ".runtime"),
           "JUPYTER_DATA_DIR": os.environ.get("JUPYTER_DATA_DIR", str(Path(sys.prefix) / "share" / "jupyter")),
           "JUPYTERLAB_WORKSPACES_DIR": str(folder / ".workspaces")}
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        command.append("--allow-root")  # Jupyter refuses to run as root without it (containers, CI)
    return subprocess.Popen(command, env=env, cwd=folder, stdout=open(folder / "lab.log", "w"),
                            stderr=subprocess.STDOUT)


def wait_for_lab(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def wait_for_kernel(base: str, token: str, page, timeout: float = 90) -> None:
    """The notebook's kernel has started and answered (the server says idle, and so does the toolbar)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as reply:
            sessions = json.loads(reply.read())
        if any(s.get("kernel", {}).get("execution_state") == "idle" for s in sessions):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the notebook's kernel did not start within {timeout:.0f} s")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook-ExecutionIndicator')]"
        ".some(e => e.dataset.status === 'idle')",
        timeout=timeout * 1000)


def image_bytes(page, src: str) -> bytes:
    """The bytes behind the widget's blob URL, read inside the page."""
    values = page.evaluate("async (src) => Array.from(new Uint8Array(await (await fetch(src)).arrayBuffer()))", src)
    return bytes(values)


def test_explorer_renders_and_rerenders_in_jupyterlab(tmp_path):
    check_widget_rerenders(tmp_path, ATTENTION_CELL, "colormap", "viridis", "explorer")


def test_sweep_explorer_renders_and_rerenders_in_jupyterlab(tmp_path):
    if not (STUDIES / "encoder" / "results.csv").is_file():
        pytest.fail("ablations/encoder/results.csv is missing: the encoder study's committed results must ship")
    check_widget_rerenders(tmp_path, SWEEP_CELL, "detail", "coarse", "sweep-explorer")


@contextlib.contextmanager
def lab_page(folder: Path, notebook: str):
    """JupyterLab serving ``folder`` and headless Chromium showing ``notebook``: yields (page, base URL, token)."""
    sync_playwright = browser_or_skip()
    port, token = free_port(), "dsvl-lab-browser-test"
    lab = start_lab(folder, port, token)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_lab(f"{base}/api/status?token={token}", lab, folder / "lab.log")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{base}/lab/tree/{notebook}?token={token}", timeout=90_000)
                yield page, base, token
            finally:
                browser.close()
    finally:
        lab.terminate()
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.kill()


def check_widget_rerenders(tmp_path: Path, cell: str, control: str, option: str, name: str) -> None:
    """Run ``cell`` in JupyterLab, wait for the widget's picture, pick ``option`` in ``control``: a new picture."""
    shots = Path(os.environ.get("DSVL_LAB_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    write_notebook(tmp_path, cell)
    with lab_page(tmp_path, "explorer.ipynb") as (page, base, token):
        try:
            editor = page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor").first
            editor.wait_for(timeout=90_000)
            wait_for_kernel(base, token, page)
            editor.click()
            page.keyboard.press("Shift+Enter")
            image = page.locator(".jp-OutputArea-output img.widget-image").first
            image.wait_for(timeout=120_000)
            page.wait_for_function("img => img.src.startsWith('blob:') && img.naturalWidth > 0",
                                   arg=image.element_handle(), timeout=60_000)
            first_src = image.get_attribute("src")
            first_bytes = image_bytes(page, first_src)
            page.screenshot(path=str(shots / f"{name}-before.png"), full_page=True)

            dropdown = page.locator(".widget-dropdown", has_text=control).locator("select")
            dropdown.select_option(option)
            page.wait_for_function("([img, old]) => img.src !== old && img.naturalWidth > 0",
                                   arg=[image.element_handle(), first_src], timeout=60_000)
            second_src = image.get_attribute("src")
            second_bytes = image_bytes(page, second_src)
            page.screenshot(path=str(shots / f"{name}-after.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(shots / f"{name}-failed.png"), full_page=True)
            print(f"failed; the page as it was: {shots / f'{name}-failed.png'}")
            raise
    print(f"screenshots: {shots / f'{name}-before.png'} and {shots / f'{name}-after.png'}")
    assert first_src != second_src
    assert first_bytes[:8] == second_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert first_bytes != second_bytes
    if shots != tmp_path / "screenshots":
        shutil.copy(tmp_path / "lab.log", shots / f"{name}-lab.log")


@pytest.mark.parametrize("notebook, widget", [("04_attention.ipynb", "AttentionExplorer"),
                                              ("06_encoder_ablation.ipynb", "SweepExplorer")])
def test_committed_widgets_show_their_picture_without_a_kernel(tmp_path, notebook, widget):
    """A reader who opens the committed notebook (untrusted, nothing run) sees the widget's last picture."""
    shutil.copy(Path(__file__).resolve().parents[1] / "notebooks" / notebook, tmp_path / notebook)
    with lab_page(tmp_path, notebook) as (page, _, _):
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
        # The explorer's cell is the last one whose source creates it; its output must be a picture.
        cell = page.locator(".jp-Notebook .jp-CodeCell", has_text=f"{widget}(").last
        cell.scroll_into_view_if_needed(timeout=30_000)
        picture = cell.locator(".jp-OutputArea-output img").first
        picture.wait_for(timeout=60_000)
        page.wait_for_function("img => img.naturalWidth > 100", arg=picture.element_handle(), timeout=30_000)
        output_text = cell.locator(".jp-OutputArea").inner_text()
    assert f"{widget}(children" not in output_text
