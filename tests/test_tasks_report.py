"""Report, findings and pick for a store holding several tasks, on planted results with known answers.

Planted: the synthetic classifiers (tests/synthetic_results.py), two detectors with box mAP measured by
accuracy cells, one segmenter with mIoU: time per image = T0 + T1 x GMACs as for the classifiers.
"""

import json
from datetime import datetime, timezone
from html.parser import HTMLParser

import pytest

from dnnbench.analysis.findings import findings
from dnnbench.analysis.pick import pick
from dnnbench.analysis.errors import ConstraintError
from dnnbench.analysis.tables import models_table, tasks
from dnnbench.store import CellRow, open_store
from tests import synthetic_results as syn
from tests.conftest import run_cli

# name: (task, GMACs per image, params, quality metric, value)
TASK_MODELS = {
    "det_small": ("detection", 1.5, 4e6, "box_map", 0.22),
    "det_large": ("detection", 6.0, 40e6, "box_map", 0.37),
    "seg_only": ("segmentation", 3.0, 10e6, "miou", 0.61),
}
T0 = 0.001


def tpi(g: float, b: int) -> float:
    return (T0 + syn.T1 * g) * syn.BATCH_GAIN[b]


def _rows():
    t0 = datetime(2026, 1, 3, tzinfo=timezone.utc)
    out = syn.rows(power=False, batches=(1, 4))
    for name, (task, g, params, metric, value) in TASK_MODELS.items():
        ref = f"torchvision:{name}"
        common = dict(fingerprint=syn.FP, environment=syn.ENV, model_ref=ref, precision="fp32", config={"task": task},
                      started_at=t0, finished_at=t0)
        for b in (1, 4):
            out.append(CellRow(cell_id=f"p-{name}-{b}", runtime="eager", device="meta", batch_size=b,
                               metric_group="profile", status="ok",
                               metrics={"params": params, "weight_bytes": 4 * params, "macs": g * 1e9 * b,
                                        "flops": 2 * g * 1e9 * b, "activation_peak_bytes": 8 * 2**20 * b}, **common))
            t = tpi(g, b)
            out.append(CellRow(cell_id=f"b-{name}-{b}", runtime="eager", device="cpu", batch_size=b,
                               metric_group="time+memory", status="ok", threads=4,
                               metrics={"latency_median_s": t * b, "latency_per_item_s": t,
                                        "throughput_items_per_s": 1 / t, "peak_rss_bytes": syn.FLOOR + 4 * params,
                                        "rss_above_baseline_bytes": 4 * params, "static_weight_bytes": 4 * params,
                                        "static_activation_peak_bytes": 8 * 2**20 * b, "flops": 2 * g * 1e9 * b},
                               **common))
        acc = {metric: value} | ({"box_map50": value + 0.2} if metric == "box_map" else {"pixel_acc": 0.9})
        out.append(CellRow(cell_id=f"a-{name}", runtime="eager", device="cpu", batch_size=1, metric_group="accuracy",
                           status="ok", metrics=acc, **common))
    return out


@pytest.fixture
def store(tmp_path):
    url = syn.write(f"sqlite:///{tmp_path / 'tasks.db'}", _rows())
    return url


@pytest.fixture
def frame(store):
    with open_store(store) as st:
        return st.frame()


def test_the_frame_knows_each_models_task(frame):
    assert tasks(frame) == ["classification", "detection", "segmentation"]
    m = models_table(frame)
    assert m.loc["torchvision:det_large", "quality"] == pytest.approx(0.37)
    assert m.loc["torchvision:det_large", "quality_source"] == "measured"
    assert m.loc["torchvision:seg_only", "quality_metric"] == "miou"
    assert m.loc["torchvision:alpha", "quality"] == pytest.approx(syn.MODELS["alpha"][2])  # top-1


def test_findings_per_task_use_the_tasks_metric(frame):
    found = {f.key: f for f in findings(frame)}
    acc = found["accuracy_time-detection"]
    assert acc.available and acc.data["metric"] == "box_map" and acc.data["n"] == 2
    assert "box mAP" in acc.title and acc.title.startswith("Detection: ")
    ops = found["ops_time-detection"]
    fit = ops.data["fits"][0]
    # planted: time per image = T0 + T1 x GMACs exactly, so the line through the two detectors is that line
    b1 = next(f for f in ops.data["fits"] if f["batch_size"] == 1)
    assert b1["slope"] == pytest.approx(syn.T1) and b1["intercept"] == pytest.approx(T0) and fit["n"] == 2
    # the classifiers' findings keep their keys; a task with one model says why no fit exists
    assert found["ops_time"].task == "classification" and found["accuracy_time"].data["metric"] == "top1"
    seg = found["ops_time-segmentation"]
    assert not seg.available and "one segmentation model (seg_only)" in seg.text
    assert not found["accuracy_time-segmentation"].available
    assert "density" in found and "density-detection" not in found
    assert found["power"].task == "all"


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.text = set(), []

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        if "id" in d:
            self.ids.add(d["id"])

    def handle_data(self, data):
        self.text.append(data)


