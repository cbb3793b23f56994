"""The quality figure published with each task's weights (box mAP, mIoU, EPE, clip top-1...) reaches the view,
the models table, pick and the report, marked as published; measured figures win; old records still read.

The end-to-end tests study real torchvision models (random weights, profiled on meta: cheap) into a temp
SQLite store through the CLI, then ask `dnnbench pick` with a budget on the task's metric. The expected
figures are read from torchvision's weights meta (``_metrics``) directly, not through dnnbench.
"""

import json

import pytest

from dnnbench.core.records import ReportedAccuracy
from dnnbench.core.specs import TASKS
from tests.conftest import run_cli

tvm = pytest.importorskip("torchvision.models")

SSD = "ssdlite320_mobilenet_v3_large"
FRCNN = "fasterrcnn_mobilenet_v3_large_fpn"
LRASPP = "lraspp_mobilenet_v3_large"


def _meta(name: str) -> dict:
    """torchvision's DEFAULT weights meta ``_metrics`` of model ``name``: dataset -> metric -> value as published."""
    return tvm.get_model_weights(name).DEFAULT.meta["_metrics"]


def _weights(name: str) -> str:
    return str(tvm.get_model_weights(name).DEFAULT)


# ---- the record: every figure of the task, under core.view's names --------------------------------

# a model of every task, with the figure (core.view name) and torchvision's (dataset, metric) for it
ONE_PER_TASK = {
    "resnet18": [("top1", "ImageNet-1K", "acc@1"), ("top5", "ImageNet-1K", "acc@5")],
    "quantized_mobilenet_v2": [("top1", "ImageNet-1K", "acc@1")],
    SSD: [("box_map", "COCO-val2017", "box_map")],
    "maskrcnn_resnet50_fpn": [("box_map", "COCO-val2017", "box_map"), ("mask_map", "COCO-val2017", "mask_map")],
    "keypointrcnn_resnet50_fpn": [("box_map", "COCO-val2017", "box_map"), ("kp_map", "COCO-val2017", "kp_map")],
    LRASPP: [("miou", "COCO-val2017-VOC-labels", "miou"), ("pixel_acc", "COCO-val2017-VOC-labels", "pixel_acc")],
    "r3d_18": [("top1", "Kinetics-400", "acc@1"), ("top5", "Kinetics-400", "acc@5")],
    "raft_small": [("epe", "Sintel-Train-Cleanpass", "epe")],
}


@pytest.mark.parametrize("name", list(ONE_PER_TASK))
def test_reported_accuracy_carries_every_figure_of_the_task(name):
    from dnnbench.sources import torchvision_models as tv

    rep = tv.reported_accuracy(tv.resolve_weights(name, None), name)
    meta = _meta(name)
    for figure, dataset, metric in ONE_PER_TASK[name]:
        want = meta[dataset][metric] if metric == "epe" else meta[dataset][metric] / 100
        assert rep.figures[figure] == pytest.approx(want, abs=1e-9), (figure, rep.figures)
        assert rep.dataset == dataset
    assert rep.weights == _weights(name) and rep.source == "torchvision weights meta"
    assert (rep.top1 is not None) == (dataset in ("ImageNet-1K", "Kinetics-400"))  # kept as before


def test_every_torchvision_model_publishes_its_tasks_metric():
    """All 121: the task's headline metric (core.specs.TASKS) is among the figures, under its view name."""
    from dnnbench.sources import torchvision_models as tv

    view_name = {"acc@1": "top1"}
    missing = []
    for name in tv.models():
        rep = tv.reported_accuracy(tv.resolve_weights(name, None), name)
        metric = TASKS[tv.task_of(name)]
        if rep is None or view_name.get(metric, metric) not in rep.figures:
            missing.append(name)
    assert len(tv.models()) >= 121 and missing == []


def test_raft_names_the_datasets_left_out_of_figures():
    from dnnbench.sources import torchvision_models as tv

    rep = tv.reported_accuracy(tv.resolve_weights("raft_small", None), "raft_small")
    assert set(rep.figures) == {"epe"} and "Sintel-Train-Finalpass" in rep.note and "Kitti-Train" in rep.note


