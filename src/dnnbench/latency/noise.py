"""Noise checks: what makes a timing less trustworthy, each reported with its remedy (after pyperf)."""

from __future__ import annotations

from dnnbench.core.measurements import Environment, CellWarning, Timing, TimingSpec
from dnnbench.core.stats import block_medians

SPREAD_LIMIT = 0.10  # CV or IQR/median above this flags the cell
DRIFT_LIMIT = 2.0  # batch-means CI this many times the order-statistic CI: the samples drifted
_QUIET = ("close other programs, keep --threads at or below the physical cores, "
          "and run again when the machine is idle")


def check(timing: Timing, spec: TimingSpec, env: Environment | None, throttle_before: dict | None,
          throttle_after: dict | None, threads: int) -> list[CellWarning]:
    """Warnings for one timed cell: spread, CI missed, load, throttling, governor, warm-up, thread count."""
    out: list[CellWarning] = []
    st = timing.stats
    if st.cv is not None and st.cv > SPREAD_LIMIT:
        out.append(CellWarning("cv", f"std dev is {100 * st.cv:.1f} % of the mean (above {100 * SPREAD_LIMIT:.0f} %): "
                                      "the machine may be busy or its clock varies", _QUIET))
    if st.iqr_rel is not None and st.iqr_rel > SPREAD_LIMIT:
        out.append(CellWarning("iqr", f"IQR is {100 * st.iqr_rel:.1f} % of the median (above {100 * SPREAD_LIMIT:.0f} %)",
                                _QUIET))
    rel = st.ci_rel_halfwidth
    if rel is None or rel > spec.target_ci:
        got = "not available" if rel is None else f"+/-{100 * rel:.1f} %"
        out.append(CellWarning("ci", f"the 95 % CI of the median is {got} after {st.n} samples, short of the "
                                      f"+/-{100 * spec.target_ci:.1f} % target ({timing.stop_reason.replace('_', ' ')})",
                                "raise --max-time-per-cell, or quiet the machine"))
    if st.drift_rel is not None and st.drift_rel > DRIFT_LIMIT and rel is not None and rel > spec.target_ci:
        meds = block_medians(timing.samples_s) or []
        spread = f"{_ms(min(meds))}-{_ms(max(meds))}" if meds else "?"
        out.append(CellWarning(
            "drift", f"the median moved while measuring: medians of {st.ci_blocks} consecutive blocks of samples "
                     f"range {spread}, so the CI is {st.drift_rel:.1f}x what independent samples would give; "
                     "the machine's speed changed during the cell (other load, clock changes, a shared VM)",
            "quiet the machine, or raise --max-time-per-cell so that the median spans more of the drift; "
            "compare configurations measured close together in time"))
    if st.n < spec.min_samples:
        out.append(CellWarning("samples", f"only {st.n} samples fit in --max-time-per-cell {spec.max_time_s:g} s "
                                           f"(minimum {spec.min_samples})",
                                f"raise --max-time-per-cell to at least {_suggest(timing, spec):g} s"))
    if not timing.warmup_steady:
        out.append(CellWarning("warmup", f"no steady state: the early samples stayed more than "
                                          f"{100 * spec.warmup_tolerance:.0f} % slower than the later ones' median "
                                          f"({timing.stats.n} samples, all kept): the warm-up may not have ended",
                                "raise --max-time-per-cell"))
    if env is not None:
        cores = env.logical_cores or 0
        if env.load_avg and cores and env.load_avg[0] > cores:
            out.append(CellWarning("load", f"load average {env.load_avg[0]:.2f} is above the {cores} cores: "
                                            "other work competes for the CPU", "wait for other jobs to finish"))
        if env.cpu_governor and env.cpu_governor != "performance":
            out.append(CellWarning("governor", f"CPU frequency governor is {env.cpu_governor!r}: the clock may vary",
                                    "sudo cpupower frequency-set -g performance"))
        if env.physical_cores and threads > env.physical_cores and not env.gpu_clocks_mhz:
            out.append(CellWarning("threads", f"{threads} threads on {env.physical_cores} physical cores: "
                                               "hyper-threads and oversubscription make timings vary",
                                    f"use --threads {env.physical_cores}"))
        reasons = env.extra.get("gpu_throttle_reasons")
        if reasons and reasons.lower() not in ("0x0000000000000000", "0x0000000000000001", "not supported"):
            out.append(CellWarning("throttle", f"GPU clock throttle reasons active: {reasons}",
                                    "check cooling and power limits (nvidia-smi -q -d PERFORMANCE)"))
    if throttle_before and throttle_after:
        events = sum(max(0, throttle_after.get(k, 0) - v) for k, v in throttle_before.items())
        if events:
            out.append(CellWarning("throttle", f"{events} CPU thermal throttling events during the cell",
                                    "improve cooling, or let the machine cool down between runs"))
    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _suggest(timing: Timing, spec: TimingSpec) -> float:
    per_call = timing.stats.median_s or 1.0
    return round(timing.cold_start_s + per_call * (spec.min_samples + 2 * spec.warmup_window) * 1.5 + 1)
