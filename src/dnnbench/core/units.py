"""Display formatting of SI values, the one set every layer uses (stored and computed values stay in SI units).

Each formatter takes a value in base SI units (seconds, bytes, joules, watts, fractions) and returns text;
``None``, NaN, infinities and non-numbers show as "-" so a missing figure is never printed as 0.
"""

from __future__ import annotations

import math
import numbers

MISSING = "-"


def _ok(v) -> bool:
    # numbers.Real admits numpy scalars (pandas hands those out), bool is a flag rather than a figure
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def seconds(v, digits: int = 3) -> str:
    """1.23 s, 45.6 ms, 7.89 µs, 120 ns: three significant digits by default."""
    if not _ok(v):
        return MISSING
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(v) >= scale:
            return f"{v / scale:.{digits}g} {unit}"
    return f"{v / 1e-9:.{digits}g} ns"


def si(v, unit: str, digits: int = 2) -> str:
    """``v`` with a decimal SI prefix: si(4.1e9, "FLOP") -> "4.10 GFLOP"; si(0.0032, "J") -> "3.20 mJ"."""
    if not _ok(v):
        return MISSING
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.{digits}f} {prefix}{unit}"
    if v and abs(v) < 1:
        for scale, prefix in ((1e-3, "m"), (1e-6, "µ")):
            if abs(v) >= scale:
                return f"{v / scale:.{digits}f} {prefix}{unit}"
    return f"{v:.0f} {unit}" if float(v).is_integer() else f"{v:.{digits}f} {unit}"


def iec_bytes(n) -> str:
    """A byte count with the largest binary prefix that fits, one decimal: 1.5 GiB, 230.0 MiB, 12 B."""
    if not _ok(n):
        return MISSING
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def mib(v, digits: int = 0) -> str:
    """Always in MiB (columns of a table compare at a glance): 1,234 MiB."""
    return f"{v / 2**20:,.{digits}f} MiB" if _ok(v) else MISSING


def pct(v, digits: int = 1) -> str:
    """A fraction as a percentage: pct(0.7613) -> "76.1 %"."""
    return f"{100 * v:.{digits}f} %" if _ok(v) else MISSING


def joules(v) -> str:
    if not _ok(v):
        return MISSING
    return f"{v:.3g} J" if abs(v) >= 1 else f"{v * 1e3:.3g} mJ"


def watts(v) -> str:
    return f"{v:.3g} W" if _ok(v) else MISSING


def rate(v) -> str:
    return f"{v:,.3g}/s" if _ok(v) else MISSING


def count(v) -> str:
    """A plain quantity with k/M/G: count(4.1e9) -> "4.1 G"."""
    if not _ok(v):
        return MISSING
    for scale, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {p}"
    return f"{v:.3g}"


def metric(name: str, v) -> str:
    """Format ``v`` by its SI-named metric (``latency_median_s``, ``memory_total_bytes``, ``top1``, ...)."""
    if name.endswith("_bytes"):
        return mib(v, 1 if _ok(v) and v < 10 * 2**20 else 0)
    if name.endswith("_per_s"):
        return rate(v)
    if name.endswith("_s"):
        return seconds(v)
    if name.endswith("_j"):
        return joules(v)
    if name.endswith("_w"):
        return watts(v)
    if name in ("top1", "top5") or name.endswith("_top1") or name.endswith("_top5") or name.startswith("fraction"):
        return pct(v)
    return count(v)
