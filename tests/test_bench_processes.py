"""Cells whose samples come from several worker processes: the between-process CI, pooling, the schedule."""

import itertools
import os

import pytest

import dnnbench
from dnnbench.core.measurements import BenchCell, CellSpec, CellWarning, Timing, TimingSpec
from dnnbench.core.stats import group_medians, summarize, t_quantile
from dnnbench.latency.timing import CpuTimer, measure
from dnnbench.isolation.dispatch import run_processes

MODELS = os.path.join(os.path.dirname(__file__), "bench_models.py")


def test_group_medians_by_hand():
    assert group_medians([1, 2, 3, 10, 20, 30, 5], [3, 3, 1]) == [2, 20, 5]
    assert group_medians([1, 2, 3], [3]) is None  # one process: no between-process spread
    assert group_medians([1, 2, 3], [0, 3, 0]) is None
    with pytest.raises(ValueError, match="do not add up"):
        group_medians([1, 2, 3], [2, 2])


def test_the_ci_spans_the_spread_between_processes():
    # three processes, each perfectly steady on its own (1.0, 1.1, 1.2 s): within a process nothing
    # varies, yet a run in a fourth process could land anywhere near that spread
    xs = [1.0] * 6 + [1.1] * 6 + [1.2] * 6
    alone = summarize(xs)
    pooled = summarize(xs, groups=[6, 6, 6])
    half = t_quantile(0.975, 2) * 0.1 / 3 ** 0.5  # t(2) x stdev(1.0, 1.1, 1.2) / sqrt(3) = 0.248
    assert pooled.ci_groups == 3 and pooled.ci_groups_halfwidth == pytest.approx(half)
    assert pooled.median == pytest.approx(1.1)
    assert pooled.ci_low == pytest.approx(1.1 - half) and pooled.ci_high == pytest.approx(1.1 + half)
    assert alone.ci_groups is None and alone.ci_rel_halfwidth < pooled.ci_rel_halfwidth


def timing(samples, cold=0.1, cap=2.0, stop="ci", warm=()):
    return Timing(cold, list(warm), list(samples), stop, True, sum(samples) + cold, time_cap_s=cap)


def test_pooled_timing_keeps_every_process_apart():
    t = Timing.pooled([timing([1.0, 1.0], cold=3.0, warm=[2.0]), timing([1.2, 1.2, 1.2], cold=4.0)], "ci")
    assert t.cold_start_s == 3.0 and t.process_cold_starts_s == [3.0, 4.0]
    assert t.samples_s == [1.0, 1.0, 1.2, 1.2, 1.2] and t.process_samples == [2, 3] and t.warmup_s == [2.0]
    assert t.stats.ci_processes == 2
    assert Timing.from_dict(t.to_dict()) == t


class FakeProcesses:
    """Stands in for forked workers: each call returns the next process's timing (or a failed cell)."""

    def __init__(self, results):
        self.results = iter(results)
        self.specs = []

    def __call__(self, spec, loader, progress, timeout_s):
        self.specs.append(spec)
        r = next(self.results)
        progress("sampling", 3, 0.5, None)
        if isinstance(r, BenchCell):
            return r
        return BenchCell(spec, "ok", "", r, environment=None,
                         warnings=[CellWarning("throttle", "1 event", "cool it")] if len(self.specs) == 2 else [])


def spec(processes=5, cap=10.0, target=0.02):
    return CellSpec("python:x:y", 1, "cpu", 1, TimingSpec(max_time_s=cap, processes=processes, target_ci=target),
                    sensors="auto")


