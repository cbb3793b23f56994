"""Cells: statuses after injected failures, worker isolation in a real subprocess, memory, the CUDA path."""

import functools
import os

import pytest
import torch

import dnnbench
from dnnbench.core.measurements import BenchCell, CellSpec, MemoryPeak, TimingSpec
from dnnbench.latency.memory import RssPeak
from dnnbench.isolation.dispatch import run_isolated
from dnnbench.latency.cell import classify
from tests.bench_models import FAKE_CPU_OOM, PreparedLoader, ballast_loader

MODELS = os.path.join(os.path.dirname(__file__), "bench_models.py")
FAST = dict(max_time_per_cell=0.3, min_samples=5, threads=1)


def ref(name: str) -> str:
    return f"python:{MODELS}:{name}"


def statuses(run) -> dict[int, str]:
    return {c.batch_size: c.status for c in run.cells}


def test_oom_in_one_cell_skips_larger_batches_and_keeps_what_was_measured():
    run = dnnbench.bench(ref("oom_from_4"), [16, 1, 8, 2, 4], in_process=True, **FAST)
    assert [c.batch_size for c in run.cells] == [1, 2, 4, 8, 16]  # ascending, so "larger" is well defined
    assert statuses(run) == {1: "ok", 2: "ok", 4: "oom", 8: "skipped", 16: "skipped"}
    oom = run.cell(4)
    assert "can't allocate memory" in oom.message and oom.latency_s is None
    assert "batch size 4" in run.cell(8).message
    for b in (1, 2):
        c = run.cell(b)
        assert c.latency_s.n >= 3 and c.throughput_items_per_s == pytest.approx(b / c.latency_s.median_s)


def test_an_error_fails_only_its_cell():
    run = dnnbench.bench(ref("error_at_2"), [1, 2, 4], in_process=True, **FAST)
    assert statuses(run) == {1: "ok", 2: "error", 4: "ok"}
    assert run.cell(2).message == "ValueError: injected failure at batch 2"


def test_oom_classification():
    assert classify(MemoryError()) == "oom"
    assert classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")) == "oom"
    assert classify(RuntimeError(FAKE_CPU_OOM)) == "oom"
    assert classify(ValueError("shape mismatch")) == "error"


def test_cells_run_in_fresh_worker_processes(tmp_path):
    """Real subprocesses: OOM raised in a worker and a worker killed by SIGKILL are both "oom" cells."""
    run = dnnbench.bench(ref("sigkill_from_4"), [1, 4, 8], **FAST)
    assert statuses(run) == {1: "ok", 4: "oom", 8: "skipped"}
    assert "SIGKILL" in run.cell(4).message
    ok = run.cell(1)
    assert ok.spec.isolation == "subprocess"
    assert ok.environment is not None and ok.environment.threads == 1  # set in the worker, and recorded
    mem = ok.memory
    assert mem.peak_rss_bytes >= mem.baseline_rss_bytes > 0
    assert mem.rss_above_baseline_bytes == mem.peak_rss_bytes - mem.baseline_rss_bytes
    assert "cuda_peak_allocated_bytes" in mem.unavailable and mem.cuda_peak_allocated_bytes is None

    spec = CellSpec(ref("oom_from_4"), 4, "cpu", 1, TimingSpec(max_time_s=0.3))
    loader = functools.partial(dnnbench.api._bench_loader, ref("oom_from_4"), "cpu")
    cell = run_isolated(spec, loader)
    assert cell.status == "oom" and "injected by a test" in cell.message


def test_worker_builds_the_model_in_its_own_process_and_measures_its_memory(tmp_path):
    pid_file = tmp_path / "pid"
    ballast = 96 << 20
    spec = CellSpec("ballast", 2, "cpu", 1, TimingSpec(max_time_s=0.3, min_samples=5))
    seen = []
    cell = run_isolated(spec, functools.partial(ballast_loader, str(pid_file), ballast),
                        progress=lambda *a: seen.append(a[0]))
    assert cell.status == "ok", cell.message
    child = int(pid_file.read_text())
    assert child != os.getpid()
    assert seen[0] == "building" and seen[-1] == "done"  # progress crossed the pipe as it happened
    assert cell.rss_above_baseline_bytes >= ballast  # the model's buffer lives in the worker only
    assert cell.latency_s.n == len(cell.samples_s) >= 3
    again = BenchCell.from_dict(cell.to_dict())  # what the worker sent is what is stored
    assert again.to_dict() == cell.to_dict()


