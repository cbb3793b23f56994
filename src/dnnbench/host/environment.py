"""Provenance: what machine and software a measurement ran on, read where readable, never guessed.

Every field that cannot be read is None with its reason in ``Environment.unavailable``. The fingerprint
hashes only identity fields (CPU, cores, GPU, driver, torch/CUDA/cuDNN versions), so it is stable across
runs on one machine and changes when the hardware or the software that sets its speed changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
from datetime import datetime, timezone

import torch

from dnnbench.core.version import __version__
from dnnbench.core.measurements import Environment

_CPU = "/sys/devices/system/cpu"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpuinfo() -> list[dict[str, str]]:
    text = _read("/proc/cpuinfo")
    if not text:
        return []
    blocks = []
    for block in text.split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        if entry:
            blocks.append(entry)
    return blocks


def logical_cores() -> int | None:
    return os.cpu_count()


def physical_cores() -> int | None:
    """Physical cores (hyper-threads not counted), from sysfs topology or /proc/cpuinfo; None if unreadable."""
    try:
        import psutil  # optional: it knows other operating systems

        n = psutil.cpu_count(logical=False)
        if n:
            return n
    except ImportError:
        pass
    cores = set()
    try:
        cpus = [d for d in os.listdir(_CPU) if d.startswith("cpu") and d[3:].isdigit()]
    except OSError:
        cpus = []
    for cpu in cpus:
        pkg = _read(f"{_CPU}/{cpu}/topology/physical_package_id")
        core = _read(f"{_CPU}/{cpu}/topology/core_id")
        if pkg is not None and core is not None:
            cores.add((pkg, core))
    if cores:
        return len(cores)
    info = _cpuinfo()
    pairs = {(b.get("physical id"), b.get("core id")) for b in info if "core id" in b}
    return len(pairs) or None


def default_threads() -> int:
    """Threads to use when none are asked for: the physical cores (hyper-threads rarely help GEMMs)."""
    return physical_cores() or logical_cores() or 1


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def throttle_counts() -> dict[str, int] | None:
    """Per-CPU thermal throttle event counters (Intel sysfs); None where the kernel does not expose them."""
    counts = {}
    try:
        cpus = sorted(d for d in os.listdir(_CPU) if d.startswith("cpu") and d[3:].isdigit())
    except OSError:
        return None
    for cpu in cpus:
        for kind in ("core", "package"):
            v = _read(f"{_CPU}/{cpu}/thermal_throttle/{kind}_throttle_count")
            if v is not None and v.isdigit():
                counts[f"{cpu}.{kind}"] = int(v)
    return counts or None


def _nvidia_smi(device_index: int) -> dict[str, str] | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    keys = ("name", "driver_version", "clocks.sm", "clocks.max.sm", "clocks.mem", "clocks.max.mem",
            "clocks_throttle_reasons.active")
    try:
        out = subprocess.run([exe, f"--id={device_index}", f"--query-gpu={','.join(keys)}",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return dict(zip(keys, (v.strip() for v in out.stdout.strip().splitlines()[0].split(","))))


def fingerprint(identity: dict) -> str:
    """A stable short hash of the identity fields (sorted JSON, SHA-256, 16 hex digits)."""
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def capture(device: str = "cpu") -> Environment:
    """Read the environment of this process now (load average and clocks included)."""
    why: dict[str, str] = {}
    info = _cpuinfo()
    cpu_model = next((b["model name"] for b in info if "model name" in b), None) or platform.processor() or None
    if cpu_model is None:
        why["cpu_model"] = "not in /proc/cpuinfo and platform.processor() is empty"
    phys = physical_cores()
    if phys is None:
        why["physical_cores"] = "no sysfs topology, no core ids in /proc/cpuinfo, psutil not installed"
    governor = _read(f"{_CPU}/cpu0/cpufreq/scaling_governor")
    if governor is None:
        why["cpu_governor"] = "no cpufreq in sysfs (virtual machine, or the driver does not expose it)"
    freq = _read(f"{_CPU}/cpu0/cpufreq/scaling_cur_freq")
    freq_mhz = int(freq) / 1000 if freq and freq.isdigit() else None
    if freq_mhz is None:
        mhz = next((b["cpu MHz"] for b in info if "cpu MHz" in b), None)
        try:
            freq_mhz = float(mhz) if mhz else None
        except ValueError:
            freq_mhz = None
    if freq_mhz is None:
        why["cpu_freq_mhz"] = "neither cpufreq nor /proc/cpuinfo report it"
    load = load_average()
    if load is None:
        why["load_avg"] = "os.getloadavg() is not available on this system"

    cuda_version = torch.version.cuda
    cudnn_version = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    gpu_name = gpu_driver = gpu_clocks = None
    extra = {"mkldnn_enabled": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled}
    on_gpu = device.startswith("cuda")
    index = (torch.device(device).index or 0) if on_gpu else 0
    # nvidia-smi, not torch.cuda, names the GPU: a CPU measurement must not initialise CUDA in its process
    # (it would add to its resident memory), yet its fingerprint must match the GPU run's.
    smi = _nvidia_smi(index) if cuda_version is not None else None
    if smi:
        gpu_name, gpu_driver = smi.get("name"), smi.get("driver_version")
    if on_gpu and torch.cuda.is_available():
        gpu_name = gpu_name or torch.cuda.get_device_name(index)
        if smi:
            gpu_clocks = {}
            for key, name in (("clocks.sm", "sm_mhz"), ("clocks.max.sm", "sm_max_mhz"),
                              ("clocks.mem", "mem_mhz"), ("clocks.max.mem", "mem_max_mhz")):
                try:
                    gpu_clocks[name] = float(smi[key])
                except (KeyError, ValueError):
                    pass
            extra["gpu_throttle_reasons"] = smi.get("clocks_throttle_reasons.active")
        else:
            why["gpu_driver"] = why["gpu_clocks_mhz"] = "nvidia-smi is not on PATH or failed"
        extra.update(cudnn_benchmark=torch.backends.cudnn.benchmark,
                     cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                     matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    else:
        if gpu_name is None:
            why["gpu_name"] = why["gpu_driver"] = ("torch is built without CUDA" if cuda_version is None
                                                   else "no GPU: nvidia-smi is absent or lists none")
        why["gpu_clocks_mhz"] = "not measured on a GPU"
    if cuda_version is None:
        why["cuda_version"] = "torch is built without CUDA"
    if cudnn_version is None:
        why["cudnn_version"] = "cuDNN is not available to torch"

    identity = {
        "cpu_model": cpu_model, "physical_cores": phys, "logical_cores": logical_cores(),
        "arch": platform.machine(), "gpu_name": gpu_name, "gpu_driver": gpu_driver,
        "torch_version": torch.__version__, "cuda_version": cuda_version, "cudnn_version": cudnn_version,
    }
    assert tuple(identity) == Environment.IDENTITY
    return Environment(
        fingerprint=fingerprint(identity),
        cpu_model=cpu_model,
        physical_cores=phys,
        logical_cores=logical_cores(),
        arch=platform.machine(),
        os=f"{platform.system()} {platform.release()}",
        python_version=platform.python_version(),
        torch_version=torch.__version__,
        cuda_version=cuda_version,
        cudnn_version=cudnn_version,
        gpu_name=gpu_name,
        gpu_driver=gpu_driver,
        gpu_clocks_mhz=gpu_clocks,
        cpu_governor=governor,
        cpu_freq_mhz=freq_mhz,
        load_avg=load,
        threads=torch.get_num_threads(),
        tool_version=__version__,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra=extra,
        unavailable=why,
        hostname=socket.gethostname() or None,
    )
