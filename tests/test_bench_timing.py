"""Warm-up and stopping rules of the timer, driven by a fake clock: no real time passes."""

import itertools
import math
import random

import pytest
import torch

from dnnbench.core.measurements import TimingSpec
from dnnbench.latency import noise
from dnnbench.latency.timing import CpuTimer, measure, warmup_cut


class FakeClock:
    """A clock that moves only when a fake call says how long it took."""

    def __init__(self, durations):
        self.t = 1000.0
        self.durations = iter(durations)
        self.calls = 0

    def now(self) -> float:
        return self.t

    def call(self) -> None:
        self.t += next(self.durations)
        self.calls += 1


def run(durations, **spec):
    clock = FakeClock(durations)
    spec = TimingSpec(**spec)
    timing = measure(clock.call, spec, CpuTimer(clock.now), wall=clock.now)
    return timing, clock, spec


def test_cold_start_is_kept_apart_and_constant_calls_stop_at_the_minimum():
    timing, clock, spec = run(itertools.chain([0.5], itertools.repeat(0.001)), min_samples=16,
                              min_sampling_fraction=0.0)
    assert timing.cold_start_s == 0.5
    assert timing.warmup_steady and timing.warmup_s == []  # warm after the cold call: no call wasted
    assert len(timing.samples_s) == 16 and timing.stop_reason == "ci"
    assert timing.stats.median_s == pytest.approx(0.001)
    assert clock.calls == 1 + len(timing.warmup_s) + len(timing.samples_s)  # every call is accounted for


def test_around_cold_wraps_the_cold_call_and_nothing_else():
    clock = FakeClock(itertools.chain([0.5], itertools.repeat(0.001)))
    seen = []

    class Tracer:
        def __enter__(self):
            seen.append(("enter", clock.calls))

        def __exit__(self, *exc):
            seen.append(("exit", clock.calls))

    timing = measure(clock.call, TimingSpec(min_samples=16, min_sampling_fraction=0.0), CpuTimer(clock.now),
                     wall=clock.now, around_cold=Tracer())
    assert seen == [("enter", 0), ("exit", 1)] and timing.cold_start_s == 0.5
    assert len(timing.samples_s) == 16


def test_warmup_is_cut_after_the_fact_where_the_samples_reach_the_steady_state():
    slow = [0.010 * 0.8 ** i + 0.001 for i in range(40)]  # a slowly settling cache/JIT/clock ramp
    timing, clock, spec = run(itertools.chain([0.5], slow, itertools.repeat(0.001)))
    assert timing.warmup_steady
    assert timing.warmup_s == pytest.approx(slow[:len(timing.warmup_s)])  # the leading calls, in order
    # the ramp is within 5 % of 1 ms from i = 24 on (0.010 * 0.8**24 = 0.047 ms); a window of 5 calls
    # decides by its median, its third call: the first window within 5 % starts at 22
    assert len(timing.warmup_s) == 22
    assert max(timing.samples_s[2:]) < 1.05 * min(timing.samples_s)  # the window's first two may be above
    assert timing.stats.median_s == pytest.approx(0.001, rel=1e-6)
    assert clock.calls == 1 + len(timing.warmup_s) + len(timing.samples_s)


def test_warmup_cut_by_hand():
    spec = TimingSpec()
    assert warmup_cut([1.0, 1.0, 1.0], spec) == (0, True)
    assert warmup_cut([4.0, 3.0, 3.0], spec) == (1, True)  # 4 > 1.05 x median(3, 3)
    assert warmup_cut([3.1, 3.0, 3.0], spec) == (0, True)  # within 5 %: noise, not warm-up
    # 40 samples: windows of 4 calls; one slow call among fast ones does not make a warm-up
    assert warmup_cut([1.0, 9.0, 1.0, 1.0] + [1.0] * 36, spec) == (0, True)
    # ... but four slow calls in front do, and the cut is where a window's median comes down
    assert warmup_cut([9.0] * 4 + [1.0] * 36, spec) == (3, True)  # window [9, 1, 1, 1]: median 1
    # never more than half of the samples
    long_cap = TimingSpec(max_time_s=100.0)
    assert warmup_cut([2.0] * 10 + [1.0] * 10, long_cap) == (10, True)
    assert warmup_cut([2.0] * 11 + [1.0] * 9, long_cap) == (0, False)
    # nor more than a quarter of the cap's time (here 2.5 s), beyond 2 windows of calls
    assert warmup_cut([2.0] * 10 + [1.0] * 10, spec) == (0, False)


