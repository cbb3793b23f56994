"""Setups side by side: readable unique names, the report's "Setups compared" section, `pick --setup any|NAME`.

Planted store: the synthetic machine "Synthetic CPU 9000" (fast, ~300 MiB resident floor, the default setup:
most cells) and a second machine "Tiny ARM A72" (3x slower, a 60 MiB floor, batches 1 and 4 only). Under
--max-memory-mb 200 no model fits on the default setup; on the small one alpha, beta, gamma and dwnet do,
and gamma has the best top-1 of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from dnnbench.analysis.pick import Budget, pick
from dnnbench.analysis.setups import compare, findings_per_setup
from dnnbench.analysis.tables import find_setup, setups
from dnnbench.analysis.errors import NoResultsError
from dnnbench.cli import main
from dnnbench.report import build
from dnnbench.store import open_store
from tests import synthetic_results as S

SMALL_FP = "smallfp000000002"
SMALL_ENV = {**S.ENV, "fingerprint": SMALL_FP, "cpu_model": "Tiny ARM A72", "physical_cores": 4, "logical_cores": 4,
             "arch": "aarch64", "hostname": "pi"}
SLOW = 3.0  # the small machine is 3x slower per image
SMALL_FLOOR = 60 * 2**20
IMPORTED_FP = "imported:0123456789abcdef"
IMPORTED_ENV = {"fingerprint": IMPORTED_FP, "device_name": "Jetson Orin Nano", "unavailable": {}}


def _on_small(row):
    """A bench row of the synthetic machine as the small machine measured it: slower, a smaller floor."""
    m = dict(row.metrics)
    if m:
        for k in ("latency_median_s", "latency_per_item_s", "energy_per_item_j", "energy_per_item_above_idle_j"):
            if k in m:
                m[k] *= SLOW
        m["throughput_items_per_s"] /= SLOW
        m["peak_rss_bytes"] += SMALL_FLOOR - S.FLOOR
    return replace(row, cell_id="small-" + row.cell_id, fingerprint=SMALL_FP, environment=SMALL_ENV, metrics=m)


def two_setups_rows(imported: bool = False, study: str | None = None):
    """The synthetic store plus the small machine's bench cells at batches 1 and 4 (and, with ``imported``, an
    imported device's batch-1 cells: 10x faster than the synthetic machine, without CPU model or threads)."""
    rows = S.rows()
    small = [_on_small(r) for r in rows if r.metric_group != "profile" and r.batch_size in (1, 4)]
    if study:
        small = [replace(r, study=study) for r in small]
    extra = []
    if imported:
        for r in rows:
            if r.metric_group == "profile" or r.batch_size != 1 or r.model_ref.endswith(("delta", "dwnet")):
                continue
            m = {k: v / 10 if k.startswith(("latency", "energy")) else v for k, v in r.metrics.items()}
            m["throughput_items_per_s"] = r.metrics["throughput_items_per_s"] * 10
            extra.append(replace(r, cell_id="imp-" + r.cell_id, fingerprint=IMPORTED_FP, environment=IMPORTED_ENV,
                                 device="cuda", threads=None, metrics=m))
    return rows + small + extra


@pytest.fixture
def store(tmp_path):
    return S.write(f"sqlite:///{tmp_path / 'two.db'}", two_setups_rows())


@pytest.fixture
def df(store):
    with open_store(store) as st:
        return st.frame()


# ---- names ---------------------------------------------------------------------------------------

def test_setups_have_readable_unique_names(tmp_path):
    url = S.write(f"sqlite:///{tmp_path / 'three.db'}", two_setups_rows(imported=True))
    with open_store(url) as st:
        found = setups(st.frame())
    names = [s.name for s in found]
    assert names == ["Synthetic CPU 9000 · 4 threads · eager fp32", "Tiny ARM A72 · 4 threads · eager fp32",
                     "Jetson Orin Nano · eager fp32"]
    assert found[2].imported and found[2].hardware == "Jetson Orin Nano"
    assert found[1].hostname == "pi"


def test_colliding_names_are_told_apart_and_study_labels_are_used(tmp_path):
    rows = two_setups_rows()
    twin_env = {**SMALL_ENV, "cpu_model": "Synthetic CPU 9000"}  # same CPU model and threads as the default
    rows = [replace(r, environment=twin_env) if r.fingerprint == SMALL_FP else r for r in rows]
    url = S.write(f"sqlite:///{tmp_path / 'twins.db'}", rows)
    with open_store(url) as st:
        names = [s.name for s in setups(st.frame())]
    # the default machine has no hostname: both fall back to the fingerprint's first characters
    assert names == [f"Synthetic CPU 9000 · 4 threads · eager fp32 #{S.FP[:8]}",
                     f"Synthetic CPU 9000 · 4 threads · eager fp32 #{SMALL_FP[:8]}"]
    url = S.write(f"sqlite:///{tmp_path / 'named.db'}", two_setups_rows(study="raspberry"))
    with open_store(url) as st:
        found = setups(st.frame())
    assert [s.name for s in found] == ["Synthetic CPU 9000 · 4 threads · eager fp32", "raspberry"]
    assert found[1].readable == "Tiny ARM A72 · 4 threads · eager fp32"


