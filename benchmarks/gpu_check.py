"""Every CUDA path of dnnbench, end to end on a real GPU, in one prepared run: one line per check.

    python benchmarks/gpu_check.py                  # on a CUDA machine: <= 6 minutes; exit 1 if any check FAILs
    python benchmarks/gpu_check.py --dry-run-cpu    # the same steps on the CPU with tiny models (about a minute);
                                                    # the CUDA-only checks say UNAVAILABLE
    python benchmarks/gpu_check.py --keep DIR       # keep the store, the report and each step's log in DIR

It drives the real CLI (``python -m dnnbench ...``) in subprocesses, each with its own time limit taken from
one budget (``--budget-s``, default 330 s), against a temporary store and machine cache, with random weights
(nothing is downloaded). The steps: ``runtimes`` and ``sensors --format json``; ``machine --device cuda``;
a study of resnet50 at batch 1 and 32 with time, memory and power (NVML); resnet50 at batch 32 on the CPU for
comparison; eager at fp32/fp16/bf16 on resnet18; compile (Inductor, Triton kernels) on a tiny convnet and
onnxruntime (CUDA/TensorRT execution providers) on resnet18 at fp32/fp16/bf16; a model whose output at an
absurd batch (2^18) needs 1 TiB, which must become an ``oom`` cell with the next batch ``skipped``; then
``export`` and ``report`` of that store. Then it checks the results for sense and prints, per check,
``PASS``, ``FAIL`` or ``UNAVAILABLE``, the figure and the reason, and a summary. Without CUDA it says so and
exits 0. The model factories below (``convnet``, ``wide``) are what the steps measure as
``python:benchmarks/gpu_check.py:NAME``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SELF = f"python:{Path(__file__).resolve()}"
ABSURD_BATCH = 1 << 18  # wide() at this batch: 2^18 x 2^20 float32 outputs = 1 TiB, beyond any GPU
PASS, FAIL, UNAVAILABLE = "PASS", "FAIL", "UNAVAILABLE"
SKIPPED, NOTHING_RUNS = "skipped by --skip", "nothing of it runs here"
STEPS = ("runtimes", "sensors", "machine", "study_power", "study_cpu", "study_eager", "study_oom", "study_compile",
         "study_onnxruntime", "export", "report")
REPORT_RESERVE_S = 45.0  # of the budget, kept for export and report, which read what the studies stored


# ---- the models the steps measure (imported by dnnbench's workers: definitions only at module level) ----

def convnet():
    """A tiny convnet (conv, batch norm, ReLU, pooling, linear): compile's Triton kernels in seconds."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return m, torch.randn(1, 3, 32, 32)


