"""Power wired into bench and study: unavailable with its reason here; exact with a meter log of known power."""

import time

import pytest

from dnnbench import api
from dnnbench.power import probe_sensors
from dnnbench.runner import load_results, study

TINY = "python:examples/tiny_transformer.py:build"
WATTS = 12.0


def _meter_log(path, seconds_before=60.0, seconds_after=600.0, period=0.1):
    """A lab meter's log of a constant WATTS, sampled every `period` s around now."""
    now = time.time()
    n_before, n_after = int(seconds_before / period), int(seconds_after / period)
    with open(path, "w") as fh:
        fh.write("timestamp,watts\n")
        for i in range(-n_before, n_after):
            fh.write(f"{now + i * period:.3f},{WATTS}\n")
    return str(path)


def test_bench_says_why_power_is_unavailable_and_exits_0(cli):
    if any(s.available for s in probe_sensors("auto")):
        pytest.skip("this machine has a working power sensor")
    proc = cli("bench", TINY, "--batch-sizes", "1", "--max-time-per-cell", "0.5", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("power:"))
    assert line.startswith("power: unavailable:") and "rapl" in line and "nvml" in line
    assert "dnnbench[nvml]" in proc.stdout  # not eaten as markup


def test_energy_per_item_from_a_meter_log_with_known_power(tmp_path):
    log = _meter_log(tmp_path / "meter.csv")
    run = api.bench(TINY, batch_sizes=[2], threads=1, max_time_per_cell=0.5, in_process=True,
                    sensors=f"meter:{log}")
    cell = run.cells[0]
    assert cell.status == "ok"
    e = cell.power
    assert e.status == "measured" and e.sensor.startswith("meter")
    assert e.power_w == pytest.approx(WATTS, rel=1e-6) and e.idle_power_w == pytest.approx(WATTS, rel=1e-6)
    # energy per item = mean power x time per item over the measured window; above idle: (12 - 12) x t
    assert e.energy_per_item_j == pytest.approx(WATTS * e.time_per_item_s, rel=1e-6)
    assert e.energy_per_item_above_idle_j == pytest.approx(0.0, abs=1e-9)
    assert e.window_s >= 2.0 and e.items == 2 * e.calls
    from dnnbench.core.view import metrics

    assert metrics(cell.to_record()).get("power_w") == pytest.approx(WATTS)
    assert cell.to_dict()["result"]["energy"][0]["sensor"] == e.sensor


def test_bad_sensor_spec_is_one_line(cli):
    proc = cli("bench", TINY, "--sensors", "bogus", "--batch-sizes", "1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnnbench: error:") and "bogus" in lines[0]


def test_study_stores_power_metrics(tmp_path):
    log = _meter_log(tmp_path / "meter.csv")
    db = str(tmp_path / "p.db")
    s = study([TINY], batch_sizes=[1], metrics="time,power", store=db, threads=1, max_time_per_cell=0.5,
              sensors=f"meter:{log}")
    assert s.statuses == {"ok": 1}
    df = load_results(db)
    assert df.metric_group.iloc[0] == "time+memory+power"  # bench cells always measure memory
    assert df.power_w.iloc[0] == pytest.approx(WATTS)
    assert df.energy_per_item_j.iloc[0] == pytest.approx(WATTS * df.power_time_per_item_s.iloc[0], rel=1e-6)
    assert df.energy_per_item_above_idle_j.iloc[0] == pytest.approx(0.0, abs=1e-9)
    assert df.power_window_s.iloc[0] >= 2.0


def test_study_without_sensors_stores_power_as_null_with_reason(tmp_path):
    if any(s.available for s in probe_sensors("auto")):
        pytest.skip("this machine has a working power sensor")
    import sqlalchemy as sa

    db = str(tmp_path / "p.db")
    study([TINY], batch_sizes=[1], metrics="time,power", store=db, threads=1, max_time_per_cell=0.5)
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = dict(conn.exec_driver_sql("SELECT name, note FROM metrics WHERE value IS NULL").all())
    engine.dispose()
    assert "power_w" in rows and "unavailable" in rows["power_w"] or "no power sensor" in rows["power_w"]