def test_find_setup_by_name_or_fingerprint_and_unknown_lists_the_known(df):
    assert find_setup(df, "tiny arm a72 · 4 threads · eager fp32").fingerprint == SMALL_FP
    assert find_setup(df, "smallfp").fingerprint == SMALL_FP
    with pytest.raises(NoResultsError) as e:
        find_setup(df, "nope")
    line = e.value.one_line()
    assert "'Synthetic CPU 9000 · 4 threads · eager fp32'" in line and "'Tiny ARM A72 · 4 threads · eager fp32'" in line


# ---- the comparison ------------------------------------------------------------------------------

def test_comparison_holds_each_setups_own_values(df):
    cmp = compare(df)
    assert cmp is not None and cmp.batch_size == 1 and len(cmp.setups) == 2
    fast, small = cmp.setups
    for name in S.MODELS:
        ref = f"torchvision:{name}"
        assert cmp.value(ref, fast, "latency_per_item_s") == pytest.approx(S.time_per_image(name, 1))
        assert cmp.value(ref, small, "latency_per_item_s") == pytest.approx(SLOW * S.time_per_image(name, 1))
        assert cmp.value(ref, small, "memory_total_bytes") == pytest.approx(
            S.memory_total(name, 1) - S.FLOOR + SMALL_FLOOR)
        assert cmp.value(ref, small, "energy_per_item_j") == pytest.approx(SLOW * S.POWER[1] * S.time_per_image(name, 1))
        assert cmp.quality[ref][0] == S.MODELS[name][2] and cmp.quality[ref][2] == "published"
    # the planted line per setup: time = T0 + T1 x GMACs (dwnet is planted off it, so the fit is not exact)
    assert set(cmp.fits) == {fast.name, small.name}
    assert cmp.fits[small.name]["slope"] > 2 * cmp.fits[fast.name]["slope"]
    per = findings_per_setup(df)
    assert set(per) == {fast.name, small.name}
    assert all(f.available for f in per[small.name] if f.key in ("ops_time", "memory"))


def test_one_setup_has_no_comparison(tmp_path):
    assert compare(S.frame(tmp_path)) is None


# ---- pick ----------------------------------------------------------------------------------------

def test_pick_any_names_the_non_default_setup_when_only_it_meets_the_budget(df):
    default = pick(df, Budget(max_memory_mb=200))
    assert default.best is None and default.exit_code == 3  # the default (fast) setup: every model needs 300+ MiB
    res = pick(df, Budget(max_memory_mb=200, setup="any"))
    assert res.best.model == "gamma" and res.best.setup.fingerprint == SMALL_FP
    assert res.setup == res.best.setup and res.exit_code == 0
    assert res.best.values["memory_total_bytes"].source == "measured"
    assert {c.setup.fingerprint for c in res.candidates} == {S.FP, SMALL_FP}
    assert all(c.setup.fingerprint == SMALL_FP for c in res.feasible)
    named = pick(df, Budget(max_memory_mb=200, setup="Tiny ARM A72 · 4 threads · eager fp32"))
    assert named.best.model == "gamma" and named.setup.fingerprint == SMALL_FP and named.best.setup is None


