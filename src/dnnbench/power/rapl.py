"""RAPL energy counters through Linux powercap (Intel, and AMD which uses the same ``intel-rapl`` zones).

Counted: each package zone (``package-N``, a CPU socket) and each DRAM zone. The kernel lists DRAM as
a subzone of its package, but Intel's RAPL DRAM domain is *not* part of the package domain, so both
are counted. Not counted: ``core``/``uncore``/``gpu`` subzones (inside their package) and ``psys``
(the platform, which includes the packages), so nothing is counted twice. Zones appear both nested
(``intel-rapl:0/intel-rapl:0:0``) and flat (``intel-rapl:0:0``): each zone id is read once.
``intel-rapl-mmio:*`` zones repeat the package through another interface and are ignored.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dnnbench.power.base import (SENSORS, EnergyReading, Sensor, SensorSpecError, SensorUnavailable,
                                         counter_delta, read_text, sysfs_root)

_ZONE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")
_INSIDE_PACKAGE = ("core", "uncore", "gpu")
PERMISSION_WHY = "energy_uj is readable only by root since Linux 5.10 (CVE-2020-8694, 'Platypus')"


@dataclass(frozen=True)
class Zone:
    zone_id: str  # e.g. intel-rapl:0:1
    name: str  # e.g. package-0, dram, core
    path: str
    max_range_uj: int


def _find_zones(base: str) -> dict[str, str]:
    """zone id -> directory, from the flat listing and from nested subzone directories."""
    found: dict[str, str] = {}
    for entry in sorted(os.listdir(base)):
        if _ZONE.match(entry):
            found.setdefault(entry, os.path.join(base, entry))
            top = os.path.join(base, entry)
            if os.path.isdir(top):
                for sub in sorted(os.listdir(top)):
                    if _ZONE.match(sub):
                        found.setdefault(sub, os.path.join(top, sub))
    return found


def permission_error(path: str, base: str) -> SensorUnavailable:
    return SensorUnavailable(
        f"cannot read RAPL energy counters: permission denied on {path}", PERMISSION_WHY,
        f"run as root, or `sudo chmod o+r {base}/intel-rapl:*/energy_uj` (until reboot; a udev rule "
        "makes it permanent)")


@SENSORS.register("rapl")
class RaplSensor(Sensor):
    """CPU package and DRAM energy from ``energy_uj`` counters, with wraparound at ``max_energy_range_uj``."""

    kind = "rapl"
    scope = "CPU sockets (RAPL package) + DRAM where exposed; not the whole machine"
    method = "energy counter (RAPL energy_uj)"
    update_period_s = 0.001  # RAPL counters update about every millisecond

    def __init__(self, root: str | None = None, reader: Callable[[str], str] = read_text,
                 poll_s: float | None | str = "auto", clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time):
        self.base = os.path.join(sysfs_root(root), "class", "powercap")
        self.reader, self.clock, self.wallclock = reader, clock, wallclock
        self.label = "rapl"
        self.sampling_period_s = self.update_period_s
        if not os.path.isdir(self.base):
            raise SensorUnavailable(
                f"no RAPL: {self.base} does not exist",
                "the kernel exposes no powercap interface (not x86, intel_rapl not loaded, or a VM/container)",
                "on bare-metal x86 Linux load it with `sudo modprobe intel_rapl_msr`")
        zones = _find_zones(self.base)
        counted: list[tuple[str, Zone]] = []
        notes = []
        for zid, path in zones.items():
            name = self._read(os.path.join(path, "name")).strip()
            depth = zid.count(":")
            if depth == 1 and name.startswith("package"):
                domain = name
            elif name == "dram":
                domain = f"dram-{_ZONE.match(zid).group(1)}" if depth == 2 else "dram"
            else:
                if name == "psys":
                    notes.append("psys (platform) zone not counted: it includes the packages")
                elif name not in _INSIDE_PACKAGE:
                    notes.append(f"zone {zid} ({name}) not counted: unknown domain")
                continue
            max_range = int(self._read(os.path.join(path, "max_energy_range_uj")).strip())
            counted.append((domain, Zone(zid, name, path, max_range)))
        if not any(z.name.startswith("package") for _, z in counted):
            raise SensorUnavailable(f"no RAPL package zone under {self.base}",
                                    "powercap is there but exposes no intel-rapl:N package zone",
                                    "load the RAPL driver: `sudo modprobe intel_rapl_msr`")
        labels = [d for d, _ in counted]
        self.zones = {(d if labels.count(d) == 1 else f"{d} ({z.zone_id})"): z for d, z in counted}
        self.domains = tuple(self.zones)
        self.notes = tuple(notes)
        self._read_counters()  # fails now, with the reason, if the counters are not readable
        if poll_s == "auto":
            # Poll often enough that no counter can wrap twice between reads, even at 1 kW per domain.
            poll_s = min(1.0, min(z.max_range_uj for z in self.zones.values()) / 1e6 / 1000 / 2)
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, int] = {}
        self._acc: dict[str, int] = {}
        self._t0 = self._w0 = 0.0

    @classmethod
    def discover(cls, arg: str | None = None, root: str | None = None) -> list[Sensor]:
        if arg:
            raise SensorSpecError(f"rapl takes no argument (got {arg!r})", "it always reads every package and DRAM zone",
                                    "write --sensors rapl")
        return [cls(root=root)]

    def supports_energy_counter(self) -> bool:
        return True

    def _read(self, path: str) -> str:
        try:
            return self.reader(path)
        except PermissionError as exc:
            raise permission_error(path, self.base) from exc
        except OSError as exc:
            raise SensorUnavailable(f"cannot read {path}", exc.strerror or str(exc)) from exc

    def _read_counters(self) -> dict[str, int]:
        out = {}
        for d, z in self.zones.items():
            text = self._read(os.path.join(z.path, "energy_uj")).strip()
            try:
                out[d] = int(text)
            except ValueError as exc:
                raise SensorUnavailable(f"cannot read {z.path}/energy_uj", f"not an integer: {text!r}") from exc
        return out

    def _accumulate(self) -> None:
        cur = self._read_counters()
        with self._lock:
            for d, v in cur.items():
                self._acc[d] += counter_delta(self._last[d], v, self.zones[d].max_range_uj)
            self._last = cur

    def _poll(self) -> None:
        while not self._stop_evt.wait(self.poll_s):
            try:
                self._accumulate()
            except SensorUnavailable:
                pass  # the final read in stop() reports it

    def start(self) -> None:
        self._w0, self._t0 = self.wallclock(), self.clock()
        self._last = self._read_counters()
        self._acc = {d: 0 for d in self.zones}
        if self.poll_s:
            self._stop_evt.clear()
            self._thread = threading.Thread(target=self._poll, name="dnnbench-rapl-poll", daemon=True)
            self._thread.start()

    def stop(self) -> EnergyReading:
        self._join()
        self._accumulate()
        t1, w1 = self.clock(), self.wallclock()
        per_domain = {d: uj / 1e6 for d, uj in self._acc.items()}
        return EnergyReading(sum(per_domain.values()), t1 - self._t0, t1 - self._t0, per_domain, self._w0, w1,
                             notes=self.notes)

    def _join(self) -> None:
        if self._thread is not None:
            self._stop_evt.set()
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self._join()
