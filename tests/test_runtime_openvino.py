"""The openvino runtime: a tiny CNN through the real cell path at fp32 and static int8 (NNCF), the compiled model's
settings read back, the IR as artifact and export, ``Prepared.run`` on new inputs, and one-line refusals
(CUDA, a list-input detector, a model OpenVINO cannot convert, missing extras, precisions it does not run).

The model is ``conv_net`` below, referenced as python:<this file>:conv_net (the worker imports this file)."""

from __future__ import annotations

import glob
import os
import sys
import tempfile

import pytest
import torch
from torch import nn

pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'dnnbench[openvino]'")

from dnnbench import api, runtimes  # noqa: E402
from dnnbench.core.errors import InputError, MissingExtraError, ModelBuildError, UnavailableError  # noqa: E402
from dnnbench.runtimes import ov as ovrt  # noqa: E402
from dnnbench.runtimes.base import Context  # noqa: E402

HERE = os.path.abspath(__file__)
CNN = f"python:{HERE}:conv_net"
DETECTOR = "python:tests/task_models.py:detector"
FAST = dict(threads=1, max_time_per_cell=0.5, min_samples=3, sensors="none")
needs_nncf = pytest.mark.skipif(not ovrt.has_nncf(),
                                reason="nncf is not installed (static int8): pip install 'dnnbench[openvino]'")

# conv 3->32 and 32->64 (3x3, padding 1) at 32x32, then Linear(64, 10): the MACs per image, by hand
MACS_PER_IMAGE = 32 * 32 * 32 * (3 * 9) + 32 * 32 * 64 * (32 * 9) + 64 * 10


