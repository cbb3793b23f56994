"""Synthetic result stores with planted answers, for analysis, pick and report tests (fast and exact).

Planted: time per image = T0 + T1 x GMACs at every batch size divided by a batching gain, memory =
FLOOR + weights + activation x batch, power constant per batch size; one model ("dwnet", depthwise-like)
is planted 3x slower than its MACs say at batch 1.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dnnbench.store import CellRow, open_store

FP = "synthfp0000000001"
ENV = {"fingerprint": FP, "cpu_model": "Synthetic CPU 9000", "physical_cores": 4, "logical_cores": 8, "arch": "x86_64",
       "os": "Linux", "python_version": "3.11", "torch_version": "2.x", "cuda_version": None, "cudnn_version": None,
       "gpu_name": None, "gpu_driver": None, "threads": 4, "tool_version": "test", "timestamp": "2026-01-02T03:04:05+00:00",
       "unavailable": {"cpu_governor": "no cpufreq in sysfs"}}

T0 = 0.001  # s per image
T1 = 0.010  # s per GMAC per image at batch 1
FLOOR = 300 * 2**20  # bytes: the runtime's resident set
POWER = {1: 20.0, 4: 30.0, 16: 35.0}
IDLE = 10.0

# name: (GMACs per image, params, top1, activation bytes per image)
MODELS = {
    "alpha": (0.5, 5e6, 0.70, 4 * 2**20),
    "beta": (1.0, 10e6, 0.74, 6 * 2**20),
    "gamma": (2.0, 20e6, 0.77, 9 * 2**20),
    "delta": (4.0, 60e6, 0.78, 14 * 2**20),
    "dwnet": (0.3, 3e6, 0.72, 5 * 2**20),  # planted 3x slower than the line at batch 1
}
PROFILE_ONLY = {"epsilon": (1.5, 15e6, 0.76, 7 * 2**20)}  # never timed: pick must predict it
BATCH_GAIN = {1: 1.0, 4: 0.5, 16: 0.25}  # time per image at batch b = line x gain


def time_per_image(name: str, batch: int) -> float:
    g = (MODELS | PROFILE_ONLY)[name][0]
    t = (T0 + T1 * g) * BATCH_GAIN[batch]
    return t * 3 if name == "dwnet" and batch == 1 else t


def memory_total(name: str, batch: int) -> float:
    g, params, _, act = (MODELS | PROFILE_ONLY)[name]
    return FLOOR + 4 * params + act * batch


def _profile_row(name, b, t0, paper=None):
    g, params, top1, act = (MODELS | PROFILE_ONLY)[name]
    metrics = {"params": params, "weight_bytes": 4 * params, "macs": g * 1e9 * b, "flops": 2 * g * 1e9 * b,
               "activation_peak_bytes": act * b, "reported_top1": top1, "reported_top5": min(1.0, top1 + 0.15)}
    if paper is not None:
        metrics["paper_top1"] = paper
    return CellRow(cell_id=f"p-{name}-{b}", fingerprint=FP, environment=ENV, model_ref=f"torchvision:{name}",
                   runtime="eager", device="meta", precision="fp32", batch_size=b, metric_group="profile", status="ok",
                   metrics=metrics, started_at=t0, finished_at=t0)


def _bench_row(name, b, t0, power=True, status="ok"):
    g, params, top1, act = MODELS[name]
    tpi = time_per_image(name, b)
    metrics = {}
    if status == "ok":
        metrics = {"latency_median_s": tpi * b, "latency_per_item_s": tpi, "throughput_items_per_s": 1 / tpi,
                   "latency_cv": 0.01, "peak_rss_bytes": memory_total(name, b),
                   "rss_above_baseline_bytes": memory_total(name, b) - FLOOR + 20 * 2**20,
                   "cpu_activation_peak_bytes": act * b - 2**20,  # the static estimate also counts the input
                   "static_activation_peak_bytes": act * b, "static_weight_bytes": 4 * params, "flops": 2 * g * 1e9 * b}
        if power:
            metrics.update({"power_w": POWER[b], "idle_power_w": IDLE, "energy_per_item_j": POWER[b] * tpi,
                            "energy_per_item_above_idle_j": (POWER[b] - IDLE) * tpi})
    warnings = ["std dev is 12.0 % of the mean (above 10 %): the machine may be busy. Remedy: close other programs"] \
        if name == "gamma" and b == 16 else []
    group = "time+memory+power" if power else "time+memory"
    return CellRow(cell_id=f"b-{name}-{b}", fingerprint=FP, environment=ENV, model_ref=f"torchvision:{name}",
                   runtime="eager", device="cpu", precision="fp32", batch_size=b, metric_group=group, status=status,
                   threads=4, message="out of memory" if status == "oom" else None, warnings=warnings,
                   metrics=metrics, started_at=t0, finished_at=t0)


def rows(power: bool = True, batches=(1, 4, 16), models=None, profile_only: bool = True, oom: tuple = ()) -> list[CellRow]:
    t0 = datetime(2026, 1, 2, tzinfo=timezone.utc)
    out = []
    names = list(MODELS if models is None else models)
    for i, name in enumerate(names + (list(PROFILE_ONLY) if profile_only else [])):
        for b in batches:
            out.append(_profile_row(name, b, t0 + timedelta(seconds=i), paper=0.70 if name == "alpha" else None))
    for i, name in enumerate(names):
        for b in batches:
            status = "oom" if (name, b) in oom else "ok"
            out.append(_bench_row(name, b, t0 + timedelta(minutes=1, seconds=i), power=power, status=status))
    return out


def write(url: str, cells: list[CellRow]) -> str:
    with open_store(url) as st:
        for c in cells:
            st.put(c)
    return url


def frame(tmp_path, **kw):
    """The tidy frame of a fresh synthetic SQLite store (kw: see ``rows``)."""
    url = write(f"sqlite:///{tmp_path / 'synthetic.db'}", rows(**kw))
    with open_store(url) as st:
        return st.frame()