def test_imports_done_in_prepare_belong_to_the_baseline():
    resident = 128 << 20
    spec = CellSpec("prepared", 1, "cpu", 1, TimingSpec(max_time_s=0.2, min_samples=5))
    cell = run_isolated(spec, PreparedLoader(resident))
    assert cell.status == "ok", cell.message
    assert cell.memory.baseline_rss_bytes > resident  # taken after prepare()
    assert cell.rss_above_baseline_bytes < resident // 2  # so the model is not charged for it


def test_rss_peak_sees_a_transient_allocation():
    rss = RssPeak(isolated=True)
    rss.start()
    blob = b"\x01" * (64 << 20)  # written, so resident
    del blob
    mem = rss.finish()
    assert mem.rss_above_baseline_bytes >= 60 << 20
    shared = RssPeak(isolated=False)
    shared.start()
    m2 = shared.finish()
    assert m2.rss_above_baseline_bytes is None and "in-process" in m2.unavailable["rss_above_baseline_bytes"]


def test_static_estimate_and_roofline_sit_beside_the_measurement(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNBENCH_CACHE_DIR", str(tmp_path))
    run = dnnbench.bench(ref("tiny"), [1, 4], in_process=True, **FAST)
    c = run.cell(4)
    prof = dnnbench.profile(ref("tiny"), batch_size=4)
    assert c.static.flops == prof.flops and c.static.activation_peak_bytes == prof.activation_peak_bytes
    assert c.achieved_flops_per_s == pytest.approx(prof.flops / c.latency_s.median_s)
    assert c.fraction_of_peak is None and "dnnbench machine" in c.roofline.unavailable["fraction_of_peak"]
    from dnnbench.core.view import metrics

    d = c.to_dict()  # the record: raw observations, no statistic
    assert d["samples"]["latency_s"] == c.samples_s and d["status"] == "ok" and d["message"] == ""
    assert d["result"]["static"]["flops"] == prof.flops and "machine_peak" in d["unavailable"]
    assert d["environment"]["fingerprint"] == run.environment.fingerprint
    view = metrics(c.to_record())  # every figure a value or a reason
    for key in ("throughput_items_per_s", "peak_rss_bytes", "cold_start_s", "latency_median_s", "latency_mean_s",
                "latency_min_s", "latency_ci_low_s", "latency_ci_high_s", "latency_cv"):
        assert key in view.values
    for key in ("latency_p90_s", "latency_p99_s", "cuda_peak_allocated_bytes", "cuda_peak_reserved_bytes",
                "rss_above_baseline_bytes", "fraction_of_peak"):
        assert (key in view.values) != (key in view.notes)
    if c.latency_s.n < 662:
        assert "too few samples" in view.notes["latency_p99_s"]
    assert view.values["achieved_flops_per_s"] == pytest.approx(c.achieved_flops_per_s)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_cells_report_allocator_peaks_and_oom():
    run = dnnbench.bench(ref("tiny"), [1, 8], device="cuda", in_process=True, **FAST)
    c = run.cell(8)
    assert c.status == "ok" and c.timing.timer == "cuda_events"
    assert c.cuda_peak_reserved_bytes >= c.cuda_peak_allocated_bytes > 0
    assert c.environment.gpu_name
    run = dnnbench.bench(ref("cuda_oom_from_4"), [2, 4, 8], device="cuda", in_process=True, **FAST)
    assert statuses(run) == {2: "ok", 4: "oom", 8: "skipped"}


def test_cuda_without_a_gpu_is_a_one_line_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(dnnbench.DnnbenchError, match="--device cuda is not available"):
        dnnbench.bench(ref("tiny"), [1], device="cuda")


def test_memory_fit_is_floor_plus_slope_beside_the_static_slope():
    from dnnbench.core.measurements import fit_memory as _memory_fit
    from dnnbench.core.measurements import StaticEstimate

    cells = []
    for b in (1, 2, 4, 8):
        spec = CellSpec("m", b, "cpu", 1)
        mem = MemoryPeak("test", 10_000 + 1_200 * b, 1_000, 9_000 + 1_200 * b)
        cells.append(BenchCell(spec, "ok", memory=mem, static=StaticEstimate(0, 0, 500, 100 + 1_000 * b)))
    cells.append(BenchCell(CellSpec("m", 16, "cpu", 1), "oom", "out of memory"))  # ignored: nothing measured
    fit, why = _memory_fit(cells, "rss_above_baseline_bytes")
    assert why is None and fit.n == 4 and fit.monotonic
    assert fit.floor_bytes == pytest.approx(9_000) and fit.slope_bytes_per_item == pytest.approx(1_200)
    assert fit.static_floor_bytes == pytest.approx(600) and fit.static_slope_bytes_per_item == pytest.approx(1_000)
    assert fit.slope_ratio == pytest.approx(1.2)
    fit, why = _memory_fit(cells[:1], "rss_above_baseline_bytes")
    assert fit is None and "fewer than two" in why
    fit, why = _memory_fit(cells, "cpu_activation_peak_bytes", with_weights=False)  # not measured in these cells
    assert fit is None and "cpu_activation_peak_bytes" in why


def test_allocation_trace_peaks_at_the_most_tensor_bytes_held_at_once():
    from dnnbench.latency.memory import AllocationTrace

    held = torch.empty(10_000)  # allocated before the trace: not in its peak

    def call():
        a = torch.empty(1000)  # 4,000 B
        b = torch.empty(500)  # 6,000 B held
        del a  # 2,000 B
        c = torch.empty(2000)  # 10,000 B held: the peak
        return b, c

    trace = AllocationTrace()
    with trace:
        call()
    assert trace.peak_bytes == 10_000 and held.numel() == 10_000
    mem = trace.into(MemoryPeak("test"))
    assert mem.cpu_activation_peak_bytes == 10_000 and "cpu_activation_peak_bytes" not in mem.unavailable
    nothing = AllocationTrace()
    with nothing:
        held.view(100, 100)  # a view: no allocation, a measured 0 (the trace's own check allocation is not counted)
    assert nothing.peak_bytes == 0 and nothing.reason is None
    untraced = AllocationTrace("unavailable: because a test says so")
    with untraced:
        call()
    mem = untraced.into(MemoryPeak("test"))
    assert mem.cpu_activation_peak_bytes is None
    assert mem.unavailable["cpu_activation_peak_bytes"] == "unavailable: because a test says so"


def test_a_profiler_that_records_no_allocations_gives_no_figure_rather_than_zero(monkeypatch):
    import torch.autograd

    from dnnbench.latency.memory import AllocationTrace

    real = torch.autograd._disable_profiler_legacy

    def without_memory_records():
        return [[e for e in thread if e.kind() != "memory_alloc"] for thread in real()]

    monkeypatch.setattr(torch.autograd, "_disable_profiler_legacy", without_memory_records)
    trace = AllocationTrace()
    with trace:
        torch.empty(1000)
    assert trace.peak_bytes is None and "did not record a test allocation" in trace.reason
    mem = trace.into(MemoryPeak("test"))
    assert mem.cpu_activation_peak_bytes is None and mem.unavailable["cpu_activation_peak_bytes"].startswith("unavailable:")


def test_cpu_cells_measure_the_activation_peak_beside_the_static_estimate():
    """tiny = Linear(16, 32), ReLU, Linear(32, 4): the ReLU runs while the first Linear's output is held, so
    the call's peak is 2 x 32 floats per item = 256 B; the static estimate also counts the 16-float input."""
    run = dnnbench.bench(ref("tiny"), [1, 4], in_process=True, **FAST)
    for b in (1, 4):
        c = run.cell(b)
        assert c.cpu_activation_peak_bytes == 256 * b
        assert c.static.activation_peak_bytes == 256 * b + 64 * b
        from dnnbench.core.view import metrics

        assert metrics(c.to_record()).get("cpu_activation_peak_bytes") == 256 * b
    fit = run.activation_fit
    assert fit.quantity == "cpu_activation_peak_bytes" and fit.monotonic
    assert fit.slope_bytes_per_item == pytest.approx(256) and fit.static_slope_bytes_per_item == pytest.approx(320)
    assert fit.static_floor_bytes == pytest.approx(0, abs=1e-6)  # no weights in an activation peak
    assert fit.slope_ratio == pytest.approx(0.8)
    cell = dnnbench.bench(ref("tiny"), [2], **FAST).cell(2)  # a forked worker measures it too
    assert cell.status == "ok" and cell.cpu_activation_peak_bytes == 512
    # and charges the model with neither torch._dynamo (imported lazily by nn.Module inits: ~170 MiB, which a
    # python: file model used to be charged) nor anything else of that size: 2.6 KB of weights, tiny activations
    assert cell.rss_above_baseline_bytes < 64 << 20


def test_the_activation_peak_is_traced_for_eager_cpu_cells_only():
    from dnnbench.latency.cell import _trace_unavailable

    assert _trace_unavailable(CellSpec("m", 1, "cpu", 1), on_gpu=False) is None
    assert "cuda_peak_allocated_bytes" in _trace_unavailable(CellSpec("m", 1, "cuda", 1), on_gpu=True)
    why = _trace_unavailable(CellSpec("m", 1, "cpu", 1, runtime="onnxruntime"), on_gpu=False)
    assert why.startswith("unavailable:") and "onnxruntime" in why
