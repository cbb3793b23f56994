"""Measured memory of one cell: CPU peak resident set of this process, CUDA allocator peaks, and the CPU
allocator's peak during one call.

tracemalloc cannot see tensors, so CPU memory is the process's peak RSS (``VmHWM``), meaningful only in a
fresh process per cell. On Linux the peak is reset after the baseline is read (``/proc/self/clear_refs``),
so import-time spikes do not hide the model's own peak; where it cannot be reset (``ru_maxrss`` elsewhere, or
clear_refs not writable) the peak is reported but the RSS above the baseline is unavailable, with why — never a
difference clamped to 0.

CUDA: torch's caching-allocator peaks, except for ONNX Runtime, whose arena torch does not see: its cells get
NVML's per-process GPU memory where pynvml is installed (``cuda_memory``), else no device figure, with why.

RSS also holds what the C allocator keeps after tensors are freed (glibc raises its mmap threshold once a
large block is freed, and later blocks of that size come from a heap that does not shrink): for resnet50 it
grew 1.4-2.2x as fast with batch size as the tensors did over six runs (benchmarks/memory_scaling.py). So CPU cells also report
``cpu_activation_peak_bytes``: the peak of bytes torch's CPU allocator handed out during the cold call, above
what it held when the call began (``AllocationTrace``, from the profiler's allocation records).
"""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import replace
from typing import Any

import torch

from dnnbench.core.measurements import MemoryPeak


def _status_bytes() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                parts = value.split()
                if key in ("VmRSS", "VmHWM") and len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def current_rss_bytes() -> int | None:
    return _status_bytes().get("VmRSS")


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux >= 4.0: reset the peak RSS to the current RSS
        return True
    except OSError:
        return False


_NO_RESET = ("unavailable: the process's peak RSS could not be reset (no /proc/self/clear_refs write access): its "
             "peak so far may be an import's, not this model's, so the peak minus the baseline is not the model's "
             "cost; run on Linux >= 4.0 with /proc writable by this user")


class RssPeak:
    """Baseline before the model is built, peak after the cell ran; ``isolated``: a fresh process per cell."""

    def __init__(self, isolated: bool):
        self.isolated = isolated
        self.baseline: int | None = None
        self.method = ""
        self.reset = False

    def start(self) -> None:
        status = _status_bytes()
        self.reset = _reset_hwm()
        if "VmRSS" in status and self.reset:
            self.baseline, self.method = status["VmRSS"], "VmHWM after resetting it to VmRSS via /proc/self/clear_refs"
        elif "VmRSS" in status:
            # The resident set now is the baseline; the peak, not reset, still holds every earlier spike.
            self.baseline, self.method = status["VmRSS"], "VmHWM (the peak could not be reset)"
        else:
            self.baseline, self.method = _ru_maxrss_bytes(), "ru_maxrss (a peak since start-up; it cannot be reset)"

    def restart_peak(self) -> int | None:
        """Reset the peak to the current resident set, keeping the baseline; return the peak before the reset.

        For one-off preparation a deployment does not repeat in every process (export, quantization, a
        reference forward): the cell's peak then covers running only. None (nothing reset) where the peak
        cannot be reset or the process is shared.
        """
        if not self.isolated:
            return None
        before = _status_bytes().get("VmHWM")
        return before if before is not None and _reset_hwm() else None

    def finish(self, cuda: "CudaPeak | None" = None, runtime: str = "eager") -> MemoryPeak:
        status = _status_bytes()
        peak = status.get("VmHWM") if "VmHWM" in status else _ru_maxrss_bytes()
        why: dict[str, str] = {}
        above = None
        if self.isolated:
            # Never clamped: a difference that is not the model's cost is None with why, not 0.
            if not self.reset:
                why["rss_above_baseline_bytes"] = _NO_RESET
            elif peak is None or self.baseline is None:
                why["rss_above_baseline_bytes"] = "unavailable: the peak or the baseline resident set was not readable"
            elif peak < self.baseline:
                why["rss_above_baseline_bytes"] = (
                    f"unavailable: the peak after the preparation ({peak} B) is below the baseline ({self.baseline} B): "
                    "memory counted in the baseline was released during the cell, so the model's cost is not known")
            else:
                above = peak - self.baseline
        else:
            why["rss_above_baseline_bytes"] = ("unavailable: --in-process shares one process across cells, so "
                                               "there is no baseline before this model was built; run without "
                                               "--in-process")
            if not self.reset:
                peak = None
                why["peak_rss_bytes"] = ("unavailable: --in-process and the peak cannot be reset on this system; "
                                         "run without --in-process")
        figures, cuda_why, cuda_method = cuda_memory(runtime, str(cuda.device) if cuda is not None else "cpu", cuda)
        why.update(cuda_why)
        return MemoryPeak(self.method + cuda_method, peak, self.baseline if self.isolated else None, above,
                          figures["cuda_peak_allocated_bytes"], figures["cuda_peak_reserved_bytes"],
                          figures["cuda_allocated_before_run_bytes"], unavailable=why,
                          cuda_process_used_bytes=figures.get("cuda_process_used_bytes"))


