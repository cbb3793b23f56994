"""Run one bench cell: in this process (``run_cell``) or in a worker process of its own (``run_isolated``).

Isolation gives every (model, batch size) its own peak RSS and keeps one cell's crash or OOM from taking
the run down. ``run_isolated`` forks the worker from a fork server that has torch and the model libraries
imported already (``forkserver``); where that cannot be done it starts a fresh interpreter (``run_fresh``).
Either way the parent sends the spec and a picklable model loader (pickle: the loader is a function
reference); the worker builds the model itself — ``measure`` never imports ``sources`` — and answers with
JSON lines on a dedicated pipe: progress, then the result in the same format ``BenchCell.to_dict`` stores.
The worker's own stdout/stderr go to a log whose tail explains a crash. ``environment.extra["worker_start"]``
records how the worker started.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from dnnbench.core.measurements import BenchCell, CellSpec, CellWarning, Timing
from dnnbench.core.specs import LoadedModel
from dnnbench.host import environment
from dnnbench.latency import noise
from dnnbench import runtimes
from dnnbench.latency.memory import AllocationTrace, CudaPeak, RssPeak
from dnnbench.latency.timing import CpuTimer, CudaTimer, Progress, measure

Loader = Callable[[], LoadedModel]  # may have .prepare(): imports to do before the memory baseline
WORKER_FRESH = "fresh interpreter"
WORKER_FORKED = "forked from a fork server"
_WORKER_START = WORKER_FRESH  # how this process started, when it serves one isolated cell (set by the fork child)
_FORKED_MEMORY = ("; the worker was forked from a fork server: the server's resident file-backed pages were "
                  "mapped into it before the baseline, as a fresh interpreter has them")
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
    one_line = getattr(exc, "one_line", None)
    if callable(one_line):
        return one_line()
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:400]


def run_cell(spec: CellSpec, get_model: Loader, progress: Progress | None = None,
             isolated: bool = True) -> BenchCell:
    """Build (or fetch) the model, time it at ``spec.batch_size`` and measure its memory, in this process.

    With ``isolated`` this process is fresh and serves this cell only: the RSS baseline is taken before
    the model is built. Failures become a cell with status "oom" or "error", never an exception.
    """
    from dnnbench.core.record import now_iso

    started = now_iso()
    if isolated:
        torch.set_num_threads(spec.threads)
    env = environment.capture(spec.device)
    if isolated:
        env.extra["worker_start"] = _WORKER_START
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
        args = tuple(a.to(device) for a in args)
        kwargs = {k: v.to(device) for k, v in kwargs.items()}
        cuda = None
        timer = CpuTimer()
        if on_gpu:
            # autotune per input shape: the warm-up of each batch size absorbs the search
            torch.backends.cudnn.benchmark = True
        if progress:
            progress("preparing", 0, 0.0, None)
        # the runtime's callable for one batch (eager: the module itself), after export/compile/quantization
        run = runtimes.prepare(spec, module, args, kwargs, device, owns_module=isolated)
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
            if isolated and _WORKER_START == WORKER_FORKED:
                memory = replace(memory, method=memory.method + _FORKED_MEMORY)
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


# ---- the subprocess ------------------------------------------------------------------------------

def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    # torch.set_num_threads covers torch's pool; these keep OpenMP/MKL pools from oversubscribing.
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _tail(log, limit: int = 400) -> str:
    log.seek(0)
    lines = [ln.strip() for ln in log.read().decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


def default_timeout(spec: CellSpec) -> float:
    return 600 + 3 * spec.timing.max_time_s


def run_isolated(spec: CellSpec, loader: Loader, progress: Progress | None = None,
                 timeout_s: float | None = None) -> BenchCell:
    """Run one cell in worker processes of its own and return what it measured.

    The worker is forked from a fork server (torch imported once) where that is safe, else it is a fresh
    ``python -m dnnbench.isolation.worker``; ``cell.environment.extra["worker_start"]`` says which (and
    ``"worker_start_note"`` why not forked). A worker killed by SIGKILL (the kernel's OOM killer) is an
    "oom" cell; any other death, or no answer within ``timeout_s``, an "error" cell with the last line it
    printed. With ``spec.timing.processes`` > 1 and forked workers, the samples come from several
    processes in turn (``run_processes``); a fresh interpreter per process would cost seconds each, so
    there the cell runs in one.
    """
    from dnnbench.isolation import forkserver

    if spec.timing.processes > 1 and not forkserver.forkable(spec, loader):
        spec = replace(spec, timing=replace(spec.timing, processes=1))
    if spec.timing.processes <= 1:
        return forkserver.run(spec, loader, progress, timeout_s)
    return run_processes(spec, loader, progress, timeout_s, forkserver.run)


MAX_PROCESS_FACTOR = 4  # more processes than planned, while the CI is wide and the cap has time: up to 4x
_STATISTICAL = {"ci", "cv", "iqr", "drift", "samples", "warmup"}  # warnings about the samples: redone on the pool


def run_processes(spec: CellSpec, loader: Loader, progress: Progress | None, timeout_s: float | None,
                  run_one: Callable[..., BenchCell]) -> BenchCell:
    """One cell's samples from ``spec.timing.processes`` worker processes in turn, pooled.

    Every process builds the model and has a cold start of its own; each samples to its share of the
    cap (``measure.timing``). A process whose cold start shows calls too slow for a share takes the
    whole cap, and is the cell's only one. After the planned processes, more run while the pooled CI
    (which spans the spread between the processes' medians) is above target and the cap has time left
    for one more (at most ``MAX_PROCESS_FACTOR`` times the planned count).
    Memory and power are the first process's (power is measured there only); a later process that fails
    ends the cell with what was measured and a warning saying so.
    """
    cap = spec.timing.max_time_s
    # the later processes: their share of the cap whatever their own cold start says (the first one
    # decided), and no power (measured once, after the first process's timing)
    later = replace(spec, sensors="none", estimate_tdp_w=None,
                    timing=replace(spec.timing, max_time_s=cap / spec.timing.processes, processes=1))
    parts: list[BenchCell] = []
    start = time.monotonic()
    stop = "time_cap"
    failed: BenchCell | None = None
    while True:
        k, offset_n, offset_s = len(parts), sum(len(c.timing.samples_s) for c in parts), time.monotonic() - start

        def relay(phase: str, n: int, elapsed: float, rel: float | None, k=k, offset_n=offset_n, offset_s=offset_s):
            if progress:
                progress(f"{phase} (process {k + 1})", offset_n + n, offset_s + elapsed, rel)

        cell = run_one(spec if k == 0 else later, loader, relay, timeout_s)
        if cell.status != "ok" or cell.timing is None:
            if not parts:
                return cell
            failed = cell
            break
        parts.append(cell)
        t = cell.timing
        if k == 0 and (t.time_cap_s is None or t.time_cap_s >= cap):
            return cell  # calls too slow to share the cap: this process took all of it
        elapsed = time.monotonic() - start
        if len(parts) >= spec.timing.processes:
            rel = Timing.pooled([c.timing for c in parts], "ci").stats.ci_rel_halfwidth
            if rel is not None and rel <= spec.timing.target_ci:
                stop = "ci"
                break
            if (t.stop_reason == "max_samples" or elapsed * (len(parts) + 1) / len(parts) > cap
                    or len(parts) >= MAX_PROCESS_FACTOR * spec.timing.processes):
                stop = t.stop_reason if t.stop_reason == "max_samples" else "time_cap"
                break
    pooled = Timing.pooled([c.timing for c in parts], stop)
    first = parts[0]
    warnings = noise.check(pooled, spec.timing, first.environment, None, None, spec.threads)
    seen = {w.kind for w in warnings}
    for c in parts:
        for w in c.warnings:
            if w.kind not in _STATISTICAL and w.kind not in seen:
                warnings.append(w)
                seen.add(w.kind)
    if failed is not None:
        warnings.append(CellWarning(
            "process", f"process {len(parts) + 1} of the cell ended with status {failed.status}: {failed.message}; "
                       f"the statistics pool the {len(parts)} processes before it",
            "run the cell again; if it recurs, run with --processes 1"))
    return replace(first, spec=spec, timing=pooled, warnings=warnings, finished_at=parts[-1].finished_at)


def prestart(spec: CellSpec, loader: Loader) -> None:
    """Let the fork server start and prepare ``loader``'s model while the caller does other work (optional)."""
    from dnnbench.isolation import forkserver

    forkserver.prestart(spec, loader)


def run_fresh(spec: CellSpec, loader: Loader, progress: Progress | None = None,
              timeout_s: float | None = None) -> BenchCell:
    """Run one cell in a fresh ``python -m dnnbench.isolation.worker`` (imports torch again: seconds)."""
    if timeout_s is None:
        timeout_s = default_timeout(spec)
    payload = pickle.dumps((spec, loader))
    r, w = os.pipe()
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen([sys.executable, "-m", "dnnbench.isolation.worker", str(w)],
                                    stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(w,),
                                    env=_child_env(spec.threads))
        finally:
            os.close(w)
        result: dict[str, Any] | None = None
        timed_out = False
        with os.fdopen(r, "rb") as pipe:
            try:
                proc.stdin.write(payload)
                proc.stdin.close()
            except BrokenPipeError:
                pass
            sel = selectors.DefaultSelector()
            sel.register(pipe, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout_s
            buf = b""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if not sel.select(timeout=min(left, 1.0)):
                    continue
                chunk = os.read(pipe.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if msg["type"] == "progress" and progress:
                        progress(msg["phase"], msg["n"], msg["elapsed_s"], msg["ci_rel"])
                    elif msg["type"] == "result":
                        result = msg["cell"]
            sel.close()
        if timed_out:
            proc.kill()
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        return cell_from_exit(spec, result, rc, timed_out, timeout_s, log)


def cell_from_exit(spec: CellSpec, result: dict[str, Any] | None, rc: int | None, timed_out: bool,
                   timeout_s: float, log) -> BenchCell:
    """The cell a worker sent, or the one its death stands for (``rc`` negative: killed by that signal)."""
    if result is not None:
        return BenchCell.from_dict(result)
    if timed_out:
        return BenchCell(spec, "error", f"the worker gave no result within {timeout_s:g} s and was killed")
    tail = _tail(log)
    if rc == -signal.SIGKILL:
        return BenchCell(spec, "oom", "the worker was killed by SIGKILL, most likely by the kernel's "
                                      "out-of-memory killer" + (f"; last output: {tail}" if tail else ""))
    return BenchCell(spec, "error", f"the worker exited with code {rc}" + (f": {tail}" if tail else ""))


def serve_cell(spec: CellSpec, loader: Loader, out) -> int:
    """Worker side: run the cell, write progress and the result as JSON lines to ``out`` (a text file)."""

    def send(msg: dict) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    def progress(phase: str, n: int, elapsed: float, rel: float | None) -> None:
        send({"type": "progress", "phase": phase, "n": n, "elapsed_s": elapsed, "ci_rel": rel})

    try:
        cell = run_cell(spec, loader, progress, isolated=True)
    except Exception as exc:  # run_cell turns failures into cells; this is a bug in the worker itself
        cell = BenchCell(spec, "error", f"worker failure: {describe(exc)}")
    send({"type": "result", "cell": cell.to_dict()})
    return 0


def main(argv: list[str]) -> int:
    """Fresh worker: read (spec, loader) from stdin, run the cell, write JSON lines to the fd in argv[1]."""
    out = os.fdopen(int(argv[1]), "w", buffering=1)
    try:
        spec, loader = pickle.load(sys.stdin.buffer)
    except Exception as exc:
        print(f"dnnbench worker: cannot read its task: {describe(exc)}", file=sys.stderr)
        return 3
    code = serve_cell(spec, loader, out)
    out.close()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