def conv_net():
    """(conv-bn-relu) x2 + global pooling + linear: 10 classes from a 3x32x32 image. Seeded: the worker rebuilds it."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                      nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them into the convolutions matters
        for bn in (m[1], m[4]):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return m, torch.randn(1, 3, 32, 32)


@pytest.fixture(scope="module")
def cells():
    out = {}
    for precision in ("fp32", "int8"):
        if precision == "int8" and not ovrt.has_nncf():
            continue
        run = api.bench(CNN, batch_sizes=[2], in_process=True, runtime="openvino", precision=precision, **FAST)
        out[precision] = run.cells[0]
    return out


def test_fp32_cell_matches_eager_and_runs_as_configured(cells):
    cell = cells["fp32"]
    assert cell.status == "ok", cell.message
    assert cell.spec.runtime == "openvino" and cell.latency_s.n >= 3 and cell.latency_s.median_s > 0
    eq = cell.equivalence
    assert eq.reference == "eager fp32" and eq.rows == 2 and eq.top1_agreement == 1.0
    assert eq.max_abs_diff < 1e-5 * max(1.0, eq.reference_max_abs)  # the same arithmetic in another order
    det = cell.runtime_info.details
    # read back from the compiled model: the cell's thread count (the plugin's default is every core), one stream,
    # f32 (on an AVX-512 BF16 / AMX CPU the plugin's default would be bf16)
    assert det["inference_num_threads"] == 1 and det["num_streams"] == 1 and det["performance_hint"] == "LATENCY"
    assert det["inference_precision_hint"] == "f32" and det["macs_by_runtime_precision"] == {"f32": 1.0}
    assert det["conv_matmul_macs"] == 2 * MACS_PER_IMAGE  # from the runtime graph's shapes, batch 2
    assert det["convert_s"] > 0 and det["compile_s"] > 0 and "int8_macs_fraction" not in det
    assert det["openvino_version"] and det["execution_devices"] == ["CPU"]
    info = cell.runtime_info
    assert info.artifact_bytes > 4 * (32 * 27 + 64 * 288 + 64 * 10)  # fp32 weights at least
    assert info.artifact_note.startswith("OpenVINO IR model.xml + model.bin")
    assert "compress_to_fp16=False" in info.artifact_note
    assert any("INFERENCE_PRECISION_HINT f32" in n for n in info.notes)


@needs_nncf
def test_int8_cell_is_static_nncf_with_convolutions_in_int8(cells):
    cell, fp32 = cells["int8"], cells["fp32"]
    assert cell.status == "ok", cell.message
    assert cell.latency_s.n >= 3
    det = cell.runtime_info.details
    assert det["int8_macs_fraction"] > 0.9 and det["int8_macs"] <= det["conv_matmul_macs"] == 2 * MACS_PER_IMAGE
    assert det["calibration_batches"] == 4 and det["quantize_s"] > 0 and det["nncf_version"]
    assert det["inference_precision_hint"] == "f32"  # what is not quantized runs in f32, as fp32 does
    assert cell.runtime_info.artifact_bytes < 0.6 * fp32.runtime_info.artifact_bytes  # int8 weights (plus the xml)
    assert "NNCF-quantized" in cell.runtime_info.artifact_note
    eq = cell.equivalence
    assert eq.reference == "eager fp32" and 0 < eq.max_abs_diff <= 4 / 127 * eq.reference_max_abs
    assert any("NNCF post-training quantization" in n and "convolutions included" in n for n in cell.runtime_info.notes)
    assert any(w.kind == "calibration" for w in cell.warnings)  # generated calibration batches are said


def _prepare(precision="fp32", threads=2, batch=2):
    module, _ = conv_net()
    module.eval()
    args = (torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1)),)
    cal = [((torch.randn(batch, 3, 32, 32),), {}) for _ in range(2)] if precision == "int8" else None
    ctx = Context(module, args, {}, torch.device("cpu"), "openvino", precision, threads, batch, CNN, True, cal)
    return module, runtimes.get("openvino").prepare(ctx)


def _temp_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "dnnbench-openvino-*")))


def test_run_save_and_threads_of_a_prepared_model(tmp_path):
    before = _temp_dirs()
    module, p = _prepare(threads=2)
    (mine,) = _temp_dirs() - before  # where the IR was written
    try:
        assert p.details["inference_num_threads"] == 2 and p.releases_module and p.restart_peak
        new = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
        with torch.inference_mode():
            want = module(new)
        (got,) = p.run((new,), {})
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert (got - want).abs().max() < 1e-5 * max(1.0, float(want.abs().max()))
        # the timed request keeps its own input: run() does not change what outputs() (and call()) compute
        assert torch.equal(p.outputs()[0], p.outputs()[0]) and (p.outputs()[0] - p.reference[0]).abs().max() < 1e-5
        with pytest.raises(InputError, match=r"compiled for input 0 of shape \[2, 3, 32, 32\]"):
            p.run((torch.randn(3, 3, 32, 32),), {})
        # the artifact is the IR that was compiled; export writes exactly it, and it runs to the same outputs
        size, note = p.artifact()
        paths = p.save(str(tmp_path / "export"))
        assert [os.path.basename(q) for q in paths] == ["model.xml", "model.bin"]
        assert sum(os.path.getsize(q) for q in paths) == size
        assert f"({os.path.getsize(paths[0])} + {os.path.getsize(paths[1])} bytes)" in note
        compiled = ovrt.core().compile_model(paths[0], "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        again = torch.from_numpy(compiled(new.numpy())[0])
        assert (again - got).abs().max() < 1e-6
    finally:
        p.close()
    assert not os.path.exists(mine) and os.path.getsize(tmp_path / "export" / "model.bin") > 0

@needs_nncf
def test_run_of_an_int8_model_agrees_with_eager():
    module, p = _prepare("int8", threads=1, batch=4)
    try:
        new = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
        with torch.inference_mode():
            want = module(new)
        (got,) = p.run((new,), {})
        assert 0 < (got - want).abs().max() <= 4 / 127 * float(want.abs().max())
        assert p.details["int8_macs_fraction"] > 0.9
    finally:
        p.close()


def test_layer_macs_formulas():
    assert ovrt.layer_macs("Convolution", [[2, 3, 8, 8], [16, 3, 3, 3]], [2, 16, 8, 8]) == 2 * 16 * 64 * 27
    # grouped weights [g, Cout/g, Cin/g, kh, kw]: depthwise 3x3 on 16 channels
    assert ovrt.layer_macs("GroupConvolution", [[1, 16, 8, 8], [16, 1, 1, 3, 3]], [1, 16, 8, 8]) == 16 * 64 * 9
    assert ovrt.layer_macs("FullyConnected", [[4, 64], [10, 64]], [4, 10]) == 4 * 10 * 64
    # batched MatMul, either operand order of the first input's last two dims: K from the output's M
    assert ovrt.layer_macs("MatMul", [[2, 5, 7], [2, 7, 3]], [2, 5, 3]) == 2 * 5 * 3 * 7
    assert ovrt.layer_macs("MatMul", [[2, 7, 5], [2, 7, 3]], [2, 5, 3]) == 2 * 5 * 3 * 7
    assert ovrt.layer_macs("Convolution", [None, [16, 3, 3, 3]], [2, 16, 8, 8]) is None  # dynamic: unknown, not 0


def test_cuda_is_refused_in_one_line():
    a = runtimes.availability("openvino", "cuda")
    assert not a.ok and "\"GPU\" device, not CUDA" in a.reason and a.fix == "use --device cpu"
    with pytest.raises(UnavailableError) as info:
        api.runtime_configs(CNN, "openvino", device="cuda")
    line = info.value.one_line()
    assert "\n" not in line and "OpenVINO does not run on cuda" in line and "--device cpu" in line
    assert runtimes.availability("openvino", "cpu").ok


def test_list_input_and_unconvertible_models_fail_their_cell_in_one_line():
    bad = api.bench(DETECTOR, batch_sizes=[1], in_process=True, runtime="openvino", **FAST).cells[0]
    assert bad.status == "error"
    assert "--runtime openvino cannot run" in bad.message and "a list of 1 images" in bad.message
    assert "\n" not in bad.message and "Traceback" not in bad.message
    bad = api.bench("python:tests/runtime_models.py:unexportable", batch_sizes=[2], in_process=True,
                    runtime="openvino", **FAST).cells[0]
    assert bad.status == "error" and "\n" not in bad.message
    assert bad.message.startswith("converting the model to OpenVINO failed: OpConversionFailure: No conversion rule")
    assert "aten::special_i1e" in bad.message and "Fix: measure it with --runtime eager" in bad.message


def test_precisions_it_refuses_say_why():
    rt = runtimes.get("openvino")
    assert "bf16" in rt.unsupported("bf16", "cpu") and "--runtime eager" in rt.unsupported("bf16", "cpu")
    assert "--precision int8" in rt.unsupported("int8-dynamic", "cpu")
    caps = ovrt.cpu_capabilities()
    fp16 = rt.unsupported("fp16", "cpu")
    assert (fp16 is None) == ("FP16" in caps)
    if fp16 is not None:
        assert "OPTIMIZATION_CAPABILITIES" in fp16 and all(c in fp16 for c in caps)
        with pytest.raises(InputError, match="cannot run on cpu"):
            api.runtime_configs(CNN, "openvino", "fp16")
    configs, left = api.runtime_configs(CNN, "openvino", "all")
    assert ("openvino", "fp32") in configs and ("openvino", "bf16") not in configs
    assert ("openvino", "int8") in configs or not ovrt.has_nncf()


def test_missing_extras_are_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # `import nncf` now raises ImportError
    why = runtimes.get("openvino").unsupported("int8", "cpu")
    assert "nncf is not installed" in why and "pip install 'dnnbench[openvino]'" in why
    with pytest.raises(MissingExtraError) as info:
        ovrt._require_nncf()
    assert info.value.one_line().rstrip(".").endswith("pip install 'dnnbench[openvino]'")
    assert runtimes.get("openvino").unsupported("fp32", "cpu") is None  # fp32 does not need nncf
    monkeypatch.setitem(sys.modules, "openvino", None)
    a = runtimes.availability("openvino")
    assert not a.ok and a.missing_extra
    assert a.error().one_line().rstrip(".") == ("openvino is needed for --runtime openvino: "
                                                "pip install 'dnnbench[openvino]'")


def test_a_conversion_failure_is_a_model_build_error():
    class Bad(nn.Module):
        def forward(self, x):
            return torch.special.i1e(x)

    ctx = Context(Bad(), (torch.randn(2, 4),), {}, torch.device("cpu"), "openvino", "fp32", 1, 2, "bad", True)
    with pytest.raises(ModelBuildError) as info:
        runtimes.get("openvino").prepare(ctx)
    assert "\n" not in info.value.one_line() and "aten::special_i1e" in info.value.one_line()
