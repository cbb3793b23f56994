"""The energy protocol: idle baseline, window length, energy per item, unavailable and estimate."""

import math
import sys

import pytest

from dnnbench.core.energy import Energy
from dnnbench.core.errors import InputError
from dnnbench.power import (EnergyReading, NullSensor, Sensor, SensorUnavailable, measure_energy,
                                    open_sensors)
from dnnbench.power.jetson import JetsonSensor


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


class ConstantPowerSensor(Sensor):
    """Draws ``idle_w`` always, plus ``busy_w - idle_w`` while work runs (the test's work says when)."""

    kind = "fake"
    scope = "a fake board"
    method = "fake energy counter"

    def __init__(self, clock, idle_w, busy_w, update_period_s):
        self.clock, self.idle_w, self.busy_w = clock, idle_w, busy_w
        self.label, self.domains = "fake", ("board",)
        self.update_period_s = self.sampling_period_s = update_period_s
        self.extra_j = 0.0
        self.windows = []

    @classmethod
    def discover(cls, arg=None, root=None):
        raise NotImplementedError

    def supports_energy_counter(self):
        return True

    def busy(self, seconds):
        self.extra_j += (self.busy_w - self.idle_w) * seconds

    def start(self):
        self.t0, self.e0 = self.clock(), self.extra_j

    def stop(self):
        dt = self.clock() - self.t0
        e = self.idle_w * dt + self.extra_j - self.e0
        self.windows.append(dt)
        return EnergyReading(e, dt, dt, {"board": e}, self.t0, self.t0 + dt)


def fake_cell(idle_w=20.0, busy_w=50.0, call_s=0.25, update_period_s=0.5):
    clock = FakeClock()
    sensor = ConstantPowerSensor(clock, idle_w, busy_w, update_period_s)
    calls = []

    def work():
        clock.sleep(call_s)
        sensor.busy(call_s)
        calls.append(clock.now)

    return clock, sensor, work, calls


def test_energy_per_item_is_power_minus_idle_times_time_per_item():
    clock, sensor, work, calls = fake_cell(idle_w=20.0, busy_w=50.0, call_s=0.25, update_period_s=0.5)
    [e] = measure_energy(work, 8, [sensor], settle_s=3.0, min_window_s=2.0, min_periods=10,
                         clock=clock, sleep=clock.sleep)
    assert e.status == "measured" and e.sensor == "fake" and e.domains == ["board"]
    # the window is >= 10 update periods (5 s, longer than min_window_s) and the idle baseline as long
    assert e.window_s == pytest.approx(5.0) and e.idle_window_s == pytest.approx(5.0)
    assert e.calls == 20 and e.items == 160 and e.time_per_item_s == pytest.approx(5.0 / 160)
    assert e.power_w == pytest.approx(50.0) and e.idle_power_w == pytest.approx(20.0)
    assert e.energy_per_item_j == pytest.approx(50.0 * 5.0 / 160)
    assert e.energy_per_item_above_idle_j == pytest.approx((50.0 - 20.0) * 5.0 / 160)
    assert e.sampling_period_s == 0.5 and e.coverage == 1.0 and e.unavailable == {}
    assert len(calls) == 21  # one warm-up call after the idle baseline, then the window's 20
    assert sensor.windows == [pytest.approx(5.0), pytest.approx(5.0)]  # idle, then measured


def test_window_grows_with_the_sensor_update_period():
    clock, sensor, work, _ = fake_cell(update_period_s=1.0, call_s=0.3)
    [e] = measure_energy(work, 1, [sensor], settle_s=0, min_window_s=2.0, clock=clock, sleep=clock.sleep)
    assert e.window_s >= 10 * 1.0
    assert e.window_s < 10 * 1.0 + 0.3 + 1e-9  # stops at the first call past the target
    assert e.calls == math.ceil(10 / 0.3)


def test_no_sensor_gives_unavailable_records_and_runs_nothing():
    calls = []
    out = measure_energy(lambda: calls.append(1), 1, [NullSensor("rapl", "no RAPL here")])
    assert calls == []
    [e] = out
    assert e.status == "unavailable" and e.sensor == "rapl" and e.reason == "no RAPL here"
    for f in ("power_w", "idle_power_w", "energy_per_item_j", "energy_per_item_above_idle_j"):
        assert getattr(e, f) is None and e.unavailable[f] == "no RAPL here"
    [e] = measure_energy(lambda: None, 1, [])
    assert e.status == "unavailable" and e.power_w is None