_TORCH_CUDA = ("cuda_peak_allocated_bytes", "cuda_peak_reserved_bytes", "cuda_allocated_before_run_bytes")
_ARENA = ("unavailable: ONNX Runtime allocates device memory in its own arena, which torch's allocator does not "
          "see (torch's figures would hold little more than the input)")


def cuda_memory(runtime: str, device: str, cuda: "CudaPeak | None" = None, nvml: Any = None,
                pid: int | None = None) -> tuple[dict[str, int | None], dict[str, str], str]:
    """A cell's CUDA memory figures: (value of each field, why each missing one is missing, method text to append).

    torch's caching-allocator peaks for the PyTorch runtimes; for ONNX Runtime none of them (its arena is its
    own), and instead, where NVML is importable, the GPU memory NVML says this process uses (``pid``, default
    this one) — returned as ``cuda_process_used_bytes`` and written into the method text, since MemoryPeak has
    no field for it yet. ``nvml``: a pynvml stand-in for tests.
    """
    figures: dict[str, int | None] = dict.fromkeys((*_TORCH_CUDA, "cuda_process_used_bytes"))
    why: dict[str, str] = {}
    if not device.startswith("cuda"):
        return figures, dict.fromkeys(_TORCH_CUDA, "not a CUDA run"), ""
    if runtime == "onnxruntime":
        used, how = nvml_process_used_bytes(nvml, pid)
        figures["cuda_process_used_bytes"] = used
        if used is None:
            why["cuda_process_used_bytes"] = how
            return figures, {**dict.fromkeys(_TORCH_CUDA, _ARENA), **why}, \
                f"; CUDA: no device figure (ONNX Runtime's arena is not torch's; {how.removeprefix('unavailable: ')})"
        seen = f"; NVML saw this process use {used} B of GPU memory after the run (cuda_process_used_bytes, see method)"
        return figures, dict.fromkeys(_TORCH_CUDA, _ARENA + seen), f"; CUDA: cuda_process_used_bytes={used} ({how})"
    if cuda is None:
        return figures, dict.fromkeys(_TORCH_CUDA, "unavailable: the CUDA peaks were not started"), ""
    figures.update(cuda_peak_allocated_bytes=cuda.peak_allocated(), cuda_peak_reserved_bytes=cuda.peak_reserved(),
                   cuda_allocated_before_run_bytes=cuda.before_run)
    return figures, why, "; CUDA: torch.cuda.max_memory_allocated/reserved after reset_peak_memory_stats"


def nvml_process_used_bytes(nvml: Any = None, pid: int | None = None) -> tuple[int | None, str]:
    """(bytes, how measured) of GPU memory NVML lists for process ``pid`` over all GPUs, or (None, why not)."""
    pid = os.getpid() if pid is None else pid
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return None, ("unavailable: NVML's Python binding is not installed, so this process's GPU memory cannot "
                          "be read either; pip install 'dnnbench[nvml]'")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVML's own error types differ by binding version
        return None, f"unavailable: NVML did not start ({type(exc).__name__}: {exc})"
    try:
        used, gpus, hidden = 0, [], False
        for i in range(nvml.nvmlDeviceGetCount()):
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(nvml.nvmlDeviceGetHandleByIndex(i)):
                if proc.pid != pid:
                    continue
                if proc.usedGpuMemory is None:  # NVML_VALUE_NOT_AVAILABLE: no permission, or MIG/vGPU
                    hidden = True
                    continue
                used += int(proc.usedGpuMemory)
                gpus.append(str(i))
    except Exception as exc:  # noqa: BLE001
        return None, f"unavailable: NVML's process list failed ({type(exc).__name__}: {exc})"
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    if not gpus:
        return None, (f"unavailable: NVML reports no memory for this process (pid {pid})" +
                      (": it hides per-process memory here (MIG, vGPU or no permission)" if hidden else
                       ": it is not among the GPUs' compute processes (in a container NVML lists host process ids)"))
    return used, (f"NVML nvmlDeviceGetComputeRunningProcesses for pid {pid} on GPU {'+'.join(gpus)} after the run: "
                  "ONNX Runtime's arena (which keeps its peak chunks), the CUDA context and torch's cache; "
                  "the current use, not a peak")


