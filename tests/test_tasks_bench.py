"""Bench and study for every task: list inputs, outputs of any structure, the task in each record and the store.

Tiny models of each task come from python: factories (tests/task_models.py). Cells are short (0.3 s caps).
"""

import json
import os

import pytest
import torch

from dnnbench import api, runtimes
from dnnbench.core.measurements import BenchCell, CellSpec
from tests.conftest import run_cli

MODELS = os.path.join(os.path.dirname(__file__), "task_models.py")
FAST = dict(max_time_per_cell=0.3, target_ci=0.5, min_samples=3, sensors="none", threads=1)


def ref(name: str) -> str:
    return f"python:{MODELS}:{name}"


def test_bench_json_of_a_list_of_dicts_detector(tmp_path):
    """A detector taking a list of images and returning a list of dicts of variable size: time per image."""
    proc = run_cli("bench", ref("detector"), "--batch-sizes", "1,3", "--max-time-per-cell", "0.3", "--threads", "1",
                   "--processes", "1", "--sensors", "none", "--format", "json",
                   env={"DNNBENCH_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["status"] for r in doc["records"]] == ["ok", "ok"], [r["message"] for r in doc["records"]]
    for rec, view in zip(doc["records"], doc["metrics"]):
        spec = rec["spec"]
        assert spec["task"] == "detection"
        b = spec["batch_size"]
        assert spec["input_shape"] == [[b, 3, 32, 32]]  # a list of b images of 3x32x32
        v = view["values"]
        assert v["latency_per_item_s"] == pytest.approx(v["latency_median_s"] / b)
        assert v["throughput_items_per_s"] == pytest.approx(b / v["latency_median_s"])
        assert "per image (detection)" in view["notes"]["latency_per_item_s"]
        assert v["peak_rss_bytes"] > 0 and v["cpu_activation_peak_bytes"] > 0


def test_the_cli_table_names_the_item_after_the_task(tmp_path):
    proc = run_cli("bench", ref("video"), "--batch-sizes", "2", "--max-time-per-cell", "0.3", "--threads", "1",
                   "--processes", "1", "--sensors", "none", env={"DNNBENCH_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "per clip" in proc.stdout and "clips/s" in proc.stdout and "an item is one clip" in proc.stdout


@pytest.mark.parametrize("name,task,unit", [("segmenter", "segmentation", "image"), ("video", "video", "clip"),
                                            ("flow", "optical_flow", "pair"), ("classifier", "classification", "image")])
def test_every_task_benches_in_process(name, task, unit):
    run = api.bench(ref(name), batch_sizes=[2], in_process=True, **FAST)
    cell = run.cells[0]
    assert cell.status == "ok", cell.message
    assert cell.spec.task == task and cell.spec.item_unit == unit
    assert ("task" in cell.spec.to_dict()) == (task != "classification")  # classification cells keep their identity


def test_classification_cell_identity_is_unchanged():
    spec = CellSpec("torchvision:resnet18", 1, "cpu", 2)
    assert "task" not in spec.to_dict()
    assert CellSpec.from_dict(spec.to_dict()) == spec
    det = CellSpec("python:x.py:det", 1, "cpu", 2, task="detection")
    assert det.cell_id != CellSpec("python:x.py:det", 1, "cpu", 2).cell_id
    assert CellSpec.from_dict(det.to_dict()).task == "detection"


def test_detector_under_another_precision_and_runtime():
    """bf16 runs a detector; the equivalence check says what it compared; ONNX Runtime refuses in one line."""
    comp = api.bench(ref("detector"), batch_sizes=[2], in_process=True, runtime="eager", precision="bf16", **FAST)
    cell = comp.cells[0]
    assert cell.status == "ok", cell.message
    eq = cell.equivalence
    assert eq is not None and eq.reference == "eager fp32"
    assert eq.top1_agreement is None and "no class dimension" in eq.unavailable["top1_agreement"]
    # bf16 moves some scores across the threshold: the boxes of those images differ in number, and are said to
    if eq.compared:
        assert "differ in size" in eq.compared and "this run's vs the reference's" in eq.compared
    if eq.max_abs_diff is None:
        assert "do not match" in eq.unavailable["max_abs_diff"]
    else:
        assert 0 <= eq.max_abs_diff < 0.5
    if runtimes.availability("onnxruntime").ok:
        ort = api.bench(ref("detector"), batch_sizes=[1], in_process=True, runtime="onnxruntime", **FAST)
        bad = ort.cells[0]
        assert bad.status == "error"
        assert "--runtime onnxruntime cannot run" in bad.message and "a list of 1 images" in bad.message
        assert "\n" not in bad.message and "Traceback" not in bad.message


def test_compare_outputs_of_variable_size_and_segmentation_maps():
    boxes = torch.rand(5, 4)
    ref_out = [boxes, torch.rand(5), torch.tensor([1, 2, 3, 4, 0]), torch.rand(3, 4)]
    out = [boxes[:4], torch.rand(4), torch.tensor([1, 2, 3, 4]), ref_out[3] + 0.25]
    eq = runtimes.compare(ref_out, out, "eager fp32", "detection")
    assert eq.max_abs_diff == pytest.approx(0.25)  # only the equal-shaped tensor was compared
    assert eq.compared.startswith("1 of 3 floating output tensors")
    assert eq.top1_agreement is None
    # segmentation: the class is dim 1 of (B, C, H, W); 1 pixel of 2x2 flips
    seg = torch.zeros(1, 3, 2, 2)
    seg[0, 1] = 1.0
    seg2 = seg.clone()
    seg2[0, 2, 0, 0] = 2.0
    eq = runtimes.compare([seg], [seg2], "eager fp32", "segmentation")
    assert eq.rows == 4 and eq.top1_agreement == 0.75
    eq = runtimes.compare([seg], [seg2[:, :, :1]], "eager fp32", "segmentation")
    assert eq.max_abs_diff is None and "do not match" in eq.unavailable["max_abs_diff"]


def test_study_of_two_detectors_and_two_classifiers_into_sqlite(tmp_path):
    from dnnbench import runner
    from dnnbench.analysis.tables import bench_table, choose_setup, models_table

    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    models = [ref("detector"), ref("wide_detector"), ref("classifier"), ref("wide_classifier")]
    summary = runner.study(models, store=url, batch_sizes=(1, 2), metrics="profile,time,memory", in_process=True,
                           sensors="none", max_time_per_cell=0.3, target_ci=0.5, threads=1)
    assert summary.failed == 0 and summary.measured == 16, summary.statuses
    df = runner.load_results(url)
    assert "task" in df.columns
    tasks = df.groupby("model_ref")["task"].agg(set).to_dict()
    assert tasks == {ref("detector"): {"detection"}, ref("wide_detector"): {"detection"},
                     ref("classifier"): {"classification"}, ref("wide_classifier"): {"classification"}}
    bench = bench_table(df, choose_setup(df))
    assert len(bench) == 8 and bench["latency_per_item_s"].notna().all()
    m = models_table(df)
    assert m.loc[ref("detector"), "task"] == "detection" and m.loc[ref("detector"), "quality_metric"] == "box_map"
    assert m.loc[ref("classifier"), "quality_metric"] == "top1"
    # resuming measures nothing twice: the detection cells' identities (with their task) are stable
    again = runner.study(models, store=url, batch_sizes=(1, 2), metrics="profile,time,memory", in_process=True,
                         sensors="none", max_time_per_cell=0.3, target_ci=0.5, threads=1)
    assert again.measured == 0 and again.skipped_existing == 16
    # a stored detection cell reads back with its task
    recs = [BenchCell.from_dict(r.to_dict()) for r in _bench_records(url)]
    assert {c.spec.task for c in recs} == {"detection", "classification"}


def _bench_records(url):
    from dnnbench.store import open_store

    with open_store(url, readonly=True) as st:
        return [r for r in st.records() if r.kind == "bench"]
