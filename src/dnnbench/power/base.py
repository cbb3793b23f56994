"""Sensor plug-ins: the interface, the registry, the null sensor, and the shared integration helpers.

A sensor measures energy over one window at a time: ``start()`` opens it, ``stop()`` closes it and
returns an :class:`EnergyReading` (joules, the seconds actually covered, the domains it covers).
A sensor that cannot measure raises :class:`SensorUnavailable` with the reason — never a zero.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from dnnbench.core.errors import DnnbenchError, UnavailableError
from dnnbench.core.registry import Registry

SYSFS_ENV = "DNNBENCH_SYSFS_ROOT"


class SensorUnavailable(UnavailableError):
    """A sensor cannot measure here (missing hardware, driver, permission or data); says why and how to fix."""


class SensorSpecError(DnnbenchError):
    """A malformed ``--sensors`` specification or sensor argument."""


def sysfs_root(root: str | os.PathLike | None = None) -> str:
    """The directory that plays /sys: ``root`` if given, else $DNNBENCH_SYSFS_ROOT, else /sys."""
    if root is not None:
        return os.fspath(root)
    return os.environ.get(SYSFS_ENV) or "/sys"


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


@dataclass(frozen=True)
class EnergyReading:
    """Energy over one window. ``covered_s`` <= ``window_s``: the part of the window that data covers.

    ``energy_j`` is the energy over the covered part only, so ``power_w`` = energy_j / covered_s is the
    mean power over the covered time. ``domain_energy_j`` splits ``energy_j`` by domain.
    """

    energy_j: float
    window_s: float
    covered_s: float
    domain_energy_j: dict[str, float]
    start_unix_s: float
    end_unix_s: float
    samples: int | None = None  # power samples integrated (None for counters)
    notes: tuple[str, ...] = ()

    @property
    def power_w(self) -> float:
        return self.energy_j / self.covered_s

    @property
    def coverage(self) -> float:
        return self.covered_s / self.window_s if self.window_s > 0 else 0.0


class Sensor(ABC):
    """One energy source over a fixed scope. Subclasses register themselves in :data:`SENSORS`.

    ``label``: instance name (``rapl``, ``nvml:0``, ``meter:FILE``). ``domains``: what is summed.
    ``scope``: one line saying what the figure covers. ``method``: counter, sampled, or meter log.
    ``update_period_s``: how often the underlying figure changes (counter update, averaging period,
    log interval); the protocol makes windows many times longer. ``sampling_period_s``: how often
    dnnbench reads it (equal to the update period for counters).
    """

    kind: ClassVar[str] = ""
    label: str = ""
    domains: tuple[str, ...] = ()
    scope: str = ""
    method: str = ""
    update_period_s: float = 0.0
    sampling_period_s: float = 0.0
    notes: tuple[str, ...] = ()
    available: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def discover(cls, arg: str | None = None, root: str | None = None) -> list["Sensor"]:
        """Open every instance of this sensor kind here; raise SensorUnavailable saying why there is none."""

    @classmethod
    def describe(cls) -> str:
        """What this kind covers, for listings when no instance can be opened."""
        return cls.scope

    def supports_energy_counter(self) -> bool:
        """True when energy comes from a hardware counter, False when power is sampled and integrated."""
        return False

    @abstractmethod
    def start(self) -> None:
        """Open a measurement window."""

    @abstractmethod
    def stop(self) -> EnergyReading:
        """Close the window; return its energy or raise SensorUnavailable."""

    def close(self) -> None:
        """Release threads and library handles. Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NullSensor(Sensor):
    """Stands in when nothing can measure: every window is unavailable, with the reason."""

    kind = "none"
    available = False
    method = "none"

    def __init__(self, label: str = "none", reason: str = "no power sensor selected"):
        self.label = label
        self.reason = reason

    @classmethod
    def discover(cls, arg=None, root=None):
        return [cls()]

    def start(self) -> None:
        raise SensorUnavailable(self.reason)

    def stop(self) -> EnergyReading:
        raise SensorUnavailable(self.reason)


SENSORS: Registry[type[Sensor]] = Registry("power sensor")


# ---- helpers shared by the sensors ---------------------------------------------------------------

