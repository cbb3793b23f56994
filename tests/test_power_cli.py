"""`dnnbench sensors`: every sensor listed, available or not, with the reason; exit 0 even when none works."""

import json


def test_sensors_on_this_machine_explains_each(cli):
    r = cli("sensors")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("│ ") and line[2] != " "]
    assert [row.split("│")[1].strip() for row in rows][:4] == ["nvml", "rapl", "jetson", "meter"]
    for row in rows:
        status, why = row.split("│")[2].strip(), row.split("│")[5].strip()
        assert status == "available" or (status == "unavailable" and why), row  # never without a reason
    if all("│ unavailable " in row for row in rows):
        assert "no power sensor works here" in r.stdout and "never 0" in r.stdout


def test_sensors_with_nothing_here(tmp_path, cli):
    """An empty sysfs root: no powercap, no INA3221 (and this test machine has no NVIDIA driver or NVML)."""
    r = cli("sensors", "--format", "json", env={"DNNBENCH_SYSFS_ROOT": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    by = {i["name"]: i for i in json.loads(r.stdout)}
    assert not by["rapl"]["available"] and "powercap does not exist" in by["rapl"]["reason"]
    assert "CPU sockets" in by["rapl"]["scope"] and "not the whole machine" in by["rapl"]["scope"]
    assert not by["jetson"]["available"] and "not a Jetson" in by["jetson"]["reason"]
    assert not by["meter"]["available"] and "meter:FILE" in by["meter"]["reason"]
    if not by["nvml"]["available"]:
        assert "dnnbench[nvml]" in by["nvml"]["reason"] or "NVIDIA driver" in by["nvml"]["reason"]


def test_sensors_lists_a_fake_jetson_and_a_meter(tmp_path, cli):
    dev = tmp_path / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    dev.mkdir(parents=True)
    (dev / "in1_label").write_text("VDD_IN\n")
    (dev / "in1_input").write_text("5000\n")
    (dev / "curr1_input").write_text("1000\n")
    log = tmp_path / "m.csv"
    log.write_text("1718000000,10\n1718000000.5,11\n")
    r = cli("sensors", f"jetson,meter:{log}", "--format", "json", env={"DNNBENCH_SYSFS_ROOT": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    jet, met = json.loads(r.stdout)
    assert jet["available"] and jet["domains"] == ["VDD_IN"] and jet["energy_counter"] is False
    assert met["available"] and met["name"] == f"meter:{log}" and met["update_period_s"] == 0.5


def test_bad_sensor_spec_is_a_one_line_error(cli):
    r = cli("sensors", "gpu")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "unknown power sensor 'gpu'" in r.stderr and "Fix:" in r.stderr