def test_slow_drift_is_not_taken_for_warmup():
    # 1000 samples of 10 ms drifting slowly from 11 to 10 ms: a quarter of the 10 s cap holds 250 calls,
    # the cut stops there and the samples are kept, with the drift left to the CI and its warning
    drift = [0.011 - 0.001 * i / 1000 for i in range(1000)]
    d, steady = warmup_cut(drift, TimingSpec())
    assert (d, steady) == (0, False)
    # the same slope over fewer calls, within the quarter's budget, is a warm-up ramp and is cut
    d, steady = warmup_cut(drift[::10], TimingSpec())
    assert steady and 0 < d <= 50


def test_no_steady_state_keeps_the_samples_and_says_so():
    drift = (0.001 * 1.01 ** i for i in itertools.count())  # keeps slowing down: the later half is slower
    timing, _, spec = run(itertools.chain([0.0], drift), max_time_s=1.0)
    assert timing.warmup_steady and timing.warmup_s == []  # slower later is not warm-up
    ramp = (0.003 - 0.000002 * i for i in itertools.count())  # keeps getting faster for the whole cell
    timing, _, spec = run(itertools.chain([0.0], ramp), max_time_s=1.0, min_sampling_fraction=1.0)
    assert not timing.warmup_steady and timing.warmup_s == []
    assert any(w.kind == "warmup" for w in noise.check(timing, spec, None, None, None, 1))


def test_noisy_calls_sample_until_the_ci_of_the_median_is_within_target():
    rng = random.Random(11)
    noisy = (0.01 * rng.lognormvariate(0, 0.3) for _ in itertools.count())
    timing, _, spec = run(itertools.chain([0.02] * 11, noisy), target_ci=0.02, max_time_s=1000.0)
    assert timing.stop_reason == "ci"
    assert timing.stats.ci_rel_halfwidth <= 0.02
    assert len(timing.samples_s) > spec.min_samples  # 30 % spread needs far more than the minimum
    assert not any(w.kind == "ci" for w in noise.check(timing, spec, None, None, None, 1))


def test_time_cap_stops_sampling_when_the_target_cannot_be_reached():
    bimodal = itertools.cycle([0.001, 0.003])  # median CI spans both modes: never within 2 %
    timing, clock, spec = run(itertools.chain([0.01], bimodal), max_time_s=2.0)
    assert timing.stop_reason == "time_cap"
    assert spec.max_time_s <= timing.wall_s < spec.max_time_s + 0.003  # stops right after the cap
    warnings = noise.check(timing, spec, None, None, None, 1)
    codes = {w.kind for w in warnings}
    assert {"ci", "cv", "iqr"} <= codes
    assert all(w.remedy for w in warnings)


def test_floor_of_samples_even_when_one_call_exceeds_the_cap():
    timing, _, spec = run(itertools.repeat(2.0), max_time_s=1.0)
    assert timing.stop_reason == "time_cap"
    assert len(timing.samples_s) == spec.floor_samples
    st = timing.stats
    assert st.ci_low_s is None and "too few samples" in st.unavailable["ci_low_s"]
    codes = {w.kind for w in noise.check(timing, spec, None, None, None, 1)}
    assert {"samples", "ci"} <= codes


def test_never_stops_on_the_ci_before_min_samples():
    timing, _, _ = run(itertools.repeat(0.001), min_samples=40, min_sampling_fraction=0.0)
    assert len(timing.samples_s) == 40


def test_sampling_spans_its_minimum_share_of_the_cap_before_a_ci_stop():
    # a regime shorter than this share would otherwise pass for the whole machine's speed
    timing, _, spec = run(itertools.repeat(0.01), max_time_s=4.0, min_samples=10)
    assert timing.stop_reason == "ci"
    assert sum(timing.samples_s) == pytest.approx(spec.max_time_s * spec.min_sampling_fraction, abs=0.011)


def test_no_stop_on_the_ci_before_the_samples_can_be_checked_for_drift():
    # 10 identical samples have a zero-width order-statistic CI, but drift needs 15 samples to be seen
    timing, _, _ = run(itertools.repeat(0.001), min_samples=10, min_sampling_fraction=0.0)
    assert len(timing.samples_s) == 15 and timing.stop_reason == "ci"
    assert timing.stats.ci_blocks == 5


def test_a_machine_that_slows_down_mid_run_keeps_sampling_and_says_it_drifted():
    # each call is independent 1 % noise around a level that swings +/-10 % with a 1.3 s period, like a
    # shared VM's speed: the order-statistic CI alone calls the median known to better than 2 %
    rng = random.Random(5)

    def calls():
        t = 0.0
        while True:
            d = 0.010 * (1 + 0.10 * math.sin(2 * math.pi * t / 1.3)) * (1 + 0.01 * rng.uniform(-1, 1))
            t += d
            yield d

    timing, _, spec = run(itertools.chain([0.02], [0.010] * 10, calls()), target_ci=0.02, max_time_s=10.0)
    st = timing.stats
    order_rel = max(st.median_s - st.ci_order_low_s, st.ci_order_high_s - st.median_s) / st.median_s
    assert order_rel < 0.02 < st.ci_rel_halfwidth  # drift is what widened the CI
    assert timing.stop_reason == "time_cap"
    assert st.ci_blocks == 10 and st.drift_rel > 2
    drift = [w for w in noise.check(timing, spec, None, None, None, 1) if w.kind == "drift"]
    assert len(drift) == 1 and "10 consecutive blocks" in drift[0].message and drift[0].remedy