def counter_delta(prev: int, cur: int, max_range: int) -> int:
    """Increase of a counter that wraps to 0 after ``max_range`` (RAPL's ``max_energy_range_uj``).

    Assumes at most one wrap between the two reads; callers poll often enough to guarantee it.
    """
    return cur - prev if cur >= prev else cur + (max_range - prev)


def integrate(times: Sequence[float], watts: Sequence[float], t0: float, t1: float,
              max_gap_s: float) -> tuple[float, float]:
    """Trapezoidal energy (J) of power samples over [t0, t1], and the seconds the samples cover.

    Consecutive samples further apart than ``max_gap_s`` are a gap: nothing is integrated there and the
    time is not covered. Time before the first or after the last sample is not covered either.
    """
    energy = covered = 0.0
    for i in range(len(times) - 1):
        a, b = times[i], times[i + 1]
        if b <= a or b - a > max_gap_s or b <= t0 or a >= t1:
            continue
        lo, hi = max(a, t0), min(b, t1)
        pa, pb = watts[i], watts[i + 1]
        p_lo = pa + (pb - pa) * (lo - a) / (b - a)
        p_hi = pa + (pb - pa) * (hi - a) / (b - a)
        energy += 0.5 * (p_lo + p_hi) * (hi - lo)
        covered += hi - lo
    return energy, covered


class Sampler:
    """Reads ``read()`` (domain -> watts) every ``period_s`` in a thread, and integrates per domain.

    A sample is taken synchronously at ``start()`` and at ``stop()`` so the window's ends are covered.
    A failed read is skipped and counted; a stretch longer than ``max_gap_s`` without a sample is a gap.
    """

    def __init__(self, read: Callable[[], dict[str, float]], period_s: float,
                 clock: Callable[[], float] = time.monotonic, wallclock: Callable[[], float] = time.time,
                 max_gap_s: float | None = None):
        if period_s <= 0:
            raise ValueError("sampling period must be positive")
        self.read, self.period_s, self.clock, self.wallclock = read, period_s, clock, wallclock
        self.max_gap_s = max_gap_s if max_gap_s is not None else 10 * period_s
        self._samples: list[tuple[float, dict[str, float]]] = []
        self._failures: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = self._w0 = 0.0

    def _sample(self) -> float | None:
        t = self.clock()
        try:
            value = self.read()
        except Exception as exc:  # noqa: BLE001 - any failed read is counted and reported, never fatal here
            self._failures.append(f"{type(exc).__name__}: {exc}")
            return None
        self._samples.append((t, value))
        return t

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("sampler window already open")
        self._samples, self._failures = [], []
        self._stop.clear()
        self._w0 = self.wallclock()
        first = self._sample()
        self._t0 = first if first is not None else self.clock()
        self._thread = threading.Thread(target=self._loop, name="dnnbench-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> EnergyReading:
        if self._thread is None:
            raise RuntimeError("sampler window not open")
        self._stop.set()
        self._thread.join()
        self._thread = None
        last = self._sample()
        t1 = last if last is not None else self.clock()
        w1 = self.wallclock()
        samples, failures = sorted(self._samples, key=lambda s: s[0]), self._failures
        notes = []
        if failures:
            notes.append(f"{len(failures)} power reads failed and were skipped (first: {failures[0]})")
        times = [t for t, _ in samples]
        domains = list(samples[0][1]) if samples else []
        per_domain: dict[str, float] = {}
        covered = 0.0
        for d in domains:
            per_domain[d], covered = integrate(times, [s[1][d] for s in samples], self._t0, t1, self.max_gap_s)
        if covered <= 0:
            why = failures[0] if failures else f"only {len(samples)} sample(s) in {t1 - self._t0:.3f} s"
            raise SensorUnavailable("no power samples cover the window", why)
        return EnergyReading(sum(per_domain.values()), t1 - self._t0, covered, per_domain, self._w0, w1,
                             samples=len(samples), notes=tuple(notes))

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


@dataclass(frozen=True)
class SensorInfo:
    """One line of ``dnnbench sensors``: a sensor, whether it works here, and why not."""

    name: str
    kind: str
    available: bool
    reason: str | None
    scope: str
    domains: list[str] = field(default_factory=list)
    method: str | None = None
    energy_counter: bool | None = None
    update_period_s: float | None = None
    sampling_period_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)
