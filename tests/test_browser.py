"""The web page in a real headless Chromium: pick a user, see outfits drawn from item images, complete one.

Runs the real server (uvicorn on a free loopback port, in a thread) on a real
tiny model, or on the run directory named by OUTFITREC_BROWSER_RUN (e.g. a
trained Fashion-MNIST student, for the README's screenshot). Needs Debian's
/usr/bin/chromium (driven by Playwright); skipped with the reason when it is
absent. Saves a screenshot to docs/img/serve_page.png when that file is
missing or OUTFITREC_SCREENSHOT=1 (so a test run leaves the tree clean).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import make_tiny_run

from outfitrec.recommend.engine import Recommender
from outfitrec.serve.app import create_app

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "serve_page.png"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (Debian package chromium)"),
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory, tiny_dataset, tiny_data_dir):
    import uvicorn

    run = os.environ.get("OUTFITREC_BROWSER_RUN")
    if not run:
        run = make_tiny_run(tiny_dataset, tiny_data_dir, tmp_path_factory.mktemp("browser_run"), steps=30)
    app = create_app(Recommender.from_run(run))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        pytest.fail("the server did not answer /health within 20 s")
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def _loaded_images(page, selector: str) -> int:
    """How many images under `selector` finished loading with real pixels."""
    return page.eval_on_selector_all(selector, "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")


def test_page_shows_history_and_recommendations(server_url):
    from playwright.sync_api import sync_playwright

    info = httpx.get(f"{server_url}/api/info").json()
    user = min(5, info["n_users"] - 1)
    n_history = min(24, len(httpx.get(f"{server_url}/api/users/{user}/history").json()["outfits"]))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server_url + "/")
            page.wait_for_selector("#user-select option", state="attached")
            assert page.locator("#user-select option").count() == min(info["n_users"], 1000)
            page.select_option("#user-select", str(user))
            # the user's recommendations and history appear, drawn from item images, with scores
            # the page shows user 0 first: wait for the picked user's outfits, not a stale render
            page.wait_for_function(
                f"() => document.querySelector('#recommendations').dataset.user === '{user}' &&"
                f" document.querySelector('#history').dataset.user === '{user}' &&"
                " document.querySelectorAll('#recommendations .outfit').length === 8 &&"
                " document.querySelector('#rec-time').textContent.length > 0"
            )
            page.wait_for_function(
                f"() => document.querySelectorAll('#history .outfit').length === {n_history} &&"
                " [...document.querySelectorAll('#recommendations img, #history img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            shown = page.locator("#recommendations .outfit img").count()
            assert shown >= 8 * 2 and _loaded_images(page, "#recommendations .outfit img") == shown
            assert _loaded_images(page, "#history .outfit img") == page.locator("#history .outfit img").count() > 0
            scores = page.locator("#recommendations .score").all_text_contents()
            assert len(scores) == 8 and all(float(s) for s in scores)
            assert page.locator("#model-info").text_content().startswith(info["dataset_name"])
            # complete an outfit: choose the first item of the first category, the model fills the rest
            first = page.locator(".picker-items img").first
            item = first.get_attribute("data-item")
            first.click()
            page.click("#complete-button")
            page.wait_for_function("() => document.querySelectorAll('#completions .outfit').length === 5")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#completions img')].every(i => i.complete && i.naturalWidth > 0)"
            )
            item_titles = "cs => cs.map(c => [...c.querySelectorAll('img')].map(i => i.title))"
            outfits = page.eval_on_selector_all("#completions .outfit", item_titles)
            assert all(any(t.startswith(f"#{item} ") for t in titles) for titles in outfits)
            assert not errors, errors
            if os.environ.get("OUTFITREC_SCREENSHOT") == "1" or not SCREENSHOT.exists():
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                tmp = SCREENSHOT.with_name(".serve_page.tmp.png")
                page.screenshot(path=str(tmp), full_page=True)
                shutil.move(tmp, SCREENSHOT)
        finally:
            browser.close()
