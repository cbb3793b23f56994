"""Time one callable: cold start apart, then sample until the median's CI is tight; warm-up judged after the fact.

A timer times one call (``CpuTimer``: ``time.perf_counter`` around it; ``CudaTimer``: CUDA events with a
synchronize at each boundary). ``wall`` is the clock the time cap is read from. Both are injectable, so the
stopping rules are tested with a fake clock.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from collections.abc import Callable

from dnnbench.core.measurements import Timing, TimingSpec
from dnnbench.core.stats import BLOCKS, MIN_BLOCK_SAMPLES, summarize, t_quantile

Progress = Callable[[str, int, float, "float | None"], None]  # phase, samples so far, elapsed s, CI rel
PROGRESS_EVERY_S = 0.2
SHARE_COLD_CALLS = 10  # a process samples to its share of a multi-process cell's cap if that many cold calls fit


class CpuTimer:
    """Wall time of one call by a monotonic high-resolution clock."""

    name = "perf_counter"

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock

    def __call__(self, fn: Callable[[], object]) -> float:
        clock = self.clock
        t0 = clock()
        fn()
        return clock() - t0


class CudaTimer:
    """GPU time of one call between two CUDA events; the device is synchronized before and after."""

    name = "cuda_events"

    def __init__(self, device):
        import torch

        self.torch = torch
        self.device = device
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)
        # the stream the model's kernels go to: the current one of *its* device (record() alone would use the
        # current device's, wrong for cuda:1 while device 0 is current)
        self.stream = torch.cuda.current_stream(device)

    def __call__(self, fn: Callable[[], object]) -> float:
        self.torch.cuda.synchronize(self.device)  # nothing earlier may leak into this sample
        self.start.record(self.stream)
        fn()
        self.end.record(self.stream)
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3


def ci_rel_halfwidth(samples: list[float], confidence: float) -> float | None:
    """Relative half-width of the CI of the median that the cell reports (``core.stats.summarize``: the
    hull of the order-statistic and batch-means intervals; ``samples`` in the order taken)."""
    return summarize(samples, confidence).ci_rel_halfwidth


def warmup_cut(samples: list[float], spec: TimingSpec, cap_s: float | None = None) -> tuple[int, bool]:
    """Warm-up judged after the fact: how many leading samples were still warming up, and whether a steady
    state was found at all.

    The reference is the median of the later half of the samples; the cut is the first position ``d``
    where the median of a window of calls starting at ``d`` is within ``warmup_tolerance`` of it — a
    tenth of the samples per window, between 1 and ``warmup_window`` calls, so that one noisy call neither
    ends nor prolongs the warm-up. The cut never takes more than half of the samples, nor more of them
    than fit in ``warmup_max_fraction`` of the time cap (but always up to 2 windows of calls): slow drift
    of the machine is not warm-up. Without such a position nothing is cut and the second value is False.
    """
    n = len(samples)
    if n < 3:
        return 0, True  # nothing to compare with
    limit = (1 + spec.warmup_tolerance) * statistics.median(samples[n // 2:])
    w = max(1, min(spec.warmup_window, n // 10))
    budget = (spec.max_time_s if cap_s is None else cap_s) * spec.warmup_max_fraction
    spent = 0.0
    for d in range(n // 2 + 1):
        if statistics.median(samples[d:d + w]) <= limit:
            return d, True
        spent += samples[d]
        if spent > budget and d + 1 >= 2 * spec.warmup_window:
            break
    return 0, False


def prime(spec: TimingSpec) -> None:
    """Compute what ``measure`` needs before its clock starts (the batch-means CI's t quantiles, cached).

    ``measure`` calls it; a fork server calls it before forking a cell, which then inherits the cache.
    """
    for k in range(5, BLOCKS + 1):
        t_quantile(0.5 + spec.confidence / 2, k - 1)


def measure(call: Callable[[], object], spec: TimingSpec, timer=None,
            wall: Callable[[], float] = time.perf_counter, progress: Progress | None = None,
            around_cold: contextlib.AbstractContextManager | None = None) -> Timing:
    """Cold start, then samples until the stopping rule of ``spec`` holds; warm-up is judged after the fact.

    No call is spent on warming up in advance: every call after the cold one is timed, and the leading
    ones that ``warmup_cut`` finds still slower than the steady state become warm-up calls — at every
    check of the stopping rule, so that neither the CI nor the floor counts them. A machine that is warm
    after the cold call (the usual case) loses nothing to warm-up. ``around_cold`` is entered around the
    cold call only (a tracer, such as ``memory.AllocationTrace``, that must not touch the samples).
    """
    timer = timer or CpuTimer()
    prime(spec)
    gc.collect()  # before the clock starts: a full collection with torch loaded can take a while
    start = wall()
    last_report = start

    with around_cold or contextlib.nullcontext():  # e.g. memory.AllocationTrace: one call's allocator peak
        cold = timer(call)
    cap = spec.max_time_s
    if spec.processes > 1 and cold * SHARE_COLD_CALLS <= spec.max_time_s / spec.processes:
        cap = spec.max_time_s / spec.processes  # one of several processes: its share; else the whole cap

    samples: list[float] = []
    sampling_start = wall()
    min_sampling_s = cap * spec.min_sampling_fraction
    need = max(spec.min_samples, MIN_BLOCK_SAMPLES)  # steady samples before the CI may stop sampling
    most_warmup = 2 * spec.warmup_window  # past the cap, calls spent looking for a steady state
    next_check = need
    rel = None
    stop = ""
    while True:
        samples.append(timer(call))
        n = len(samples)
        now = wall()
        if n >= next_check:
            d, _ = warmup_cut(samples, spec, cap)
            rel = ci_rel_halfwidth(samples[d:], spec.confidence)
            tight = rel is not None and rel <= spec.target_ci and n - d >= need
            left = min_sampling_s - (now - sampling_start)
            if tight and left <= 0:
                stop = "ci"
                break
            next_check = n + max(1, n // 8)  # sorting is O(n log n): check on a geometric schedule
            if tight:  # check again when the minimum sampling time will have passed
                next_check = n + max(1, math.ceil(left / ((now - sampling_start) / n)))
        if now - start >= cap and n >= spec.floor_samples:
            d, steady = warmup_cut(samples, spec, cap)
            if (steady and n - d >= spec.floor_samples) or n >= spec.floor_samples + most_warmup:
                stop = "time_cap"
                break
        if n >= spec.max_samples:
            stop = "max_samples"
            break
        if progress and now - last_report >= PROGRESS_EVERY_S:
            progress("sampling", n, now - start, rel)
            last_report = now
    d, steady = warmup_cut(samples, spec, cap)
    warm, samples = samples[:d], samples[d:]
    end = wall()
    if progress:
        progress("done", len(samples), end - start, ci_rel_halfwidth(samples, spec.confidence))
    return Timing(cold, warm, samples, stop, steady, end - start, spec.confidence,
                  getattr(timer, "name", type(timer).__name__), cap)