def wide():
    """One linear layer from 8 to 2^20 features: 32 MiB of weights, 4 MiB of output per item."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Linear(8, 1 << 20), torch.randn(1, 8)


# ---- results ----

@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, FAIL or UNAVAILABLE
    figure: str = ""
    reason: str = ""

    def line(self) -> str:
        text = f"{self.status:<11} {self.name}"
        if self.figure:
            text += f": {self.figure}"
        if self.reason:
            text += f" ({self.reason})"
        return text


@dataclass
class StepResult:
    """One CLI call: its exit code (None: killed at its time limit), output, wall time."""

    name: str
    argv: list[str]
    rc: int | None
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    timeout_s: float = 0.0
    skipped: str = ""  # why it did not run at all

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def left_out(self) -> bool:
        """Not run on purpose (``--skip``, or nothing of it runs here): its checks are UNAVAILABLE, not FAIL."""
        return self.skipped in (SKIPPED, NOTHING_RUNS)

    def why(self) -> str:
        """One line on why this step did not succeed (empty when it did)."""
        if self.skipped:
            return self.skipped
        if self.rc is None:
            return f"`{' '.join(self.argv[2:5])} ...` timed out after {self.timeout_s:.0f} s and was killed"
        if self.rc != 0:
            tail = [ln for ln in (self.stderr + "\n" + self.stdout).splitlines() if ln.strip()
                    and not ln.startswith(("\r", " "))]
            last = next((ln for ln in reversed(tail) if "error" in ln.lower()), tail[-1] if tail else "no output")
            return f"exit {self.rc}: {last.strip()[:300]}"
        return ""


@dataclass
class Plan:
    """What the steps measure: CUDA (the real check) or the CPU dry run (same steps, tiny models)."""

    device: str
    threads: int | None
    power_model: str
    power_batches: str
    cap_s: float
    cpu_compare: bool
    precision_model: str
    precisions: str
    compile_model: str
    compile_batches: str
    compile_precisions: str
    ort_model: str
    ort_batches: str
    ort_precisions: str
    oom: bool
    power_cap_s: float = 2.0

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def cuda_plan() -> Plan:
    return Plan(device="cuda", threads=None, power_model="resnet50", power_batches="1,32", cap_s=1.0,
                cpu_compare=True, precision_model="resnet18", precisions="fp32,fp16,bf16",
                compile_model=f"{SELF}:convnet", compile_batches="32", compile_precisions="fp32,fp16,bf16",
                ort_model="resnet18", ort_batches="1,32", ort_precisions="fp32,fp16,bf16", oom=True)


def cpu_plan() -> Plan:
    tiny = f"{SELF}:convnet"
    return Plan(device="cpu", threads=1, power_model=tiny, power_batches="1,32", cap_s=0.3, cpu_compare=False,
                precision_model=tiny, precisions="fp32,bf16", compile_model=tiny, compile_batches="1",
                compile_precisions="fp32", ort_model=tiny, ort_batches="1", ort_precisions="fp32", oom=False,
                power_cap_s=0.3)


# ---- running the CLI ----

class Runner:
    """Runs CLI steps in subprocesses (own process group, killed at its limit) within one budget."""

    def __init__(self, work: Path, budget_s: float, python: str = sys.executable, verbose: bool = True,
                 skip: tuple[str, ...] = ()):
        self.work, self.python, self.verbose, self.skip = work, python, verbose, skip
        self.deadline = time.monotonic() + budget_s
        self.env = dict(os.environ)
        src = str(ROOT / "src")  # dnnbench from this checkout even where it is not installed
        self.env["PYTHONPATH"] = src + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")
        self.env["DNNBENCH_CACHE_DIR"] = str(work / "cache")  # the machine peak measured here, nobody's old one
        self.env.pop("DNNBENCH_STORE", None)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.steps: list[StepResult] = []

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def cli(self, name: str, args: list[str], limit_s: float, reserve_s: float = 0.0) -> StepResult:
        argv = [self.python, "-m", "dnnbench", *args]
        timeout = min(limit_s, self.left_s() - reserve_s)
        if name in self.skip:
            res = StepResult(name, argv, None, skipped=SKIPPED)
            self.steps.append(res)
            return res
        if timeout < 5:
            res = StepResult(name, argv, None, skipped=f"not run: the budget was spent ({self.left_s():.0f} s left)")
            self.steps.append(res)
            return res
        if self.verbose:
            print(f"... {name}: dnnbench {' '.join(args)}  (limit {timeout:.0f} s)", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the step and its workers: its own process group
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            rc = None
        res = StepResult(name, argv, rc, out or "", err or "", time.monotonic() - t0, timeout)
        (self.work / f"{name}.log").write_text(f"$ {' '.join(argv)}\nrc={rc} wall={res.wall_s:.1f}s\n"
                                              f"--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}\n")
        self.steps.append(res)
        return res


def probe_cuda(python: str = sys.executable, timeout_s: float = 120.0) -> dict:
    """torch's view of CUDA, from a subprocess (a hung driver cannot hang this script)."""
    code = ("import json, torch\n"
            "d = {'torch': torch.__version__, 'cuda_build': torch.version.cuda, 'available': False}\n"
            "try:\n"
            "    d['available'] = torch.cuda.is_available()\n"
            "    if d['available']:\n"
            "        p = torch.cuda.get_device_properties(0)\n"
            "        d.update(name=p.name, capability=f'{p.major}.{p.minor}', memory_bytes=p.total_memory,\n"
            "                 count=torch.cuda.device_count())\n"
            "except Exception as exc:\n"
            "    d['error'] = f'{type(exc).__name__}: {exc}'\n"
            "print(json.dumps(d))\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"available": False, "error": f"torch.cuda.is_available() did not answer within {timeout_s:.0f} s"}
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"available": False, "error": f"python could not import torch: {(out.stderr.strip().splitlines() or ['?'])[-1]}"}


def no_cuda_reason(probe: dict) -> str:
    if probe.get("error"):
        return probe["error"]
    if probe.get("cuda_build") is None:
        return f"torch {probe.get('torch', '?')} is built without CUDA"
    return (f"torch {probe.get('torch')} (CUDA {probe.get('cuda_build')}) sees no GPU: torch.cuda.is_available() "
            "is False (no NVIDIA GPU or driver visible)")


# ---- the steps ----

@dataclass
class Run:
    """Everything the checks read: each step's result and what the store held at the end."""

    plan: Plan
    probe: dict = field(default_factory=dict)
    steps: dict[str, StepResult] = field(default_factory=dict)
    runtimes: list[dict] = field(default_factory=list)
    sensors: list[dict] = field(default_factory=list)
    machine: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # `dnnbench export --format json`
    records: list[dict] = field(default_factory=list)  # the stored records (environment, timer)
    report_dir: Path | None = None


def _json(step: StepResult):
    try:
        return json.loads(step.stdout) if step.ok else []
    except ValueError:
        return []


def study_args(models: list[str], batches: str, store: Path, plan: Plan, metrics: str, runtime: str | None = None,
               precisions: str | None = None, device: str | None = None, cap_s: float | None = None) -> list[str]:
    args = ["study", *models, "--batch-sizes", batches, "--metrics", metrics, "--device", device or plan.device,
            "--store", str(store), "--max-time-per-cell", f"{cap_s or plan.cap_s:g}", "--target-ci", "0.05"]
    if plan.threads:
        args += ["--threads", str(plan.threads)]
    if runtime:
        args += ["--runtime", runtime]
    if precisions:
        args += ["--precision", precisions]
    if "power" in metrics:
        args += ["--sensors", "auto"]
    return args


