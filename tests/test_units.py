"""The one set of display formatters (core.units): what each prints, and that no layer keeps a copy."""

import math
import re
from pathlib import Path

import numpy as np
import pytest

from dnnbench.core import units as u


@pytest.mark.parametrize("v, text", [
    (1.5, "1.5 s"), (12.345, "12.3 s"), (0.0123, "12.3 ms"), (4.56e-6, "4.56 µs"), (1.2e-7, "120 ns"),
    (0, "0 ns"), (None, "-"), (math.nan, "-"), (math.inf, "-"), ("1", "-"),
])
def test_seconds(v, text):
    assert u.seconds(v) == text


def test_si_prefixes():
    assert u.si(4.1e9, "FLOP") == "4.10 GFLOP"
    assert u.si(1_814_073_856, "MAC") == "1.81 GMAC"
    assert u.si(2.5e12, "FLOP") == "2.50 TFLOP"
    assert u.si(0.0032, "J") == "3.20 mJ" and u.si(4e-6, "J") == "4.00 µJ"
    assert u.si(12, "W") == "12 W" and u.si(12.5, "W") == "12.50 W" and u.si(0, "J") == "0 J"
    assert u.si(None, "W") == "-"


def test_bytes():
    assert u.iec_bytes(3 * 2**30 // 2) == "1.5 GiB"
    assert u.iec_bytes(230 * 2**20) == "230.0 MiB" and u.iec_bytes(2048) == "2.0 KiB" and u.iec_bytes(12) == "12 B"
    assert u.iec_bytes(None) == "-"
    assert u.mib(1234 * 2**20) == "1,234 MiB" and u.mib(1.5 * 2**20, 1) == "1.5 MiB"


def test_pct_and_the_rest():
    assert u.pct(0.76132) == "76.1 %" and u.pct(0.76132, 2) == "76.13 %" and u.pct(None) == "-"
    assert u.joules(2.5) == "2.5 J" and u.joules(0.0123) == "12.3 mJ"
    assert u.watts(15.25) == "15.2 W" and u.rate(1234.5) == "1.23e+03/s" and u.count(4.1e9) == "4.1 G"


def test_metric_picks_the_formatter_by_its_si_name():
    assert u.metric("latency_median_s", 0.02) == "20 ms"
    assert u.metric("throughput_items_per_s", 50) == "50/s"
    assert u.metric("memory_total_bytes", 5 * 2**20) == "5.0 MiB" and u.metric("weight_bytes", 100 * 2**20) == "100 MiB"
    assert u.metric("energy_per_item_j", 0.5) == "500 mJ" and u.metric("power_w", 30) == "30 W"
    assert u.metric("top1", 0.7) == "70.0 %" and u.metric("macs", 2e9) == "2 G"


def test_numpy_scalars_from_pandas_are_figures_not_missing():
    assert u.iec_bytes(np.int64(2048)) == "2.0 KiB" and u.seconds(np.float64(0.5)) == "500 ms"
    assert u.mib(np.int64(2**20)) == "1 MiB" and u.pct(True) == "-"


def test_analysis_units_is_the_same_set():
    from dnnbench.analysis import units as au

    for name in ("seconds", "mib", "pct", "joules", "watts", "rate", "count", "metric"):
        assert getattr(au, name) is getattr(u, name)


def test_no_layer_keeps_its_own_unit_formatters(root):
    src = Path(root, "src", "dnnbench")
    copies = re.compile(r"^\s*def _?(si|bytes|pct|seconds|mib|joules|watts|human\w*)\(", re.M)
    found = [f"{p.relative_to(src)}: {m.group(0).strip()}" for p in src.rglob("*.py") if p.name != "units.py"
             or p.parent.name != "core" for m in copies.finditer(p.read_text(encoding="utf-8"))]
    assert found == []
