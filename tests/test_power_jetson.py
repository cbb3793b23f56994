"""Jetson INA3221 rails in both sysfs layouts, labels read at run time, sampled and integrated."""

import sys

import pytest

from dnnbench.power import SensorSpecError, SensorUnavailable, open_sensors
from dnnbench.power.jetson import JetsonSensor, find_rails


def jetpack4(root):
    """Xavier NX style, JetPack 4: iio device, power in mW, VDD_IN is the module input."""
    dev = root / "bus/i2c/drivers/ina3221x/7-0040/iio:device0"
    dev.mkdir(parents=True)
    for k, (name, mw) in enumerate([("VDD_IN", 5000), ("VDD_CPU_GPU_CV", 2000), ("VDD_SOC", 1000)]):
        (dev / f"rail_name_{k}").write_text(name + "\n")
        (dev / f"in_power{k}_input").write_text(f"{mw}\n")
        (dev / f"in_current{k}_input").write_text("1\n")  # present on real boards; not used
    return dev


def jetpack5(root):
    """AGX Orin style, JetPack 5: hwmon, mV x mA, no module input rail, an unconnected channel."""
    a = root / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    b = root / "bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon4"
    for d in (a, b):
        d.mkdir(parents=True)
    rails = {a: [("VDD_GPU_SOC", 5000, 1200), ("VDD_CPU_CV", 5000, 400), ("VIN_SYS_5V0", 5000, 600)],
             b: [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 200)]}
    for d, chans in rails.items():
        for k, (name, mv, ma) in enumerate(chans, start=1):
            (d / f"in{k}_label").write_text(name + "\n")
            (d / f"in{k}_input").write_text(f"{mv}\n")
            (d / f"curr{k}_input").write_text(f"{ma}\n")
    return a, b


def test_jetpack4_layout_counts_only_the_input_rail(tmp_path):
    jetpack4(tmp_path)
    s = JetsonSensor(root=str(tmp_path), period_s=0.005)
    assert s.domains == ("VDD_IN",)
    assert s.read_watts() == {"VDD_IN": 5.0}
    assert any("VDD_CPU_GPU_CV" in n and "not added" in n for n in s.notes)
    assert not s.supports_energy_counter()


def test_jetpack4_chosen_rails(tmp_path):
    jetpack4(tmp_path)
    [s] = open_sensors("jetson:VDD_CPU_GPU_CV+VDD_SOC", root=str(tmp_path))
    assert s.read_watts() == {"VDD_CPU_GPU_CV": 2.0, "VDD_SOC": 1.0}


def test_jetpack5_layout_labels_read_at_run_time(tmp_path):
    jetpack5(tmp_path)
    labels = [r.label for r in find_rails(str(tmp_path))]
    assert labels == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]  # NC skipped
    s = JetsonSensor(root=str(tmp_path), period_s=0.005)
    assert s.read_watts() == {"VDD_GPU_SOC": 6.0, "VDD_CPU_CV": 2.0, "VIN_SYS_5V0": 3.0, "VDDQ_VDD2_1V8AO": 1.0}


def test_sampled_constant_power_integrates_exactly(tmp_path):
    import time

    jetpack5(tmp_path)
    s = JetsonSensor(root=str(tmp_path), period_s=0.005)
    s.start()
    time.sleep(0.1)
    r = s.stop()
    assert r.samples >= 5
    assert r.coverage == pytest.approx(1.0)
    assert r.power_w == pytest.approx(12.0, rel=1e-12)
    assert r.energy_j == pytest.approx(12.0 * r.window_s, rel=1e-9)
    assert r.domain_energy_j["VDD_GPU_SOC"] == pytest.approx(6.0 * r.covered_s, rel=1e-9)


def test_environment_variable_points_at_a_fake_tree(tmp_path, monkeypatch):
    jetpack4(tmp_path)
    monkeypatch.setenv("DNNBENCH_SYSFS_ROOT", str(tmp_path))
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML here, whatever the machine has
    [s] = open_sensors("auto")
    assert s.label == "jetson" and s.domains == ("VDD_IN",)


def test_unknown_rail_lists_the_real_ones(tmp_path):
    jetpack4(tmp_path)
    with pytest.raises(SensorSpecError, match="VDD_GPU.*this module has VDD_IN, VDD_CPU_GPU_CV, VDD_SOC"):
        open_sensors("jetson:VDD_GPU", root=str(tmp_path))


def test_not_a_jetson(tmp_path):
    with pytest.raises(SensorUnavailable, match="not a Jetson"):
        JetsonSensor(root=str(tmp_path))
