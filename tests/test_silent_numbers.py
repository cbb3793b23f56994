"""Numbers that used to be silently wrong (issue 14 item 2): each figure is right, or unavailable with why.

int8 "native" from the CPU's ISA, not from fbgemm being compiled in; OOM from the exception's type or the
allocator's own message, not any text saying "failed to allocate"; RSS above baseline None (not 0) when the
peak could not be reset; timm's preprocessing/class-name failures raised, not replaced by a default; ONNX
Runtime CUDA cells without torch's allocator peaks (which do not see ORT's arena), NVML's process memory instead.
"""

import sys
import types

import pytest
import torch

import dnnbench
from dnnbench.core.errors import ModelBuildError
from dnnbench.core.measurements import CellSpec
from dnnbench.latency.cell import classify
from dnnbench.latency import memory
from dnnbench.latency.memory import RssPeak
from dnnbench.runtimes import precision
from dnnbench.sources import load

FAST = dict(max_time_per_cell=0.2, min_samples=3, threads=1)
MiB = 1 << 20


# ---- 1. int8 is native only on a CPU with the integer SIMD its kernels use --------------------------

def _cpu(monkeypatch, flags, arch="x86_64"):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(precision, "machine_arch", lambda: arch)


def test_int8_is_not_native_on_an_x86_cpu_without_avx2(monkeypatch):
    _cpu(monkeypatch, {"fpu", "sse2", "sse4_2", "avx"})  # fbgemm and qnnpack are still compiled into torch
    sup = precision.support("int8", "cpu")
    assert sup.ok and not sup.native
    assert "no avx2" in sup.isa and "AVX2 at least" in sup.note


def test_int8_is_native_with_vnni_or_avx2(monkeypatch):
    _cpu(monkeypatch, {"sse2", "avx2", "avx512f", "avx512_vnni"})
    vnni = precision.support("int8", "cpu")
    assert vnni.native and vnni.note == "" and vnni.isa.startswith("avx512_vnni")
    _cpu(monkeypatch, {"sse2", "avx2"})
    avx2 = precision.support("int8", "cpu")
    assert avx2.native and "without VNNI" in avx2.note and avx2.isa.startswith("avx2")


def test_int8_on_arm_reads_neon_and_dotprod(monkeypatch):
    _cpu(monkeypatch, {"fp", "asimd", "asimddp"}, "aarch64")
    assert precision.support("int8", "cpu").native and "asimddp" in precision.support("int8", "cpu").isa
    _cpu(monkeypatch, {"fp", "asimd"}, "aarch64")
    neon = precision.support("int8", "cpu")
    assert neon.native and "dot-product" in neon.note
    _cpu(monkeypatch, {"fp"}, "aarch64")
    assert not precision.support("int8", "cpu").native


def test_int8_without_cpuinfo_falls_back_to_torchs_capability():
    assert not precision.int8_isa(frozenset(), "x86_64", "DEFAULT").native
    assert precision.int8_isa(frozenset(), "x86_64", "AVX2").level == "avx2"
    assert precision.int8_isa(frozenset(), "x86_64", "").level == "unknown"


def test_the_isa_is_recorded_with_the_cell_and_a_non_native_int8_warns(monkeypatch):
    from dnnbench import runtimes

    monkeypatch.setattr(precision, "int8_isa",
                        lambda flags=None, arch=None, capability=None: precision.Int8Isa("none", False, "no avx2 (test)"))
    module = torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()
    spec = CellSpec("m", 2, "cpu", 1, runtime="eager", precision="int8")
    prepared = runtimes.prepare(spec, module, (torch.randn(2, 8),), {}, torch.device("cpu"), owns_module=False)
    try:
        assert prepared.details["isa"] == "no avx2 (test)" and prepared.details["precision_native"] is False
        assert any("int8 is not native" in w.message for w in prepared.warnings)
    finally:
        prepared.close()


# ---- 2. OOM by exception type or the allocator's own message ----------------------------------------

WIDGET = '''
import torch


class Widget(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("failed to allocate the widget")


def widget():
    return Widget(), torch.randn(1, 4)
'''


def test_a_model_whose_error_says_failed_to_allocate_is_an_error_not_an_oom(tmp_path):
    assert classify(RuntimeError("failed to allocate the widget")) == "error"
    assert classify(ValueError("CUDA out of memory (a message, not the exception)")) == "error"
    path = tmp_path / "widget.py"
    path.write_text(WIDGET)
    run = dnnbench.bench(f"python:{path}:widget", [1, 2], in_process=True, **FAST)
    assert {c.batch_size: c.status for c in run.cells} == {1: "error", 2: "error"}  # 2 is run, not skipped


