"""``artifact_bytes``: the size of the deployable file each configuration produces, measured by serialising it
(eager/compile: the state dict; onnxruntime: the .onnx file), in the record, the view, the store, and
``pick --max-artifact-mb``."""

from __future__ import annotations

import io
import json
import os
import warnings

import pytest
import torch
from torch import nn

from dnnbench import api
from dnnbench.core.measurements import BenchCell, RuntimeInfo
from dnnbench.core.view import metrics
from dnnbench.runtimes.base import state_dict_bytes
from tests import synthetic_results as S

TINY = "python:tests/bench_models.py:tiny"  # Linear(16, 32) + ReLU + Linear(32, 4)
FAST = dict(threads=1, max_time_per_cell=0.3, min_samples=3, sensors="none")


def _tiny() -> nn.Module:
    from tests.bench_models import tiny

    return tiny()[0].eval()


def _saved_bytes(module: nn.Module) -> int:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(module.state_dict(), buf)
    return len(buf.getvalue())


def _cell(runtime: str = "eager", precision: str = "fp32") -> BenchCell:
    run = api.bench(TINY, batch_sizes=[2], in_process=True, runtime=runtime, precision=precision, **FAST)
    (cell,) = run.cells
    assert cell.status == "ok", cell.message
    return cell


def test_counting_the_serialised_state_dict_is_exact():
    m = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 10))
    assert state_dict_bytes(m) == _saved_bytes(m)
    assert state_dict_bytes(m) > 4 * (64 * 32 + 32 + 32 * 10 + 10)  # the weights themselves, plus the zip's framing


def test_eager_fp32_artifact_is_the_serialised_state_dict_and_fp16_is_smaller():
    fp32 = _cell("eager", "fp32")
    expected = _saved_bytes(_tiny())
    assert fp32.runtime_info.artifact_bytes == expected
    assert "torch.save(state_dict) of the fp32 module" in fp32.runtime_info.artifact_note
    fp16 = _cell("eager", "fp16")
    assert fp16.runtime_info.artifact_bytes == _saved_bytes(_tiny().half())
    assert fp16.runtime_info.artifact_bytes < fp32.runtime_info.artifact_bytes
    # the view and the record's JSON carry it; it survives the record's round trip
    view = metrics(fp32.to_record())
    assert view.get("artifact_bytes") == expected and "torch.save" in view.notes["artifact_bytes"]
    back = BenchCell.from_record(fp32.to_record())
    assert back.runtime_info.artifact_bytes == expected
    assert json.loads(json.dumps(fp32.to_record().to_dict()))["result"]["runtime_info"]["artifact_bytes"] == expected


def test_int8_dynamic_eager_packs_the_linear_weights():
    int8 = _cell("eager", "int8-dynamic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(_tiny(), {nn.Linear}, dtype=torch.qint8)
    assert int8.runtime_info.artifact_bytes == _saved_bytes(q)
    assert "packed as int8" in int8.runtime_info.artifact_note


def test_onnxruntime_artifact_is_the_exported_file(tmp_path):
    pytest.importorskip("onnxruntime")
    cell = _cell("onnxruntime", "fp32")
    path = tmp_path / "direct.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_tiny(), (torch.zeros(2, 16),), str(path), dynamo=False, input_names=["input_0"],
                          output_names=["output_0"], dynamic_axes={"input_0": {0: "batch"}, "output_0": {0: "batch"}})
    direct = os.path.getsize(path)
    got = cell.runtime_info.artifact_bytes
    # the same graph and weight shapes: equal but for the exporter's per-run names and metadata
    assert abs(got - direct) <= 256, (got, direct)
    assert "model.onnx on disk" in cell.runtime_info.artifact_note
    int8 = _cell("onnxruntime", "int8-dynamic")
    assert "quantized" in int8.runtime_info.artifact_note and int8.runtime_info.artifact_bytes > 0


