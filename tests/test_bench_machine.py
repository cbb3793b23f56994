"""Machine fingerprint, the peak FLOP/s probe, its cache, and % of peak in bench."""

import json
import os

import pytest

import dnnbench
from dnnbench.core.measurements import MachinePeak
from dnnbench.host import environment
from dnnbench.host import machine

MODELS = os.path.join(os.path.dirname(__file__), "bench_models.py")


def test_fingerprint_is_stable_and_hashes_identity_only():
    a, b = environment.capture("cpu"), environment.capture("cpu")
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    ident = {k: getattr(a, k) for k in a.IDENTITY}
    assert environment.fingerprint(ident) == a.fingerprint
    assert environment.fingerprint({**ident, "torch_version": "0.0"}) != a.fingerprint
    for name, why in a.unavailable.items():  # anything unreadable is None, with its reason
        assert getattr(a, name) is None and why


def test_cache_dir_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNBENCH_CACHE_DIR", str(tmp_path))
    assert machine.cache_path("abc") == tmp_path / "machine-abc.json"
    monkeypatch.delenv("DNNBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert machine.cache_dir() == tmp_path / "xdg" / "dnnbench"


def test_probe_measures_and_caches_per_thread_count(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNBENCH_CACHE_DIR", str(tmp_path))
    peak = machine.probe("cpu", threads=1, budget_s=0.05)
    assert peak.peak_flops_per_s == max(peak.gemm_flops_per_s, peak.conv_flops_per_s) > 0
    assert peak.best_probe == ("conv" if peak.conv_flops_per_s > peak.gemm_flops_per_s else "gemm")
    assert peak.bandwidth_bytes_per_s > 0
    for p in peak.probes:
        rate = p.get("flops_per_s") or p.get("bytes_per_s")
        assert rate == pytest.approx((p.get("flops") or p.get("bytes")) / p["best_s"])
    path = machine.save_peak(peak)
    assert path.parent == tmp_path and json.loads(path.read_text())["fingerprint"] == peak.fingerprint
    assert machine.load_peak(peak.fingerprint, "cpu", 1) == peak
    assert machine.load_peak(peak.fingerprint, "cpu", 7) is None  # another thread count is another peak
    assert machine.load_peak("0" * 16, "cpu", 1) is None


def test_bench_reports_percent_of_the_cached_peak(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNBENCH_CACHE_DIR", str(tmp_path))
    fp = environment.capture("cpu").fingerprint
    # A stand-in peak (not a measurement) so that the arithmetic can be checked exactly.
    fake = MachinePeak(fp, "cpu", 1, 5e9, "gemm", 5e9, 4e9, None, [], "now", dnnbench.__version__, 0.0)
    machine.save_peak(fake)
    run = dnnbench.bench(f"python:{MODELS}:tiny", [2], threads=1, in_process=True, max_time_per_cell=0.3)
    c = run.cell(2)
    assert run.machine_peak == fake and "machine_peak" not in run.unavailable
    assert c.fraction_of_peak == pytest.approx(c.achieved_flops_per_s / 5e9)
    tiny_peak = MachinePeak(fp, "cpu", 1, 1.0, "gemm", 1.0, 1.0, None, [], "now", dnnbench.__version__, 0.0)
    machine.save_peak(tiny_peak)  # an impossible peak: the cell must say the probe or the count is wrong
    run = dnnbench.bench(f"python:{MODELS}:tiny", [2], threads=1, in_process=True, max_time_per_cell=0.3)
    assert any(w.kind == "peak" for w in run.cell(2).warnings)