def test_a_real_cpu_allocation_failure_and_oom_types_are_oom():
    with pytest.raises(RuntimeError) as info:
        torch.empty(2 ** 62, dtype=torch.uint8)  # 4 EiB: refused at once, nothing is allocated
    assert type(info.value) is RuntimeError  # torch's CPU allocator raises no OutOfMemoryError
    assert classify(info.value) == "oom"
    assert classify(MemoryError()) == "oom"
    assert classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "oom"
    try:
        try:
            raise MemoryError()
        except MemoryError as exc:
            raise RuntimeError("export failed") from exc  # an exporter wrapping the OOM
    except RuntimeError as wrapped:
        assert classify(wrapped) == "oom"


# ---- 3. RSS above baseline: None with why, never a clamped 0 ----------------------------------------

def _status(monkeypatch, *readings):
    seq = iter(readings)
    monkeypatch.setattr(memory, "_status_bytes", lambda: dict(next(seq)))


def test_rss_above_baseline_is_unavailable_when_the_peak_could_not_be_reset(monkeypatch):
    monkeypatch.setattr(memory, "_reset_hwm", lambda: False)
    # an import spike left the peak at 500 MiB; the model's own peak (150 MiB resident) stays below it
    _status(monkeypatch, {"VmRSS": 100 * MiB, "VmHWM": 500 * MiB}, {"VmRSS": 150 * MiB, "VmHWM": 500 * MiB})
    rss = RssPeak(isolated=True)
    rss.start()
    mem = rss.finish()
    assert mem.rss_above_baseline_bytes is None  # was max(0, 500 MiB - 500 MiB) = 0
    assert "could not be reset (no /proc/self/clear_refs write access)" in mem.unavailable["rss_above_baseline_bytes"]
    assert mem.peak_rss_bytes == 500 * MiB and mem.baseline_rss_bytes == 100 * MiB


def test_a_peak_below_the_baseline_is_unavailable_not_zero(monkeypatch):
    monkeypatch.setattr(memory, "_reset_hwm", lambda: True)
    # the peak was restarted after preparation at a resident set below the baseline
    _status(monkeypatch, {"VmRSS": 300 * MiB, "VmHWM": 400 * MiB}, {"VmRSS": 200 * MiB, "VmHWM": 200 * MiB})
    rss = RssPeak(isolated=True)
    rss.start()
    mem = rss.finish()
    assert mem.rss_above_baseline_bytes is None and "below the baseline" in mem.unavailable["rss_above_baseline_bytes"]


# ---- 4. timm's preprocessing and class names: its error, not a silent default ------------------------

def _timm_data(monkeypatch):
    timm = pytest.importorskip("timm")
    import timm.data

    return timm.data


def _boom(*a, **k):
    raise ValueError("bad data config (test)")


def test_a_timm_preprocessing_failure_is_raised_by_accuracy_not_replaced(monkeypatch, tmp_path):
    data = _timm_data(monkeypatch)
    monkeypatch.setattr(data, "resolve_data_config", _boom)
    monkeypatch.setattr(data, "resolve_model_data_config", _boom)
    lm = load("timm:resnet18", device="meta")  # bench and profile still load it
    assert lm.preprocess is not None and lm.preprocess_source.startswith("unavailable:")
    assert "ValueError: bad data config (test)" in lm.preprocess_source
    with pytest.raises(ModelBuildError) as info:
        dnnbench.accuracy(lm, str(tmp_path))
    line = info.value.one_line()
    assert "timm could not give the preprocessing" in line and "ValueError: bad data config (test)" in line
    assert "defines no preprocessing" not in line and "\n" not in line


def test_a_failing_timm_transform_and_class_names_are_raised_too(monkeypatch, tmp_path):
    data = _timm_data(monkeypatch)
    monkeypatch.setattr(data, "create_transform", _boom)
    with pytest.raises(ModelBuildError, match="preprocessing"):
        dnnbench.accuracy(load("timm:resnet18", device="meta"), str(tmp_path))
    monkeypatch.undo()
    data = _timm_data(monkeypatch)
    monkeypatch.setattr(data, "infer_imagenet_subset", _boom)
    lm = load("timm:resnet18", device="meta")
    assert lm.class_names is None
    with pytest.raises(ModelBuildError, match="class names"):
        dnnbench.accuracy(lm, str(tmp_path))