def test_external_data_files_are_counted(tmp_path):
    onnx = pytest.importorskip("onnx")
    from dnnbench.runtimes.ort import onnx_file_bytes

    big = nn.Linear(256, 256)
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(big, (torch.zeros(1, 256),), str(path), dynamo=False)
    model = onnx.load(str(path))
    ext = tmp_path / "ext"
    ext.mkdir()
    onnx.save_model(model, str(ext / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)
    size, external = onnx_file_bytes(onnx, str(ext / "m.onnx"))
    assert size == os.path.getsize(ext / "m.onnx")
    assert external == os.path.getsize(ext / "m.data") >= 4 * 256 * 256


def test_a_failed_or_absent_measurement_is_unavailable_with_why():
    from dnnbench.runtimes.base import Prepared

    def boom():
        raise RuntimeError("disk full")

    p = Prepared(lambda: None, lambda: [], "eager", "fp32", artifact=boom)
    _, info = p.finish(None)
    assert info.artifact_bytes is None and "disk full" in info.artifact_note
    old = RuntimeInfo.from_dict({"runtime": "eager", "precision": "fp32"})  # a record from before the field
    assert old.artifact_bytes is None and old.artifact_note == ""


# ---- pick --max-artifact-mb on planted records ---------------------------------------------------------------

def _store(tmp_path):
    rows = S.rows(models=["alpha", "beta", "gamma", "delta"], batches=(1,))
    for r in rows:
        if r.metric_group == "profile" or r.batch_size != 1:
            continue
        name = r.model_ref.split(":")[1]
        if name == "gamma":  # its runtime could not serialise: the reason travels with the cell
            r.notes["artifact_bytes"] = "unavailable: serialising the eager fp32 artifact failed (OSError: disk full)"
        else:
            r.metrics["artifact_bytes"] = {"alpha": 10, "beta": 40, "delta": 90}[name] * 2**20
    return S.write(str(tmp_path / "s.db"), rows)


def test_pick_max_artifact_mb_on_planted_records(tmp_path):
    from dnnbench.analysis.pick import pick
    from dnnbench.store import open_store

    with open_store(_store(tmp_path)) as st:
        df = st.frame()
    res = pick(df, max_artifact_mb=50)
    by = {c.model: c for c in res.candidates}
    assert res.best.model == "beta"  # alpha fits too, beta is more accurate; delta's 90 MiB does not
    assert {c.model for c in res.feasible} == {"alpha", "beta"}
    (v,) = by["delta"].violations
    assert v.constraint.given == "--max-artifact-mb 50" and v.excess == pytest.approx(40 * 2**20)
    (v,) = by["gamma"].violations
    assert v.excess is None and "disk full" in v.value.note
    (v,) = by["epsilon"].violations  # profiled, never benched: not predicted
    assert v.excess is None and "not predicted" in v.value.note
    assert pick(df, max_artifact_mb=100).best.model == "delta"


def test_pick_max_artifact_mb_cli_and_a_store_without_the_figure(capsys, tmp_path):
    from dnnbench.cli import main

    def run(*args):
        with pytest.raises(SystemExit) as exc:
            main(list(args))
            raise SystemExit(0)
        cap = capsys.readouterr()
        return exc.value.code or 0, cap.out, cap.err

    code, out, _ = run("pick", "--store", _store(tmp_path), "--max-artifact-mb", "50", "--format", "json")
    assert code == 0 and json.loads(out)["best"]["model"] == "beta"
    # cells measured before artifact_bytes: every model is unknown with why, not an unknown-metric error
    old = S.write(str(tmp_path / "old.db"), S.rows(models=["alpha"], batches=(1,)))
    code, out, _ = run("pick", "--store", old, "--max-artifact-mb", "50", "--format", "json")
    assert code == 3
    (rej,) = [r for r in json.loads(out)["rejected"] if r["model"] == "alpha"]
    assert "records no artifact size" in rej["violations"][0]["value"]["note"]
    code, _, err = run("pick", "--store", old, "--max-artifact-mb", "0")
    assert code == 2 and "can never be met" in err and len(err.strip().splitlines()) == 1