def test_estimate_only_when_asked_and_labelled():
    clock, _, work, _ = fake_cell(call_s=0.1)
    null = NullSensor("none", "no power sensor available here")
    out = measure_energy(work, 4, [null], settle_s=0, min_window_s=2.0, estimate=True, tdp_w=65.0,
                         clock=clock, sleep=clock.sleep)
    assert [e.status for e in out] == ["unavailable", "estimate"]
    est = out[1]
    assert est.sensor == "estimate" and "not measured" in est.reason and "65 W" in est.reason
    assert est.power_w == 65.0
    assert est.energy_per_item_j == pytest.approx(65.0 * est.time_per_item_s)
    assert est.idle_power_w is None and "idle" in est.unavailable["idle_power_w"]
    with pytest.raises(InputError, match="TDP"):
        measure_energy(work, 4, [null], estimate=True)


def test_estimate_is_not_made_when_a_sensor_measured():
    clock, sensor, work, _ = fake_cell()
    out = measure_energy(work, 1, [sensor], settle_s=0, estimate=True, tdp_w=65.0, clock=clock, sleep=clock.sleep)
    assert [e.status for e in out] == ["measured"]


class FailingSensor(ConstantPowerSensor):
    def stop(self):
        super().stop()
        raise SensorUnavailable("the fake counter vanished", "unplugged")


def test_a_sensor_failing_mid_run_is_unavailable_and_the_others_measure():
    clock, good, work, _ = fake_cell()
    bad = FailingSensor(clock, 1.0, 2.0, 0.1)
    bad.label = "bad"
    out = measure_energy(work, 1, [good, bad], settle_s=0, clock=clock, sleep=clock.sleep)
    assert out[0].status == "measured" and out[0].power_w == pytest.approx(50.0)
    assert out[1].status == "unavailable" and out[1].power_w is None
    assert "unplugged" in out[1].reason


def test_work_exception_propagates_and_closes_windows(tmp_path):
    clock, sensor, _, _ = fake_cell()

    def work():
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        measure_energy(work, 1, [sensor], settle_s=0, warmup_calls=0, clock=clock, sleep=clock.sleep)
    assert len(sensor.windows) == 2  # idle window and the aborted one were both closed


def test_real_sampled_sensor_constant_power(tmp_path):
    """End to end on a fake Jetson tree: a constant 5 W rail, the real sampling thread, the real clock."""
    dev = tmp_path / "bus/i2c/drivers/ina3221x/7-0040/iio:device0"
    dev.mkdir(parents=True)
    (dev / "rail_name_0").write_text("VDD_IN\n")
    (dev / "in_power0_input").write_text("5000\n")
    sensor = JetsonSensor(root=str(tmp_path), period_s=0.01)
    import time

    def work():
        time.sleep(0.01)

    try:
        [e] = measure_energy(work, 2, [sensor], settle_s=0, min_window_s=0.2, min_periods=10)
    finally:
        sensor.close()
    assert e.status == "measured" and e.domains == ["VDD_IN"] and e.sensor == "jetson"
    assert e.window_s >= 0.2 and e.sampling_period_s == 0.01
    assert e.power_w == pytest.approx(5.0, rel=1e-9) and e.idle_power_w == pytest.approx(5.0, rel=1e-9)
    assert e.energy_per_item_j == pytest.approx(5.0 * e.time_per_item_s, rel=1e-9)
    assert e.energy_per_item_above_idle_j == pytest.approx(0.0, abs=1e-9)
    assert e.domain_power_w == {"VDD_IN": pytest.approx(5.0)}


def test_energy_record_round_trips():
    e = Energy.not_measured("rapl", "why", domains=["package-0"])
    assert Energy.from_dict(e.to_dict()) == e


@pytest.mark.parametrize("spec, message", [
    ("", "empty --sensors"),
    ("gpu", "unknown power sensor 'gpu'"),
    ("auto,rapl", "mixes 'auto'"),
    ("rapl,rapl", "named twice"),
    ("meter:", "empty argument"),
])
def test_bad_specs_are_one_line_errors(spec, message):
    from dnnbench.core.errors import DnnbenchError

    with pytest.raises(DnnbenchError, match=message) as info:
        open_sensors(spec)
    assert "\n" not in info.value.one_line() and "Fix:" in info.value.one_line()


def test_none_and_auto_never_return_an_empty_list(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    [off] = open_sensors("none")
    assert not off.available and "switched off" in off.reason
    [null] = open_sensors("auto", root=str(tmp_path))
    assert not null.available
    for word in ("nvml", "rapl", "jetson"):
        assert f"{word}:" in null.reason
