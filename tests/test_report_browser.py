"""The HTML report opened in a real headless Chromium (Debian's package), driven by Playwright over CDP.

No console errors, no network request, every figure decoded and laid out with a non-zero size, the results
table sorts on a header click; a full-page screenshot goes to test-artifacts/report.png. Without Chromium
(or the playwright package) the test skips with how to install it — and fails in CI (env CI set).
"""

import base64
import os
import shutil
import struct
from pathlib import Path

import pytest

from dnnbench.report import build
from dnnbench.store import open_store
from tests import synthetic_results as S

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing(what: str, fix: str):
    msg = f"{what} is not available: {fix}"
    if os.environ.get("CI"):
        pytest.fail(msg + " (.ci/run installs it; CI must run this test)")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("DNNBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        _missing("Chromium", "apt-get install -y chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright package", "pip install -e '.[test]' (never `playwright install`: Debian's Chromium is used)")
    return path


def test_report_renders_in_headless_chromium(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    url = S.write(f"sqlite:///{tmp_path / 's.db'}", S.rows(power=False))  # three figures are "no data" placeholders
    with open_store(url) as st:
        res = build(st.frame(), st.environments(), tmp_path / "out", store_where="synthetic.db")

    console, requests = [], []
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium, headless=True,
                                                   args=FLAGS, viewport={"width": 1280, "height": 900})
        try:
            page = ctx.new_page()
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(res.path.as_uri(), wait_until="load")
            figs = page.evaluate("""() => Array.from(document.querySelectorAll('figure.fig img')).map(i => {
                const r = i.getBoundingClientRect(), f = i.closest('figure');
                return {id: f.id, src: i.src, caption: f.querySelector('figcaption').textContent,
                        alt: i.alt, complete: i.complete, nw: i.naturalWidth, nh: i.naturalHeight, w: r.width, h: r.height,
                        nodata: f.classList.contains('nodata')};
            })""")
            # sort the results table by time per image, ascending then descending
            header = page.locator("#results th", has_text="time / image")
            col = page.evaluate("() => Array.from(document.querySelectorAll('#results th')).findIndex("
                                "th => th.textContent.trim() === 'time / image')")
            values = "(i) => Array.from(document.querySelectorAll('#results tbody tr')).map(r => parseFloat(r.cells[i].dataset.v))"
            header.click()
            asc = page.evaluate(values, col)
            header.click()
            desc = page.evaluate(values, col)
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            ctx.close()

    errors = [c for c in console if c[0] in ("error", "pageerror")]
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # self-contained: nothing fetched
    made = {f.key: f for f in res.figures}
    assert [f["id"] for f in figs] == [f"fig-{k}" for k in made] and len(figs) == 11
    for f in figs:
        out = made[f["id"].removeprefix("fig-")]
        # the page shows the very PNG whose plotted data tests/test_report.py checks, decoded at its own size
        png = base64.b64decode(f["src"].split(",", 1)[1])
        assert png == out.png and f["complete"], f["id"]
        assert (f["nw"], f["nh"]) == struct.unpack(">II", png[16:24]), f["id"]  # the IHDR's width and height
        assert f["w"] > 100 and f["h"] > 50, f["id"]  # laid out on the page with a real size
        # a "no data" panel plots nothing, is styled apart and its caption says why
        assert f["nodata"] == out.plotted.empty == (out.no_data is not None), f["id"]
        if out.no_data:
            assert " ".join(out.no_data.split()) in " ".join(f["caption"].split())
    assert sum(f["nodata"] for f in figs) == 3  # no power, and one runtime: each panel says how to get it
    assert len(asc) == 15 and asc == sorted(asc) and desc == sorted(asc, reverse=True)
    assert shot.stat().st_size > 50_000


def test_setups_section_renders_in_headless_chromium(chromium, tmp_path):
    """The "Setups compared" section of a store with two machines: its figures decoded and laid out, its table
    one row per model; a screenshot of the section goes to the test's tmp path (and test-artifacts/setups.png)."""
    from playwright.sync_api import sync_playwright

    from tests.test_setups import two_setups_rows

    url = S.write(f"sqlite:///{tmp_path / 's.db'}", two_setups_rows(imported=True))
    with open_store(url) as st:
        res = build(st.frame(), st.environments(), tmp_path / "out", store_where="three-setups.db")
    console, requests = [], []
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium, headless=True,
                                                   args=FLAGS, viewport={"width": 1280, "height": 900})
        try:
            page = ctx.new_page()
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(res.path.as_uri(), wait_until="load")
            figs = page.evaluate("""() => Array.from(document.querySelectorAll('#setups-compared figure img')).map(i => {
                const r = i.getBoundingClientRect();
                return {id: i.closest('figure').id, complete: i.complete, nw: i.naturalWidth, w: r.width, h: r.height};
            })""")
            rows = page.evaluate("() => document.querySelectorAll('#table-setups tbody tr').length")
            heads = page.evaluate("() => Array.from(document.querySelectorAll('#table-setups thead tr:first-child th'))"
                                  ".map(t => t.textContent.trim())")
            shot = tmp_path / "setups.png"
            page.locator("#setups-compared").screenshot(path=str(shot))
        finally:
            ctx.close()
    assert [c for c in console if c[0] in ("error", "pageerror")] == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert [f["id"] for f in figs] == [f"fig-{f.key}" for f in res.setup_figures] and len(figs) == 4
    assert all(f["complete"] and f["nw"] > 0 and f["w"] > 100 and f["h"] > 50 for f in figs), figs
    assert rows == len(S.MODELS)
    assert heads[2:] == ["Synthetic CPU 9000 · 4 threads · eager fp32", "Tiny ARM A72 · 4 threads · eager fp32",
                         "Jetson Orin Nano · eager fp32"]
    png = shot.read_bytes()
    width, height = struct.unpack(">II", png[16:24])
    assert png.startswith(b"\x89PNG") and width > 800 and height > 600 and len(png) > 50_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "setups.png")
    if Path("/tmp/h").is_dir():  # for the lead: the section as Chromium drew it
        shutil.copy(shot, "/tmp/h/setups.png")
