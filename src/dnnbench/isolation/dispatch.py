"""Where a cell's worker process comes from: forked from the fork server, else a fresh interpreter.

Isolation gives every (model, batch size) its own peak RSS and keeps one cell's crash or OOM from taking the
run down. The parent sends the spec and a picklable model loader; the worker builds the model itself
(measuring code never imports ``sources``) and answers in ``protocol``'s messages.
``environment.extra["worker_start"]`` records how the worker started, ``"worker_start_note"`` why it was not
forked. This module is the only one that knows both ways (``forkserver`` and ``fresh`` never import each other).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from dnnbench.core.measurements import BenchCell, CellSpec, CellWarning, Timing
from dnnbench.isolation import forkserver, protocol
from dnnbench.isolation.fresh import run_fresh
from dnnbench.latency import noise
from dnnbench.latency.cell import Loader
from dnnbench.latency.timing import Progress


def run_isolated(spec: CellSpec, loader: Loader, progress: Progress | None = None,
                 timeout_s: float | None = None) -> BenchCell:
    """Run one cell in worker processes of its own and return what it measured.

    The worker is forked from a fork server (torch imported once) where that is safe, else it is a fresh
    ``python -m dnnbench.isolation.fresh``; ``cell.environment.extra["worker_start"]`` says which (and
    ``"worker_start_note"`` why not forked). A worker killed by SIGKILL (the kernel's OOM killer) is an
    "oom" cell; any other death, or no answer within ``timeout_s``, an "error" cell with the last line it
    printed. With ``spec.timing.processes`` > 1 and forked workers, the samples come from several
    processes in turn (``run_processes``); a fresh interpreter per process would cost seconds each, so
    there the cell runs in one.
    """
    if spec.timing.processes > 1 and not forkserver.forkable(spec, loader):
        spec = replace(spec, timing=replace(spec.timing, processes=1))
    if spec.timing.processes <= 1:
        return run_one(spec, loader, progress, timeout_s)
    return run_processes(spec, loader, progress, timeout_s, run_one)


def run_one(spec: CellSpec, loader: Loader, progress: Progress | None = None,
            timeout_s: float | None = None) -> BenchCell:
    """One cell in one worker process: forked from the fork server, or a fresh interpreter where it cannot be."""
    if timeout_s is None:
        timeout_s = protocol.default_timeout(spec)
    why = forkserver.unusable(spec, loader)
    if why is None:
        try:
            return forkserver.run(spec, loader, progress, timeout_s)
        except forkserver.NoFork as exc:  # the server declined (a model whose libraries start threads)
            why = str(exc)
    cell = run_fresh(spec, loader, progress, timeout_s)
    if cell.environment is not None:
        cell.environment.extra["worker_start_note"] = why
    return cell


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
    forkserver.prestart(spec, loader)