def _run(*args: str) -> tuple[int, str, str]:
    """``dnnbench ARGS`` in this process, through the entry point that turns errors into one line."""
    with CliRunner().isolation(env={"COLUMNS": "250"}) as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_pick_setup_cli_json_and_text(store):
    code, out, err = _run("pick", "--store", store, "--max-memory-mb", "200", "--setup", "any", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["best"]["model"] == "gamma" and d["best"]["setup"]["name"] == "Tiny ARM A72 · 4 threads · eager fp32"
    assert d["best"]["setup"]["runtime"] == "eager" and d["best"]["setup"]["precision"] == "fp32"
    assert d["best"]["setup"]["fingerprint"] == SMALL_FP and d["setup"]["fingerprint"] == SMALL_FP
    assert d["setup_mode"] == "any" and len(d["setups"]) == 2
    code, out, err = _run("pick", "--store", store, "--max-memory-mb", "200", "--setup", "any")
    assert code == 0, err
    text = " ".join(out.split())
    assert "best: gamma on Tiny ARM A72 · 4 threads · eager fp32 (cpu, eager fp32, machine smallfp00000)" in text
    code, out, err = _run("pick", "--store", store, "--max-memory-mb", "200")
    assert code == 3 and "no model meets every constraint" in out  # the default stays the setup with most cells
    code, out, err = _run("pick", "--store", store, "--setup", "mars")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in out + err, err
    assert lines[0].startswith("dnnbench: error: --setup 'mars' names no setup") and "Tiny ARM A72" in lines[0]


# ---- the report ----------------------------------------------------------------------------------

class _Section(HTMLParser):
    """Collects the ids of figures and tables inside <section id="setups-compared">."""

    def __init__(self):
        super().__init__()
        self.depth, self.ids, self.rows, self.text = 0, [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("id") == "setups-compared":
            self.depth = 1
        elif self.depth:
            if tag == "section":
                self.depth += 1
            if tag in ("figure", "table") and a.get("id"):
                self.ids.append(a["id"])
            if tag == "tr":
                self.rows += 1

    def handle_endtag(self, tag):
        if tag == "section" and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.text.append(data)


def test_report_has_the_setups_section_with_figures(df, store, tmp_path):
    with open_store(store) as st:
        res = build(st.frame(), st.environments(), tmp_path / "out", store_where="two.db")
    html = res.path.read_text(encoding="utf-8")
    p = _Section()
    p.feed(html)
    assert "table-setups" in p.ids and "fig-setups_time" in p.ids and "fig-setups_ops_time" in p.ids
    text = " ".join(" ".join(p.text).split())
    assert "Tiny ARM A72 · 4 threads · eager fp32" in text and "Synthetic CPU 9000 · 4 threads · eager fp32" in text
    assert "Findings per setup" in text
    figs = {f.key: f for f in res.setup_figures}
    bars = figs["setups_time"].plotted.bars
    assert set(bars) == {s.name for s in setups(df)}
    small = dict(bars["Tiny ARM A72 · 4 threads · eager fp32"])
    assert small["gamma"] == pytest.approx(SLOW * S.time_per_image("gamma", 1) * 1e3)
    lines = figs["setups_ops_time"].plotted
    assert {k for k in lines.points} == {s.name for s in setups(df)}
    assert all(not f.no_data for f in res.setup_figures)
    assert (tmp_path / "out" / "figures" / "setups_time.png").exists()


def test_report_with_one_setup_says_why_the_section_is_absent(tmp_path):
    url = S.write(f"sqlite:///{tmp_path / 'one.db'}", S.rows())
    with open_store(url) as st:
        res = build(st.frame(), st.environments(), tmp_path / "out")
    html = res.path.read_text(encoding="utf-8")
    m = re.search(r'<section id="setups-compared">(.*?)</section>', html, re.S)
    assert m and "<figure" not in m.group(1) and "<table" not in m.group(1)
    assert "one setup" in m.group(1) and res.setup_figures == []


def test_report_setup_draws_the_named_setups_figures_and_findings(store, tmp_path):
    """`report --setup NAME`: the paper's figures and findings of the small machine (3x slower, batches 1 and 4),
    not of the default setup with most cells; an unknown name is one line listing the known ones."""
    small = "Tiny ARM A72 · 4 threads · eager fp32"
    code, out, err = _run("report", "--store", store, "--out", str(tmp_path / "r"), "--setup", small)
    assert code == 0, err
    assert out.strip().splitlines()[-1].endswith("report.html")
    with open_store(store) as st:
        res = build(st.frame(), st.environments(), tmp_path / "r2", setup=small)
        default = build(st.frame(), st.environments(), tmp_path / "r3")
    assert res.setup.fingerprint == SMALL_FP and default.setup.fingerprint != SMALL_FP
    lines = {f.key: f.plotted for f in res.figures}["time_batch"].lines
    assert [x for x, _ in lines["gamma"]] == [1, 4]  # the small machine measured batches 1 and 4 only
    assert [y for _, y in lines["gamma"]] == pytest.approx([SLOW * 1e3 * S.time_per_image("gamma", b) for b in (1, 4)])
    findings = json.loads((tmp_path / "r" / "findings.json").read_text())
    assert findings and findings != [f.to_dict() for f in default.findings]  # the small setup's own numbers
    code, out, err = _run("report", "--store", store, "--out", str(tmp_path / "r4"), "--setup", "mars")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("dnnbench: error: --setup 'mars' names no setup")
    assert "Tiny ARM A72" in lines[0] and not (tmp_path / "r4").exists()  # refused before anything is written
