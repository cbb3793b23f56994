"""Energy records: power and energy per inference from one sensor over one cell. SI units in names.

A figure that could not be measured is ``None`` and its field name maps to the reason in
``unavailable`` — never a 0, never an estimate unless ``status == "estimate"`` says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

ENERGY_STATUSES = ("measured", "estimate", "unavailable")
FIGURES = ("power_w", "idle_power_w", "energy_per_item_j", "energy_per_item_above_idle_j")


@dataclass(frozen=True)
class Energy:
    """Power and energy of one cell as seen by one sensor, over the ``domains`` it covers.

    ``power_w``: mean power over the measured window. ``idle_power_w``: mean power over the idle
    baseline before it. ``energy_per_item_j`` = power_w x time_per_item_s; ``..._above_idle_j`` =
    (power_w - idle_power_w) x time_per_item_s (negative means the run was indistinguishable from idle).
    ``window_s``: measured window; ``coverage``: the fraction of it the sensor's data covers (1 for
    counters). ``update_period_s``: how often the sensor's figure changes; ``sampling_period_s``: how
    often it was read. ``status``: measured, estimate (from a TDP the user gave, not measured), or
    unavailable (``reason`` says why).
    """

    sensor: str  # e.g. "rapl", "nvml:0", "jetson", "meter:log.csv", "estimate"
    status: str
    domains: list[str] = field(default_factory=list)
    scope: str = ""
    method: str = ""
    power_w: float | None = None
    idle_power_w: float | None = None
    energy_per_item_j: float | None = None
    energy_per_item_above_idle_j: float | None = None
    time_per_item_s: float | None = None
    window_s: float | None = None
    idle_window_s: float | None = None
    coverage: float | None = None
    idle_coverage: float | None = None
    sampling_period_s: float | None = None
    update_period_s: float | None = None
    items: int | None = None  # items processed in the measured window
    calls: int | None = None  # work() calls in the measured window
    window_start_unix_s: float | None = None
    window_end_unix_s: float | None = None
    idle_start_unix_s: float | None = None
    domain_power_w: dict[str, float] = field(default_factory=dict)
    reason: str | None = None  # why the record is unavailable (or, for an estimate, what it assumes)
    unavailable: dict[str, str] = field(default_factory=dict)  # figure -> why it is None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Energy":
        names = {f.name for f in fields(Energy)}
        return Energy(**{k: v for k, v in d.items() if k in names})

    @staticmethod
    def not_measured(sensor: str, reason: str, **kw: Any) -> "Energy":
        """A record whose every figure is unavailable for ``reason``."""
        return Energy(sensor, "unavailable", reason=reason, unavailable={f: reason for f in FIGURES}, **kw)


def covers(sensor: str, device: str) -> bool:
    """Whether ``sensor``'s domains include the device a cell ran on.

    CPU cells: RAPL (package/DRAM), a wall meter (the whole machine) or a Jetson's rails (the module).
    CUDA cells: that GPU's NVML (``nvml:N`` for ``cuda:N``; ``cuda`` is index 0), a Jetson, or a wall meter.
    An estimate covers what its TDP was given for; it is only a headline when nothing measured.
    """
    kind, _, index = sensor.partition(":")
    if kind in ("meter", "jetson", "estimate"):
        return True
    if device == "cpu":
        return kind == "rapl"
    if device.startswith("cuda"):
        want = device.partition(":")[2] or "0"
        return kind == "nvml" and (index or "0") == want
    return False


def headline(energies, device: str) -> "tuple[Energy | None, str | None]":
    """The energy record whose sensor covers ``device`` (measured first, then an estimate), or None and why.

    A sensor that measured something else (an idle GPU's board power for a CPU cell) is never the
    headline; it stays beside it under its own name.
    """
    energies = list(energies)
    if not energies:
        return None, None
    for status in ("measured", "estimate"):
        for e in energies:
            if e.status == status and covers(e.sensor, device):
                return e, None
    measured = [e.sensor for e in energies if e.status == "measured"]
    if measured:
        return None, (f"unavailable: no sensor covering {device} measured ({', '.join(measured)} measured other "
                      f"devices and are kept beside, under their names)")
    first = energies[0]
    return first, None  # every record is unavailable: the first one says why
