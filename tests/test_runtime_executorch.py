"""The executorch runtime (ExecuTorch .pte with the XNNPACK delegate): fp32 and static int8 cells of a tiny CNN
through the real cell path (in-process), what is delegated and quantized, the .pte as the artifact, new inputs
through ``Prepared.run``, refusals, and one-line errors for models that do not export or lower.

The factories below are the test models too, referenced as python:tests/test_runtime_executorch.py:NAME.
"""

import importlib.util
import os
import sys

import pytest
import torch
from torch import nn

if importlib.util.find_spec("executorch") is None or \
        importlib.util.find_spec("executorch.extension.pybindings._C") is None:
    pytest.skip("executorch is not installed (pip install 'dnnbench[executorch]')", allow_module_level=True)

from dnnbench import api, runtimes  # noqa: E402
from dnnbench.core.errors import InputError, MissingExtraError, UnavailableError  # noqa: E402
from dnnbench.runtimes.base import Context, eager_outputs  # noqa: E402

HERE = "python:tests/test_runtime_executorch.py"
FAST = dict(threads=1, max_time_per_cell=0.5, min_samples=3, sensors="none")
MISSING = "executorch is needed for --runtime executorch: pip install 'dnnbench[executorch]'"


# ---- the test models ------------------------------------------------------------------------------------------

