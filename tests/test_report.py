"""The HTML report on synthetic stores: self-contained, every figure drawn (or saying why not), findings,
environment, warnings with remedies, methods; `dnnbench report` CLI and its bad input."""

import base64
import math
import re

import numpy as np
import pytest

from dnnbench.report import build
from dnnbench.report.figures import FIGURES
from dnnbench.store import open_store
from tests import synthetic_results as S

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIB = 2**20


def _points(got, want):
    """Two collections of (x, y) points are the same set, to float precision (NaN equals NaN)."""
    flat = lambda pts: [v for p in sorted(pts, key=lambda p: tuple(-1e300 if math.isnan(v) else v for v in p)) for v in p]
    assert len(got) == len(want) and flat(got) == pytest.approx(flat(want), nan_ok=True), (got, want)


def _line(got, want):
    """A line's points, in drawing order."""
    assert len(got) == len(want) and [v for p in got for v in p] == pytest.approx([v for p in want for v in p]), got


def _bars(got, want: dict):
    assert [c for c, _ in got] == list(want) or sorted(c for c, _ in got) == sorted(want), (got, want)
    assert dict(got) == pytest.approx(want, nan_ok=True)


def _where(got: dict, want: dict):
    """Point labels: the same names, each drawn at the wanted (x, y)."""
    assert sorted(got) == sorted(want)
    assert [v for k in sorted(got) for v in got[k]] == pytest.approx([v for k in sorted(want) for v in want[k]])


def _no_data_panel(f) -> str:
    """The text of a "no data" panel, whitespace folded; the panel plots nothing."""
    assert f.no_data and f.plotted.empty and not f.plotted.labels, f.key
    (text,) = f.plotted.texts
    return " ".join(text.split())


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
        assert f.png.startswith(PNG_MAGIC) and f.plotted.empty == (f.no_data is not None)
        drawn = [*f.plotted.lines, *f.plotted.points, *f.plotted.bars]
        assert not [n for n in drawn if n.startswith("_")], f.key  # every series drawn has a name to check it by
        assert [p.rsplit(".", 1)[1] for p in f.files] == ["png", "svg"]
        svg = open(f.files[1], encoding="utf-8").read()
        assert "<svg" in svg
        # titled with the figure's name, then device, runtime, precision and date (matplotlib keeps text as comments)
        assert f"<!-- {f.title} -->" in svg.replace("&amp;", "&")
        assert "<!-- cpu (Synthetic CPU 9000), eager, fp32, 2026-01-02 -->" in svg


def test_figures_plot_the_stored_numbers(full_report):
    """Each figure's points, lines and bars are the synthetic store's planted values, in the axes' units."""
    res, _ = full_report
    fig = {f.key: f.plotted for f in res.figures}
    timed, every = list(S.MODELS), S.MODELS | S.PROFILE_ONLY
    gmacs = {m: v[0] for m, v in every.items()}
    params = {m: v[1] for m, v in every.items()}
    top1 = {m: v[2] for m, v in every.items()}
    act = {m: v[3] for m, v in every.items()}

    _bars(fig["top1"].bars["today (measured or published)"], {m: 100 * top1[m] for m in every})
    _bars(fig["top1"].bars["paper 2016"], {m: 70.0 if m == "alpha" else math.nan for m in every})  # alpha's alone
    _where(fig["ball"].labelled(), {m: (gmacs[m], 100 * top1[m]) for m in every})
    _points(fig["ball"].points["models"], [(gmacs[m], 100 * top1[m]) for m in every])

    for m in timed:
        _line(fig["time_batch"].lines[m], [(b, 1e3 * S.time_per_image(m, b)) for b in (1, 4, 16)])
        _line(fig["power_batch"].lines[m], [(b, S.POWER[b]) for b in (1, 4, 16)])
        measured = [(b, (S.memory_total(m, b) - S.FLOOR + 20 * MIB) / MIB) for b in (1, 4, 16)]  # RSS above baseline
        _line(fig["memory_batch"].lines[m], measured)
        static = [(b, (4 * params[m] + act[m] * b) / MIB) for b in (1, 4, 16)]
        _line(fig["memory_batch"].lines[f"{m} (static estimate)"], static)
    assert [y for _, y in fig["power_batch"].lines["idle (median 10 W)"]] == [S.IDLE, S.IDLE]

    # GMACs vs time per image at batch 1 and 16, each with its least-squares line over 0 .. 1.05 x the largest GMACs
    for b in (1, 16):
        pts = [(gmacs[m], 1e3 * S.time_per_image(m, b)) for m in timed]
        _points(fig["ops_time"].points[f"batch {b}"], pts)
        slope, intercept = np.polyfit(*zip(*pts), 1)
        x1 = 1.05 * max(gmacs[m] for m in timed)
        _line(fig["ops_time"].lines[f"batch {b} fit"], [(0, intercept), (x1, intercept + slope * x1)])
        _points(fig["ops_power"].points[f"batch {b}"], [(gmacs[m], S.POWER[b]) for m in timed])
    _line(fig["ops_time"].lines["batch 16 fit"], [(0, 0.25 * 1e3 * S.T0), (4.2, 0.25e3 * (S.T0 + 4.2 * S.T1))])

    weights = {m: (4 * params[m] / MIB, S.memory_total(m, 1) / MIB) for m in timed}
    _points(fig["memory_weights"].points["models"], list(weights.values()))
    _where(fig["memory_weights"].labelled(), weights)

    # throughput at the batch size every model has (16, the largest), iso-energy lines at P / E for 35 W
    at16 = {m: (1 / S.time_per_image(m, 16), 100 * top1[m]) for m in timed}
    _where(fig["accuracy_throughput"].labelled(), at16)
    front = sorted(at16[m] for m in ("dwnet", "beta", "gamma", "delta"))  # alpha: slower and less accurate than dwnet
    _line(fig["accuracy_throughput"].lines["Pareto front"], front)
    iso = {n: xy[0][0] for n, xy in fig["accuracy_throughput"].lines.items() if n.endswith(" J per image")}
    assert iso and all(x == pytest.approx(S.POWER[16] / float(n.split()[0])) for n, x in iso.items())

    _bars(fig["density"].bars["top-1 points per million parameters"], {m: 100 * top1[m] / (params[m] / 1e6) for m in every})
    assert "--runtime all" in _no_data_panel(next(f for f in res.figures if f.key == "runtimes"))


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
    for f in res.figures:  # a placeholder plots nothing and shows its reason; every other figure plots data
        if f.no_data:
            assert _no_data_panel(f) == "no data: " + " ".join(f.no_data.split())
        else:
            assert not f.plotted.empty and not any("no data" in t for t in f.plotted.texts)


def test_profile_only_store_gets_a_report_with_static_figures(tmp_path):
    df, envs = _store(tmp_path, models=[], batches=(1,))
    res = build(df, envs, tmp_path / "out")
    have = {f.key for f in res.figures if not f.no_data}
    assert have == {"top1", "ball", "density"}
    assert {f.key for f in res.figures if not f.plotted.empty} == have
    assert all(_no_data_panel(f).startswith("no data: ") for f in res.figures if f.key not in have)
    ball = next(f.plotted for f in res.figures if f.key == "ball")
    _where(ball.labelled(), {m: (g, 100 * t) for m, (g, _, t, _) in S.PROFILE_ONLY.items()})  # the one model stored
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
