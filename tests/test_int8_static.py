"""Static int8 (calibrated, convolutions included) under onnxruntime (QDQ) and PyTorch eager (FX), int8-dynamic
as it was, and ``Prepared.run`` / ``Prepared.save`` of every eager and onnxruntime precision.

The models are defined here and referenced as python:tests/test_int8_static.py:NAME (random weights: speed, size,
the share of quantized MACs and the equivalence check need no training).
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from dnnbench import api, runtimes
from dnnbench.core.errors import ModelBuildError
from dnnbench.core.measurements import CellSpec

HERE = "python:tests/test_int8_static.py"
FAST = dict(threads=1, max_time_per_cell=0.3, min_samples=3, sensors="none", in_process=True)
B = 2  # batch size of every cell here


def conv_linear():
    """One 3x3 conv (3 -> 32 channels, padding 1), ReLU, global pooling, one Linear(32, 10); 3x16x16 images."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32),
                      nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return m, torch.randn(1, 3, 16, 16)


# per item: conv1 16*16 outputs x 32 channels x 3*3*3; conv2 16*16 x 32 x 32*3*3; the linear 10 x 32
MACS_PER_ITEM = 16 * 16 * 32 * 27 + 16 * 16 * 32 * 288 + 10 * 32


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.conv(x)
        return self.conv(-x)


def branchy():
    torch.manual_seed(0)
    return _Branchy(), torch.randn(1, 3, 8, 8)


def _cell(runtime, precision, ref="conv_linear"):
    run = api.bench(f"{HERE}:{ref}", batch_sizes=[B], runtime=runtime, precision=precision, **FAST)
    (cell,) = run.cells
    return cell


onnx_only = pytest.mark.skipif(not runtimes.availability("onnxruntime").ok, reason="the onnx extra is not installed")


@pytest.mark.parametrize("runtime", [pytest.param("onnxruntime", marks=onnx_only), "eager"])
def test_static_int8_quantizes_the_convolutions_too(runtime):
    fp32, int8 = _cell(runtime, "fp32"), _cell(runtime, "int8")
    assert int8.status == "ok", int8.message
    det = int8.runtime_info.details
    # every conv and the linear layer run in int8 kernels: counted from shapes, equal to the hand count
    total_key = "conv_matmul_gemm_macs" if runtime == "onnxruntime" else "conv_linear_macs"
    assert det[total_key] == det["int8_macs"] == B * MACS_PER_ITEM
    assert det["int8_macs_fraction"] == 1.0
    assert det["calibration_batches"] == 4 and det["calibration"].startswith("generated: 4 batches of 2")
    assert any(w.kind == "calibration" and "generated" in w.message for w in int8.warnings)
    # int8 weights: the deployable file is smaller than fp32's (the 37 k parameters dominate it)
    assert int8.runtime_info.artifact_bytes < 0.5 * fp32.runtime_info.artifact_bytes
    eq = int8.equivalence
    assert eq.reference == "eager fp32" and eq.rows == B and eq.top1_agreement is not None
    assert 0 < eq.max_abs_diff < 0.1 * eq.reference_max_abs  # rounded to 8 bits: close, not equal
    if runtime == "onnxruntime":
        assert det["quant_format"] == "QDQ" and "per channel" in det["weight_type"]
        assert "statically quantized (QDQ int8, convolutions included)" in int8.runtime_info.artifact_note
    else:
        assert det["backend"] in ("x86", "qnnpack") and det["quantized_layers"] == 3  # conv1, conv2+bn+relu, linear
        assert "FX static quantization" in int8.runtime_info.artifact_note


@pytest.mark.parametrize("runtime", [pytest.param("onnxruntime", marks=onnx_only), "eager"])
def test_int8_dynamic_still_quantizes_the_linear_layers_only(runtime):
    cell = _cell(runtime, "int8-dynamic")
    assert cell.status == "ok", cell.message
    assert cell.runtime_info.details["quantized_layers"] == 1
    assert any("convolutions and all other" in n and "fp32" in n for n in cell.runtime_info.notes)
    assert "int8_macs_fraction" not in cell.runtime_info.details


