"""Power and energy per inference: sensor plug-ins (nvml, rapl, jetson, meter:FILE) and the protocol.

    sensors = open_sensors("auto")            # or "none", "rapl,nvml:0", "jetson:VDD_IN", "meter:log.csv"
    records = measure_energy(work, items_per_call=batch, sensors=sensors)   # one Energy per sensor
    close_sensors(sensors)

Importing this package imports no vendor library: nvidia-ml-py is loaded when the nvml sensor opens.
"""

from dnnbench.power import jetson, meter, nvml, rapl  # noqa: F401  (registers the sensors)
from dnnbench.power.base import (SENSORS, EnergyReading, NullSensor, Sensor, SensorInfo, SensorSpecError,
                                         SensorUnavailable, sysfs_root)
from dnnbench.power.protocol import measure_energy
from dnnbench.power.select import close_sensors, open_sensors, parse_spec, probe_sensors

__all__ = ["SENSORS", "EnergyReading", "NullSensor", "Sensor", "SensorInfo", "SensorSpecError", "SensorUnavailable",
           "sysfs_root", "measure_energy", "open_sensors", "close_sensors", "parse_spec", "probe_sensors"]