class CudaPeak:
    """Caching-allocator peaks on one CUDA device, from a reset taken after the model and inputs are there."""

    def __init__(self, device: torch.device):
        self.device = device
        self.before_run: int | None = None

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.before_run = torch.cuda.memory_allocated(self.device)

    def peak_allocated(self) -> int:
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device)

    def peak_reserved(self) -> int:
        return torch.cuda.max_memory_reserved(self.device)


_SENTINEL_ELEMENTS = 4099  # bytes (uint8) of AllocationTrace's check allocation: an odd size, not mistaken for a call's


class AllocationTrace:
    """Around one call: the peak of bytes torch's CPU allocator held beyond what it held when the call began.

    torch's profiler with ``profile_memory`` records every allocation and free of the CPU allocator, on
    every thread; the maximum of their running sum, in time order, is the call's peak of intermediates and
    outputs (weights and the input, allocated before, are not in it) — the measured counterpart of the
    static ``activation_peak_bytes``. Memory allocated outside torch's allocator (another runtime's arena)
    is not seen. The profiler starts before and stops after the call; the call's own time grows only by
    the event recording (about a microsecond per operator).

    The raw records come from the autograd profiler's legacy entry points (what
    ``torch.autograd.profiler_legacy.profile`` calls): they start in well under a millisecond and cost a few
    MiB, where kineto's ``torch.profiler`` takes about 2 s and 180 MiB to start in a CUDA build of torch
    (CUPTI), which would be charged to the cell. Where they are missing the figure is unavailable, with why.
    ``reason``: why there is no figure (then nothing is traced).
    """

    def __init__(self, reason: str | None = None):
        self.reason = reason
        self.peak_bytes: int | None = None
        self._on = False

    def __enter__(self) -> "AllocationTrace":
        if self.reason is None:
            try:
                from torch._C._profiler import _ExperimentalConfig
                from torch.autograd import ProfilerConfig, ProfilerState, _enable_profiler_legacy

                config = ProfilerConfig(ProfilerState.CPU, False, True, False, False, False, _ExperimentalConfig())
                _enable_profiler_legacy(config)
                self._on = True
            except Exception as exc:  # noqa: BLE001 - a missing profiler costs this figure, not the cell
                self.reason = (f"unavailable: this torch's profiler has no legacy memory records "
                               f"({type(exc).__name__}: {exc})")
        return self

    def __exit__(self, *exc) -> None:
        if not self._on:
            return
        self._on = False
        # A sentinel allocated and freed after the call: its two records prove allocations were recorded, so
        # a call that allocates nothing reads 0 measured, and a profiler that recorded nothing reads unavailable.
        sentinel = torch.empty(_SENTINEL_ELEMENTS, dtype=torch.uint8)
        del sentinel
        try:
            from torch.autograd import _disable_profiler_legacy

            records = _disable_profiler_legacy()
            start = records[0][0]  # the profiler's own start mark, on the calling thread
            allocs = sorted((start.cpu_elapsed_us(e), e.cpu_memory_usage())
                            for thread in records for e in thread if e.kind() == "memory_alloc")
        except Exception as exc:  # noqa: BLE001
            self.reason = f"unavailable: torch's profiler gave no allocation records ({type(exc).__name__}: {exc})"
            return
        if [n for _, n in allocs[-2:]] != [_SENTINEL_ELEMENTS, -_SENTINEL_ELEMENTS]:
            self.reason = ("unavailable: torch's profiler did not record a test allocation made after the call, "
                           "so its allocation records cannot be trusted")
            return
        live = peak = 0
        for _, nbytes in allocs[:-2]:
            live += nbytes
            peak = max(peak, live)
        self.peak_bytes = peak

    def into(self, memory: MemoryPeak) -> MemoryPeak:
        """``memory`` with this trace's figure, or the reason there is none."""
        if self.peak_bytes is not None:
            return replace(memory, cpu_activation_peak_bytes=self.peak_bytes)
        return replace(memory, unavailable={**memory.unavailable,
                                            "cpu_activation_peak_bytes": self.reason or "unavailable: not traced"})
