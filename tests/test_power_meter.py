"""External meter log: alignment with wall-clock windows, gaps, coverage, malformed lines."""

import pytest

from dnnbench.power import SensorSpecError, SensorUnavailable, measure_energy, open_sensors
from dnnbench.power.meter import MeterSensor, meter_energy, parse_meter_log

T0 = 1_718_000_000.0  # Unix seconds


@pytest.fixture
def log(tmp_path):
    """100 W from T0 to T0+10 (1 Hz), nothing from T0+10 to T0+20, 200 W from T0+20 to T0+30; line 8 is garbled."""
    lines = ["timestamp,watts"]
    lines += [f"{T0 + i:.3f},100.0" for i in range(0, 6)]  # lines 2-7
    lines += ["2024-06-10 08:13:25;97"]  # line 8: a garbled line (wrong separator)
    lines += [f"{T0 + i:.3f},100.0" for i in range(6, 11)]
    lines += ["# meter paused for 10 s"]
    lines += [f"{T0 + i:.3f},200" for i in range(20, 31)]
    p = tmp_path / "meter.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_malformed_line_is_skipped_and_counted(log):
    parsed = parse_meter_log(str(log))
    assert len(parsed.times) == 22
    assert [n for n, _ in parsed.skipped] == [8]
    assert "1 malformed line(s)" in parsed.skipped_note() and "line 8" in parsed.skipped_note()
    assert parsed.period_s == 1.0


def test_covered_window_is_exact(log):
    r = meter_energy(parse_meter_log(str(log)), T0 + 2, T0 + 8)
    assert r.energy_j == pytest.approx(600.0)
    assert r.coverage == pytest.approx(1.0)
    assert any("line 8" in n for n in r.notes)


def test_gap_is_not_integrated_and_coverage_is_reported(log):
    r = meter_energy(parse_meter_log(str(log)), T0 + 5, T0 + 25)
    assert r.covered_s == pytest.approx(10.0)  # [5, 10] and [20, 25]
    assert r.coverage == pytest.approx(0.5)
    assert r.energy_j == pytest.approx(5 * 100 + 5 * 200)
    assert r.power_w == pytest.approx(150.0)
    assert any("covers 50.0 %" in n for n in r.notes)


def test_window_inside_a_gap_or_outside_the_log_is_unavailable(log):
    parsed = parse_meter_log(str(log))
    with pytest.raises(SensorUnavailable, match="falls in a gap"):
        meter_energy(parsed, T0 + 12, T0 + 18)
    with pytest.raises(SensorUnavailable, match="does not cover the window"):
        meter_energy(parsed, T0 + 100, T0 + 110)


def test_sensor_aligns_its_window_by_wall_clock(log):
    clock = iter([T0 + 2.5, T0 + 7.5, T0 + 7.5])
    s = MeterSensor(str(log), wallclock=lambda: next(clock))
    assert s.update_period_s == 1.0 and s.label == f"meter:{log}"
    s.start()
    r = s.stop()
    assert (r.start_unix_s, r.end_unix_s) == (T0 + 2.5, T0 + 7.5)
    assert r.energy_j == pytest.approx(500.0)


def test_iso_timestamps(tmp_path):
    p = tmp_path / "iso.csv"
    p.write_text("2024-06-10T08:00:00+00:00,10\n2024-06-10T08:00:01Z,30\n2024-06-10T08:00:02+00:00,30\n")
    parsed = parse_meter_log(str(p))
    t = parsed.times[0]
    assert parsed.skipped == []
    assert meter_energy(parsed, t, t + 2).energy_j == pytest.approx(20 + 30)


def test_window_not_covered_is_an_unavailable_record_never_zero(log):
    s = MeterSensor(str(log), flush_wait_s=0)  # the log is from 2024: today's window is not in it
    [rec] = measure_energy(lambda: None, 1, [s], settle_s=0, min_window_s=0.01, min_periods=0)
    assert rec.status == "unavailable" and rec.power_w is None and rec.energy_per_item_j is None
    assert "does not cover the window" in rec.reason
    assert rec.unavailable["energy_per_item_j"] == rec.reason


def test_meter_needs_an_existing_file(tmp_path):
    with pytest.raises(SensorSpecError, match="not found"):
        open_sensors(f"meter:{tmp_path / 'missing.csv'}")