def test_old_records_without_figures_still_read():
    old = {"top1": 0.7, "top5": 0.9, "source": "torchvision weights meta", "weights": "X_Weights.V1", "note": None}
    rep = ReportedAccuracy.from_dict(old)
    assert rep.figures == {} and rep.dataset is None and rep.figure("top1") == 0.7 and rep.figure("box_map") is None
    assert rep.all_figures() == {"top1": 0.7, "top5": 0.9}
    assert ReportedAccuracy(**old).figures == {}  # core.accuracy's readers build it this way
    newer = ReportedAccuracy.from_dict({**old, "figures": {"top1": 0.7}, "from_a_later_version": 1})
    assert newer.figures == {"top1": 0.7}
    from dnnbench.core.accuracy import Accuracy

    fields = {f: 0 for f in Accuracy.__dataclass_fields__ if f not in ("reported", "corrupt_files", "notes",
                                                                        "unavailable")}
    acc = Accuracy.from_dict({**fields, "model": "m", "device": "cpu", "reported": old})
    assert acc.reported.top1 == 0.7 and acc.reported.figures == {}


def _profile_record(reported: dict):
    from dnnbench.core.record import CellRecord

    return CellRecord(kind="profile", spec={"model": "torchvision:x", "batch_size": 1}, status="ok",
                      result={"params": 10, "macs": 100, "reported": reported})


def test_view_of_an_old_profile_record_emits_its_top1_only():
    from dnnbench.core.view import metrics

    m = metrics(_profile_record({"top1": 0.7, "top5": 0.9, "source": "s", "weights": "W", "note": None}))
    assert {k: v for k, v in m.values.items() if k.startswith("reported_")} == {"reported_top1": 0.7,
                                                                                  "reported_top5": 0.9}
    m = metrics(_profile_record({"top1": None, "top5": None, "source": "s", "weights": "W",
                                 "note": "published box mAP 21.3 % on COCO-val2017"}))
    assert "reported_top1" not in m.values and "box mAP 21.3" in m.notes["reported_top1"]  # its reason, as before


def test_view_emits_each_published_figure_saying_where_from():
    from dnnbench.core.view import metrics

    rep = {"top1": None, "top5": None, "source": "torchvision weights meta", "weights": "M_Weights.COCO_V1",
           "note": None, "figures": {"box_map": 0.37, "mask_map": 0.346}, "dataset": "COCO-val2017"}
    m = metrics(_profile_record(rep))
    assert m.values["reported_box_map"] == 0.37 and m.values["reported_mask_map"] == 0.346
    assert "reported_top1" not in m.values and "reported_top1" not in m.notes  # not a classifier: no top-1 claimed
    assert m.notes["reported_box_map"] == ("published with M_Weights.COCO_V1 (torchvision weights meta, on "
                                           "COCO-val2017), not measured")


# ---- end to end: study -> store -> pick / models table / report --------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("published") / "s.db"
    r = run_cli("study", f"torchvision:{SSD}", f"torchvision:{FRCNN}", f"torchvision:{LRASPP}",
                "--metrics", "profile", "--batch-sizes", "1", "--store", str(path))
    assert r.returncode == 0, r.stderr
    return str(path)


def _pick(store, *args):
    r = run_cli("pick", "--store", store, "--format", "json", *args)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else r.stdout + r.stderr)


def test_pick_min_map_uses_the_published_box_map_of_the_named_weights(store):
    rc, res = _pick(store, "--min-map", "0.3")
    assert rc == 0, res
    assert res["task"] == "detection" and res["best"]["model_ref"] == f"torchvision:{FRCNN}"
    got = res["best"]["values"]["box_map"]
    assert got["value"] == pytest.approx(_meta(FRCNN)["COCO-val2017"]["box_map"] / 100, abs=1e-9)
    assert got["source"] == "published" and _weights(FRCNN) in got["note"]
    assert any("published with " + _weights(FRCNN) in n for n in res["notes"])  # the answer says so
    ssd = next(c for c in res["rejected"] if c["model_ref"] == f"torchvision:{SSD}")
    v = ssd["violations"][0]
    assert v["constraint"] == "--min-map 0.3" and v["value"]["source"] == "published"
    assert v["value"]["value"] == pytest.approx(_meta(SSD)["COCO-val2017"]["box_map"] / 100, abs=1e-9)
    assert v["excess"] == pytest.approx(0.3 - v["value"]["value"])