def test_processes_pool_until_the_planned_count_when_the_ci_is_met():
    steady = [timing([0.010] * 20) for _ in range(6)]
    fake, events = FakeProcesses(steady), []
    cell = run_processes(spec(), None, lambda *e: events.append(e), None, fake)
    assert len(fake.specs) == 5 and cell.timing.process_samples == [20] * 5 and cell.timing.stop_reason == "ci"
    assert fake.specs[0].sensors == "auto" and all(s.sensors == "none" for s in fake.specs[1:])  # power once
    # the first process decided that calls are fast enough: the later ones sample to their share
    assert all(s.timing.max_time_s == 2.0 and s.timing.processes == 1 for s in fake.specs[1:])
    assert cell.spec.sensors == "auto"
    assert [w.kind for w in cell.warnings] == ["throttle"]  # kept from process 2, not the statistical ones
    assert events[1][0] == "sampling (process 2)" and events[1][1] == 20 + 3  # samples counted across processes


def test_processes_continue_while_their_spread_keeps_the_ci_wide():
    # process medians 10 and 11 ms alternate: the CI stays wide, so more processes run, up to the cap
    spread = [timing([0.010 if i % 2 else 0.011] * 20) for i in range(100)]
    fake = FakeProcesses(spread)
    cell = run_processes(spec(), None, None, None, fake)  # these fakes take no time: the count limit ends it
    assert len(fake.specs) == 4 * 5 and cell.timing.stats.ci_rel_halfwidth > 0.02
    assert cell.timing.stop_reason == "time_cap"
    assert any(w.kind == "ci" for w in cell.warnings)


def test_a_slow_first_process_takes_the_whole_cap_alone():
    fake = FakeProcesses([timing([3.0] * 3, cold=3.0, cap=10.0, stop="time_cap")])
    cell = run_processes(spec(), None, None, None, fake)
    assert len(fake.specs) == 1 and cell.timing.process_samples == []


def test_a_later_process_failing_keeps_what_was_measured():
    fake = FakeProcesses([timing([0.01] * 20), timing([0.01] * 20),
                          BenchCell(spec(), "error", "the worker exited with code 1")])
    cell = run_processes(spec(), None, None, None, fake)
    assert cell.status == "ok" and cell.timing.process_samples == [20, 20]
    w = [w for w in cell.warnings if w.kind == "process"]
    assert w and "process 3 of the cell ended with status error" in w[0].message
    # the first process failing is the cell's failure
    fake = FakeProcesses([BenchCell(spec(), "oom", "killed")])
    assert run_processes(spec(), None, None, None, fake).status == "oom"


class Clock:
    def __init__(self, durations):
        self.t, self.d = 0.0, iter(durations)

    def now(self):
        return self.t

    def call(self):
        self.t += next(self.d)


@pytest.mark.parametrize("cold,expected_cap", [(0.1, 2.0), (0.2, 2.0), (0.25, 10.0)])
def test_a_process_samples_to_its_share_only_when_ten_cold_calls_fit_in_it(cold, expected_cap):
    clock = Clock(itertools.chain([cold], itertools.cycle([0.04, 0.06])))  # bimodal: the CI never stops it
    t = measure(clock.call, TimingSpec(max_time_s=10.0, processes=5, target_ci=1e-9), CpuTimer(clock.now),
                wall=clock.now)
    assert t.time_cap_s == expected_cap
    assert expected_cap <= t.wall_s < expected_cap + 0.1


def test_a_real_cell_pools_forked_processes():
    run = dnnbench.bench(f"python:{MODELS}:tiny", [1], max_time_per_cell=1.5, threads=1, processes=3,
                         min_samples=5, sensors="none")
    cell = run.cell(1)
    t = cell.timing
    assert cell.status == "ok" and len(t.process_samples) >= 3 and len(t.process_cold_starts_s) == len(t.process_samples)
    assert sum(t.process_samples) == len(t.samples_s) == cell.latency_s.n
    assert cell.latency_s.ci_processes == len(t.process_samples)
    assert cell.environment.extra.get("worker_start") == "forked from a fork server"
    # one process: the old behaviour, and no between-process interval
    one = dnnbench.bench(f"python:{MODELS}:tiny", [1], max_time_per_cell=0.5, threads=1, processes=1,
                         min_samples=5, sensors="none").cell(1)
    assert one.timing.process_samples == [] and one.latency_s.ci_processes is None
