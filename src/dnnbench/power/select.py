"""Choosing sensors: the ``--sensors`` grammar, and the listing behind ``dnnbench sensors``.

Grammar: ``auto`` (every sensor that works here) | ``none`` | a comma list of ``NAME[:ARG]`` where NAME is
a registered sensor: ``nvml`` (every GPU) or ``nvml:0`` / ``nvml:0+1``; ``rapl``; ``jetson`` or
``jetson:RAIL+RAIL``; ``meter:FILE`` (FILE must not contain a comma).
"""

from __future__ import annotations

from dnnbench.core.errors import DnnbenchError
from dnnbench.power.base import SENSORS, NullSensor, Sensor, SensorInfo, SensorSpecError

# "auto" tries every registered sensor that needs no argument.
_NEEDS_ARG = ("meter",)
_ORDER = ("nvml", "rapl", "jetson", "meter")


def _names() -> list[str]:
    """Registered sensors, the usual ones first in a fixed order, then any plug-in by name."""
    names = SENSORS.names()
    return [n for n in _ORDER if n in names] + [n for n in names if n not in _ORDER]


def parse_spec(spec: str) -> list[tuple[str, str | None]]:
    """``"nvml:0,rapl"`` -> ``[("nvml", "0"), ("rapl", None)]``; ``auto``/``none`` -> ``[(word, None)]``."""
    text = (spec or "").strip()
    known = ", ".join(SENSORS.names())
    if not text:
        raise SensorSpecError("empty --sensors", "it names the power sensors to use",
                              f"write auto, none, or a comma list of {known} (meter:FILE)")
    if text in ("auto", "none"):
        return [(text, None)]
    items: list[tuple[str, str | None]] = []
    for part in text.split(","):
        part = part.strip()
        name, sep, arg = part.partition(":")
        if name in ("auto", "none"):
            raise SensorSpecError(f"--sensors {spec!r} mixes {name!r} with other sensors",
                                  f"{name} stands alone", f"write --sensors {name}, or list the sensors")
        if name not in SENSORS:
            raise SensorSpecError(f"unknown power sensor {name!r} in --sensors {spec!r}",
                                  f"known sensors are {known}",
                                  "write e.g. --sensors rapl,nvml or --sensors meter:power.csv")
        if sep and not arg:
            raise SensorSpecError(f"--sensors item {part!r} has an empty argument", "",
                                  f"write {name} or {name}:ARG")
        if any(n == name for n, _ in items):
            raise SensorSpecError(f"power sensor {name!r} named twice in --sensors {spec!r}", "",
                                  "name each sensor once")
        items.append((name, arg or None))
    return items


def open_sensors(spec: str = "auto", root: str | None = None) -> list[Sensor]:
    """Open the sensors ``spec`` names; never an empty list.

    ``auto``: every sensor that works here (argument-free ones: nvml, rapl, jetson); when none does,
    one :class:`NullSensor` whose reason lists why each is unavailable. ``none``: one NullSensor
    (power switched off). Named sensors must work: one that cannot raises its one-line
    SensorUnavailable (what, why, how to fix). A malformed spec raises SensorSpecError.
    ``root``: the sysfs root (default $DNNBENCH_SYSFS_ROOT, else /sys). The caller closes the sensors.
    """
    items = parse_spec(spec)
    if items == [("none", None)]:
        return [NullSensor("none", "power measurement switched off (--sensors none)")]
    if items == [("auto", None)]:
        opened: list[Sensor] = []
        reasons = []
        for name in _names():
            if name in _NEEDS_ARG:
                continue
            try:
                opened.extend(SENSORS.get(name).discover(None, root))
            except DnnbenchError as exc:
                reasons.append(f"{name}: {exc.one_line()}")
        return opened or [NullSensor("none", "no power sensor available here (" + " ".join(reasons) + ")")]
    opened = []
    try:
        for name, arg in items:
            opened.extend(SENSORS.get(name).discover(arg, root))
    except BaseException:
        close_sensors(opened)
        raise
    return opened


def close_sensors(sensors: list[Sensor]) -> None:
    for s in sensors:
        s.close()


def _info(s: Sensor) -> SensorInfo:
    return SensorInfo(s.label, s.kind, True, None, s.scope, list(s.domains), s.method, s.supports_energy_counter(),
                      s.update_period_s, s.sampling_period_s, list(s.notes))


def probe_sensors(spec: str | None = None, root: str | None = None) -> list[SensorInfo]:
    """Every registered sensor (or those ``spec`` names), available or not, and why not. Opens and closes them."""
    items = [(n, None) for n in _names()] if spec in (None, "auto") else parse_spec(spec)
    if items == [("none", None)]:
        return []
    infos: list[SensorInfo] = []
    for name, arg in items:
        cls = SENSORS.get(name)
        try:
            sensors = cls.discover(arg, root)
        except DnnbenchError as exc:
            infos.append(SensorInfo(name if not arg else f"{name}:{arg}", name, False, exc.one_line(),
                                    cls.describe()))
            continue
        for s in sensors:
            infos.append(_info(s))
            s.close()
    return infos
