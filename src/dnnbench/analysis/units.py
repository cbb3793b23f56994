"""Display formatting of SI values (display only: stored and computed values stay in SI units)."""

from __future__ import annotations

import math


def _ok(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def seconds(v, digits: int = 3) -> str:
    if not _ok(v):
        return "-"
    if abs(v) >= 1:
        return f"{v:.{digits}g} s"
    if abs(v) >= 1e-3:
        return f"{v * 1e3:.{digits}g} ms"
    return f"{v * 1e6:.{digits}g} µs"


def mib(v, digits: int = 0) -> str:
    return f"{v / 2**20:,.{digits}f} MiB" if _ok(v) else "-"


def pct(v, digits: int = 1) -> str:
    return f"{100 * v:.{digits}f} %" if _ok(v) else "-"


def joules(v) -> str:
    if not _ok(v):
        return "-"
    return f"{v:.3g} J" if abs(v) >= 1 else f"{v * 1e3:.3g} mJ"


def watts(v) -> str:
    return f"{v:.3g} W" if _ok(v) else "-"


def rate(v) -> str:
    return f"{v:,.3g}/s" if _ok(v) else "-"


def count(v) -> str:
    if not _ok(v):
        return "-"
    for scale, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {p}"
    return f"{v:.3g}"


def metric(name: str, v) -> str:
    """Format ``v`` by its SI-named metric."""
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