def test_no_preprocessing_only_where_timm_really_has_none(monkeypatch):
    data = _timm_data(monkeypatch)
    monkeypatch.delattr(data, "create_transform")  # an old timm without the helper
    lm = load("timm:resnet18", device="meta")
    assert lm.preprocess is None and lm.preprocess_source is None  # the api's default then says so, truly


# ---- 5. ONNX Runtime on CUDA: no torch allocator peak passed off as the cell's memory ----------------

def fake_nvml(processes):
    """A pynvml stand-in (as in test_power_nvml): ``processes[i]`` = [(pid, used bytes or None)] on GPU i."""
    m = types.ModuleType("pynvml")
    m.calls = {"init": 0, "shutdown": 0}
    m.nvmlInit = lambda: m.calls.__setitem__("init", m.calls["init"] + 1)
    m.nvmlShutdown = lambda: m.calls.__setitem__("shutdown", m.calls["shutdown"] + 1)
    m.nvmlDeviceGetCount = lambda: len(processes)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [types.SimpleNamespace(pid=p, usedGpuMemory=u)
                                                        for p, u in processes[h]]
    return m


class NoTorchPeaks:
    """A CudaPeak whose figures must not be read (ONNX Runtime's arena is not torch's)."""

    device = torch.device("cuda", 0)
    before_run = 4 * MiB

    def peak_allocated(self):
        raise AssertionError("torch's allocator peak read for an onnxruntime cell")

    peak_reserved = peak_allocated


def test_onnxruntime_cuda_cells_have_no_torch_allocator_peaks(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML not installed: nothing measures the arena
    mem = RssPeak(isolated=True)
    mem.start()
    m = mem.finish(NoTorchPeaks(), "onnxruntime")
    for name in ("cuda_peak_allocated_bytes", "cuda_peak_reserved_bytes", "cuda_allocated_before_run_bytes"):
        assert getattr(m, name) is None
        assert "ONNX Runtime allocates device memory in its own arena" in m.unavailable[name]
    assert "dnnbench[nvml]" in m.unavailable["cuda_process_used_bytes"]


def test_nvml_measures_the_processs_gpu_memory_for_onnxruntime_cells():
    nvml = fake_nvml([[(99, 1 * MiB)], [(1234, 3 << 30), (7, 5 << 30)]])
    figures, why, method = memory.cuda_memory("onnxruntime", "cuda", None, nvml=nvml, pid=1234)
    assert figures["cuda_process_used_bytes"] == 3 << 30 and figures["cuda_peak_allocated_bytes"] is None
    assert f"cuda_process_used_bytes={3 << 30}" in method and "pid 1234 on GPU 1" in method
    assert "own arena" in why["cuda_peak_reserved_bytes"] and "cuda_process_used_bytes" not in why
    assert nvml.calls["init"] == nvml.calls["shutdown"] == 1

    hidden = memory.cuda_memory("onnxruntime", "cuda:0", None, nvml=fake_nvml([[(1234, None)]]), pid=1234)
    assert hidden[0]["cuda_process_used_bytes"] is None and "MIG" in hidden[1]["cuda_process_used_bytes"]
    absent = memory.cuda_memory("onnxruntime", "cuda", None, nvml=fake_nvml([[(5, MiB)]]), pid=1234)
    assert absent[0]["cuda_process_used_bytes"] is None and "container" in absent[1]["cuda_process_used_bytes"]


def test_torch_runtimes_on_cuda_keep_the_allocator_peaks():
    class Peaks(NoTorchPeaks):
        def peak_allocated(self):
            return 10 * MiB

        def peak_reserved(self):
            return 12 * MiB

    figures, why, method = memory.cuda_memory("eager", "cuda", Peaks())
    assert (figures["cuda_peak_allocated_bytes"], figures["cuda_peak_reserved_bytes"]) == (10 * MiB, 12 * MiB)
    assert figures["cuda_allocated_before_run_bytes"] == 4 * MiB and not why and "max_memory_allocated" in method
    cpu = memory.cuda_memory("onnxruntime", "cpu")
    assert cpu[1]["cuda_peak_allocated_bytes"] == "not a CUDA run"
