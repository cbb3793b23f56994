"""One bench cell measured in this process: build the model, time it, measure its memory and power.

``run_cell`` is what every worker process runs (``dnnbench.isolation`` starts the process and carries the
result home) and what ``bench(in_process=True)`` runs in the caller's own process. It never imports
``sources``: the caller hands it a loader that builds the model. Failures become a cell with status "oom" or
"error" (``classify``), never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from dnnbench.core.measurements import BenchCell, CellSpec
from dnnbench.core.specs import LoadedModel
from dnnbench.host import environment
from dnnbench.latency import noise
from dnnbench import runtimes
from dnnbench.latency.memory import AllocationTrace, CudaPeak, RssPeak
from dnnbench.latency.timing import CpuTimer, CudaTimer, Progress, measure

Loader = Callable[[], LoadedModel]  # may have .prepare(): imports to do before the memory baseline


@dataclass(frozen=True)
class WorkerStart:
    """How the process serving an isolated cell started (``dnnbench.isolation`` names the ways).

    ``how`` goes into ``environment.extra["worker_start"]``; ``memory_note`` is appended to the memory method
    (what that start means for the baseline), empty when it changes nothing.
    """

    how: str
    memory_note: str = ""


# Allocation failures that arrive as a plain RuntimeError, recognised by their allocator's own message only (a
# user's model whose error merely says "failed to allocate" is an error, not an OOM that skips larger batches).
# torch 2.14's CPU allocator raises RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0.
# DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes. Error code 12 ..."), "not enough
# memory" on Windows; cuBLAS/cuDNN name their own status; ONNX Runtime's arena (its own exception type) says
# "Failed to allocate memory for requested buffer of size N".
_ALLOCATOR_OOM = re.compile(r"DefaultCPUAllocator: (can't allocate memory|not enough memory): you tried to allocate "
                            r"\d+ bytes|^CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED")
_ORT_OOM = re.compile(r"Failed to allocate memory for requested buffer of size \d+")


def classify(exc: BaseException) -> str:
    """"oom" for an allocation failure (CPU or CUDA), by exception type or the allocator's own message, else "error".

    A cause chained explicitly (``raise ... from``: an exporter or compiler wrapping the OOM) counts too.
    """
    oom_types = tuple(t for t in (MemoryError, getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if isinstance(t, type))
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, oom_types):
            return "oom"
        text = str(exc)
        if isinstance(exc, RuntimeError) and _ALLOCATOR_OOM.search(text):
            return "oom"
        if type(exc).__module__.startswith("onnxruntime") and _ORT_OOM.search(text):
            return "oom"
        exc, seen = exc.__cause__, seen + 1
    return "error"


def describe(exc: BaseException) -> str:
    """One line for a failure: a DnnbenchError's own, else the exception's type and first line (400 chars)."""
    one_line = getattr(exc, "one_line", None)
    if callable(one_line):
        return one_line()
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:400]


def run_cell(spec: CellSpec, get_model: Loader, progress: Progress | None = None,
             isolated: bool = True, worker_start: WorkerStart | None = None) -> BenchCell:
    """Build (or fetch) the model, time it at ``spec.batch_size`` and measure its memory, in this process.

    With ``isolated`` this process is fresh and serves this cell only: the RSS baseline is taken before
    the model is built, and ``worker_start`` (how the process started) is recorded with the cell.
    Failures become a cell with status "oom" or "error", never an exception.
    """
    from dnnbench.core.record import now_iso

    started = now_iso()
    if isolated:
        torch.set_num_threads(spec.threads)
    env = environment.capture(spec.device)
    if isolated and worker_start is not None:
        env.extra["worker_start"] = worker_start.how
    on_gpu = spec.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        return BenchCell(spec, "error", "CUDA is not available in the worker process", environment=env)
    device = torch.device(spec.device)
    throttle_before = environment.throttle_counts()
    lm = module = args = kwargs = run = None
    rss = RssPeak(isolated)
    try:
        if progress:
            progress("building", 0, 0.0, None)
        prepare = getattr(get_model, "prepare", None)
        if prepare is not None:
            prepare()  # library imports belong to the baseline, not to the model
        runtimes.import_libraries(spec)  # so do the runtime's (onnxruntime, Inductor)
        rss.start()
        lm = get_model()
        module = lm.module.eval()
        gen = torch.Generator(device="cpu").manual_seed(spec.seed)
        args, kwargs = lm.inputs.make(spec.batch_size, "cpu", gen)
        args, kwargs = to_device((args, kwargs), device)  # a list input (detectors) is a list of tensors
        cuda = None
        timer = CpuTimer()
        if on_gpu:
            # autotune per input shape: the warm-up of each batch size absorbs the search
            torch.backends.cudnn.benchmark = True
            env.extra["cudnn_benchmark"] = True  # the environment was read before this was set
        if progress:
            progress("preparing", 0, 0.0, None)
        # the runtime's callable for one batch (eager: the module itself), after export/compile/quantization
        run = runtimes.prepare(spec, module, args, kwargs, device, owns_module=isolated, lm=lm)
        if run.releases_module and isolated:
            lm = module = None  # the runtime holds its own weights (ONNX Runtime): the torch copy leaves memory
        run.after_prepare(rss)  # one-off preparation leaves the running peak (its own peak is kept)
        if on_gpu:
            cuda = CudaPeak(device)
            cuda.start()
            timer = CudaTimer(device)
        trace = AllocationTrace(_trace_unavailable(spec, on_gpu))
        with torch.inference_mode():
            timing = measure(run.call, spec.timing, timer, progress=progress, around_cold=trace)
            memory = trace.into(rss.finish(cuda, spec.runtime))
            if isolated and worker_start is not None and worker_start.memory_note:
                memory = replace(memory, method=memory.method + worker_start.memory_note)
            energy = _energy(spec, run.call, device if on_gpu else None, progress)
        timing, runtime_info = run.finish(timing)  # compile's first call as cold start; equivalence check
    except Exception as exc:  # one cell's failure is a result, not the end of the run
        status = classify(exc)
        if run is not None:
            run.close()  # temporary files (exported graphs, compile caches)
        del lm, module, args, kwargs, run
        if on_gpu:
            torch.cuda.empty_cache()
        return BenchCell(spec, status, describe(exc), environment=env, started_at=started)
    warnings = noise.check(timing, spec.timing, env, throttle_before, environment.throttle_counts(),
                           spec.threads)
    return BenchCell(spec, "ok", "", timing, memory, env, warnings=warnings + run.warnings, energy=energy,
                     runtime_info=runtime_info, started_at=started)


def to_device(tree, device):
    """Every tensor of ``tree`` (tuples, lists, dicts of tensors: any model input) on ``device``."""
    from torch.utils._pytree import tree_map

    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, tree)


def _trace_unavailable(spec: CellSpec, on_gpu: bool) -> str | None:
    """Why a cell has no ``cpu_activation_peak_bytes`` (None: it is traced)."""
    if on_gpu:
        return "not a CPU run: see cuda_peak_allocated_bytes"
    if spec.runtime != "eager":
        return (f"unavailable: traced for the eager runtime only ({spec.runtime}: its first call prepares the "
                f"model, or its memory is not torch's)")
    return None


def _energy(spec: CellSpec, call: Callable[[], object], gpu, progress: Progress | None) -> list:
    """Power and energy per item with the cell's sensors, after timing (the model is warm)."""
    from dnnbench.core.energy import Energy
    from dnnbench.power import close_sensors, measure_energy, open_sensors

    if spec.sensors == "none" and spec.estimate_tdp_w is None:
        return [Energy.not_measured("none", "not requested (--sensors none)")]

    def work():
        call()
        if gpu is not None:
            torch.cuda.synchronize(gpu)

    if progress:
        progress("power", 0, 0.0, None)
    sensors = open_sensors(spec.sensors)
    try:
        return measure_energy(work, spec.batch_size, sensors, estimate=spec.estimate_tdp_w is not None,
                              tdp_w=spec.estimate_tdp_w)
    finally:
        close_sensors(sensors)
