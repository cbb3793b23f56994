"""The energy protocol: idle baseline, then a measured window long against every sensor's update period."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dnnbench.core.energy import Energy
from dnnbench.core.errors import DnnbenchError, InputError
from dnnbench.power.base import EnergyReading, Sensor


@dataclass(frozen=True)
class EnergyProtocol:
    """How long and how often the energy protocol measures (seconds; see :func:`measure_energy`).

    ``settle_s``: pause before the idle baseline; ``idle_s``: its length (None: the measured window's);
    the window is >= max(``min_window_s``, ``min_periods`` x the slowest sensor's update period), capped
    at ``max_window_s``; ``warmup_calls`` untimed calls after idle; a sensor whose data cover less than
    ``min_coverage`` of a window gives no figure. ``estimate``: with ``tdp_w`` (W), a TDP x time figure
    when no sensor measured anything. Checked when built.
    """

    settle_s: float = 2.0
    idle_s: float | None = None
    min_window_s: float = 2.0
    min_periods: int = 10
    max_window_s: float = 600.0
    warmup_calls: int = 1
    min_coverage: float = 0.5
    estimate: bool = False
    tdp_w: float | None = None

    def __post_init__(self) -> None:
        # time.sleep raises a bare ValueError on a negative length, deep inside a cell: refuse it up front
        for name in ("settle_s", "idle_s", "min_window_s", "min_periods", "warmup_calls"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise InputError(f"{name} {value!r} is not allowed", "it cannot be negative", f"give {name} 0 or more")
        if not self.max_window_s > 0:
            raise InputError(f"max_window_s {self.max_window_s!r} is not allowed", "a window needs some time",
                             "give max_window_s a positive number of seconds")
        if not 0 <= self.min_coverage <= 1:
            raise InputError(f"min_coverage {self.min_coverage!r} is not allowed",
                             "it is the share of a window the sensor data must cover", "give a fraction in [0, 1]")
        if self.estimate and (self.tdp_w is None or not self.tdp_w > 0):
            raise InputError("a power estimate needs the device's TDP", "estimate=True was given without tdp_w",
                             "give the TDP in watts (e.g. --estimate-power 65)")

    @staticmethod
    def of(protocol: "EnergyProtocol | None" = None, **settings) -> "EnergyProtocol":
        """``protocol`` (default: today's defaults) with ``settings`` (its field names) replacing its values."""
        from dnnbench.core.config import with_options

        return with_options(EnergyProtocol, protocol, settings, "measure_energy")


def measure_energy(work: Callable[[], object], items_per_call: int, sensors: Sequence[Sensor],
                   protocol: EnergyProtocol | None = None, *, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep, **settings) -> list[Energy]:
    """Measure power and energy per item of ``work`` with each sensor; one :class:`Energy` per sensor.

    Inputs:
      ``work()``: runs one inference batch of ``items_per_call`` items and returns only when its compute
        is finished (on a GPU, synchronise inside it). Call this after the cell's warm-up; the model
        must already be loaded. Exceptions from ``work`` propagate (sensor windows are closed first).
      ``sensors``: from :func:`open_sensors`; unavailable ones (null sensors) give unavailable records.
        Sensors are not closed here; the caller owns them.
      ``protocol``: an :class:`EnergyProtocol`; ``settings``: its field names as keywords, replacing its
        values (``measure_energy(work, 8, sensors, settle_s=0)``). ``clock``/``sleep``: for tests.
    Protocol (the sensors measure the same windows, together):
      1. sleep ``settle_s`` seconds (power falls back to idle after model build and warm-up);
      2. idle baseline: ``idle_s`` seconds doing nothing (default: the window length below);
      3. ``warmup_calls`` untimed calls (clocks ramp back up after idle);
      4. measured window: ``work()`` repeated until ``window_s`` >= max(``min_window_s``,
         ``min_periods`` x the slowest sensor's ``update_period_s``), capped at ``max_window_s``
         (a single call longer than that is still one whole call).
    Outputs, per sensor (SI units): ``power_w`` = mean power over the window (W); ``idle_power_w`` (W);
      ``time_per_item_s`` = window_s / (calls x items_per_call); ``energy_per_item_j`` =
      power_w x time_per_item_s (J); ``energy_per_item_above_idle_j`` = (power_w - idle_power_w) x
      time_per_item_s (J); ``window_s``, ``idle_window_s``, ``coverage``, ``domains``, ``scope``,
      ``method``, ``sampling_period_s``, ``update_period_s``, ``calls``, ``items``, window start/end
      (Unix s). A figure that cannot be measured is None with its reason in ``unavailable`` (and the
      record's ``status`` is "unavailable" when power itself is missing): never 0.
    Estimate: only with ``estimate=True`` and ``tdp_w`` (W), and only when no sensor measured anything,
      one record with ``sensor="estimate"``, ``status="estimate"``: power_w = tdp_w (the device assumed at
      its TDP for the whole run), energy_per_item_j = tdp_w x time_per_item_s, no idle figures.
    Duration: about settle_s + idle_s + window (default >= 2 + 2 + 2 s; 10 s windows for sensors that
      update once a second: NVML power readings, most meters). No sensor and no estimate: returns at once.
    """
    if not isinstance(items_per_call, int) or items_per_call < 1:
        raise InputError(f"items_per_call {items_per_call!r} is not allowed", "a call processes at least one item")
    p = EnergyProtocol.of(protocol, **settings)
    estimate, tdp_w, min_periods, max_window_s = p.estimate, p.tdp_w, p.min_periods, p.max_window_s
    records: dict[int, Energy] = {}
    live: list[Sensor] = []
    for i, s in enumerate(sensors):
        if s.available:
            live.append(s)
        else:
            records[i] = Energy.not_measured(s.label, getattr(s, "reason", "no power sensor"), method=s.method)
    if not sensors:
        records[-1] = Energy.not_measured("none", "no power sensor selected")
    if not live and not estimate:
        return [records[k] for k in sorted(records)]

    longest = max((s.update_period_s for s in live), default=0.0)
    window_s = max(p.min_window_s, min_periods * longest)
    notes: list[str] = []
    if window_s > max_window_s:
        notes.append(f"window capped at {max_window_s:g} s, shorter than {min_periods} update periods "
                     f"({window_s:g} s)")
        window_s = max_window_s
    idle_len = window_s if p.idle_s is None else p.idle_s

    idle: dict[int, EnergyReading | str] = {}
    if live:
        sleep(p.settle_s)
        idle = _window(live, lambda: sleep(idle_len))

    for _ in range(p.warmup_calls):
        work()
    calls = 0
    t0 = clock()

    def run() -> None:
        nonlocal calls
        while True:
            work()
            calls += 1
            if clock() - t0 >= window_s:
                break

    active = _window(live, run)
    elapsed = clock() - t0
    items = calls * items_per_call
    time_per_item = elapsed / items
    common = dict(time_per_item_s=time_per_item, window_s=elapsed, items=items, calls=calls,
                  idle_window_s=idle_len if live else None)

    measured_any = False
    for i, s in enumerate(sensors):
        if not s.available:
            continue
        rec = _record(s, active[live.index(s)], idle.get(live.index(s)), time_per_item, p.min_coverage,
                      notes, common)
        measured_any |= rec.status == "measured"
        records[i] = rec
    if estimate and not measured_any:
        why = (f"estimate, not measured: assumes the device draws its TDP ({tdp_w:g} W, given by the user) "
               "for the whole run")
        records[len(sensors)] = Energy(
            "estimate", "estimate", method="TDP x time", power_w=float(tdp_w),
            energy_per_item_j=tdp_w * time_per_item, reason=why,
            unavailable={"idle_power_w": "an estimate has no idle baseline",
                         "energy_per_item_above_idle_j": "an estimate has no idle baseline"},
            notes=[why, *notes], **common)
    return [records[k] for k in sorted(records)]


def _window(sensors: Sequence[Sensor], body: Callable[[], None]) -> dict[int, EnergyReading | str]:
    """Run ``body`` inside one window of every sensor; reading or reason per sensor index."""
    out: dict[int, EnergyReading | str] = {}
    started = []
    for i, s in enumerate(sensors):
        try:
            s.start()
            started.append(i)
        except DnnbenchError as exc:
            out[i] = exc.one_line()
    try:
        body()
    except BaseException:
        for i in started:
            try:
                sensors[i].stop()
            except Exception:  # noqa: BLE001 - the work's own exception is the one to report
                pass
        raise
    for i in started:
        try:
            out[i] = sensors[i].stop()
        except DnnbenchError as exc:
            out[i] = exc.one_line()
    return out


def _record(s: Sensor, active: EnergyReading | str, idle: EnergyReading | str | None, time_per_item: float,
            min_coverage: float, notes: list[str], common: dict) -> Energy:
    base = dict(domains=list(s.domains), scope=s.scope, method=s.method, sampling_period_s=s.sampling_period_s,
                update_period_s=s.update_period_s, **common)
    if isinstance(active, str):
        return Energy.not_measured(s.label, active, notes=list(notes), **base)
    base.update(coverage=active.coverage, window_start_unix_s=active.start_unix_s,
                window_end_unix_s=active.end_unix_s)
    if active.coverage < min_coverage:
        why = (f"{s.label} data cover only {100 * active.coverage:.1f} % of the window "
               f"(< {100 * min_coverage:g} % required)")
        return Energy.not_measured(s.label, why, notes=[*notes, *active.notes], **base)
    power = active.power_w
    rec_notes = [*notes, *active.notes]
    unavailable: dict[str, str] = {}
    idle_power = above = None
    if isinstance(idle, EnergyReading) and idle.coverage >= min_coverage:
        idle_power = idle.power_w
        above = (power - idle_power) * time_per_item
        base.update(idle_coverage=idle.coverage, idle_start_unix_s=idle.start_unix_s)
        rec_notes += [f"idle: {n}" for n in idle.notes if n not in active.notes]
        if above < 0:
            rec_notes.append("power during the run was below idle: the difference is within the noise; "
                             "use a longer window")
    else:
        why = (idle if isinstance(idle, str) else
               f"idle data cover only {100 * idle.coverage:.1f} % of the idle window" if idle is not None
               else "no idle baseline")
        unavailable = {"idle_power_w": why, "energy_per_item_above_idle_j": why}
    return Energy(s.label, "measured", power_w=power, idle_power_w=idle_power,
                  energy_per_item_j=power * time_per_item, energy_per_item_above_idle_j=above,
                  domain_power_w={d: e / active.covered_s for d, e in active.domain_energy_j.items()},
                  unavailable=unavailable, notes=rec_notes, **base)