def test_report_has_a_section_per_task(store, tmp_path):
    from dnnbench import api

    res = api.report(store, str(tmp_path / "rep"))
    p = _Ids()
    p.feed(res.path.read_text(encoding="utf-8"))
    for task in ("classification", "detection", "segmentation"):
        assert f"findings-{task}" in p.ids and f"figures-{task}" in p.ids
    for key in ("fig-ops_time-detection", "fig-accuracy_throughput-detection", "fig-ops_time", "fig-density",
                "finding-accuracy_time-detection", "findings-all"):
        assert key in p.ids, key
    text = " ".join(p.text)
    assert "box mAP 37.0 %" in text and "mIoU 61.0 %" in text  # the results table's quality column
    figs = {f.key: f for f in res.figures}
    pts = figs["ops_time-detection"].plotted.points["batch 1"]
    want = sorted((g, tpi(g, 1) * 1e3) for task, g, *_ in TASK_MODELS.values() if task == "detection")
    assert [x for xy in sorted(pts) for x in xy] == pytest.approx([x for xy in want for x in xy])
    acc = figs["accuracy_throughput-detection"].plotted.points["models"]
    assert sorted(y for _, y in acc) == pytest.approx([22.0, 37.0])  # box mAP in %
    assert "box mAP" in figs["top1-detection"].title
    assert figs["ops_time-segmentation"].no_data is None  # one point is drawn, without a line
    saved = json.loads((tmp_path / "rep" / "findings.json").read_text())
    assert {f["task"] for f in saved} == {"classification", "detection", "segmentation", "all"}


def test_pick_with_min_map_ranks_detectors_by_box_map(frame):
    res = pick(frame, min_map=30, max_latency_ms=1000)
    assert res.task == "detection" and res.objective == "box_map"
    assert [c.model for c in res.candidates] == ["det_large", "det_small"]
    assert res.best.model == "det_large" and res.best.values["box_map"].source == "measured"
    small = next(c for c in res.candidates if c.model == "det_small")
    assert [v.constraint.given for v in small.violations] == ["--min-map 30"]
    assert "only detection models are candidates (--min-map 30)" in res.notes
    # a latency only the small one meets: nothing fits, the binding constraint is named
    res = pick(frame, min_map=0.3, max_latency_ms=1e3 * tpi(1.5, 1) * 1.01)
    assert res.best is None and res.exit_code == 3
    seg = pick(frame, task="segmentation", min_miou=0.6)
    assert seg.best.model == "seg_only" and seg.objective == "miou"
    cls = pick(frame, task="classification")
    assert cls.objective == "top1" and all(c.model_ref.split(":")[1] in syn.MODELS | syn.PROFILE_ONLY
                                           for c in cls.candidates)


def test_pick_budget_on_a_metric_nobody_has_is_one_line(tmp_path):
    url = syn.write(f"sqlite:///{tmp_path / 'cls.db'}", syn.rows(power=False))
    with open_store(url) as st:
        df = st.frame()
    with pytest.raises(ConstraintError, match="holds no detection model"):
        pick(df, min_map=0.3)
    with pytest.raises(ConstraintError, match="contradict"):
        pick(df, min_map=0.3, task="segmentation")
    with pytest.raises(ConstraintError, match="--task sports is not known"):
        pick(df, task="sports")


def test_pick_cli_with_min_map(store, tmp_path):
    proc = run_cli("pick", "--store", store, "--min-map", "30")
    assert proc.returncode == 0, proc.stderr
    assert "box mAP" in proc.stdout and "best: det_large" in proc.stdout and "task: detection" in proc.stdout
    assert "37.0 %" in proc.stdout
    proc = run_cli("pick", "--store", store, "--min-map", "30", "--format", "json")
    doc = json.loads(proc.stdout)
    assert doc["task"] == "detection" and doc["best"]["values"]["box_map"]["value"] == pytest.approx(0.37)
    cls = syn.write(f"sqlite:///{tmp_path / 'cls.db'}", syn.rows(power=False))
    bad = run_cli("pick", "--store", cls, "--min-miou", "0.5")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds no segmentation model" in lines[0] and "Traceback" not in bad.stderr
