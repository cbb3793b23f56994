"""NVIDIA GPU board energy through NVML (``nvidia-ml-py``, the ``dnnbench[nvml]`` extra, imported lazily).

Volta and newer: the total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver
loaded) read at the window's ends. Older GPUs: ``nvmlDeviceGetPowerUsage`` (mW) sampled in a thread
and integrated. NVML errors become :class:`NvmlError` (a SensorUnavailable) at this boundary.
NVML does not exist on Jetson; use the ``jetson`` sensor there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from dnnbench.power.base import (SENSORS, EnergyReading, Sampler, Sensor, SensorSpecError,
                                         SensorUnavailable)

EXTRA_FIX = "pip install 'dnnbench[nvml]' (installs nvidia-ml-py)"

# NVML return codes (nvml.h) we explain; the rest are reported with NVML's own text.
NOT_SUPPORTED, NO_PERMISSION, DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND, GPU_IS_LOST = 3, 4, 9, 12, 15
_EXPLAIN = {
    DRIVER_NOT_LOADED: ("the NVIDIA driver is not loaded", "install or load the NVIDIA driver"),
    LIBRARY_NOT_FOUND: ("no NVIDIA driver: libnvidia-ml.so not found",
                        "install the NVIDIA driver; on a Jetson use --sensors jetson"),
    NO_PERMISSION: ("permission denied by NVML", "run as a user allowed to query the GPU"),
    NOT_SUPPORTED: ("not supported on this GPU", ""),
    GPU_IS_LOST: ("the GPU fell off the bus", "reboot the machine"),
}


class NvmlError(SensorUnavailable):
    """An NVML call failed; ``code`` is NVML's return code (None if unknown)."""

    def __init__(self, what: str, why: str = "", fix: str = "", code: int | None = None):
        self.code = code
        super().__init__(what, why, fix)


def _driver_hint() -> str:
    if os.path.exists("/proc/driver/nvidia/version"):
        return "the NVIDIA driver is loaded but its Python bindings are missing"
    return "no NVIDIA driver is loaded either (no /proc/driver/nvidia/version)"


def load_nvml(module: Any = None) -> Any:
    """The pynvml module (from nvidia-ml-py), or SensorUnavailable naming the extra."""
    if module is not None:
        return module
    try:
        import pynvml
    except ImportError as exc:
        raise SensorUnavailable("nvidia-ml-py is not installed", _driver_hint(), EXTRA_FIX) from exc
    return pynvml


def call(nvml: Any, fn: str, *args):
    """Call ``nvml.fn(*args)``, translating NVML's exceptions into NvmlError."""
    try:
        return getattr(nvml, fn)(*args)
    except nvml.NVMLError as exc:
        code = getattr(exc, "value", None)
        why, fix = _EXPLAIN.get(code, (str(exc) or f"NVML error {code}", ""))
        raise NvmlError(f"NVML {fn} failed", why, fix, code=code) from exc


@SENSORS.register("nvml")
class NvmlSensor(Sensor):
    """One GPU's board energy: the energy counter where supported, else sampled power, integrated."""

    kind = "nvml"
    scope = "the GPU board (chip + its memory), one sensor per GPU index"

    def __init__(self, index: int = 0, nvml: Any = None, period_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic, wallclock: Callable[[], float] = time.time):
        self.nvml = load_nvml(nvml)
        call(self.nvml, "nvmlInit")
        self._open = True
        try:
            count = call(self.nvml, "nvmlDeviceGetCount")
            if not 0 <= index < count:
                raise SensorSpecError(f"no GPU index {index} for NVML", f"NVML sees {count} GPU(s)",
                                      "write --sensors nvml:0" if count else "use a machine with an NVIDIA GPU")
            self.index = index
            self.handle = call(self.nvml, "nvmlDeviceGetHandleByIndex", index)
            name = call(self.nvml, "nvmlDeviceGetName", self.handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            self.label = f"nvml:{index}"
            self.domains = (f"gpu{index} board ({name})",)
            self.clock, self.wallclock = clock, wallclock
            try:
                call(self.nvml, "nvmlDeviceGetTotalEnergyConsumption", self.handle)
                self._counter = True
            except NvmlError as exc:
                if exc.code != NOT_SUPPORTED:
                    raise
                self._counter = False
            if self._counter:
                self.method = "energy counter (nvmlDeviceGetTotalEnergyConsumption)"
                # Conservative: the counter advances in steps of about 100 ms on the GPUs we know.
                self.update_period_s = self.sampling_period_s = 0.1
                self._sampler = None
            else:
                try:
                    self.read_watts()
                except NvmlError as exc:
                    if exc.code != NOT_SUPPORTED:
                        raise
                    raise NvmlError(f"GPU {index} ({name}) reports neither energy nor power",
                                    "NVML supports neither counter on it") from exc
                self.method = f"nvmlDeviceGetPowerUsage sampled every {period_s:g} s, integrated"
                # The reading is a 1 s average on Ampere and newer; the window must be long against that.
                self.update_period_s, self.sampling_period_s = 1.0, period_s
                self._sampler = Sampler(self.read_watts, period_s, clock, wallclock)
        except BaseException:
            self.close()
            raise
        self._e0 = self._t0 = self._w0 = 0.0

    @classmethod
    def discover(cls, arg: str | None = None, root: str | None = None, nvml: Any = None) -> list[Sensor]:
        nvml = load_nvml(nvml)
        call(nvml, "nvmlInit")
        try:
            count = call(nvml, "nvmlDeviceGetCount")
        finally:
            call(nvml, "nvmlShutdown")
        if arg:
            try:
                indices = [int(i) for i in arg.split("+")]
            except ValueError:
                raise SensorSpecError(f"bad GPU index in nvml:{arg}", "indices are integers",
                                      "write e.g. --sensors nvml:0 or nvml:0+1") from None
        else:
            if count == 0:
                raise SensorUnavailable("NVML sees no GPU", "the driver is loaded but lists no device")
            indices = list(range(count))
        sensors: list[Sensor] = []
        try:
            for i in indices:
                sensors.append(cls(i, nvml=nvml))
        except BaseException:
            for s in sensors:
                s.close()
            raise
        return sensors

    def supports_energy_counter(self) -> bool:
        return self._counter

    def read_watts(self) -> dict[str, float]:
        return {self.domains[0]: call(self.nvml, "nvmlDeviceGetPowerUsage", self.handle) / 1e3}

    def _energy_mj(self) -> int:
        return call(self.nvml, "nvmlDeviceGetTotalEnergyConsumption", self.handle)

    def start(self) -> None:
        if self._sampler is not None:
            self._sampler.start()
            return
        self._w0, self._t0 = self.wallclock(), self.clock()
        self._e0 = self._energy_mj()

    def stop(self) -> EnergyReading:
        if self._sampler is not None:
            return self._sampler.stop()
        e1 = self._energy_mj()
        t1, w1 = self.clock(), self.wallclock()
        if e1 < self._e0:
            raise SensorUnavailable(f"GPU {self.index} energy counter went backwards",
                                    "the driver was reloaded during the window", "measure again")
        joules = (e1 - self._e0) / 1e3
        return EnergyReading(joules, t1 - self._t0, t1 - self._t0, {self.domains[0]: joules}, self._w0, w1)

    def close(self) -> None:
        sampler = getattr(self, "_sampler", None)
        if sampler is not None:
            sampler.close()
        if getattr(self, "_open", False):
            self._open = False
            try:
                call(self.nvml, "nvmlShutdown")
            except NvmlError:
                pass  # shutting down a library that failed is not worth a second error
