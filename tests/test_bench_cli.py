"""`dnnbench bench` and `dnnbench machine` as a user runs them: a real subprocess, exit codes, one-line errors."""

import json
import os

import pytest
import torch

from tests.conftest import run_cli

MODELS = os.path.join(os.path.dirname(__file__), "bench_models.py")
TINY = f"python:{MODELS}:tiny"


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dnnbench: error: ") and "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0]


@pytest.mark.parametrize("args,needles", [
    (["--batch-sizes", "0"], ["batch size 0 is not allowed", "Fix:"]),
    (["--batch-sizes", "a,b"], ["'a,b' are malformed", "Fix:"]),
    (["--batch-sizes", "1,,2"], ["malformed"]),
    (["--threads", "0"], ["--threads 0 is not allowed", "Fix:"]),
    (["--target-ci", "0"], ["--target-ci 0.0 is not allowed"]),
    (["--max-time-per-cell", "-1"], ["--max-time-per-cell -1.0 is not allowed"]),
    (["--processes", "0"], ["--processes 0 is not allowed", "Fix:"]),
])
def test_bad_options_are_one_line_errors(args, needles):
    assert_one_line_error(run_cli("bench", TINY, *args), *needles)


def test_unknown_model_is_a_one_line_error():
    assert_one_line_error(run_cli("bench", "resnet5O", "--batch-sizes", "1"), "resnet5O")


def test_cuda_without_cuda_is_a_one_line_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_one_line_error(run_cli("bench", TINY, "--device", "cuda"), "--device cuda is not available",
                          "use --device cpu")


def test_unknown_device_is_a_one_line_error():
    assert_one_line_error(run_cli("bench", TINY, "--device", "tpu"), "unknown device 'tpu'")


def test_machine_cached_without_a_cache_says_how_to_get_one(tmp_path):
    proc = run_cli("machine", "--cached", env={"DNNBENCH_CACHE_DIR": str(tmp_path)})
    assert_one_line_error(proc, "run `dnnbench machine` without --cached")


def test_bench_json_is_si_named_and_keeps_raw_samples(tmp_path):
    proc = run_cli("bench", TINY, "--batch-sizes", "1,3", "--max-time-per-cell", "0.3", "--threads", "1",
                   "--format", "json", env={"DNNBENCH_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert [r["spec"]["batch_size"] for r in run["records"]] == [1, 3]
    for r, m in zip(run["records"], run["metrics"]):
        v, notes = m["values"], m["notes"]
        assert r["status"] == "ok" and r["spec"]["isolation"] == "subprocess" and r["spec"]["threads"] == 1
        assert v["latency_min_s"] <= v["latency_median_s"] and len(r["samples"]["latency_s"]) == v["latency_samples"]
        assert v["throughput_items_per_s"] == pytest.approx(r["spec"]["batch_size"] / v["latency_median_s"])
        assert v["peak_rss_bytes"] > 0 and "rss_above_baseline_bytes" in v
        assert "cuda_peak_allocated_bytes" not in v and "cuda_peak_allocated_bytes" in notes
        assert "fraction_of_peak" not in v and "dnnbench machine" in notes["fraction_of_peak"]
        env = r["environment"]
        assert env["fingerprint"] == run["environment"]["fingerprint"] and env["torch_version"] == torch.__version__
    assert "dnnbench machine" in run["unavailable"]["machine_peak"]


_SCALE = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def _unit(text: str) -> float:
    """The scale of a printed figure's unit ("1.4 GiB" -> 2**30): its last digit's tolerance follows it."""
    return _SCALE.get(text.rpartition(" ")[2], 1.0)


def _number(text: str) -> float:
    """A table cell back to SI: "39.9 ms" -> 0.0399, "997.9 MiB" -> bytes, "+/-1.4 %" -> 0.014, "1,234.5" -> 1234.5."""
    text = text.removeprefix("+/-").replace(",", "")
    if text.endswith(" %"):
        return float(text[:-2]) / 100
    value, _, unit = text.partition(" ")
    return float(value) * _SCALE.get(unit, 1.0)


def _table_rows(stdout: str) -> list[dict[str, str]]:
    """The rows of the first rich table in ``stdout``, as {column header: cell text}."""
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("┃"))
    cols = [c.strip() for c in lines[head].strip("┃").split("┃")]
    rows = []
    for line in lines[head + 2:]:
        if not line.startswith("│"):
            break
        rows.append(dict(zip(cols, (c.strip() for c in line.strip("│").split("│")))))
    return rows


def test_bench_table_in_process(monkeypatch, capsys):
    """Every figure of the table is the run's own, in its unit (read back from the text, not the formatter)."""
    from dnnbench import api
    from dnnbench.cli import main

    runs, real = [], api.bench
    monkeypatch.setattr(api, "bench", lambda *a, **kw: runs.append(real(*a, **kw)) or runs[-1])
    main(["bench", TINY, "--batch-sizes", "2,3", "--max-time-per-cell", "0.3", "--in-process", "--sensors", "none"])
    stdout = capsys.readouterr().out
    (run,) = runs
    rows = _table_rows(stdout)
    assert [int(r["batch"]) for r in rows] == [c.batch_size for c in run.cells] == [2, 3]
    three_digits = dict(rel=5e-3)  # seconds print with 3 significant digits
    for r, c in zip(rows, run.cells):
        st = c.latency_s
        assert c.status == "ok" and r["status"] == "ok" + (" !" if c.warnings else "")
        assert _number(r["median"]) == pytest.approx(st.median_s, **three_digits)
        assert _number(r["per item"]) == pytest.approx(st.median_s / c.batch_size, **three_digits)
        assert _number(r["items/s"]) == pytest.approx(c.batch_size / st.median_s, abs=0.051)
        assert _number(r["cold start"]) == pytest.approx(c.cold_start_s, **three_digits)
        assert int(r["n"]) == st.n == len(c.samples_s) >= 3
        if st.ci_rel_halfwidth is None:  # under 6 samples (a loaded machine): no CI exists
            assert r["95 % CI"] == "too few samples" and st.n < 6
        else:
            assert _number(r["95 % CI"]) == pytest.approx(st.ci_rel_halfwidth, abs=5.1e-4)
        for col, v in (("p90", st.p90_s), ("p99", st.p99_s)):  # only with enough samples: 64 and 662
            assert r[col] == "too few samples" if v is None else _number(r[col]) == pytest.approx(v, **three_digits)
        assert _number(r["peak RSS"]) == pytest.approx(c.peak_rss_bytes, abs=0.051 * _unit(r["peak RSS"]))
        assert _number(r["static act.+weights"]) == pytest.approx(
            c.static.activation_peak_bytes + c.static.weight_bytes, abs=0.051 * 2**10)
    assert f"{run.model} on cpu, {run.threads} threads, eager fp32" in stdout
    assert f"machine {run.environment.fingerprint}: {run.environment.cpu_model}" in stdout


def test_progress_bar_on_a_terminal_survives_skipped_cells(tmp_path):
    """rich draws the bar only on a terminal: run under script(1) to get one."""
    import shutil
    import subprocess
    import sys

    if shutil.which("script") is None:
        pytest.skip("script(1) is not installed")
    ref = f"python:{MODELS}:oom_from_4"
    cmd = f"{sys.executable} -m dnnbench bench {ref} --batch-sizes 2,4,8 --max-time-per-cell 0.3 --threads 1 --in-process"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "batch 8: skipped: batch size 4 already ran out of memory" in proc.stdout.replace("\r", "")
