"""The HTML report on synthetic stores: self-contained, every figure drawn (or saying why not), findings,
environment, warnings with remedies, methods; `dnnbench report` CLI and its bad input."""

import base64
import re

import pytest

from dnnbench.report import build
from dnnbench.report.figures import FIGURES
from dnnbench.store import open_store
from tests import synthetic_results as S

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _store(tmp_path, name="s.db", **kw):
    url = S.write(f"sqlite:///{tmp_path / name}", S.rows(**kw))
    with open_store(url) as st:
        return st.frame(), st.environments()


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """One report of a store with time, memory and power: built once, read by several tests."""
    tmp = tmp_path_factory.mktemp("report")
    df, envs = _store(tmp)
    res = build(df, envs, tmp / "out", store_where="synthetic.db")
    return res, res.path.read_text(encoding="utf-8")


def test_report_is_one_self_contained_file(full_report):
    res, html = full_report
    assert res.path.name == "report.html"
    # nothing is fetched: no external URLs in src/href, figures are data: URIs
    assert not re.search(r'(src|href)="(https?:)?//', html)
    imgs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == len(FIGURES) == 11
    for b64 in imgs:
        assert base64.b64decode(b64).startswith(PNG_MAGIC)
    assert "<style>" in html and "<script>" in html


def test_every_figure_has_data_titles_and_png_svg_files(full_report):
    res, _ = full_report
    # power measured: every figure has data, except the runtime comparison (one runtime and precision stored)
    assert [f.no_data for f in res.figures if f.key != "runtimes"] == [None] * 10
    assert "--runtime all" in next(f.no_data for f in res.figures if f.key == "runtimes")
    for f in res.figures:
        assert len(f.png) > 5000  # a drawn figure, not a blank canvas
        assert [p.rsplit(".", 1)[1] for p in f.files] == ["png", "svg"]
        svg = open(f.files[1], encoding="utf-8").read()
        assert "<svg" in svg
        # titled with the figure's name, then device, runtime, precision and date (matplotlib keeps text as comments)
        assert f"<!-- {f.title} -->" in svg.replace("&amp;", "&")
        assert "<!-- cpu (Synthetic CPU 9000), eager, fp32, 2026-01-02 -->" in svg


def test_findings_environment_warnings_and_methods_are_in_the_page(full_report):
    res, html = full_report
    for key in ("ops_time", "accuracy_time", "memory", "power", "density", "pareto", "batching", "paper_top1"):
        assert f'id="finding-{key}"' in html
    assert "dwnet" in html and "slower than the line" in html
    assert "Synthetic CPU 9000" in html and "no cpufreq in sysfs" in html  # environment, with what was not recorded
    assert "std dev is 12.0 % of the mean" in html and "close other programs" in html  # warning and its remedy
    for section in ("Counting conventions", "Timing protocol", "Memory semantics", "Energy scope"):
        assert section in html
    assert 'class="sortable" id="results"' in html and html.count("<tr>") > 15
    assert (res.path.parent / "findings.json").exists()


def test_figures_without_power_say_so_and_how(tmp_path):
    df, envs = _store(tmp_path, power=False)
    res = build(df, envs, tmp_path / "out")
    no = {f.key: f.no_data for f in res.figures if f.no_data}
    assert set(no) == {"power_batch", "ops_power", "runtimes"}
    assert all("--metrics time,memory,power" in why and "dnnbench sensors" in why
               for key, why in no.items() if key != "runtimes")
    html = res.path.read_text(encoding="utf-8")
    assert html.count('class="fig nodata"') == 3 and "no data:" in html
    assert all(len(f.png) > 5000 for f in res.figures)  # the placeholder is drawn, never blank


def test_profile_only_store_gets_a_report_with_static_figures(tmp_path):
    df, envs = _store(tmp_path, models=[], batches=(1,))
    res = build(df, envs, tmp_path / "out")
    have = {f.key for f in res.figures if not f.no_data}
    assert have == {"top1", "ball", "density"}
    html = res.path.read_text(encoding="utf-8")
    assert "static profile only" in html and "epsilon" in html


# ---- CLI --------------------------------------------------------------------------------------------

def _main(capsys, *args):
    from dnnbench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
        raise SystemExit(0)
    cap = capsys.readouterr()
    return exc.value.code or 0, cap.out, cap.err


def test_cli_report_prints_the_path(capsys, tmp_path):
    store = S.write(str(tmp_path / "s.db"), S.rows(power=False, batches=(1, 4)))
    code, out, err = _main(capsys, "report", "--store", store, "--out", str(tmp_path / "rep"))
    assert code == 0
    path = out.strip().splitlines()[-1]
    assert path == str((tmp_path / "rep" / "report.html").resolve())
    assert "figures have no data" in err


def test_cli_report_on_an_empty_store_says_how_to_fill_it(capsys, tmp_path):
    open_store(str(tmp_path / "empty.db")).close()  # a store that exists and holds nothing
    code, _, err = _main(capsys, "report", "--store", str(tmp_path / "empty.db"), "--out", str(tmp_path / "r"))
    assert code == 2 and "holds no results" in err and "dnnbench study" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
