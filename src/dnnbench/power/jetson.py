"""NVIDIA Jetson power rails from the INA3221 monitors, sampled in a thread and integrated.

Two sysfs layouts, both relative to the sysfs root:

- JetPack 4 (``ina3221x`` IIO driver): ``bus/i2c/drivers/ina3221x/*/iio:device*/in_power{K}_input`` (mW),
  rail name in ``rail_name_{K}``.
- JetPack 5+ (mainline ``ina3221`` hwmon driver): ``bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in{K}_input``
  (mV) x ``curr{K}_input`` (mA), rail name in ``in{K}_label``.

Rail names are read at run time (they differ per module). When the module input rail (``VDD_IN``,
``POM_5V_IN``) is present it alone is counted by default: the other rails are parts of it, and adding
them would count twice. Modules without an input rail (AGX Xavier, AGX Orin) sum all their rails.
NVML does not work on Jetson; this is the way to measure it.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from dnnbench.power.base import (SENSORS, EnergyReading, Sampler, Sensor, SensorSpecError,
                                         SensorUnavailable, read_text, sysfs_root)

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
_UNCONNECTED = ("", "NC")


@dataclass(frozen=True)
class Rail:
    label: str
    layout: str  # "jp4" (power file, mW) or "jp5" (voltage mV x current mA)
    power: str | None = None
    voltage: str | None = None
    current: str | None = None


def find_rails(root: str, reader: Callable[[str], str] = read_text) -> list[Rail]:
    """Every connected INA3221 channel under ``root`` (the sysfs root), in both layouts."""
    drivers = os.path.join(root, "bus", "i2c", "drivers")
    rails: list[Rail] = []
    for dev in sorted(glob.glob(os.path.join(drivers, "ina3221x", "*", "iio:device*"))):
        for p in sorted(glob.glob(os.path.join(dev, "in_power*_input"))):
            k = re.search(r"in_power(\d+)_input$", p).group(1)
            name_file = os.path.join(dev, f"rail_name_{k}")
            label = reader(name_file).strip() if os.path.exists(name_file) else f"{os.path.basename(dev)}:{k}"
            if label not in _UNCONNECTED:
                rails.append(Rail(label, "jp4", power=p))
    for dev in sorted(glob.glob(os.path.join(drivers, "ina3221", "*", "hwmon", "hwmon*"))):
        for lab in sorted(glob.glob(os.path.join(dev, "in*_label"))):
            k = re.search(r"in(\d+)_label$", lab).group(1)
            v, c = os.path.join(dev, f"in{k}_input"), os.path.join(dev, f"curr{k}_input")
            label = reader(lab).strip()
            if label not in _UNCONNECTED and os.path.exists(v) and os.path.exists(c):
                rails.append(Rail(label, "jp5", voltage=v, current=c))
    # Two monitors may carry the same rail name; keep the names unique.
    seen: dict[str, int] = {}
    unique = []
    for r in rails:
        seen[r.label] = seen.get(r.label, 0) + 1
        unique.append(r if seen[r.label] == 1 else Rail(f"{r.label}#{seen[r.label]}", r.layout, r.power, r.voltage, r.current))
    return unique


@SENSORS.register("jetson")
class JetsonSensor(Sensor):
    """Jetson INA3221 rails: power sampled every ``period_s`` and integrated (trapezoids)."""

    kind = "jetson"
    scope = "the named INA3221 rails (VDD_IN = the whole module's input, when present)"

    def __init__(self, root: str | None = None, rails: list[str] | None = None, period_s: float = 0.05,
                 reader: Callable[[str], str] = read_text, clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time):
        self.root = sysfs_root(root)
        self.reader = reader
        found = find_rails(self.root, reader)
        if not found:
            raise SensorUnavailable(
                "not a Jetson: no INA3221 power monitor",
                f"nothing under {self.root}/bus/i2c/drivers/ina3221x/*/iio:device* (JetPack 4) or "
                f"{self.root}/bus/i2c/drivers/ina3221/*/hwmon/hwmon* (JetPack 5+)")
        by_label = {r.label: r for r in found}
        notes = []
        if rails:
            unknown = [r for r in rails if r not in by_label]
            if unknown:
                raise SensorSpecError(f"unknown Jetson rail {', '.join(unknown)}",
                                      f"this module has {', '.join(by_label)}",
                                      "write e.g. --sensors jetson:" + "+".join(list(by_label)[:2]))
            chosen = [by_label[r] for r in rails]
        else:
            inputs = [r for r in found if r.label in INPUT_RAILS]
            chosen = inputs or found
            if inputs and len(found) > len(inputs):
                others = ", ".join(r.label for r in found if r not in inputs)
                notes.append(f"{inputs[0].label} is the module input; sub-rails {others} not added to it")
        self.rails = chosen
        self.domains = tuple(r.label for r in chosen)
        self.notes = tuple(notes)
        self.label = "jetson"
        self.period_s = period_s
        self.sampling_period_s = self.update_period_s = period_s
        self.method = f"INA3221 power sampled every {period_s:g} s, integrated"
        self.read_watts()  # fails now, with the reason, if a rail cannot be read
        self._sampler = Sampler(self.read_watts, period_s, clock, wallclock)

    @classmethod
    def discover(cls, arg: str | None = None, root: str | None = None) -> list[Sensor]:
        rails = [r for r in arg.split("+") if r] if arg else None
        return [cls(root=root, rails=rails)]

    def _num(self, path: str) -> float:
        try:
            return float(self.reader(path).strip())
        except PermissionError as exc:
            raise SensorUnavailable(f"cannot read {path}: permission denied", "",
                                    "run as root or make the INA3221 files readable") from exc

    def read_watts(self) -> dict[str, float]:
        out = {}
        for r in self.rails:
            if r.layout == "jp4":
                out[r.label] = self._num(r.power) / 1e3  # mW
            else:
                out[r.label] = self._num(r.voltage) * self._num(r.current) / 1e6  # mV x mA
        return out

    def start(self) -> None:
        self._sampler.start()

    def stop(self) -> EnergyReading:
        reading = self._sampler.stop()
        return replace(reading, notes=self.notes + reading.notes)

    def close(self) -> None:
        self._sampler.close()
