"""benchmarks/gpu_check.py: its checks decide PASS/FAIL/UNAVAILABLE right on recorded and fake results; without
CUDA it says so and exits 0; its CPU dry run drives the real CLI end to end."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod
    spec.loader.exec_module(mod)
    return mod


gc = _load()


def _row(model="resnet50", device="cuda", runtime="eager", precision="fp32", batch=32, status="ok", **figures):
    """An export row of an ok bench cell with every figure present (override or drop with figures)."""
    row = {"kind": "bench", "model_ref": f"torchvision:{model}", "device": device, "runtime": runtime,
           "precision": precision, "batch_size": batch, "status": status, "message": None,
           "metric_group": "time+memory+power", "unavailable": {}}
    for f in gc.BENCH_FIGURES:
        row[f] = 1.0
    row.update(power_sensor="nvml:0", power_w=300.0, idle_power_w=80.0, energy_per_item_j=0.1,
               cuda_peak_allocated_bytes=200e6, static_weight_bytes=100e6, latency_median_s=0.01,
               equivalence_max_abs_diff=0.001, equivalence_mean_abs_diff=0.0001, equivalence_top1_agreement=1.0,
               equivalence_reference_max_abs=5.0)
    row.update(figures)
    return row


def _run(rows=(), records=(), plan=None, steps=None, runtimes=None, probe=None):
    run = gc.Run(plan or gc.cuda_plan(), probe=probe or {"available": True, "name": "NVIDIA H200"})
    run.rows, run.records = list(rows), list(records)
    run.steps = steps or {}
    run.runtimes = runtimes or []
    return run


def _record(device="cuda", timer="cuda_events", cudnn=True, start="fresh interpreter", machine="fp1", **env):
    environment = {"gpu_name": "NVIDIA H200", "gpu_driver": "570.1", "cuda_version": "13.0", "cudnn_version": 92400,
                   "gpu_clocks_mhz": {"sm_mhz": 1980.0}, "unavailable": {},
                   "extra": {"cudnn_benchmark": cudnn, "worker_start": start}}
    environment.update(env)
    return {"kind": "bench", "status": "ok", "spec": {"device": device, "machine": machine},
            "result": {"timing": {"timer": timer}}, "environment": environment}


def test_cuda_faster_than_cpu_passes_and_fails_on_the_figures():
    fast = _run([_row(latency_median_s=0.01), _row(device="cpu", latency_median_s=0.5)])
    c = gc.check_cuda_faster(fast)
    assert c.status == gc.PASS and "50.0x" in c.figure
    slow = _run([_row(latency_median_s=0.6), _row(device="cpu", latency_median_s=0.5)])
    assert gc.check_cuda_faster(slow).status == gc.FAIL
    assert gc.check_cuda_faster(_run([_row()])).status == gc.FAIL  # no CPU cell: not a pass
    assert gc.check_cuda_faster(_run(plan=gc.cpu_plan())).status == gc.UNAVAILABLE


def test_allocator_peak_below_the_weights_fails_and_fp16_weights_are_half():
    assert gc.check_allocator_peak(_run([_row(cuda_peak_allocated_bytes=150e6)])).status == gc.PASS
    c = gc.check_allocator_peak(_run([_row(cuda_peak_allocated_bytes=50e6)]))
    assert c.status == gc.FAIL and "< weights" in c.reason
    # fp16 weights take half the fp32 static figure: 60 MB >= 50 MB passes, 40 MB fails
    assert gc.check_allocator_peak(_run([_row(precision="fp16", cuda_peak_allocated_bytes=60e6)])).status == gc.PASS
    assert gc.check_allocator_peak(_run([_row(precision="fp16", cuda_peak_allocated_bytes=40e6)])).status == gc.FAIL
    missing = _row(cuda_peak_allocated_bytes=None)
    assert gc.check_allocator_peak(_run([missing])).status == gc.FAIL
    # ONNX Runtime's memory is not torch's allocator: not judged, so no cell to judge is a failure
    assert gc.check_allocator_peak(_run([_row(runtime="onnxruntime", cuda_peak_allocated_bytes=1)])).status == gc.FAIL


def test_power_must_be_nvml_and_above_idle():
    c = gc.check_power(_run([_row()]))
    assert c.status == gc.PASS and "300.0 W" in c.figure and "80.0 W idle" in c.figure
    assert gc.check_power(_run([_row(power_w=70.0)])).status == gc.FAIL
    assert gc.check_power(_run([_row(power_sensor="rapl")])).status == gc.FAIL
    none = _row(power_w=None, unavailable={"power_w": "nvidia-ml-py is not installed"})
    c = gc.check_power(_run([none]))
    assert c.status == gc.UNAVAILABLE and "nvidia-ml-py" in c.reason


def test_every_figure_present_or_explained_and_none_silently_zero():
    figures, zeros = gc.check_figures(_run([_row()]))
    assert figures.status == gc.PASS and zeros.status == gc.PASS
    silent = _row(fraction_of_peak=None)
    assert gc.check_figures(_run([silent]))[0].status == gc.FAIL
    explained = _row(fraction_of_peak=None, unavailable={"fraction_of_peak": "no measured peak"})
    assert gc.check_figures(_run([explained]))[0].status == gc.PASS
    assert gc.check_figures(_run([_row(latency_median_s=0.0)]))[1].status == gc.FAIL
    # power not asked for (time+memory): its figures are not required
    no_power = _row(metric_group="time+memory", power_w=None, idle_power_w=None, energy_per_item_j=None,
                    energy_per_item_above_idle_j=None, power_sensor=None)
    assert gc.check_figures(_run([no_power]))[0].status == gc.PASS
    # the equivalence figures are required of every configuration but the reference
    no_eq = _row(precision="fp16", equivalence_max_abs_diff=None)
    assert gc.check_figures(_run([no_eq]))[0].status == gc.FAIL
    assert gc.check_figures(_run([]))[0].status == gc.FAIL


def test_oom_cell_and_the_skipped_batch_after_it():
    b = gc.ABSURD_BATCH

    def cells(absurd_status):
        return [_row("wide", batch=1), _row("wide", batch=b, status=absurd_status, message="CUDA out of memory"),
                _row("wide", batch=2 * b, status="skipped")]

    c = gc.check_oom(_run(cells("oom")))
    assert c.status == gc.PASS and "oom" in c.figure
    assert gc.check_oom(_run(cells("error"))).status == gc.FAIL
    assert gc.check_oom(_run(cells("oom")[1:])).status == gc.FAIL  # batch 1 must have run
    assert gc.check_oom(_run([])).status == gc.FAIL
    assert gc.check_oom(_run(plan=gc.cpu_plan())).status == gc.UNAVAILABLE


def test_timer_cudnn_workers_and_environment_from_records():
    good = _run(records=[_record(), _record(device="cpu", timer="perf_counter", start="forked from a fork server")])
    assert gc.check_timer(good).status == gc.PASS
    assert [c.status for c in gc.check_cudnn_and_workers(good)] == [gc.PASS, gc.PASS]
    assert [c.status for c in gc.check_environment(good)] == [gc.PASS, gc.PASS]
    assert gc.check_timer(_run(records=[_record(timer="perf_counter")])).status == gc.FAIL
    cudnn, workers = gc.check_cudnn_and_workers(_run(records=[_record(cudnn=False, start="forked from a fork server")]))
    assert cudnn.status == gc.FAIL and workers.status == gc.FAIL
    silent = _run(records=[_record(gpu_driver=None), _record(device="cpu")])
    assert gc.check_environment(silent)[0].status == gc.FAIL
    explained = _run(records=[_record(gpu_driver=None, unavailable={"gpu_driver": "nvidia-smi is not on PATH"}),
                              _record(device="cpu")])
    env, fingerprint = gc.check_environment(explained)
    assert env.status == gc.PASS and "nvidia-smi" in env.reason and fingerprint.status == gc.PASS
    two = _run(records=[_record(), _record(device="cpu", machine="other")])
    assert gc.check_environment(two)[1].status == gc.FAIL
    assert gc.check_timer(_run(records=[])).status == gc.FAIL


RUNTIMES = [
    {"name": "eager", "available": True, "precisions": {p: {"runs": True, "native": True} for p in ("fp32", "fp16", "bf16")}},
    {"name": "compile", "available": True, "precisions": {p: {"runs": True, "native": True} for p in ("fp32", "fp16", "bf16")}},
    {"name": "onnxruntime", "available": False, "reason": "no GPU execution provider", "fix": "pip install onnxruntime-gpu",
     "details": {"providers": ["CPUExecutionProvider"]}, "precisions": {}},
]


def test_runtime_cells_equivalence_and_unavailable_runtimes():
    plan = gc.cuda_plan()
    rows = [_row("resnet18", precision=p, batch=b) for p in ("fp32", "fp16", "bf16") for b in (1, 32)]
    rows += [_row("convnet", runtime="compile", precision=p, batch=32) for p in ("fp32", "fp16", "bf16")]
    checks = {c.name: c for c in gc.check_runtime_cells(_run(rows, plan=plan, runtimes=RUNTIMES))}
    assert checks["eager fp32"].status == gc.PASS and "reference" in checks["eager fp32"].figure
    assert checks["compile bf16"].status == gc.PASS
    assert checks["onnxruntime fp16"].status == gc.UNAVAILABLE and "onnxruntime-gpu" in checks["onnxruntime fp16"].reason
    # outputs far from eager fp32: wrong, not rounded
    rows[2] = _row("resnet18", precision="fp16", batch=1, equivalence_max_abs_diff=4.0)
    checks = {c.name: c for c in gc.check_runtime_cells(_run(rows, plan=plan, runtimes=RUNTIMES))}
    assert checks["eager fp16"].status == gc.FAIL and "max|diff|" in checks["eager fp16"].reason
    # a precision that runs here but has no ok cell is a failure
    checks = {c.name: c for c in gc.check_runtime_cells(_run(rows[:2], plan=plan, runtimes=RUNTIMES))}
    assert checks["eager bf16"].status == gc.FAIL
    runtime_lines = {c.name: c.status for c in gc.check_runtimes(_run(runtimes=RUNTIMES, steps={
        "runtimes": gc.StepResult("runtimes", [], 0, "[]")}))}
    assert runtime_lines["runtime eager"] == gc.PASS and runtime_lines["runtime onnxruntime"] == gc.UNAVAILABLE


def test_steps_that_time_out_or_fail_are_failures_with_their_reason():
    timed_out = gc.StepResult("study_power", ["py", "-m", "dnnbench", "study", "resnet50"], None, timeout_s=150)
    assert "timed out after 150 s" in timed_out.why()
    failed = gc.StepResult("study_power", ["py", "-m", "dnnbench", "study"], 2,
                           stderr="dnnbench: error: --device cuda is not available on this machine")
    assert "exit 2" in failed.why() and "not available" in failed.why()
    checks = gc.check_studies(_run(steps={"study_power": timed_out, "study_oom": failed}))
    assert [c.status for c in checks] == [gc.FAIL, gc.FAIL]
    skipped = gc.StepResult("machine", [], None, skipped=gc.SKIPPED)
    assert gc.check_machine(_run(steps={"machine": skipped})).status == gc.UNAVAILABLE
    line, rc = gc.summarize([gc.Check("a", gc.PASS), gc.Check("b", gc.FAIL), gc.Check("c", gc.UNAVAILABLE)], 1.0)
    assert rc == 1 and "1 passed, 1 failed, 1 unavailable" in line
    assert gc.summarize([gc.Check("a", gc.PASS), gc.Check("c", gc.UNAVAILABLE)], 1.0)[1] == 0


def test_machine_peak_outside_any_gpu_is_a_failure():
    step = gc.StepResult("machine", [], 0, "[]")
    run = _run(steps={"machine": step})
    run.machine = [{"peak_flops_per_s": 6.0e13, "bandwidth_bytes_per_s": 4.0e12, "best_probe": "gemm"}]
    assert gc.check_machine(run).status == gc.PASS
    run.machine = [{"peak_flops_per_s": 5.0e9, "bandwidth_bytes_per_s": 4.0e12, "best_probe": "gemm"}]
    assert gc.check_machine(run).status == gc.FAIL


def _script(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, **(env or {})})


def test_unknown_step_is_one_line_and_exit_2():
    out = _script("--dry-run-cpu", "--skip", "nonsense", timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "unknown step nonsense" in out.stderr and "Traceback" not in out.stderr


def test_without_cuda_it_says_so_and_exits_0():
    out = _script(env={"CUDA_VISIBLE_DEVICES": ""}, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("no CUDA here: ") and "Nothing to check" in out.stdout


@pytest.mark.slow
def test_dry_run_on_the_cpu_drives_the_cli_end_to_end(tmp_path):
    out = _script("--dry-run-cpu", "--keep", str(tmp_path), "--skip",
                  "machine,study_eager,study_compile,study_onnxruntime", timeout=400)
    text = out.stdout
    assert out.returncode == 0, text + out.stderr[-3000:]
    lines = {ln.split(":")[0][12:].split(" (")[0]: ln[:11].strip() for ln in text.splitlines()
             if ln[:11].strip() in ("PASS", "FAIL", "UNAVAILABLE")}
    for name in ("runtime eager", "study_power", "every figure present or unavailable with why",
                 "no figure silently zero", "export --format json", "report"):
        assert lines.get(name) == "PASS", (name, text)
    for name in ("CUDA-event timing", "allocator peak >= weight bytes", "NVML power above idle under load"):
        assert lines.get(name) == "UNAVAILABLE", (name, text)
    assert "0 failed" in text.splitlines()[-2]
    assert (tmp_path / "results.db").is_file() and (tmp_path / "report" / "report.html").is_file()


def test_bf16_on_cuda_says_emulated_or_no_gpu(monkeypatch):
    """runtimes' bf16 answer on CUDA (what the script's runtime lines show): no GPU is not 'compute capability'."""
    import torch

    from dnnbench.runtimes import precision as prec

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    s = prec.support("bf16", "cuda")
    assert not s.ok and "CUDA is not available" in s.note
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    s = prec.support("bf16", "cuda")
    assert s.ok and not s.native and "emulated" in s.note
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    s = prec.support("bf16", "cuda")
    assert s.ok and s.native and s.note == ""


def test_report_must_show_the_gpu_and_the_oom_cell(tmp_path):
    steps = {"report": gc.StepResult("report", [], 0), "export": gc.StepResult("export", [], 0)}
    run = _run([_row()], steps=steps)
    run.report_dir = tmp_path
    (tmp_path / "report.html").write_text('<td>NVIDIA H200</td><td class="l status-oom">oom</td>')
    export, report = gc.check_export_report(run)
    assert export.status == gc.PASS and report.status == gc.PASS
    (tmp_path / "report.html").write_text('<style>.status-oom{color:red}</style><td>NVIDIA H200</td>')
    assert gc.check_export_report(run)[1].status == gc.FAIL  # the stylesheet's class name is no oom cell
    (tmp_path / "report.html").unlink()
    assert gc.check_export_report(run)[1].status == gc.FAIL
