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
    assert [c["batch_size"] for c in run["cells"]] == [1, 3]
    for c in run["cells"]:
        assert c["status"] == "ok" and c["isolation"] == "subprocess" and c["threads"] == 1
        lat = c["latency_s"]
        assert lat["min_s"] <= lat["median_s"] and len(c["samples_s"]) == lat["n"]
        assert c["throughput_items_per_s"] == pytest.approx(c["batch_size"] / lat["median_s"])
        assert c["peak_rss_bytes"] > 0 and c["rss_above_baseline_bytes"] is not None
        assert c["cuda_peak_allocated_bytes"] is None and "cuda_peak_allocated_bytes" in c["memory"]["unavailable"]
        assert c["fraction_of_peak"] is None and "dnnbench machine" in c["roofline"]["unavailable"]["fraction_of_peak"]
        env = c["environment"]
        assert env["fingerprint"] == run["environment"]["fingerprint"] and env["torch_version"] == torch.__version__
    assert "dnnbench machine" in run["unavailable"]["machine_peak"]


def test_bench_table_in_process():
    proc = run_cli("bench", TINY, "--batch-sizes", "2", "--max-time-per-cell", "0.3", "--in-process")
    assert proc.returncode == 0, proc.stderr
    for word in ("median", "95 % CI", "items/s", "peak RSS", "RSS above base", "machine "):
        assert word in proc.stdout
    assert "too few samples" in proc.stdout or "p99" in proc.stdout


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
