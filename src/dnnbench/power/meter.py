"""An external power meter's log: a CSV of (timestamp, watts), aligned with the run's wall-clock windows.

This is the paper's method: a lab instrument records power on its own, and each measured window
(start and end in Unix time, recorded by dnnbench) is cut out of its log and integrated.

Log format: one sample a line, ``timestamp,watts``; further columns are ignored. ``timestamp`` is Unix
seconds (``1718000000.25``) or ISO 8601 (``2024-06-10T08:13:20.250+00:00``; without an offset it is this
machine's local time). A first line that is not a sample is a header; lines starting with ``#`` are
comments. The meter's clock must agree with this machine's (both NTP-synced).

Malformed lines (missing field, not a number, negative or non-finite watts, a time not after the
previous line's) are **skipped and counted**: the reading's notes give their count and line numbers,
so one garbled line from a serial logger does not lose a whole run, and none goes unnoticed.

Gaps: samples further apart than ``max_gap_s`` (default 3 x the log's median interval) are a gap;
energy is integrated only over covered time, and the coverage is reported. A window with no
coverage is unavailable, with the log's and the window's time spans as the reason.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from dnnbench.power.base import (SENSORS, EnergyReading, Sensor, SensorSpecError, SensorUnavailable,
                                         integrate)


@dataclass
class MeterLog:
    """Parsed samples (Unix seconds, watts) and the lines skipped as malformed: (line number, why)."""

    path: str
    times: list[float] = field(default_factory=list)
    watts: list[float] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def period_s(self) -> float | None:
        """Median interval between samples (None with fewer than two)."""
        if len(self.times) < 2:
            return None
        return statistics.median(b - a for a, b in zip(self.times, self.times[1:]))

    def skipped_note(self) -> str | None:
        if not self.skipped:
            return None
        shown = ", ".join(f"{n} ({why})" for n, why in self.skipped[:5])
        more = f" and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
        return f"{len(self.skipped)} malformed line(s) in {self.path} skipped: line {shown}{more}"


def _timestamp(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))  # ValueError when not ISO either
    return dt.timestamp()  # naive -> this machine's local time


def _check_text(path: str, head: bytes) -> None:
    """SensorUnavailable when the log's start is binary, not an instrument's CSV.

    A serial logger may garble a line now and then (it is skipped and counted); a file whose first 4 KiB
    are over 5 % bytes that are not UTF-8 text (or NUL) is not a log at all.
    """
    text = head.decode("utf-8", errors="replace")
    if len(head) >= 4096:  # a multi-byte character cut by the read is not garbage
        text = text[:-1]
    bad = text.count("\ufffd") + text.count("\0")
    if bad > max(8, len(head) // 20):
        first = next(i for i, ch in enumerate(text) if ch in "\ufffd\0")
        offset = len(text[:first].encode("utf-8", errors="replace"))
        raise SensorUnavailable(f"meter log {path} is not a text file",
                                f"its start is not UTF-8 text (the first bad byte at offset {offset}); "
                                "the log must be a CSV of timestamp,watts lines",
                                "point meter:FILE at the CSV the instrument writes")


def parse_meter_log(path: str) -> MeterLog:
    """Read a meter CSV; malformed lines are skipped and counted (see the module docstring)."""
    log = MeterLog(path)
    try:
        f = open(path, newline="", encoding="utf-8", errors="replace")
        with open(path, "rb") as raw:
            _check_text(path, raw.read(4096))
    except OSError as exc:
        raise SensorUnavailable(f"cannot read meter log {path}", exc.strerror or str(exc),
                                "check the path given to --sensors meter:FILE") from exc
    with f:
        first = True
        # past a text start, a garbled byte is one malformed line (skipped and counted), never an exception
        lines = (line.replace("\0", "\ufffd") for line in f)
        for lineno, row in enumerate(csv.reader(lines), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            try:
                t = _timestamp(row[0])
            except ValueError:
                if first:  # a header line: its first field is not a time
                    first = False
                    continue
                log.skipped.append((lineno, f"timestamp {row[0].strip()!r} is neither Unix seconds nor ISO 8601"))
                continue
            first = False
            if len(row) < 2:
                log.skipped.append((lineno, "expected timestamp,watts"))
                continue
            try:
                w = float(row[1])
            except ValueError:
                log.skipped.append((lineno, f"watts {row[1].strip()!r} is not a number"))
                continue
            if not math.isfinite(w) or w < 0 or not math.isfinite(t):
                log.skipped.append((lineno, f"watts {row[1].strip()!r} is not a finite non-negative number"))
            elif log.times and t <= log.times[-1]:
                log.skipped.append((lineno, "time not after the previous sample"))
            else:
                log.times.append(t)
                log.watts.append(w)
    return log


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds")


def meter_energy(log: MeterLog, t0: float, t1: float, max_gap_s: float | None = None,
                 offset_s: float = 0.0) -> EnergyReading:
    """Energy of the wall-clock window [t0, t1] (Unix seconds) from a meter log, over covered time only.

    ``offset_s`` is added to the log's timestamps (meter clock -> this machine's clock).
    Raises SensorUnavailable when no sample pair covers any part of the window.
    """
    if t1 <= t0:
        raise ValueError("window end must be after its start")
    times = [t + offset_s for t in log.times]
    period = log.period_s
    if period is None:
        raise SensorUnavailable(f"meter log {log.path} has {len(times)} valid sample(s)",
                                "at least two are needed to integrate", "check that the meter is logging")
    gap = max_gap_s if max_gap_s is not None else 3 * period
    energy, covered = integrate(times, log.watts, t0, t1, gap)
    notes = [n for n in (log.skipped_note(),) if n]
    if covered <= 0:
        raise SensorUnavailable(
            f"meter log {log.path} does not cover the window",
            f"window {_iso(t0)} to {_iso(t1)}; log spans {_iso(times[0])} to {_iso(times[-1])}"
            + (f"; the window falls in a gap (no two samples within {gap:g} s)"
               if times[0] < t1 and times[-1] > t0 else ""),
            "start the meter's logging before the run and check both clocks")
    if covered < (t1 - t0) * 0.999:
        notes.append(f"meter log covers {100 * covered / (t1 - t0):.1f} % of the window "
                     f"(gaps over {gap:g} s or log edges); power is the mean over covered time")
    return EnergyReading(energy, t1 - t0, covered, {"meter": energy}, t0, t1,
                         samples=sum(t0 <= t <= t1 for t in times), notes=tuple(notes))


@SENSORS.register("meter")
class MeterSensor(Sensor):
    """An external meter's CSV log; each window is cut out of it by wall-clock time at ``stop()``."""

    kind = "meter"
    scope = "whatever the meter is wired to (e.g. the whole machine at the wall socket)"

    def __init__(self, path: str, max_gap_s: float | None = None, offset_s: float = 0.0,
                 flush_wait_s: float = 5.0, wallclock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        if not os.path.isfile(path):
            raise SensorSpecError(f"meter log {path} not found",
                                  "meter:FILE names a CSV of timestamp,watts written by the instrument",
                                  "start the meter's logger writing to FILE before the run, or fix the path")
        self.path = path
        self.label = f"meter:{path}"
        self.domains = ("meter",)
        self.method = "external meter log (timestamp, watts), integrated over the run's wall-clock windows"
        self.max_gap_s, self.offset_s, self.flush_wait_s = max_gap_s, offset_s, flush_wait_s
        self.wallclock, self.sleep = wallclock, sleep
        period = parse_meter_log(path).period_s
        self.update_period_s = self.sampling_period_s = period if period else 1.0
        if not period:
            self.notes = ("meter log has fewer than two samples yet; assuming a 1 s interval",)
        self._w0 = 0.0

    @classmethod
    def discover(cls, arg: str | None = None, root: str | None = None) -> list[Sensor]:
        if not arg:
            raise SensorUnavailable("the meter sensor needs a log file",
                                    "it reads a CSV of timestamp,watts recorded by an external instrument",
                                    "use --sensors meter:FILE")
        return [cls(arg)]

    def start(self) -> None:
        self._w0 = self.wallclock()

    def stop(self) -> EnergyReading:
        w1 = self.wallclock()
        log = parse_meter_log(self.path)
        # A logger may flush late: wait a little for the log to reach the window's end.
        deadline = w1 + self.flush_wait_s
        while (not log.times or log.times[-1] + self.offset_s < w1) and self.wallclock() < deadline:
            self.sleep(min(0.2, self.update_period_s))
            log = parse_meter_log(self.path)
        if log.period_s:
            self.update_period_s = self.sampling_period_s = log.period_s
        return meter_energy(log, self._w0, w1, self.max_gap_s, self.offset_s)