def tiny_cnn():
    """conv-bn-relu x2 + global average pool + linear: 10 classes from a 3x32x32 image."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    return m, torch.randn(1, 3, 32, 32)


# MACs per image, by hand: conv1 8x32x32 outputs x (3x3x3) + conv2 16x32x32 x (8x3x3) + linear 10 x 16
TINY_MACS = 8 * 32 * 32 * 27 + 16 * 32 * 32 * 72 + 10 * 16


class _Cumsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.lin = nn.Linear(14, 5)
        self.same = nn.Linear(5, 5)
        self.again = nn.Linear(5, 5)
        self.again.load_state_dict(self.same.state_dict())  # equal values in other tensors: a repeat, not a tie

    def forward(self, x):
        # XNNPACK has no cumsum: it runs in a portable kernel, between two XNNPACK partitions
        return self.again(self.same(self.lin(torch.cumsum(self.conv(x), -1))))


def with_cumsum():
    torch.manual_seed(0)
    return _Cumsum(), torch.randn(1, 3, 16, 16)


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        y = self.lin(x)
        return y * 2 if y.sum() > 0 else y  # Python control flow on a value: torch.export cannot trace it


def data_dependent():
    torch.manual_seed(0)
    return _DataDependent(), torch.randn(1, 4)


# ---- registry, availability, precisions (no export) -------------------------------------------------------------

def test_registered_available_on_cpu_only_and_its_precisions():
    assert "executorch" in runtimes.RUNTIMES.names()
    a = runtimes.availability("executorch", "cpu")
    assert a.ok and a.details["executorch_version"]
    gpu = runtimes.availability("executorch", "cuda")
    assert not gpu.ok and not gpu.missing_extra and "CPU only" in gpu.reason and "--device cpu" in gpu.fix
    rt = runtimes.get("executorch")
    assert rt.unsupported("fp32", "cpu") is None and rt.unsupported("int8", "cpu") is None
    assert "--runtime eager or onnxruntime" in rt.unsupported("fp16", "cpu")
    assert "not bf16" in rt.unsupported("bf16", "cpu")
    assert "--precision int8" in rt.unsupported("int8-dynamic", "cpu")
    configs, left = api.runtime_configs("resnet18", "executorch", "all")
    assert configs == [("executorch", "fp32"), ("executorch", "int8")]
    assert [label for label, _ in left] == ["executorch fp16", "executorch bf16", "executorch int8-dynamic"]


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    for name in [m for m in sys.modules if m == "executorch" or m.startswith("executorch.")] + \
            ["executorch", "executorch.extension.pybindings._C"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import executorch...` now raises ImportError
    a = runtimes.availability("executorch")
    assert not a.ok and a.missing_extra
    with pytest.raises(MissingExtraError) as info:
        api.runtime_configs("resnet18", "executorch")
    assert info.value.one_line().rstrip(".") == MISSING


def _ctx(module, args, precision="fp32", threads=2, kwargs=None, calibration=None) -> Context:
    return Context(module, args, kwargs or {}, torch.device("cpu"), "executorch", precision, threads,
                   args[0].shape[0] if args and isinstance(args[0], torch.Tensor) else 1, "test model", False,
                   calibration=calibration)


def test_refusals_before_exporting_are_one_line():
    rt = runtimes.get("executorch")
    m, _ = tiny_cnn()
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(InputError, match="needs calibration batches") as info:
        rt.prepare(_ctx(m.eval(), (x,), "int8"))
    assert "\n" not in str(info.value)
    with pytest.raises(UnavailableError, match="a list of 2 images"):
        rt.prepare(_ctx(m, ([x[0], x[1]],)))

    class OnnxFile(nn.Module):
        onnx_path = "m.onnx"

    with pytest.raises(InputError, match="an ONNX file: it cannot run under --runtime executorch"):
        rt.prepare(_ctx(OnnxFile(), (x,)))


# ---- cells through the worker (in-process) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cells():
    out = {}
    for precision in ("fp32", "int8"):
        run = api.bench(f"{HERE}:tiny_cnn", batch_sizes=[2], in_process=True, runtime="executorch",
                        precision=precision, **FAST)
        (cell,) = run.cells
        assert cell.status == "ok", cell.message
        out[precision] = cell
    return out


def test_fp32_cell_is_timed_delegated_whole_and_equals_eager(cells):
    cell = cells["fp32"]
    assert len(cell.timing.samples_s) >= 3 and cell.latency_s.median_s > 0
    eq = cell.equivalence
    assert eq.reference == "eager fp32" and eq.rows == 2 and eq.top1_agreement == 1.0
    assert eq.max_abs_diff <= 1e-5 * eq.reference_max_abs  # the same fp32 arithmetic in another order
    det = cell.runtime_info.details
    assert det["executorch_version"] and det["export_s"] > 0 and det["lower_s"] > 0 and "quantize_s" not in det
    # conv, batch norm, relu, mean, view and linear are all XNNPACK ops: one partition holds the whole graph
    assert det["delegated_partitions"] == 1 and det["portable_ops"] == {}
    assert det["delegated_ops_fraction"] == 1.0 and det["delegated_macs_fraction"] == 1.0
    assert det["delegated_macs"] == 2 * TINY_MACS and det["portable_macs"] == 0
    assert "int8_macs_fraction" not in det
    # the weights and biases of the two convolutions and the linear layer, float32, none equal to another
    assert det["constant_bytes"] == 4 * 1562 and det["repeated_constant_bytes"] == 0
    assert det["xnnpack_threads"] == 1 == det["threads"]  # the cell's --threads, read back from the threadpool
    ri = cell.runtime_info
    assert ri.artifact_bytes > 4 * 1562  # the pte holds the 1562 fp32 weights and biases at least
    assert ".pte program" in ri.artifact_note and "XNNPACK delegate, fp32" in ri.artifact_note


def test_int8_cell_is_static_int8_smaller_and_close_to_eager(cells):
    cell, fp32 = cells["int8"], cells["fp32"]
    assert len(cell.timing.samples_s) >= 3
    det = cell.runtime_info.details
    assert det["calibration_batches"] == 4 and det["calibration"].startswith("generated: 4 batches")
    assert det["quantize_s"] > 0 and "XNNPACKQuantizer" in det["quantization"]
    # both convolutions and the linear layer run on int8 operands inside the one XNNPACK partition
    assert det["int8_macs_fraction"] > 0.9 and det["int8_macs_fraction"] == 1.0
    assert det["delegated_ops_fraction"] == 1.0 and det["delegated_macs"] == 2 * TINY_MACS
    assert any(n.startswith("int8: static quantization") for n in cell.runtime_info.notes)
    # the 1528 weights as int8 (the tensors behind the dequantize nodes), the 34 biases still float32
    assert det["constant_bytes"] == 1528 + 4 * 34 and det["repeated_constant_bytes"] == 0
    eq = cell.equivalence
    assert eq.reference == "eager fp32" and eq.rows == 2 and eq.top1_agreement is not None
    # three layers rounded to 1/127 of each tensor's range: a few such steps of the largest output (measured 1%)
    assert 0 < eq.max_abs_diff <= 4 / 127 * eq.reference_max_abs
    assert "XNNPACK delegate, int8" in cell.runtime_info.artifact_note
    assert cell.runtime_info.artifact_bytes < 0.9 * fp32.runtime_info.artifact_bytes


def test_prepared_runs_new_inputs_saves_its_pte_and_uses_the_threads(tmp_path):
    """``Prepared.run`` on new inputs equals eager; ``save`` writes the .pte whose size is the artifact."""
    m, _ = tiny_cnn()
    m.eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    p = runtimes.get("executorch").prepare(_ctx(m, (x,), threads=2))
    try:
        assert p.details["xnnpack_threads"] == 2 and p.releases_module and p.restart_peak
        new = torch.randn(2, 3, 32, 32, generator=gen)
        (got,) = p.run((new,), {})
        (want,) = eager_outputs(m, (new,), {})
        assert got.dtype == torch.float32 and got.shape == (2, 10)
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()
        assert not torch.equal(got, p.outputs()[0])  # a new input, not the prepared batch again
        with pytest.raises(InputError, match="prepared for other input shapes"):
            p.run((torch.randn(3, 3, 32, 32),), {})
        (saved,) = p.save(str(tmp_path))
        size, note = p.artifact()
        assert os.path.getsize(saved) == size and saved.endswith(".pte") and "fp32" in note
        reloaded = __import__("executorch.runtime", fromlist=["Runtime"]).Runtime.get().load_program(saved)
        (again,) = reloaded.load_method("forward").execute((new,))
        assert torch.equal(again, got)  # the saved file is the program that ran
    finally:
        p.close()


def test_ops_xnnpack_lacks_run_in_portable_kernels_and_are_said():
    run = api.bench(f"{HERE}:with_cumsum", batch_sizes=[1], in_process=True, runtime="executorch", **FAST)
    (cell,) = run.cells
    assert cell.status == "ok", cell.message
    det = cell.runtime_info.details
    # conv | cumsum | 3 linear: two partitions around the one op XNNPACK lacks; all MACs (conv, linear) delegated
    assert det["delegated_partitions"] == 2 and det["portable_ops"] == {"aten.cumsum.default": 1}
    assert det["delegated_ops_fraction"] == pytest.approx(4 / 5) and det["delegated_macs_fraction"] == 1.0
    # conv 4x14x14 outputs x 27, linear 4x14x5 outputs x 14, two linear 4x14x5 outputs x 5
    assert det["delegated_macs"] == 4 * 14 * 14 * 27 + 4 * 14 * 5 * 14 + 2 * 4 * 14 * 5 * 5
    assert det["portable_macs"] == 0
    assert any("portable kernels" in n and "cumsum" in n for n in cell.runtime_info.notes)
    assert cell.equivalence.max_abs_diff <= 1e-5 * cell.equivalence.reference_max_abs
    # the weights and biases, each counted once: conv 4x3x3x3 + 4, linear 5x14 + 5, two linear 5x5 + 5, float32;
    # the second 5x5 linear repeats the first's values, which ExecuTorch stores once (its named data is keyed by
    # content)
    assert det["constant_bytes"] == 4 * (112 + 75 + 30 + 30) and det["repeated_constant_bytes"] == 4 * 30
    ri = cell.runtime_info
    assert "120 of the 988 bytes of its weights are repeats" in ri.artifact_note
    assert f"would be about {ri.artifact_bytes + 120} bytes" in ri.artifact_note


def test_models_that_do_not_export_or_lower_fail_their_cell_in_one_line():
    run = api.bench(f"{HERE}:data_dependent", batch_sizes=[1], in_process=True, runtime="executorch", **FAST)
    (cell,) = run.cells
    assert cell.status == "error" and "\n" not in cell.message
    assert cell.message.startswith("exporting the model with torch.export failed")
    assert "data-dependent" in cell.message and "Fix: measure it with --runtime eager" in cell.message
    # exports, but special_i1e is no core ATen op: ExecuTorch's edge dialect refuses it
    run = api.bench("python:tests/runtime_models.py:unexportable", batch_sizes=[1], in_process=True,
                    runtime="executorch", **FAST)
    (cell,) = run.cells
    assert cell.status == "error" and "\n" not in cell.message
    assert "lowering the model to an ExecuTorch program (XNNPACK) failed" in cell.message
    assert "special_i1e" in cell.message