def test_independent_noise_gets_no_drift_warning():
    rng = random.Random(9)
    noisy = (0.01 * rng.lognormvariate(0, 0.05) for _ in itertools.count())
    timing, _, spec = run(itertools.chain([0.02] * 11, noisy), target_ci=0.005, max_time_s=10.0)
    assert timing.stop_reason == "ci" and timing.stats.ci_blocks == 10
    assert 0.5 < timing.stats.drift_rel < 2
    assert not any(w.kind == "drift" for w in noise.check(timing, spec, None, None, None, 1))


def test_max_samples_bounds_a_run():
    bimodal = itertools.cycle([0.001, 0.003])
    timing, _, _ = run(itertools.chain([0.001] * 11, bimodal), max_time_s=1e9, max_samples=500)
    assert timing.stop_reason == "max_samples" and len(timing.samples_s) == 500


def test_load_and_thread_warnings_carry_their_remedy():
    from dataclasses import replace

    from dnnbench.host.environment import capture

    timing, _, spec = run(itertools.repeat(0.001))
    env = replace(capture("cpu"), load_avg=[99.0, 1.0, 1.0], logical_cores=2, physical_cores=2,
                  cpu_governor="powersave")
    ws = {w.kind: w for w in noise.check(timing, spec, env, {"cpu0.core": 3}, {"cpu0.core": 5}, threads=4)}
    assert set(ws) == {"load", "governor", "threads", "throttle"}
    assert "99.00" in ws["load"].message and "2 CPU thermal throttling events" in ws["throttle"].message
    assert "--threads 2" in ws["threads"].remedy


def test_real_clock_on_a_real_module():
    """The default timer on an actual forward: sane, positive, and the raw samples are kept."""
    m = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with torch.inference_mode():
        timing = measure(lambda: m(x), TimingSpec(max_time_s=0.3, min_samples=20))
    assert timing.cold_start_s > 0 and len(timing.samples_s) >= 20
    assert all(s > 0 for s in timing.samples_s)
    assert timing.stats.min_s <= timing.stats.median_s <= timing.stats.max_s
    assert timing.wall_s < 0.3 + 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_timer_synchronises_and_times_the_gpu():
    from dnnbench.latency.timing import CudaTimer

    dev = torch.device("cuda")
    a = torch.randn(2048, 2048, device=dev)
    timer = CudaTimer(dev)
    t = timer(lambda: a @ a)
    assert t > 0
    with torch.inference_mode():
        timing = measure(lambda: a @ a, TimingSpec(max_time_s=0.5), timer)
    assert timing.timer == "cuda_events" and timing.stats.median_s > 0


def test_slow_calls_spend_no_call_on_warmup_and_drop_slow_leading_samples():
    # cold 5 s, then a call still warming up (4 s), then steady 3 s calls: no call is spent on warm-up
    # in advance; the 4 s sample turns out to be warm-up, and a new sample restores the floor of 3
    timing, clock, spec = run(itertools.chain([5.0, 4.0], itertools.repeat(3.0)), max_time_s=10.0)
    assert timing.cold_start_s == 5.0
    assert timing.warmup_s == [4.0] and timing.warmup_steady
    assert timing.samples_s == [3.0, 3.0, 3.0]
    assert clock.calls == 1 + 1 + 3
    assert not any(w.kind == "warmup" for w in noise.check(timing, spec, None, None, None, 1))
    # steady from the start: every call after the cold one is a sample
    timing, clock, _ = run(itertools.chain([5.0], itertools.repeat(3.0)), max_time_s=10.0)
    assert timing.warmup_s == [] and timing.warmup_steady and clock.calls == 4


def test_slow_calls_that_keep_getting_faster_say_the_warmup_never_settled():
    ramp = (10.0 * 0.8 ** i for i in itertools.count())
    timing, clock, spec = run(itertools.chain([12.0], ramp), max_time_s=10.0)
    # past the cap, up to 2 windows of calls more are spent looking for a steady state, then it says so
    assert not timing.warmup_steady and clock.calls == 1 + spec.floor_samples + 2 * spec.warmup_window
    assert any(w.kind == "warmup" for w in noise.check(timing, spec, None, None, None, 1))
