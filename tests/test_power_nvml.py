"""NVML through a fake pynvml module: energy counter, sampled power, error translation, missing extra."""

import sys
import time
import types

import pytest

from dnnbench.power import SensorUnavailable, open_sensors, probe_sensors
from dnnbench.power.nvml import NvmlError


def fake_pynvml(names=("Tesla V100-SXM2-16GB", "Tesla P100-PCIE-16GB"), counter=(True, False),
                power_mw=(250_000, 150_000), init_error=None):
    """A stand-in for nvidia-ml-py's ``pynvml``: GPU i has the energy counter when counter[i]."""
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        def __init__(self, value):
            self.value = value
            super().__init__(f"NVML error {value}")

    m.NVMLError = NVMLError
    m.energy_mj = [1_000_000 for _ in names]
    m.calls = {"init": 0, "shutdown": 0}

    def init():
        if init_error is not None:
            raise NVMLError(init_error)
        m.calls["init"] += 1

    def shutdown():
        m.calls["shutdown"] += 1

    def energy(h):
        if not counter[h]:
            raise NVMLError(3)  # NVML_ERROR_NOT_SUPPORTED: pre-Volta
        return m.energy_mj[h]

    m.nvmlInit, m.nvmlShutdown = init, shutdown
    m.nvmlDeviceGetCount = lambda: len(names)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: names[h].encode()  # older bindings return bytes
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetPowerUsage = lambda h: power_mw[h]
    return m


def test_energy_counter_and_sampled_power_per_gpu(monkeypatch):
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpu0, gpu1 = open_sensors("nvml")
    assert (gpu0.label, gpu1.label) == ("nvml:0", "nvml:1")
    assert gpu0.supports_energy_counter() and not gpu1.supports_energy_counter()
    assert gpu0.domains == ("gpu0 board (Tesla V100-SXM2-16GB)",)
    assert gpu1.update_period_s == 1.0  # a 1 s average: the protocol makes windows >= 10 s for it

    gpu0.start()
    nvml.energy_mj[0] += 12_345  # mJ
    r0 = gpu0.stop()
    assert r0.energy_j == pytest.approx(12.345, abs=1e-12)

    gpu1._sampler.period_s = 0.005
    gpu1.start()
    time.sleep(0.05)
    r1 = gpu1.stop()
    assert r1.power_w == pytest.approx(150.0, rel=1e-12)
    assert r1.coverage == pytest.approx(1.0)

    for s in (gpu0, gpu1):
        s.close()
        s.close()
    assert nvml.calls["init"] == nvml.calls["shutdown"]


def test_one_gpu_by_index(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    [s] = open_sensors("nvml:1")
    assert s.label == "nvml:1" and not s.supports_energy_counter()
    s.close()


def test_nvml_errors_become_our_typed_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=12))  # LIBRARY_NOT_FOUND
    with pytest.raises(NvmlError) as info:
        open_sensors("nvml")
    assert isinstance(info.value, SensorUnavailable)
    assert "libnvidia-ml.so" in info.value.one_line() and "jetson" in info.value.one_line()
    assert type(info.value.__cause__).__name__ == "NVMLError"  # raise ... from e


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(SensorUnavailable, match=r"nvidia-ml-py is not installed.*pip install 'dnnbench\[nvml\]'"):
        open_sensors("nvml")
    [info] = probe_sensors("nvml")
    assert not info.available and "dnnbench[nvml]" in info.reason
