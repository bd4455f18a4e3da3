"""The built book, as a reader's browser sees it (pytest mark ``book``).

Serves ``_build/html`` from a local HTTP server and opens every page in the
table of contents with Debian's Chromium, driven by Playwright for Python
(never ``playwright install``: it downloads a browser). Checks, per page:
no request leaves localhost and none fails, no console errors, MathJax
rendered every formula, images load, embedded widgets render, and chapters
show figures and an animation player. Saves a full-page screenshot of every
page under ``_build/screenshots/``.

Needs ``make book`` first (``make test`` does it). A missing Chromium is a
failure, not a skip: CI installs it (``apt-get install chromium``).
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\$[^\s$][^$\n]*\$")


def _toc_files(entry) -> list[str]:
    files = [entry["file"]] if "file" in entry else []
    for key in ("parts", "chapters", "sections"):
        for child in entry.get(key, []):
            files += _toc_files(child)
    return files


def toc_pages() -> list[str]:
    """Every document in _toc.yml, root first, without extension (e.g. ``book/intro``)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + _toc_files(toc)


def is_chapter(page: str) -> bool:
    return (ROOT / f"{page}.ipynb").is_file()


def test_toc_documents_exist():
    for page in toc_pages():
        found = [p for p in (ROOT / f"{page}.md", ROOT / f"{page}.ipynb") if p.is_file()]
        assert found, f"_toc.yml lists {page}, but neither {page}.md nor {page}.ipynb exists"


def _built():
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book at {HTML}: run `make book` (make test does it first)")


@pytest.mark.book
def test_no_remote_assets_in_html():
    """Plain text check of the built files, browser-independent (tools/check_offline.py)."""
    _built()
    spec = importlib.util.spec_from_file_location("check_offline", ROOT / "tools" / "check_offline.py")
    check_offline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_offline)
    found = check_offline.remote_loads(HTML)
    assert not found, "remote loads in the built book:\n" + "\n".join(
        f"{path.relative_to(HTML)}: {hit[:160]}" for path, hits in found.items() for hit in hits)
    for path in HTML.rglob("*.html"):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert 'src="http' not in text, f"{path}: src=\"http…\""
        assert not re.search(r'href="https?://[^"]*\.css', text), f"{path}: remote stylesheet"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    _built()
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not on PATH: install it with "
                    "`apt-get install chromium` (.ci/run does). The browser test does not "
                    "skip, and does not use `playwright install`.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.mark.book
@pytest.mark.parametrize("page_name", toc_pages())
def test_page_in_browser(server, browser, page_name):
    path = HTML / f"{page_name}.html"
    assert path.is_file(), f"{page_name} is in _toc.yml but {path} was not built"

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    remote, failed, errors = [], [], []

    def route(r):  # never let a request leave the machine, but remember it
        url = r.request.url
        if urlparse(url).scheme in ("http", "https") and urlparse(url).hostname not in LOCAL_HOSTS:
            remote.append(url)
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url} (HTTP {r.status})"))
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    try:
        page.goto(f"{server}/{page_name}.html", wait_until="networkidle", timeout=120_000)

        n_math = page.locator(".math").count()
        if n_math:
            page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=60_000)
            page.evaluate("() => MathJax.startup.promise")
            unrendered = page.evaluate(
                "() => [...document.querySelectorAll('.math')]"
                ".filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80))")
            assert not unrendered, f"{page_name}: formulas MathJax did not render: {unrendered[:5]}"
        prose = page.evaluate(
            "() => { const b = document.querySelector('main') || document.body;"
            " const c = b.cloneNode(true);"
            " c.querySelectorAll('pre, code, script, style, mjx-container, .highlight, .cell_output,"
            " .output').forEach(e => e.remove()); return c.innerText; }")
        raw = RAW_TEX.findall(prose)
        assert not raw, f"{page_name}: raw TeX left in the visible text: {raw[:5]}"

        broken = page.evaluate(
            "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
            ".map(i => i.id || i.src.slice(0, 80))")
        assert not broken, f"{page_name}: images that did not load: {broken}"

        # every embedded widget view must render (offline widget manager, tools/fetch_vendor.sh)
        views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
        if views:
            page.wait_for_function(f"() => document.querySelectorAll('.jupyter-widgets').length >= {views}",
                                   timeout=30_000)

        if is_chapter(page_name):
            figures = page.locator("main img:not([id^='_anim_img'])").count()
            assert figures >= 1, f"{page_name}: a chapter without a figure"
            assert page.locator("div.animation").count() >= 1, \
                f"{page_name}: no animation player (matplotlib to_jshtml)"
            assert page.locator("div.animation .anim-controls button").count() > 0, \
                f"{page_name}: animation player without controls"

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{page_name.replace('/', '__')}.png"), full_page=True)
    finally:
        context.close()

    assert not remote, f"{page_name}: requests to non-local hosts: {remote}"
    assert not failed, f"{page_name}: failed requests: {failed}"
    assert not errors, f"{page_name}: console errors: {errors}"
