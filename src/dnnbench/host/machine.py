"""This machine's roofline: peak fp32 FLOP/s (best of GEMM and convolution probes) and memory bandwidth.

Measured, never taken from a datasheet: a vendor's peak assumes every unit busy at the boost clock, which
no framework reaches. On CPUs the best convolution kernels (oneDNN) often beat the GEMM path, so the peak
is the best of both. Results are cached per machine fingerprint and thread count in
``$DNNBENCH_CACHE_DIR`` (default ``~/.cache/dnnbench``), as ``machine-<fingerprint>.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from dnnbench.core.version import __version__
from dnnbench.core.errors import UnavailableError
from dnnbench.core.measurements import MachinePeak
from dnnbench.host import environment

CACHE_ENV = "DNNBENCH_CACHE_DIR"

# (name, batch, in channels, out channels, kernel, spatial size, padding): AlexNet's and VGG's shapes.
CPU_CONVS = (
    ("conv alexnet.2 64->192 5x5 @27", 32, 64, 192, 5, 27, 2),
    ("conv alexnet.3 192->384 3x3 @13", 64, 192, 384, 3, 13, 1),
    ("conv vgg 128->128 3x3 @56", 8, 128, 128, 3, 56, 1),
)
CUDA_CONVS = (
    ("conv alexnet.3 192->384 3x3 @13", 512, 192, 384, 3, 13, 1),
    ("conv vgg 256->256 3x3 @56", 64, 256, 256, 3, 56, 1),
)
CPU_GEMMS, CUDA_GEMMS = (1024, 2048), (4096, 8192)  # n of the n x n x n GEMM probes
CPU_COPY_BYTES, CUDA_COPY_BYTES = 256 << 20, 1 << 30  # the bandwidth probe copies this many bytes
PROBE_BUDGET_S = 0.6  # seconds of repeats per probe: the best of many calls is the peak


def cache_dir() -> Path:
    """Where machine peaks are cached: $DNNBENCH_CACHE_DIR, else $XDG_CACHE_HOME/dnnbench, else ~/.cache/dnnbench."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dnnbench"


def cache_path(fingerprint: str) -> Path:
    return cache_dir() / f"machine-{fingerprint}.json"


def _key(device: str, threads: int) -> str:
    kind = device.split(":")[0]
    return kind if kind == "cuda" else f"{kind}/threads={threads}"  # CPU threads do not set a GPU's peak


def load_peak(fingerprint: str, device: str, threads: int) -> MachinePeak | None:
    """The cached peak of this machine for ``device`` at ``threads``; None when never measured."""
    path = cache_path(fingerprint)
    try:
        data = json.loads(path.read_text())
        entry = data["peaks"][_key(device, threads)]
        return MachinePeak.from_dict(entry)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_peaks(fingerprint: str) -> list[MachinePeak]:
    try:
        data = json.loads(cache_path(fingerprint).read_text())
        return [MachinePeak.from_dict(e) for e in data["peaks"].values()]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def save_peak(peak: MachinePeak) -> Path:
    """Add ``peak`` to its machine's cache file (atomic replace); return the file's path."""
    path = cache_path(peak.fingerprint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data["fingerprint"] = peak.fingerprint
        data.setdefault("peaks", {})[_key(peak.device, peak.threads)] = peak.to_dict()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)
    except OSError as exc:
        raise UnavailableError(f"cannot write the machine cache {path}", f"{type(exc).__name__}: {exc}",
                               f"set {CACHE_ENV} to a writable directory") from exc
    return path


def save_or_explain(peak: MachinePeak) -> MachinePeak:
    """Cache ``peak``; when the cache cannot be written, ``peak`` with ``unavailable["cache"]`` saying why.

    The probe's seconds of measurement are worth showing even when they cannot be kept.
    """
    try:
        save_peak(peak)
    except UnavailableError as exc:
        from dataclasses import replace

        why = (f"not cached: {exc.one_line()} This result is shown but not kept, so `dnnbench bench` cannot "
               "report a % of peak from it.")
        return replace(peak, unavailable={**peak.unavailable, "cache": why})
    return peak


def _best_time(fn: Callable[[], object], sync: Callable[[], None], budget_s: float, min_reps: int = 3) -> float:
    """Shortest of repeated calls after one warm-up call: the peak is the best the hardware did."""
    fn()
    sync()
    best = float("inf")
    start = time.perf_counter()
    reps = 0
    while reps < min_reps or time.perf_counter() - start < budget_s:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return best


def probe(device: str = "cpu", threads: int | None = None, budget_s: float | None = None) -> MachinePeak:
    """Measure peak fp32 FLOP/s and copy bandwidth on ``device`` at ``threads`` (about 5 s on a CPU).

    ``budget_s``: seconds of repeats per probe (default ``PROBE_BUDGET_S``).
    """
    budget_s = PROBE_BUDGET_S if budget_s is None else budget_s
    threads = threads or environment.default_threads()
    on_gpu = device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        raise UnavailableError("CUDA is not available", "torch.cuda.is_available() is False", "use --device cpu")
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if on_gpu else (lambda: None)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    env = environment.capture(device)
    started = time.perf_counter()
    probes = []
    try:
        with torch.inference_mode():
            for n in CUDA_GEMMS if on_gpu else CPU_GEMMS:
                a = torch.randn(n, n, device=dev)
                b = torch.randn(n, n, device=dev)
                t = _best_time(lambda: torch.mm(a, b), sync, budget_s)
                probes.append({"name": f"gemm {n}x{n}x{n}", "kind": "gemm", "flops": 2 * n ** 3, "best_s": t,
                               "flops_per_s": 2 * n ** 3 / t})
                del a, b
            for name, batch, cin, cout, k, size, pad in (CUDA_CONVS if on_gpu else CPU_CONVS):
                x = torch.randn(batch, cin, size, size, device=dev)
                w = torch.randn(cout, cin, k, k, device=dev)
                out = size + 2 * pad - k + 1
                flops = 2 * batch * cout * out * out * cin * k * k
                t = _best_time(lambda: F.conv2d(x, w, padding=pad), sync, budget_s)
                probes.append({"name": name, "kind": "conv", "flops": flops, "best_s": t, "flops_per_s": flops / t})
                del x, w
            nbytes = CUDA_COPY_BYTES if on_gpu else CPU_COPY_BYTES
            src = torch.empty(nbytes // 4, device=dev).fill_(1.0)
            dst = torch.empty_like(src)
            t = _best_time(lambda: dst.copy_(src), sync, budget_s)
            # a copy reads and writes every byte once
            probes.append({"name": f"copy {nbytes >> 20} MiB", "kind": "bandwidth", "bytes": 2 * nbytes,
                           "best_s": t, "bytes_per_s": 2 * nbytes / t})
            del src, dst
    finally:
        torch.set_num_threads(old_threads)
    gemm = max(p["flops_per_s"] for p in probes if p["kind"] == "gemm")
    conv = max(p["flops_per_s"] for p in probes if p["kind"] == "conv")
    bw = max(p["bytes_per_s"] for p in probes if p["kind"] == "bandwidth")
    return MachinePeak(
        fingerprint=env.fingerprint, device=device.split(":")[0], threads=threads,
        peak_flops_per_s=max(gemm, conv), best_probe="conv" if conv > gemm else "gemm",
        gemm_flops_per_s=gemm, conv_flops_per_s=conv, bandwidth_bytes_per_s=bw, probes=probes,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), tool_version=__version__,
        probe_wall_s=time.perf_counter() - started,
    )
