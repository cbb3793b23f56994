"""`dnnbench export MODEL`: the deployable file of one configuration, its manifest and reference input/output."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from dnnbench import api
from dnnbench.core.errors import DnnbenchError
from tests.conftest import run_cli

CNN = """
import torch
from torch import nn

def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4)), torch.randn(1, 3, 16, 16)
"""


@pytest.fixture
def cnn_ref(tmp_path):
    path = tmp_path / "cnn.py"
    path.write_text(CNN)
    return f"python:{path}:cnn"


def _check_manifest(out, runtime, precision, batch_size):
    m = json.loads((out / "manifest.json").read_text())
    assert (m["runtime"], m["precision"], m["batch_size"]) == (runtime, precision, batch_size)
    assert m["artifact_files"] and m["artifact_bytes"] == sum(f["bytes"] for f in m["artifact_files"])
    for f in m["artifact_files"]:
        assert os.path.getsize(out / f["file"]) == f["bytes"] > 0
    assert [i["shape"] for i in m["inputs"]] == [[batch_size, 3, 16, 16]]
    assert [o["shape"] for o in m["outputs"]] == [[batch_size, 4]]
    x = np.load(out / m["inputs"][0]["file"])
    y = np.load(out / m["outputs"][0]["file"])
    assert x.shape == (batch_size, 3, 16, 16) and x.dtype == np.float32 and y.shape == (batch_size, 4)
    return m, x, y


def test_onnxruntime_export_runs_elsewhere_and_reproduces_its_reference_output(cnn_ref, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    out = tmp_path / "art"
    art = api.export_model(cnn_ref, "onnxruntime", "fp32", batch_size=2, out=str(out))
    m, x, y = _check_manifest(out, "onnxruntime", "fp32", 2)
    assert art.artifact_bytes == m["artifact_bytes"]
    onnx_file = next(f["file"] for f in m["artifact_files"] if f["file"].endswith(".onnx"))
    # a fresh session, as a device would load the file: the same output for the reference input
    sess = ort.InferenceSession(str(out / onnx_file), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-6)
    assert m["equivalence_vs_eager_fp32"]["max_abs_diff"] < 1e-4
    assert m["weights"].startswith("random")


def test_eager_export_is_the_state_dict_and_loads_into_the_model(cnn_ref, tmp_path):
    out = tmp_path / "eager"
    api.export_model(cnn_ref, "eager", "fp32", out=str(out))
    m, x, y = _check_manifest(out, "eager", "fp32", 1)
    (state_file,) = [f["file"] for f in m["artifact_files"]]
    ns: dict = {}
    exec(CNN, ns)
    model, _ = ns["cnn"]()
    model.load_state_dict(torch.load(out / state_file))
    with torch.inference_mode():
        np.testing.assert_allclose(model.eval()(torch.from_numpy(x)).numpy(), y, rtol=1e-5, atol=1e-6)


def test_export_mistakes_are_one_line_and_write_nothing(cnn_ref, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(DnnbenchError, match="already holds files"):
        api.export_model(cnn_ref, "eager", "fp32", out=str(full))
    assert os.listdir(full) == ["keep.txt"]
    with pytest.raises(DnnbenchError, match="one configuration"):
        api.export_model(cnn_ref, "eager,onnxruntime", "fp32", out=str(tmp_path / "two"))
    with pytest.raises(DnnbenchError, match="--calibration is for --precision int8"):
        api.export_model(cnn_ref, "eager", "fp32", out=str(tmp_path / "cal"), calibration=str(tmp_path))
    assert not (tmp_path / "two").exists() and not (tmp_path / "cal").exists()
    r = run_cli("export", "--runtime", "eager")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--runtime needs a MODEL" in r.stderr
    r = run_cli("export", cnn_ref, "--out", str(full))
    assert r.returncode != 0 and "already holds files" in r.stderr and "Traceback" not in r.stderr


def test_the_cli_writes_the_default_folder_and_says_what_it_wrote(cnn_ref, tmp_path):
    r = run_cli("export", cnn_ref, "--batch-size", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "cnn-eager-fp32-b2"
    _check_manifest(out, "eager", "fp32", 2)
    assert f"-> cnn-eager-fp32-b2" in r.stderr and "manifest.json" in r.stderr
