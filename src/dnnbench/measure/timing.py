"""Time one callable: cold start apart, warm-up until steady, then sample until the median's CI is tight.

A timer times one call (``CpuTimer``: ``time.perf_counter`` around it; ``CudaTimer``: CUDA events with a
synchronize at each boundary). ``wall`` is the clock the time cap is read from. Both are injectable, so the
stopping rules are tested with a fake clock.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable

from dnnbench.core.measurements import Timing, TimingSpec
from dnnbench.core.stats import BLOCKS, MIN_BLOCK_SAMPLES, summarize, t_quantile

Progress = Callable[[str, int, float, "float | None"], None]  # phase, samples so far, elapsed s, CI rel
PROGRESS_EVERY_S = 0.2


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

    def __call__(self, fn: Callable[[], object]) -> float:
        self.torch.cuda.synchronize(self.device)  # nothing earlier may leak into this sample
        self.start.record()
        fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3


def is_steady(previous: list[float], last: list[float], tolerance: float) -> bool:
    """Two consecutive windows whose medians agree within ``tolerance`` (relative)."""
    a, b = statistics.median(previous), statistics.median(last)
    return a > 0 and abs(b - a) / a <= tolerance


def ci_rel_halfwidth(samples: list[float], confidence: float) -> float | None:
    """Relative half-width of the CI of the median that the cell reports (``core.stats.summarize``: the
    hull of the order-statistic and batch-means intervals; ``samples`` in the order taken)."""
    return summarize(samples, confidence).ci_rel_halfwidth


def _settle(samples: list[float], warm: list[float], spec: TimingSpec, one: Callable[[], float]) -> bool:
    """Warm-up after the fact, for slow calls: while the first sample is slower than the median of those
    after it by more than the warm-up tolerance, it was still warming up — it moves to ``warm`` and a
    new sample keeps the floor. True when the samples left pass that test (within 2 x the window moves)."""
    limit = 2 * spec.warmup_window
    while True:
        while (len(samples) >= 3 and len(warm) < limit
               and samples[0] > (1 + spec.warmup_tolerance) * statistics.median(samples[1:])):
            warm.append(samples.pop(0))
        if len(samples) >= spec.floor_samples or len(warm) >= limit:
            break
        samples.append(one())
    return len(samples) >= 3 and samples[0] <= (1 + spec.warmup_tolerance) * statistics.median(samples[1:])


def measure(call: Callable[[], object], spec: TimingSpec, timer=None,
            wall: Callable[[], float] = time.perf_counter, progress: Progress | None = None) -> Timing:
    """Cold start, warm-up until steady, then samples until the stopping rule of ``spec`` holds."""
    timer = timer or CpuTimer()
    for k in range(5, BLOCKS + 1):  # the batch-means CI's t quantiles, computed before the clock starts
        t_quantile(0.5 + spec.confidence / 2, k - 1)
    gc.collect()  # before the clock starts: a full collection with torch loaded can take a while
    start = wall()
    last_report = start

    cold = timer(call)

    warm: list[float] = []
    steady = False
    warm_start = wall()  # the warm-up's share of the cap starts after the cold call, however slow that was
    budget = spec.max_time_s * spec.warmup_max_fraction
    warm_deadline = warm_start + budget
    w = spec.warmup_window
    # calls so slow that two windows of two do not fit in the warm-up's share: warm-up is judged after
    # the fact instead (leading samples still slower than the rest become warm-up calls)
    slow = cold >= budget
    while not slow:
        warm.append(timer(call))
        now = wall()
        if len(warm) == 1 and warm[0] > 0:
            if 4 * warm[0] > budget:
                slow = True
                break
            # slow calls get shorter windows (down to 2), so that two of them fit in the warm-up's share
            w = max(2, min(spec.warmup_window, int(budget / (2 * warm[0]))))
        if (len(warm) >= 2 * w and now - warm_start >= spec.warmup_min_s
                and is_steady(warm[-2 * w:-w], warm[-w:], spec.warmup_tolerance)):
            steady = True
            break
        if now >= warm_deadline:
            break
        if progress and now - last_report >= PROGRESS_EVERY_S:
            progress("warm-up", 0, now - start, None)
            last_report = now

    samples: list[float] = []
    sampling_start = wall()
    min_sampling_s = spec.max_time_s * spec.min_sampling_fraction
    next_check = max(spec.min_samples, 1)
    rel = None
    stop = ""
    while True:
        samples.append(timer(call))
        n = len(samples)
        now = wall()
        if n >= next_check:
            rel = ci_rel_halfwidth(samples, spec.confidence)
            # never on the CI before the samples could be checked for drift (MIN_BLOCK_SAMPLES)
            tight = rel is not None and rel <= spec.target_ci and n >= MIN_BLOCK_SAMPLES
            left = min_sampling_s - (now - sampling_start)
            if tight and left <= 0:
                stop = "ci"
                break
            next_check = n + max(1, n // 8)  # sorting is O(n log n): check on a geometric schedule
            if tight:  # check again when the minimum sampling time will have passed
                next_check = n + max(1, math.ceil(left / ((now - sampling_start) / n)))
        if now - start >= spec.max_time_s and n >= spec.floor_samples:
            stop = "time_cap"
            break
        if n >= spec.max_samples:
            stop = "max_samples"
            break
        if progress and now - last_report >= PROGRESS_EVERY_S:
            progress("sampling", n, now - start, rel)
            last_report = now
    if slow:
        steady = _settle(samples, warm, spec, lambda: timer(call))
    end = wall()
    if progress:
        progress("done", len(samples), end - start, ci_rel_halfwidth(samples, spec.confidence))
    return Timing(cold, warm, samples, stop, steady, end - start, spec.confidence,
                  getattr(timer, "name", type(timer).__name__))