def test_pick_min_map_nothing_meets_is_an_answer(store):
    rc, res = _pick(store, "--min-map", "40")
    assert rc == 3 and res["best"] is None and res["binding"][0]["constraint"] == "--min-map 40"
    assert all(c["violations"][0]["value"]["source"] == "published" for c in res["rejected"])


def test_pick_min_miou_uses_the_published_miou(store):
    rc, res = _pick(store, "--min-miou", "50")
    assert rc == 0, res
    got = res["best"]["values"]["miou"]
    assert res["best"]["model_ref"] == f"torchvision:{LRASPP}" and got["source"] == "published"
    assert got["value"] == pytest.approx(_meta(LRASPP)["COCO-val2017-VOC-labels"]["miou"] / 100, abs=1e-9)


def test_pick_text_marks_the_figure_published(store):
    r = run_cli("pick", "--store", store, "--min-map", "0.3")
    assert r.returncode == 0, r.stderr
    assert "32.8 % (published)" in r.stdout and "best: fasterrcnn_mobilenet_v3_large_fpn" in r.stdout


def test_models_table_quality_is_published_and_measured_wins(store, tmp_path):
    import shutil
    from datetime import datetime, timezone

    from dnnbench.analysis.pick import pick
    from dnnbench.analysis.tables import models_table
    from dnnbench.store import CellRow, open_store

    with open_store(store) as st:
        m = models_table(st.frame())
    row = m.loc[f"torchvision:{SSD}"]
    assert row["quality_metric"] == "box_map" and row["quality_source"] == "published"
    assert row["quality"] == pytest.approx(_meta(SSD)["COCO-val2017"]["box_map"] / 100)
    seg = m.loc[f"torchvision:{LRASPP}"]
    assert seg["quality_metric"] == "miou" and seg["quality_source"] == "published"
    assert seg["pixel_acc"] == pytest.approx(_meta(LRASPP)["COCO-val2017-VOC-labels"]["pixel_acc"] / 100)
    # a box mAP measured on the user's data wins over the published one, and pick says the two are mixed
    copy = tmp_path / "measured.db"
    shutil.copy(store, copy)
    t0 = datetime(2026, 1, 3, tzinfo=timezone.utc)
    with open_store(str(copy)) as st:
        st.put(CellRow(cell_id="a-ssd", model_ref=f"torchvision:{SSD}", runtime="eager", device="cpu", batch_size=1,
                       metric_group="accuracy", status="ok", metrics={"box_map": 0.35}, config={"task": "detection"},
                       fingerprint="fp", environment={}, precision="fp32", started_at=t0, finished_at=t0))
        df = st.frame()
    m = models_table(df)
    assert m.loc[f"torchvision:{SSD}", "quality"] == 0.35 and m.loc[f"torchvision:{SSD}", "quality_source"] == "measured"
    res = pick(df, min_map=0.3)
    assert res.best.model_ref == f"torchvision:{SSD}" and res.best.values["box_map"].source == "measured"
    assert any("measured for some candidates and published for others" in n for n in res.notes)


def test_report_draws_detection_quality_from_the_published_figure(store, tmp_path):
    from dnnbench import api

    res = api.report(store, str(tmp_path / "rep"))
    figs = {f.key: f for f in res.figures}
    assert figs["top1-detection"].no_data is None and figs["ball-detection"].no_data is None
    assert figs["top1-segmentation"].no_data is None


def test_profile_shows_the_published_figure_of_a_detector():
    proc = run_cli("profile", f"torchvision:{SSD}")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    expected = _meta(SSD)["COCO-val2017"]["box_map"]  # percent, as torchvision publishes it
    row = next(line for line in out.splitlines() if "reported" in line)
    assert f"box mAP {expected:.1f} %" in row and _weights(SSD) in row and "COCO-val2017" in row