def runnable(run: Run, runtime: str, precisions: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The precisions ``runtime`` runs here (per ``dnnbench runtimes``) and why the others do not."""
    row = next((r for r in run.runtimes if r.get("name") == runtime), None)
    wanted = precisions.split(",")
    if row is None:
        return [], [(p, f"`dnnbench runtimes` did not list {runtime}") for p in wanted]
    if not row.get("available"):
        why = row.get("reason") or "unavailable"
        if row.get("fix"):
            why += f"; fix: {row['fix']}"
        return [], [(p, why) for p in wanted]
    precs = row.get("precisions") or {}
    ok = [p for p in wanted if (precs.get(p) or {}).get("runs")]
    return ok, [(p, (precs.get(p) or {}).get("note") or "does not run here") for p in wanted if p not in ok]


def run_steps(plan: Plan, runner: Runner, work: Path) -> Run:
    run = Run(plan)
    store = work / "results.db"
    dev = plan.device
    s = run.steps
    s["runtimes"] = runner.cli("runtimes", ["runtimes", "--device", dev, "--format", "json"], 90)
    run.runtimes = _json(s["runtimes"])
    s["sensors"] = runner.cli("sensors", ["sensors", "--format", "json"], 60)
    run.sensors = _json(s["sensors"])
    margs = ["machine", "--device", dev, "--format", "json"] + (["--threads", str(plan.threads)] if plan.threads else [])
    s["machine"] = runner.cli("machine", margs, 120)
    run.machine = _json(s["machine"])
    s["study_power"] = runner.cli("study_power", study_args([plan.power_model], plan.power_batches, store, plan,
                                                            "profile,time,memory,power", cap_s=plan.power_cap_s),
                                  150, REPORT_RESERVE_S)
    if plan.cpu_compare:
        s["study_cpu"] = runner.cli("study_cpu", study_args([plan.power_model], "32", store, plan, "time,memory",
                                                            device="cpu", cap_s=3.0), 120, REPORT_RESERVE_S)
    if runnable(run, "eager", plan.precisions)[0]:
        s["study_eager"] = runner.cli("study_eager", study_args([plan.precision_model], plan.power_batches, store, plan,
                                                                "time,memory", "eager",
                                                                ",".join(runnable(run, "eager", plan.precisions)[0])),
                                      180, REPORT_RESERVE_S)
    if plan.oom:
        s["study_oom"] = runner.cli("study_oom", study_args([f"{SELF}:wide"], f"1,{ABSURD_BATCH},{2 * ABSURD_BATCH}",
                                                            store, plan, "time,memory", cap_s=0.5),
                                    120, REPORT_RESERVE_S)
    for name, model, batches, runtime, precs in (
            ("study_compile", plan.compile_model, plan.compile_batches, "compile", plan.compile_precisions),
            ("study_onnxruntime", plan.ort_model, plan.ort_batches, "onnxruntime", plan.ort_precisions)):
        ok, _ = runnable(run, runtime, precs)
        if not ok:  # nothing to run: the check says why (an explicit runtime that cannot run is an error)
            s[name] = StepResult(name, [], None, skipped=NOTHING_RUNS)
            continue
        s[name] = runner.cli(name, study_args([model], batches, store, plan, "time,memory", runtime, ",".join(ok)),
                             180, REPORT_RESERVE_S)
    s["export"] = runner.cli("export", ["export", "--store", str(store), "--format", "json"], 60)
    run.rows = _json(s["export"])
    out = work / "report"
    s["report"] = runner.cli("report", ["report", "--store", str(store), "--out", str(out), "--device",
                                        dev.split(":")[0]], 120)
    run.report_dir = out
    if store.exists():
        try:
            sys.path.insert(0, str(ROOT / "src"))
            from dnnbench.store import open_store

            with open_store(str(store), readonly=True) as st:
                run.records = [r.to_dict() for r in st.records()]
        except Exception as exc:  # the checks that need records say so
            print(f"warning: could not read the store's records: {type(exc).__name__}: {exc}", file=sys.stderr)
    return run


# ---- the checks (pure functions of a Run: tested with recorded and fake results) ----

BENCH_FIGURES = ("latency_median_s", "latency_ci_low_s", "latency_ci_high_s", "latency_p90_s", "latency_p99_s",
                 "latency_per_item_s", "throughput_items_per_s", "cold_start_s", "peak_rss_bytes",
                 "rss_above_baseline_bytes", "cpu_activation_peak_bytes", "cuda_peak_allocated_bytes",
                 "cuda_peak_reserved_bytes", "cuda_process_used_bytes", "static_weight_bytes",
                 "static_activation_peak_bytes", "achieved_flops_per_s", "fraction_of_peak", "power_w", "idle_power_w",
                 "energy_per_item_j", "energy_per_item_above_idle_j", "power_sensor")
POWER_FIGURES = ("power_w", "idle_power_w", "energy_per_item_j", "energy_per_item_above_idle_j", "power_sensor")
EQUIVALENCE_FIGURES = ("equivalence_max_abs_diff", "equivalence_mean_abs_diff", "equivalence_top1_agreement")
POSITIVE = ("latency_median_s", "latency_ci_low_s", "latency_p90_s", "latency_per_item_s", "throughput_items_per_s",
            "cold_start_s", "peak_rss_bytes", "cuda_peak_allocated_bytes", "cuda_peak_reserved_bytes",
            "static_weight_bytes", "achieved_flops_per_s", "fraction_of_peak", "power_w", "idle_power_w",
            "energy_per_item_j")
PRECISION_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
# max |diff| against eager fp32, relative to the reference's largest |output|: beyond these the outputs are wrong,
# not rounded (fp32 on CUDA: TF32 convolutions by default in both; fp16/bf16: 8-11 bit mantissas)
EQUIVALENCE_TOLERANCE = {"fp32": 0.05, "fp16": 0.25, "bf16": 0.25, "int8": 0.5}


def _name(ref: str) -> str:
    return (ref or "").split(":")[-1]


def _num(v) -> float | None:
    if v is None or isinstance(v, str):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def bench_rows(run: Run, device: str | None = None, model: str | None = None, runtime: str | None = None,
               precision: str | None = None, batch: int | None = None, status: str | None = None) -> list[dict]:
    out = []
    for r in run.rows:
        if r.get("kind") != "bench":
            continue
        if device and not str(r.get("device", "")).startswith(device):
            continue
        if model and _name(r.get("model_ref")) != model:
            continue
        if runtime and r.get("runtime") != runtime:
            continue
        if precision and r.get("precision") != precision:
            continue
        if batch is not None and int(r.get("batch_size") or 0) != batch:
            continue
        if status and r.get("status") != status:
            continue
        out.append(r)
    return out


def bench_records(run: Run, device: str) -> list[dict]:
    return [r for r in run.records if r.get("kind") == "bench" and str(r.get("spec", {}).get("device", "")).startswith(device)
            and r.get("status") == "ok"]


def _ms(s) -> str:
    return f"{1e3 * s:.3g} ms" if s is not None else "-"


def _mib(b) -> str:
    return f"{b / 2**20:.1f} MiB" if b is not None else "-"


def check_cuda(run: Run) -> Check:
    p = run.probe
    if not run.plan.cuda:
        return Check("cuda", UNAVAILABLE, reason="dry run on the CPU (--dry-run-cpu)")
    if not p.get("available"):
        return Check("cuda", FAIL, reason=no_cuda_reason(p))
    return Check("cuda", PASS, f"{p.get('name')} (compute capability {p.get('capability')}, "
                               f"{_mib(p.get('memory_bytes'))}), torch {p.get('torch')}, CUDA {p.get('cuda_build')}")


def check_runtimes(run: Run) -> list[Check]:
    step = run.steps.get("runtimes")
    if step is None or not step.ok or not run.runtimes:
        return [Check("runtimes", FAIL, reason=step.why() if step else "not run")]
    dev = run.plan.device
    checks = []
    for name, label in (("eager", "runtime eager"), ("compile", "runtime compile (Inductor"
                                                                 + (", Triton)" if run.plan.cuda else ", C++)")),
                        ("onnxruntime", "runtime onnxruntime")):
        row = next((r for r in run.runtimes if r.get("name") == name), None)
        if row is None:
            checks.append(Check(label, FAIL, reason=f"`dnnbench runtimes --device {dev}` does not list it"))
            continue
        precs = ", ".join(f"{p}{'' if v.get('native') else ' (emulated)'}" for p, v in (row.get("precisions") or {}).items()
                          if v.get("runs"))
        figure = f"precisions here: {precs or 'none'}"
        if name == "onnxruntime":
            provs = (row.get("details") or {}).get("providers") or []
            figure += f"; providers: {', '.join(provs) or '?'}"
            if run.plan.cuda and row.get("available") and "TensorrtExecutionProvider" not in provs:
                figure += " (no TensorRT provider: CUDA's is used)"
        if row.get("available"):
            checks.append(Check(label, PASS, figure))
        elif name == "eager":
            checks.append(Check(label, FAIL, figure, row.get("reason", "")))
        else:
            checks.append(Check(label, UNAVAILABLE, figure, f"{row.get('reason')}; fix: {row.get('fix')}"
                                if row.get("fix") else row.get("reason", "")))
    return checks


def check_nvml(run: Run) -> Check:
    step = run.steps.get("sensors")
    if step is None or not step.ok:
        return Check("sensor nvml", FAIL, reason=step.why() if step else "not run")
    row = next((r for r in run.sensors if r.get("name") == "nvml" or r.get("kind") == "nvml"), None)
    if row is None:
        return Check("sensor nvml", FAIL, reason="`dnnbench sensors` does not list nvml")
    if row.get("available"):
        return Check("sensor nvml", PASS, f"{', '.join(row.get('domains') or [])}: {row.get('method')}")
    return Check("sensor nvml", UNAVAILABLE, reason=row.get("reason", "unavailable"))


def check_machine(run: Run) -> Check:
    step = run.steps.get("machine")
    dev = run.plan.device
    if step is not None and step.left_out:
        return Check(f"machine --device {dev}", UNAVAILABLE, reason=step.skipped)
    if step is None or not step.ok or not run.machine:
        return Check(f"machine --device {dev}", FAIL, reason=step.why() if step else "not run")
    m = run.machine[0]
    flops, bw = _num(m.get("peak_flops_per_s")), _num(m.get("bandwidth_bytes_per_s"))
    figure = (f"peak {flops / 1e12:.3g} TFLOP/s ({m.get('best_probe')}), bandwidth {bw / 1e9:.4g} GB/s"
              if flops and bw else f"peak {flops}, bandwidth {bw}")
    # sense: any GPU dnnbench targets does more than 1 TFLOP/s fp32 and 100 GB/s; nothing does 10 PFLOP/s fp32
    low_flops, low_bw = (1e12, 1e11) if run.plan.cuda else (1e8, 1e8)
    if not flops or not bw:
        return Check(f"machine --device {dev}", FAIL, figure, "a peak figure is missing: "
                     + "; ".join(f"{k}: {v}" for k, v in (m.get("unavailable") or {}).items()))
    if not (low_flops <= flops <= 1e16 and low_bw <= bw <= 1e14):
        return Check(f"machine --device {dev}", FAIL, figure,
                     f"outside the plausible range (>= {low_flops:.0e} FLOP/s, >= {low_bw:.0e} B/s)")
    return Check(f"machine --device {dev}", PASS, figure)


STUDY_STEPS = ("study_power", "study_cpu", "study_eager", "study_compile", "study_onnxruntime", "study_oom")


def check_studies(run: Run) -> list[Check]:
    """Each study step ran to its end (exit 0); the cells it stored are counted by status."""
    checks = []
    for name in STUDY_STEPS:
        step = run.steps.get(name)
        if step is None or step.skipped == NOTHING_RUNS:
            continue
        if step.left_out:
            checks.append(Check(name, UNAVAILABLE, reason=step.skipped))
            continue
        if not step.ok:
            checks.append(Check(name, FAIL, reason=step.why()))
            continue
        summary = next((ln for ln in reversed(step.stdout.splitlines()) if ln.startswith("study:")), "")
        checks.append(Check(name, PASS, f"{summary[len('study: '):].split('; store')[0] or 'done'} "
                                        f"({step.wall_s:.0f} s wall)"))
    return checks


def check_timer(run: Run) -> Check:
    if not run.plan.cuda:
        return Check("CUDA-event timing", UNAVAILABLE, reason="CUDA only")
    recs = bench_records(run, "cuda")
    if not recs:
        return Check("CUDA-event timing", FAIL, reason="no ok CUDA bench cell in the store")
    timers = sorted({str(r.get("result", {}).get("timing", {}).get("timer")) for r in recs})
    if timers != ["cuda_events"]:
        return Check("CUDA-event timing", FAIL, f"timers used: {', '.join(timers)}", "every CUDA cell must be timed "
                     "by CUDA events")
    return Check("CUDA-event timing", PASS, f"{len(recs)} CUDA cells timed by cuda_events")


def check_cudnn_and_workers(run: Run) -> list[Check]:
    if not run.plan.cuda:
        return [Check("cudnn.benchmark warm-up", UNAVAILABLE, reason="CUDA only"),
                Check("fresh-interpreter CUDA workers", UNAVAILABLE, reason="CUDA only")]
    recs = bench_records(run, "cuda")
    if not recs:
        why = "no ok CUDA bench cell in the store"
        return [Check("cudnn.benchmark warm-up", FAIL, reason=why), Check("fresh-interpreter CUDA workers", FAIL, reason=why)]
    bench_on = [r for r in recs if (r.get("environment", {}).get("extra") or {}).get("cudnn_benchmark") is True]
    starts = sorted({str((r.get("environment", {}).get("extra") or {}).get("worker_start")) for r in recs})
    out = [Check("cudnn.benchmark warm-up", PASS if len(bench_on) == len(recs) else FAIL,
                 f"on in {len(bench_on)} of {len(recs)} CUDA cells",
                 "" if len(bench_on) == len(recs) else "the environment recorded cudnn_benchmark off")]
    fresh = starts == ["fresh interpreter"]
    out.append(Check("fresh-interpreter CUDA workers", PASS if fresh else FAIL, f"worker starts: {', '.join(starts)}",
                     "" if fresh else "a CUDA cell must not be forked (CUDA does not survive a fork)"))
    return out


def check_environment(run: Run) -> list[Check]:
    if not run.plan.cuda:
        return [Check("GPU environment fields", UNAVAILABLE, reason="CUDA only")]
    recs = bench_records(run, "cuda")
    if not recs:
        return [Check("GPU environment fields", FAIL, reason="no ok CUDA bench cell in the store")]
    env = recs[-1].get("environment", {})
    why = env.get("unavailable") or {}
    fields = ("gpu_name", "gpu_driver", "cuda_version", "cudnn_version", "gpu_clocks_mhz")
    silent = [f for f in fields if env.get(f) is None and not why.get(f)]
    missing = {f: why[f] for f in fields if env.get(f) is None and why.get(f)}
    figure = ", ".join(f"{f} {env.get(f)}" for f in fields if env.get(f) is not None)
    checks = []
    if env.get("gpu_name") is None or silent:
        checks.append(Check("GPU environment fields", FAIL, figure,
                            f"missing without a reason: {', '.join(silent)}" if silent else "no gpu_name on a CUDA cell"))
    else:
        checks.append(Check("GPU environment fields", PASS, figure,
                            "; ".join(f"{k} unavailable: {v}" for k, v in missing.items())))
    cpu = bench_records(run, "cpu")
    if run.plan.cpu_compare:
        if not cpu:
            checks.append(Check("one fingerprint for CPU and GPU cells", FAIL, reason="no ok CPU bench cell"))
        else:
            fps = sorted({r.get("spec", {}).get("machine") for r in recs + cpu})
            checks.append(Check("one fingerprint for CPU and GPU cells", PASS if len(fps) == 1 else FAIL,
                                ", ".join(map(str, fps)),
                                "" if len(fps) == 1 else "the same machine must have one fingerprint on both devices"))
    return checks


def check_cuda_faster(run: Run) -> Check:
    name = "CUDA faster than the CPU (resnet50, batch 32)"
    if not run.plan.cuda:
        return Check(name, UNAVAILABLE, reason="CUDA only")
    model = _name(run.plan.power_model)
    gpu = bench_rows(run, "cuda", model, "eager", "fp32", 32, "ok")
    cpu = bench_rows(run, "cpu", model, "eager", "fp32", 32, "ok")
    if not gpu or not cpu:
        return Check(name, FAIL, reason=f"no ok cell on {'cuda' if not gpu else 'cpu'}")
    g, c = _num(gpu[0].get("latency_median_s")), _num(cpu[0].get("latency_median_s"))
    if g is None or c is None:
        return Check(name, FAIL, reason="a median latency is missing")
    figure = f"cuda {_ms(g)} vs cpu {_ms(c)} per batch ({c / g:.1f}x)"
    return Check(name, PASS if g < c else FAIL, figure, "" if g < c else "the GPU should be faster at batch 32")


def check_allocator_peak(run: Run) -> Check:
    name = "allocator peak >= weight bytes"
    if not run.plan.cuda:
        return Check(name, UNAVAILABLE, reason="CUDA only (cuda_peak_allocated_bytes)")
    rows = [r for r in bench_rows(run, "cuda", status="ok") if r.get("runtime") in ("eager", "compile")]
    if not rows:
        return Check(name, FAIL, reason="no ok CUDA eager or compile cell")
    bad, worst = [], None
    for r in rows:
        peak, weights = _num(r.get("cuda_peak_allocated_bytes")), _num(r.get("static_weight_bytes"))
        if peak is None or weights is None:
            bad.append(f"{_name(r['model_ref'])} {r['runtime']} {r['precision']} b{r['batch_size']}: peak {peak}, "
                       f"weights {weights} ({(r.get('unavailable') or {}).get('cuda_peak_allocated_bytes', 'no reason')})")
            continue
        need = weights * PRECISION_BYTES.get(r.get("precision"), 4) / 4  # static weight bytes are fp32's
        ratio = peak / need
        worst = ratio if worst is None else min(worst, ratio)
        if peak < need:
            bad.append(f"{_name(r['model_ref'])} {r['runtime']} {r['precision']} b{r['batch_size']}: peak "
                       f"{_mib(peak)} < weights {_mib(need)}")
    if bad:
        return Check(name, FAIL, f"{len(bad)} of {len(rows)} cells", "; ".join(bad[:3]))
    return Check(name, PASS, f"{len(rows)} cells; smallest peak / weights = {worst:.2f}")


def check_power(run: Run) -> Check:
    name = "NVML power above idle under load"
    if not run.plan.cuda:
        return Check(name, UNAVAILABLE, reason="CUDA only")
    model = _name(run.plan.power_model)
    rows = bench_rows(run, "cuda", model, "eager", "fp32", 32, "ok")
    if not rows:
        return Check(name, FAIL, reason=f"no ok {model} cell at batch 32 on cuda")
    r = rows[0]
    sensor = str(r.get("power_sensor") or "")
    p, idle = _num(r.get("power_w")), _num(r.get("idle_power_w"))
    why = r.get("unavailable") or {}
    if p is None:
        return Check(name, UNAVAILABLE, reason=f"power_w unavailable: {why.get('power_w', 'no reason given')}")
    if not sensor.startswith("nvml"):
        return Check(name, FAIL, f"power {p:.1f} W from {sensor}", "the headline sensor of a CUDA cell must be nvml")
    if idle is None:
        return Check(name, FAIL, f"power {p:.1f} W", f"idle_power_w unavailable: {why.get('idle_power_w')}")
    e = _num(r.get("energy_per_item_j"))
    figure = f"{p:.1f} W under load vs {idle:.1f} W idle ({sensor}); {1e3 * e:.3g} mJ per image" if e else \
        f"{p:.1f} W vs {idle:.1f} W idle ({sensor})"
    return Check(name, PASS if p > idle > 0 else FAIL, figure, "" if p > idle > 0 else "load must draw more than idle")


def check_figures(run: Run) -> list[Check]:
    """Every figure of every ok bench cell is there or unavailable with a reason; none is a silent zero."""
    rows = bench_rows(run, status="ok")
    if not rows:
        return [Check("every figure present or unavailable with why", FAIL, reason="no ok bench cell in the export")]
    silent, zeros, explained = [], [], 0
    for r in rows:
        why = r.get("unavailable") or {}
        figures = BENCH_FIGURES + (EQUIVALENCE_FIGURES if (r.get("runtime"), r.get("precision")) != ("eager", "fp32")
                                   else ())
        if "power" not in str(r.get("metric_group", "")).split("+"):  # not asked for: the view leaves them out
            figures = tuple(f for f in figures if f not in POWER_FIGURES)
        label = f"{_name(r['model_ref'])} {r['device']} {r['runtime']} {r['precision']} b{r['batch_size']}"
        for f in figures:
            v = r.get(f)
            # one reason may stand for a group (equivalence_max_abs_diff for the equivalence figures)
            reason = why.get(f) or (why.get("equivalence_max_abs_diff") if f.startswith("equivalence_") else None)
            if v is None:
                if reason and str(reason).strip():
                    explained += 1
                else:
                    silent.append(f"{label}: {f}")
            elif f in POSITIVE and _num(v) is not None and _num(v) <= 0:
                zeros.append(f"{label}: {f} = {v}")
    out = [Check("every figure present or unavailable with why", FAIL if silent else PASS,
                 f"{len(rows)} ok bench cells x {len(BENCH_FIGURES)}+ figures; {explained} unavailable with a reason"
                 + (f", {len(silent)} missing without one" if silent else ""),
                 "; ".join(silent[:4]) + (" ..." if len(silent) > 4 else ""))]
    out.append(Check("no figure silently zero", FAIL if zeros else PASS,
                     f"{len(zeros)} zero or negative" if zeros else "every present time, memory, power figure > 0",
                     "; ".join(zeros[:4])))
    return out


def check_runtime_cells(run: Run) -> list[Check]:
    """Per runtime: each precision asked for has ok cells on the device, or is unavailable with why; outputs
    agree with eager fp32 within tolerance."""
    plan, dev = run.plan, run.plan.device
    checks = []
    for runtime, model, precs, batches in (("eager", plan.precision_model, plan.precisions, plan.power_batches),
                                          ("compile", plan.compile_model, plan.compile_precisions, plan.compile_batches),
                                          ("onnxruntime", plan.ort_model, plan.ort_precisions, plan.ort_batches)):
        ok, left = runnable(run, runtime, precs)
        for p, why in left:
            checks.append(Check(f"{runtime} {p}", UNAVAILABLE, reason=why))
        step = run.steps.get(f"study_{runtime}")
        for p in ok:
            label = f"{runtime} {p}"
            if step is not None and step.left_out:
                checks.append(Check(label, UNAVAILABLE, reason=step.skipped))
                continue
            cells = bench_rows(run, dev, _name(model), runtime, p)
            good = [c for c in cells if c.get("status") == "ok"]
            want = len(batches.split(","))
            if len(good) < want:
                bad = [f"b{c['batch_size']} {c['status']}: {c.get('message')}" for c in cells if c.get("status") != "ok"]
                checks.append(Check(label, FAIL, f"{len(good)} of {want} cells ok",
                                    "; ".join(bad) or (step.why() if step else "") or "cells missing from the store"))
                continue
            times = ", ".join(f"b{c['batch_size']} {_ms(_num(c.get('latency_median_s')))}"
                              for c in sorted(good, key=lambda c: c["batch_size"]))
            if (runtime, p) == ("eager", "fp32"):
                checks.append(Check(label, PASS, f"{_name(model)}: {times} (the reference)"))
                continue
            problems, agree = [], []
            for c in good:
                d, ref = _num(c.get("equivalence_max_abs_diff")), _num(c.get("equivalence_reference_max_abs"))
                top1 = _num(c.get("equivalence_top1_agreement"))
                if d is None:
                    why = (c.get("unavailable") or {}).get("equivalence_max_abs_diff")
                    if why:
                        agree.append(f"b{c['batch_size']} equivalence unavailable: {why}")
                    else:
                        problems.append(f"b{c['batch_size']}: no equivalence check and no reason")
                    continue
                tol = EQUIVALENCE_TOLERANCE.get(p, 0.25) * max(ref or 0.0, 1e-6)
                agree.append(f"b{c['batch_size']} max|diff| {d:.2g}" + (f", top-1 {100 * top1:.0f} %" if top1 is not None else ""))
                if not d <= tol:
                    problems.append(f"b{c['batch_size']}: max|diff| {d:.3g} > {tol:.3g} "
                                    f"({EQUIVALENCE_TOLERANCE.get(p, 0.25):g} x reference max |{ref}|)")
            checks.append(Check(label, FAIL if problems else PASS, f"{_name(model)}: {times}; {'; '.join(agree)}",
                                "; ".join(problems)))
    return checks


def check_oom(run: Run) -> Check:
    name = f"CUDA OOM at batch {ABSURD_BATCH} is an oom cell"
    if not run.plan.oom:
        return Check(name, UNAVAILABLE, reason="CUDA only: on the CPU an absurd allocation is the kernel's business "
                                               "(swap, the OOM killer), not a clean error")
    cells = {int(r["batch_size"]): r for r in bench_rows(run, run.plan.device, "wide")}
    small, absurd, beyond = cells.get(1), cells.get(ABSURD_BATCH), cells.get(2 * ABSURD_BATCH)
    step = run.steps.get("study_oom")
    if step is not None and step.left_out:
        return Check(name, UNAVAILABLE, reason=step.skipped)
    if absurd is None:
        return Check(name, FAIL, reason=(step.why() if step else "") or "no cell at that batch in the store")
    got = (f"b1 {small.get('status') if small else 'missing'}, b{ABSURD_BATCH} {absurd.get('status')}"
           f" ({(absurd.get('message') or '')[:90]}), b{2 * ABSURD_BATCH} {beyond.get('status') if beyond else 'missing'}")
    ok = (absurd.get("status") == "oom" and small is not None and small.get("status") == "ok"
          and beyond is not None and beyond.get("status") == "skipped")
    return Check(name, PASS if ok else FAIL, got, "" if ok else "want b1 ok, the absurd batch oom, the next skipped")


def check_export_report(run: Run) -> list[Check]:
    checks = []
    ex = run.steps.get("export")
    if ex is not None and ex.left_out:
        checks.append(Check("export --format json", UNAVAILABLE, reason=ex.skipped))
    elif ex is None or not ex.ok:
        checks.append(Check("export --format json", FAIL, reason=ex.why() if ex else "not run"))
    else:
        kinds = {}
        for r in run.rows:
            kinds[r.get("kind")] = kinds.get(r.get("kind"), 0) + 1
        checks.append(Check("export --format json", PASS if run.rows else FAIL,
                            ", ".join(f"{n} {k} rows" for k, n in sorted(kinds.items(), key=str)) or "no rows"))
    rep = run.steps.get("report")
    html = run.report_dir / "report.html" if run.report_dir else None
    if rep is not None and rep.left_out:
        checks.append(Check("report", UNAVAILABLE, reason=rep.skipped))
    elif rep is None or not rep.ok:
        checks.append(Check("report", FAIL, reason=rep.why() if rep else "not run"))
    elif html is None or not html.is_file():
        checks.append(Check("report", FAIL, reason=f"exit 0 but no {html}"))
    else:
        text = html.read_text(errors="replace")
        want = {}  # what the page must show: the GPU's name (environment), the oom cell (results table)
        if run.plan.cuda and run.probe.get("name"):
            want["the GPU's name"] = escape(str(run.probe["name"]))
        if run.plan.oom:
            want["an oom cell"] = 'status-oom">oom<'
        missing = [k for k, marker in want.items() if marker not in text]
        checks.append(Check("report", FAIL if missing else PASS, f"{html} ({len(text) / 1024:.0f} KiB)",
                            f"does not show {', '.join(missing)}" if missing else ""))
    return checks


def all_checks(run: Run) -> list[Check]:
    checks = [check_cuda(run), *check_runtimes(run), check_nvml(run), check_machine(run), *check_studies(run),
              check_timer(run), *check_cudnn_and_workers(run), *check_environment(run), check_cuda_faster(run),
              check_allocator_peak(run), check_power(run), *check_figures(run), *check_runtime_cells(run),
              check_oom(run), *check_export_report(run)]
    return checks


def summarize(checks: list[Check], wall_s: float) -> tuple[str, int]:
    counts = {s: sum(1 for c in checks if c.status == s) for s in (PASS, FAIL, UNAVAILABLE)}
    line = (f"summary: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[UNAVAILABLE]} unavailable "
            f"in {wall_s:.0f} s")
    return line, 1 if counts[FAIL] else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run-cpu", action="store_true",
                    help="run the same steps on the CPU with tiny models; the CUDA-only checks say UNAVAILABLE")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="wall-time budget for all steps [330 on CUDA, 600 for the dry run]")
    ap.add_argument("--keep", metavar="DIR", default=None, help="work in DIR and keep it (store, report, logs)")
    ap.add_argument("--python", default=sys.executable, help="the interpreter that runs dnnbench [this one]")
    ap.add_argument("--skip", default="", metavar="STEP,...",
                    help=f"steps to leave out (their checks say UNAVAILABLE): {', '.join(STEPS)}")
    args = ap.parse_args(argv)
    skip = tuple(w.strip() for w in args.skip.split(",") if w.strip())
    unknown = [w for w in skip if w not in STEPS]
    if unknown:
        print(f"gpu_check: error: unknown step {', '.join(unknown)} in --skip: the steps are {', '.join(STEPS)}. "
              "Fix: name steps from that list.", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    if args.dry_run_cpu:
        plan, probe = cpu_plan(), {}
    else:
        probe = probe_cuda(args.python)
        if not probe.get("available"):
            print(f"no CUDA here: {no_cuda_reason(probe)}. Nothing to check; exit 0. "
                  "(`--dry-run-cpu` runs the same steps on the CPU.)")
            return 0
        plan = cuda_plan()
    budget = args.budget_s or (600.0 if args.dry_run_cpu else 330.0)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dnnbench-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(work, budget, args.python, skip=skip)
    run = run_steps(plan, runner, work)
    run.probe = probe
    checks = all_checks(run)
    for c in checks:
        print(c.line())
    line, rc = summarize(checks, time.monotonic() - t0)
    print(line)
    print(f"work files (store, report, one log per step): {work}" if args.keep else
          f"steps: {', '.join(f'{s.name} {s.wall_s:.0f}s' for s in runner.steps if not s.skipped)}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
