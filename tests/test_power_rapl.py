"""RAPL through a fake /sys/class/powercap tree: wraparound, nested zones, permission denied."""

import builtins
import os
import sys
import time

import pytest

from dnnbench.power import SensorUnavailable, open_sensors
from dnnbench.power.base import counter_delta
from dnnbench.power.rapl import RaplSensor

RANGE = 1_000_000  # max_energy_range_uj of the fake package zone


def zone(d, name, energy, max_range=RANGE):
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def set_energy(d, value):
    (d / "energy_uj").write_text(f"{value}\n")


@pytest.fixture
def powercap(tmp_path):
    """A one-socket Intel tree as the kernel lays it out: nested subzones plus flat symlinks to each."""
    base = tmp_path / "class" / "powercap"
    (base / "intel-rapl").mkdir(parents=True)  # the control-type directory, not a zone
    pkg = zone(base / "intel-rapl:0", "package-0", 999_000)
    core = zone(pkg / "intel-rapl:0:0", "core", 0)
    dram = zone(pkg / "intel-rapl:0:1", "dram", 100, max_range=65_712_999_613)
    psys = zone(base / "intel-rapl:1", "psys", 5_000)
    mmio = zone(base / "intel-rapl-mmio:0", "package-0", 0)
    for sub in ("intel-rapl:0:0", "intel-rapl:0:1"):
        os.symlink(pkg / sub, base / sub)
    return tmp_path, {"pkg": pkg, "core": core, "dram": dram, "psys": psys, "mmio": mmio}


def test_counter_delta_wraps_at_max_energy_range():
    assert counter_delta(100, 250, RANGE) == 150
    assert counter_delta(999_000, 500, RANGE) == 1_500


def test_wraparound_inside_the_window_is_exact(powercap):
    root, z = powercap
    s = RaplSensor(root=str(root), poll_s=None)
    s.start()
    set_energy(z["pkg"], 500)  # wrapped: 1,000 uJ to the top of the range, then 500 uJ
    set_energy(z["dram"], 2_100)
    r = s.stop()
    assert r.domain_energy_j["package-0"] == pytest.approx(1_500e-6, abs=1e-15)
    assert r.domain_energy_j["dram-0"] == pytest.approx(2_000e-6, abs=1e-15)
    assert r.energy_j == pytest.approx(3_500e-6, abs=1e-15)
    assert r.coverage == 1.0
    assert s.supports_energy_counter()


def test_nested_zones_are_not_double_counted(powercap):
    root, z = powercap
    s = RaplSensor(root=str(root), poll_s=None)
    # package + DRAM (DRAM is not inside the package domain); core is inside the package; psys includes
    # the package; the mmio zone repeats the package; the flat symlinks repeat the nested subzones.
    assert s.domains == ("package-0", "dram-0")
    s.start()
    set_energy(z["pkg"], 999_010)
    set_energy(z["core"], 900_000)
    set_energy(z["psys"], 900_000)
    set_energy(z["mmio"], 900_000)
    r = s.stop()
    assert r.energy_j == pytest.approx(10e-6, abs=1e-15)
    assert any("psys" in n for n in s.notes)


def test_polling_keeps_several_wraps_in_one_window_exact(powercap):
    root, z = powercap
    step = 400_000  # each read of the package counter advances it 0.4 J: it wraps every 2.5 reads
    values = []

    def reader(path):
        if path.endswith(os.path.join("intel-rapl:0", "energy_uj")):
            v = (999_000 + step * len(values)) % RANGE
            values.append(v)
            return str(v)
        with open(path) as f:
            return f.read()

    s = RaplSensor(root=str(root), reader=reader, poll_s=0.002)
    values.clear()
    s.start()
    deadline = time.monotonic() + 10
    while len(values) < 12 and time.monotonic() < deadline:  # start + at least 10 polls
        time.sleep(0.001)
    r = s.stop()
    wraps = sum(b < a for a, b in zip(values, values[1:]))
    assert wraps >= 4
    assert r.domain_energy_j["package-0"] == pytest.approx(step * (len(values) - 1) / 1e6, rel=1e-12)


def test_permission_denied_says_why_and_how(powercap, monkeypatch):
    root, _ = powercap
    real_open = builtins.open

    def guarded(path, *a, **k):  # tests run as root, so chmod 000 would not stop them
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML here, whatever the machine has
    with pytest.raises(SensorUnavailable) as info:
        open_sensors("rapl", root=str(root))
    msg = info.value.one_line()
    assert "permission denied" in msg and "energy_uj" in msg
    assert "Linux 5.10" in msg and "CVE-2020-8694" in msg
    assert "chmod o+r" in msg and "root" in msg
    # auto does not fail: it falls back to the null sensor, whose reason carries the same explanation
    [null] = open_sensors("auto", root=str(root))
    assert not null.available and "CVE-2020-8694" in null.reason


def test_reader_that_raises_permission_error(powercap):
    root, _ = powercap

    def reader(path):
        if path.endswith("energy_uj"):
            raise PermissionError(13, "Permission denied")
        with open(path) as f:
            return f.read()

    with pytest.raises(SensorUnavailable, match="sudo chmod o\\+r .*/intel-rapl:\\*/energy_uj"):
        RaplSensor(root=str(root), reader=reader)


def test_no_powercap_is_unavailable_with_reason(tmp_path):
    with pytest.raises(SensorUnavailable, match="powercap") as info:
        RaplSensor(root=str(tmp_path))
    assert "modprobe intel_rapl_msr" in info.value.one_line()