def test_a_model_fx_cannot_trace_is_one_line_with_the_way_out():
    cell = _cell("eager", "int8", "branchy")
    assert cell.status == "error" and "\n" not in cell.message
    assert "torch.fx cannot trace" in cell.message and "--runtime onnxruntime" in cell.message


def test_static_int8_in_pytorch_is_cpu_only():
    why = runtimes.get("eager").unsupported("int8", "cuda")
    assert why and "CPU only" in why and "onnxruntime" in why
    assert "PT2E" in runtimes.get("compile").unsupported("int8", "cpu")


def _prepare(runtime, precision, model, example):
    from dnnbench.core.specs import InputSpec, LoadedModel

    inputs = InputSpec.from_examples(example)
    lm = LoadedModel("m", model, inputs)
    spec = CellSpec("m", B, "cpu", 1, runtime=runtime, precision=precision)
    args, kwargs = inputs.make(B, "cpu", torch.Generator().manual_seed(0))
    return runtimes.prepare(spec, model, args, kwargs, torch.device("cpu"), owns_module=False, lm=lm), inputs


@pytest.mark.parametrize("runtime, precision", [
    ("eager", "fp32"), ("eager", "bf16"), ("eager", "int8"), ("eager", "int8-dynamic"),
    pytest.param("onnxruntime", "fp32", marks=onnx_only), pytest.param("onnxruntime", "fp16", marks=onnx_only),
    pytest.param("onnxruntime", "int8", marks=onnx_only), pytest.param("onnxruntime", "int8-dynamic", marks=onnx_only)])
def test_run_takes_new_inputs_and_save_writes_the_deployable_file(runtime, precision, tmp_path):
    model, example = conv_linear()
    model.eval()
    prepared, inputs = _prepare(runtime, precision, model, example)
    try:
        args, kwargs = inputs.make(B, "cpu", torch.Generator().manual_seed(7))  # not the prepared batch
        (out,) = prepared.run(args, kwargs)
        assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (B, 10)
        with torch.inference_mode():
            ref = model(*args)
        # these inputs' outputs, not the prepared batch's: as close to eager fp32 on them as the precision allows
        assert (out - ref).abs().max() <= 0.1 * ref.abs().max()
        assert not torch.equal(out, prepared.outputs()[0])
        paths = prepared.save(str(tmp_path))
        assert paths and all(os.path.getsize(p) > 0 for p in paths)
        if runtime == "onnxruntime":
            import onnxruntime as ort

            sess = ort.InferenceSession(paths[0], providers=["CPUExecutionProvider"])  # the saved file runs as is
            feed = {sess.get_inputs()[0].name: args[0].numpy()}
            assert torch.allclose(torch.from_numpy(sess.run(None, feed)[0]).float(), out, atol=1e-5)
        else:
            state = torch.load(paths[0], weights_only=False)
            assert isinstance(state, dict) and state
            assert "model's code" in prepared.save.note
    finally:
        prepared.close()


@onnx_only
def test_an_onnx_file_is_statically_quantized_with_its_own_input_names(tmp_path):
    import warnings

    model, example = conv_linear()
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, input_names=["pixels"],
                          dynamic_axes={"pixels": {0: "batch"}})
    run = api.bench(f"onnx:{path}", batch_sizes=[B], precision="int8", **FAST)
    (cell,) = run.cells
    assert cell.status == "ok", cell.message
    assert cell.runtime_info.details["int8_macs_fraction"] == 1.0
    assert cell.equivalence.reference == "onnxruntime fp32 (the file as given)" and cell.equivalence.max_abs_diff > 0


def test_fx_errors_are_model_build_errors():
    from dnnbench.runtimes.precision import quantize_static_fx

    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular")).eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ModelBuildError, match="static int8 \\(FX\\) of m failed") as info:
        quantize_static_fx(m, [((x,), {})], (x,), {}, False, "m")
    assert "circular" in info.value.one_line() and "\n" not in info.value.one_line()
