"""Specs and records of measurement: timing, memory, provenance, machine peak, bench cells.

A frozen spec says *what* is measured (``TimingSpec``, ``CellSpec``); a record holds what was observed
(raw samples kept) and derives its statistics on demand, as ``torch.utils.benchmark`` separates
``TaskSpec`` from ``Measurement``. SI units in every name. A figure that could not be measured is
``None`` and its field name maps to the reason in the record's ``unavailable`` dict — never a 0.
``to_dict()`` is the JSON and storage format; ``from_dict()`` reads it back (workers send it over a pipe).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dnnbench.core.errors import InputError
from dnnbench.core.energy import Energy
from dnnbench.core.stats import MIN_BLOCK_SAMPLES, min_samples_for_quantile, summarize

STATUSES = ("ok", "oom", "error", "skipped")
RUNTIMES = ("eager", "compile", "onnxruntime")  # what runs one batch (measure/runtimes registers each)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
REFERENCE = ("eager", "fp32")  # the configuration every other one is checked against


def _init_kwargs(cls, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


# ---- specs ---------------------------------------------------------------------------------------

def check_device_name(device: str) -> str:
    """``device`` if it names a device bench knows (cpu, cuda, cuda:N); whether it exists is checked later."""
    kind, sep, index = device.partition(":")
    if device == "cpu" or (kind == "cuda" and (not sep or index.isdigit())):
        return device
    raise InputError(f"unknown device {device!r}", "bench runs on cpu, cuda or cuda:N", "use --device cpu or --device cuda")


DEFAULT_PROCESSES = 5  # worker processes per cell whose calls are fast enough to share the cap


def check_bench_options(threads=None, target_ci: float = 0.02, max_time_per_cell: float = 10.0,
                        min_samples: int = 10, processes: int = DEFAULT_PROCESSES) -> None:
    """One-line errors for options that cannot work, before anything is built."""
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise InputError(f"--threads {threads} is not allowed", "at least one thread must run the model",
                         "use --threads 1 or more (default: the physical cores)")
    if not 0 < target_ci < 1:
        raise InputError(f"--target-ci {target_ci} is not allowed", "it is a fraction of the median, between 0 and 1",
                         "use e.g. --target-ci 0.02 for +/-2 %")
    if not max_time_per_cell > 0:
        raise InputError(f"--max-time-per-cell {max_time_per_cell} is not allowed", "a cell needs some time",
                         "use a positive number of seconds, e.g. --max-time-per-cell 10")
    if not isinstance(min_samples, int) or isinstance(min_samples, bool) or min_samples < 1:
        raise InputError(f"--min-samples {min_samples} is not allowed", "at least one sample is needed",
                         "use --min-samples 10")
    if not isinstance(processes, int) or isinstance(processes, bool) or not 1 <= processes <= 100:
        raise InputError(f"--processes {processes} is not allowed", "a cell runs in 1 to 100 worker processes",
                         f"use --processes {DEFAULT_PROCESSES} (the default), or 1 for one process per cell")


def parse_choices(value, known: tuple[str, ...], option: str) -> tuple[str, ...]:
    """Names from "a,b" or a sequence, in the order of ``known``; "all" keeps every known name. One-line error else."""
    words = [w.strip() for w in (value.split(",") if isinstance(value, str) else value) if w and w.strip()]
    if "all" in words:
        return known
    bad = [w for w in words if w not in known]
    if bad or not words:
        raise InputError(f"{option} {','.join(bad) or '(none)'} is not known", f"choose from {', '.join(known)} or all",
                         f"write e.g. {option} {known[0]}" + (f",{known[1]}" if len(known) > 1 else ""))
    return tuple(k for k in known if k in words)


def parse_batch_sizes(value) -> tuple[int, ...]:
    """Batch sizes from "1,2,4" or a sequence of ints: positive, de-duplicated, ascending."""
    if isinstance(value, str):
        words = [w.strip() for w in value.split(",")]
        if not all(w.isdigit() for w in words):
            raise InputError(f"batch sizes {value!r} are malformed", "they must be whole numbers separated by commas",
                             "write e.g. --batch-sizes 1,2,4,8")
        value = [int(w) for w in words]
    sizes = list(value)
    bad = [b for b in sizes if not isinstance(b, int) or isinstance(b, bool) or b < 1]
    if not sizes or bad:
        raise InputError(f"batch size {bad[0] if bad else 'list'} is not allowed", "a batch holds at least one item",
                         "use batch sizes of 1 or more, e.g. --batch-sizes 1,2,4")
    return tuple(sorted(set(sizes)))


@dataclass(frozen=True)
class TimingSpec:
    """When a timing cell stops, and how its warm-up is told apart.

    After the cold call every call is a sample; warm-up is judged after the fact (``measure.timing.
    warmup_cut``): the leading samples until a window of up to ``warmup_window`` calls has a median within
    ``warmup_tolerance`` of the later half's median are warm-up calls — at most half of the samples, and
    no more than ``warmup_max_fraction`` of the time cap holds (or 2 windows of calls).
    Sampling stops when the ``confidence`` CI of the median of the steady samples lies within ``target_ci``
    (relative) of the median — never before ``min_samples``, nor before the 15 samples that checking them
    for drift needs (see ``core.stats``), nor before sampling has lasted ``min_sampling_fraction`` of the
    cap, so that the drift check spans more than one passing state of the machine — or when ``max_time_s``
    (cold start included) is spent, but never before ``floor_samples`` steady ones; or at ``max_samples``.
    With ``processes`` > 1 the cell's samples come from that many worker processes in turn, each sampling
    to its share of the cap — when its cold start shows calls fast enough for that (``measure.timing``);
    otherwise the one process takes the whole cap.
    """

    target_ci: float = 0.02
    max_time_s: float = 10.0
    min_samples: int = 10
    floor_samples: int = 3
    max_samples: int = 200_000
    confidence: float = 0.95
    warmup_window: int = 5
    warmup_tolerance: float = 0.05
    warmup_max_fraction: float = 0.25
    processes: int = 1
    min_sampling_fraction: float = 0.2


@dataclass(frozen=True)
class CellSpec:
    """One (model, batch size) cell: what is measured, where, with how many threads."""

    model: str
    batch_size: int
    device: str  # "cpu", "cuda", "cuda:N"
    threads: int
    timing: TimingSpec = TimingSpec()
    isolation: str = "subprocess"  # or "in-process"
    seed: int = 0
    sensors: str = "none"  # power sensor spec measured after timing: "auto", "none", "rapl,nvml", "meter:FILE"
    estimate_tdp_w: float | None = None  # --estimate-power: label a TDP-based estimate when nothing measures
    runtime: str = "eager"  # one of RUNTIMES: what runs one batch
    precision: str = "fp32"  # one of PRECISIONS

    @property
    def is_reference(self) -> bool:
        """Eager fp32: the configuration the output-equivalence check compares every other one with."""
        return (self.runtime, self.precision) == REFERENCE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "CellSpec":
        d = dict(d)
        d["timing"] = TimingSpec(**_init_kwargs(TimingSpec, d.get("timing", {})))
        return CellSpec(**_init_kwargs(CellSpec, d))


# ---- observations --------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatencyStats:
    """Statistics of per-batch latency samples, in seconds. p90/p99 need 64/662 samples (99 % confidence).

    ``ci_low_s``/``ci_high_s``: the 95 % CI of the median, the hull of the order-statistic interval
    (``ci_order_*``, right for independent samples) and a batch-means interval over ``ci_blocks``
    consecutive blocks, which widens when the machine's speed drifts during the run. ``drift_rel``: the
    batch-means half-width over the order-statistic one (about 1 for independent samples). When the
    samples came from ``ci_processes`` worker processes, the hull also spans the between-process interval
    (half-width ``ci_processes_halfwidth_s``): each process runs at a speed of its own.
    """

    n: int
    median_s: float
    mean_s: float
    min_s: float
    max_s: float
    stdev_s: float | None
    cv: float | None
    iqr_s: float
    p90_s: float | None
    p99_s: float | None
    ci_low_s: float | None
    ci_high_s: float | None
    ci_confidence: float
    unavailable: dict[str, str] = field(default_factory=dict)
    ci_order_low_s: float | None = None
    ci_order_high_s: float | None = None
    ci_blocks: int | None = None
    drift_rel: float | None = None
    ci_processes: int | None = None
    ci_processes_halfwidth_s: float | None = None

    @property
    def ci_rel_halfwidth(self) -> float | None:
        """Largest distance from the median to a CI bound, as a fraction of the median."""
        if self.ci_low_s is None or self.ci_high_s is None or self.median_s <= 0:
            return None
        return max(self.median_s - self.ci_low_s, self.ci_high_s - self.median_s) / self.median_s

    @property
    def iqr_rel(self) -> float | None:
        return self.iqr_s / self.median_s if self.median_s > 0 else None

    @staticmethod
    def from_samples(samples: list[float], confidence: float = 0.95,
                     processes: list[int] | None = None) -> "LatencyStats":
        """``processes``: samples per worker process, in order, when they came from more than one."""
        s = summarize(samples, confidence, groups=processes if processes and len(processes) > 1 else None)
        why: dict[str, str] = {}
        for name, q in (("p90_s", 0.90), ("p99_s", 0.99)):
            need = min_samples_for_quantile(q)
            if s.n < need:
                why[name] = f"too few samples: {s.n} < {need} needed for p{round(q * 100)} at 99 % confidence"
        if s.ci_low is None:
            why["ci_low_s"] = why["ci_high_s"] = f"too few samples: {s.n} < 6 needed for a 95 % CI of the median"
        if s.ci_blocks is None:
            why["ci_blocks"] = why["drift_rel"] = (f"too few samples: {s.n} < {MIN_BLOCK_SAMPLES} needed to check "
                                                   "the samples for drift (the CI assumes them independent)")
        if s.stdev is None:
            why["stdev_s"] = why["cv"] = "a single sample has no spread"
        return LatencyStats(s.n, s.median, s.mean, s.min, s.max, s.stdev, s.cv, s.iqr, s.p90, s.p99,
                            s.ci_low, s.ci_high, confidence, why, s.ci_order_low, s.ci_order_high, s.ci_blocks,
                            s.drift_rel, s.ci_groups, s.ci_groups_halfwidth)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci_rel_halfwidth"] = self.ci_rel_halfwidth
        return d


@dataclass(frozen=True)
class Timing:
    """Raw observations of one timing cell; statistics are derived on demand from ``samples_s``.

    A cell's samples may come from several worker processes in turn (``process_samples``: how many each
    gave, in order; empty: one process). ``cold_start_s`` is the first process's first call; every
    process's cold start is in ``process_cold_starts_s``.
    """

    cold_start_s: float  # the first call, kept apart from everything else
    warmup_s: list[float]
    samples_s: list[float]  # one forward of a whole batch each
    stop_reason: str  # "ci" (target reached), "time_cap", "max_samples"
    warmup_steady: bool  # False: no steady state found among the samples (see TimingSpec)
    wall_s: float  # wall time of the whole cell: cold start, warm-up and sampling
    confidence: float = 0.95
    timer: str = "perf_counter"  # or "cuda_events"
    time_cap_s: float | None = None  # the cap this process sampled to: the cell's, or its share of it
    process_samples: list[int] = field(default_factory=list)
    process_cold_starts_s: list[float] = field(default_factory=list)

    @functools.cached_property
    def stats(self) -> LatencyStats:
        return LatencyStats.from_samples(self.samples_s, self.confidence, self.process_samples or None)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def pooled(parts: list["Timing"], stop_reason: str) -> "Timing":
        """One cell's timing from the processes that sampled it in turn (``parts`` in order)."""
        first = parts[0]
        return Timing(first.cold_start_s, [x for p in parts for x in p.warmup_s],
                      [x for p in parts for x in p.samples_s], stop_reason, all(p.warmup_steady for p in parts),
                      math.fsum(p.wall_s for p in parts), first.confidence, first.timer, first.time_cap_s,
                      [len(p.samples_s) for p in parts], [p.cold_start_s for p in parts])

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Timing":
        return Timing(**_init_kwargs(Timing, d))


@dataclass(frozen=True)
class MemoryPeak:
    """Measured memory of one cell, in bytes.

    CPU: ``peak_rss_bytes`` is the process's peak resident set (VmHWM) while building and running the
    model; ``baseline_rss_bytes`` the resident set before the model was built (interpreter, torch);
    ``rss_above_baseline_bytes`` their difference — what this model at this batch size cost.
    CUDA: peak bytes handed out by the caching allocator (``allocated``) and held from the driver
    (``reserved``), after ``reset_peak_memory_stats``.
    ``cpu_activation_peak_bytes`` (CPU, eager): the peak of bytes torch's CPU allocator handed out during
    the cold call above what it held when the call began — intermediates and outputs, not weights or the
    input; what tensors need, where RSS also holds what the C allocator keeps after frees.
    """

    method: str
    peak_rss_bytes: int | None = None
    baseline_rss_bytes: int | None = None
    rss_above_baseline_bytes: int | None = None
    cuda_peak_allocated_bytes: int | None = None
    cuda_peak_reserved_bytes: int | None = None
    cuda_allocated_before_run_bytes: int | None = None  # weights and inputs, before the first forward
    cpu_activation_peak_bytes: int | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "MemoryPeak":
        return MemoryPeak(**_init_kwargs(MemoryPeak, d))


@dataclass(frozen=True)
class StaticEstimate:
    """The static profile's figures for this cell, shown beside the measured ones."""

    macs: int
    flops: int  # 2 x macs
    weight_bytes: int
    activation_peak_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Environment:
    """Provenance of a measurement. ``fingerprint``: stable hash of the hardware/software identity fields."""

    fingerprint: str
    cpu_model: str | None
    physical_cores: int | None
    logical_cores: int | None
    arch: str
    os: str
    python_version: str
    torch_version: str
    cuda_version: str | None
    cudnn_version: int | None
    gpu_name: str | None
    gpu_driver: str | None
    gpu_clocks_mhz: dict[str, float] | None  # current and max SM/memory clocks
    cpu_governor: str | None
    cpu_freq_mhz: float | None
    load_avg: list[float] | None  # 1, 5, 15 minutes
    threads: int | None  # torch.get_num_threads() in the measuring process
    tool_version: str
    timestamp: str  # UTC, ISO 8601
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. cudnn.benchmark, TF32 flags
    unavailable: dict[str, str] = field(default_factory=dict)

    # What the fingerprint hashes: the machine and the software that sets its speed; not load, clocks or time.
    IDENTITY = ("cpu_model", "physical_cores", "logical_cores", "arch", "gpu_name", "gpu_driver",
                "torch_version", "cuda_version", "cudnn_version")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Environment":
        return Environment(**_init_kwargs(Environment, d))


@dataclass(frozen=True)
class NoiseWarning:
    """Something that makes a measurement less trustworthy, with what to do about it."""

    code: str  # "cv", "iqr", "ci", "load", "throttle", "governor", "warmup", "samples", "peak"
    message: str
    remedy: str

    def __str__(self) -> str:
        return f"{self.message}. Remedy: {self.remedy}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MachinePeak:
    """Measured peak fp32 compute and memory bandwidth of one device at one thread count."""

    fingerprint: str
    device: str
    threads: int
    peak_flops_per_s: float  # best of the GEMM and convolution probes
    best_probe: str
    gemm_flops_per_s: float
    conv_flops_per_s: float
    bandwidth_bytes_per_s: float | None
    probes: list[dict[str, Any]]  # each: name, flops or bytes per call, best_s, rate
    measured_at: str
    tool_version: str
    probe_wall_s: float
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "MachinePeak":
        return MachinePeak(**_init_kwargs(MachinePeak, d))


@dataclass(frozen=True)
class Roofline:
    """Achieved FLOP/s (2 x MACs of the static profile / median latency) against the measured peak."""

    achieved_flops_per_s: float | None
    peak_flops_per_s: float | None
    fraction_of_peak: float | None
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Equivalence:
    """Outputs of a configuration against the reference on the same input: max/mean |difference| and top-1 agreement.

    ``top1_agreement``: the fraction of rows (all dims but the last, of the first output) whose argmax over the
    last dim is the same in both. ``reference`` names what was compared with, e.g. "eager fp32".
    """

    reference: str
    max_abs_diff: float | None
    mean_abs_diff: float | None
    top1_agreement: float | None
    rows: int
    reference_max_abs: float | None = None  # largest |output| of the reference: the scale of the differences
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Equivalence":
        return Equivalence(**_init_kwargs(Equivalence, d))


@dataclass(frozen=True)
class RuntimeInfo:
    """How the runtime ran the cell: preparation time, details (exporter, providers, threads...), equivalence.

    ``prepare_s``: work before the first timed call — export and session build (onnxruntime), quantization,
    precision conversion. torch.compile compiles in its first call, which is the cell's ``cold_start_s``.
    ``prepare_peak_rss_bytes``: the process's peak RSS over building and preparing, when that peak was reset
    before timing (the cell's own peak then covers running only).
    """

    runtime: str
    precision: str
    prepare_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    prepare_peak_rss_bytes: int | None = None
    equivalence: Equivalence | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["equivalence"] = self.equivalence.to_dict() if self.equivalence else None
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "RuntimeInfo":
        d = _init_kwargs(RuntimeInfo, d)
        if d.get("equivalence"):
            d["equivalence"] = Equivalence.from_dict(d["equivalence"])
        return RuntimeInfo(**d)


@dataclass
class BenchCell:
    """The result of one (model, batch size) cell: status, timing, memory, roofline, provenance, warnings."""

    spec: CellSpec
    status: str  # one of STATUSES
    message: str = ""
    timing: Timing | None = None
    memory: MemoryPeak | None = None
    environment: Environment | None = None
    static: StaticEstimate | None = None
    roofline: Roofline | None = None
    warnings: list[NoiseWarning] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    energy: list[Energy] = field(default_factory=list)  # one record per power sensor (or one unavailable)
    runtime_info: RuntimeInfo | None = None

    # -- derived views, SI names --
    @property
    def power(self) -> Energy | None:
        """The headline energy record: the first measured one, else an estimate, else the first (unavailable)."""
        for status in ("measured", "estimate"):
            for e in self.energy:
                if e.status == status:
                    return e
        return self.energy[0] if self.energy else None

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def runtime(self) -> str:
        return self.spec.runtime

    @property
    def precision(self) -> str:
        return self.spec.precision

    @property
    def prepare_s(self) -> float | None:
        return self.runtime_info.prepare_s if self.runtime_info else None

    @property
    def equivalence(self) -> Equivalence | None:
        return self.runtime_info.equivalence if self.runtime_info else None

    @property
    def batch_size(self) -> int:
        return self.spec.batch_size

    @property
    def latency_s(self) -> LatencyStats | None:
        return self.timing.stats if self.timing else None

    @property
    def latency_per_item_s(self) -> float | None:
        return self.latency_s.median_s / self.batch_size if self.latency_s else None

    @property
    def throughput_items_per_s(self) -> float | None:
        st = self.latency_s
        return self.batch_size / st.median_s if st and st.median_s > 0 else None

    @property
    def cold_start_s(self) -> float | None:
        return self.timing.cold_start_s if self.timing else None

    @property
    def samples_s(self) -> list[float]:
        return self.timing.samples_s if self.timing else []

    def _mem(self, name: str):
        return getattr(self.memory, name) if self.memory else None

    @property
    def peak_rss_bytes(self) -> int | None:
        return self._mem("peak_rss_bytes")

    @property
    def rss_above_baseline_bytes(self) -> int | None:
        return self._mem("rss_above_baseline_bytes")

    @property
    def cuda_peak_allocated_bytes(self) -> int | None:
        return self._mem("cuda_peak_allocated_bytes")

    @property
    def cuda_peak_reserved_bytes(self) -> int | None:
        return self._mem("cuda_peak_reserved_bytes")

    @property
    def cpu_activation_peak_bytes(self) -> int | None:
        return self._mem("cpu_activation_peak_bytes")

    @property
    def achieved_flops_per_s(self) -> float | None:
        return self.roofline.achieved_flops_per_s if self.roofline else None

    @property
    def fraction_of_peak(self) -> float | None:
        return self.roofline.fraction_of_peak if self.roofline else None

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        """Flat, SI-named JSON: the headline figures first, then the records they come from.

        ``samples=False`` leaves out the raw samples (``samples_s``, ``timing.warmup_s``); only a dict
        with them reads back with ``from_dict``.
        """
        st = self.latency_s
        d: dict[str, Any] = {
            "model": self.model, "batch_size": self.batch_size, "device": self.spec.device,
            "threads": self.spec.threads, "isolation": self.spec.isolation,
            "runtime": self.runtime, "precision": self.precision,
            "status": self.status, "message": self.message,
            "latency_s": st.to_dict() if st else None,
            "latency_per_item_s": self.latency_per_item_s,
            "throughput_items_per_s": self.throughput_items_per_s,
            "cold_start_s": self.cold_start_s,
            "prepare_s": self.prepare_s,
            "equivalence_max_abs_diff": self.equivalence.max_abs_diff if self.equivalence else None,
            "equivalence_top1_agreement": self.equivalence.top1_agreement if self.equivalence else None,
            "peak_rss_bytes": self.peak_rss_bytes,
            "rss_above_baseline_bytes": self.rss_above_baseline_bytes,
            "cuda_peak_allocated_bytes": self.cuda_peak_allocated_bytes,
            "cuda_peak_reserved_bytes": self.cuda_peak_reserved_bytes,
            "cpu_activation_peak_bytes": self.cpu_activation_peak_bytes,
            "static_activation_peak_bytes": self.static.activation_peak_bytes if self.static else None,
            "static_weight_bytes": self.static.weight_bytes if self.static else None,
            "flops": self.static.flops if self.static else None,
            "achieved_flops_per_s": self.achieved_flops_per_s,
            "fraction_of_peak": self.fraction_of_peak,
            "power_w": self.power.power_w if self.power else None,
            "energy_per_item_j": self.power.energy_per_item_j if self.power else None,
            "energy_per_item_above_idle_j": self.power.energy_per_item_above_idle_j if self.power else None,
            "warnings": [w.to_dict() for w in self.warnings],
            "unavailable": dict(self.unavailable),
            "energy": [e.to_dict() for e in self.energy],
            "runtime_info": self.runtime_info.to_dict() if self.runtime_info else None,
            "spec": self.spec.to_dict(),
            "timing": self.timing.to_dict() if self.timing else None,
            "memory": self.memory.to_dict() if self.memory else None,
            "static": self.static.to_dict() if self.static else None,
            "roofline": self.roofline.to_dict() if self.roofline else None,
            "environment": self.environment.to_dict() if self.environment else None,
        }
        if d["timing"]:  # the raw samples appear once, at the top level
            d["timing"] = {k: v for k, v in d["timing"].items()
                           if k != "samples_s" and (samples or k != "warmup_s")}
        if samples:
            d["samples_s"] = self.samples_s
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "BenchCell":
        return BenchCell(
            spec=CellSpec.from_dict(d["spec"]),
            status=d["status"],
            message=d.get("message", ""),
            timing=Timing.from_dict({"samples_s": d.get("samples_s", []), **d["timing"]}) if d.get("timing") else None,
            memory=MemoryPeak.from_dict(d["memory"]) if d.get("memory") else None,
            environment=Environment.from_dict(d["environment"]) if d.get("environment") else None,
            static=StaticEstimate(**d["static"]) if d.get("static") else None,
            roofline=Roofline(**d["roofline"]) if d.get("roofline") else None,
            warnings=[NoiseWarning(**w) for w in d.get("warnings", [])],
            unavailable=dict(d.get("unavailable", {})),
            energy=[Energy.from_dict(e) for e in d.get("energy", [])],
            runtime_info=RuntimeInfo.from_dict(d["runtime_info"]) if d.get("runtime_info") else None,
        )


@dataclass(frozen=True)
class MemoryFit:
    """Measured memory over batch sizes: floor + slope x batch, beside the static estimate's slope."""

    quantity: str  # "rss_above_baseline_bytes", "cuda_peak_allocated_bytes" or "cpu_activation_peak_bytes"
    floor_bytes: float
    slope_bytes_per_item: float
    r2: float | None
    n: int
    monotonic: bool
    static_floor_bytes: float | None
    static_slope_bytes_per_item: float | None
    slope_ratio: float | None  # measured slope / static slope

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchRun:
    """All cells of one ``bench`` call, with the machine's provenance and roofline peak."""

    model: str
    device: str
    threads: int
    cells: list[BenchCell]
    environment: Environment
    machine_peak: MachinePeak | None
    memory_fit: MemoryFit | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    runtime: str = "eager"
    precision: str = "fp32"
    activation_fit: MemoryFit | None = None  # cpu_activation_peak_bytes over batch sizes (CPU)

    def cell(self, batch_size: int) -> BenchCell:
        for c in self.cells:
            if c.batch_size == batch_size:
                return c
        raise KeyError(batch_size)

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        return {
            "model": self.model, "device": self.device, "threads": self.threads,
            "runtime": self.runtime, "precision": self.precision,
            "cells": [c.to_dict(samples) for c in self.cells],
            "memory_fit": self.memory_fit.to_dict() if self.memory_fit else None,
            "activation_fit": self.activation_fit.to_dict() if self.activation_fit else None,
            "machine_peak": self.machine_peak.to_dict() if self.machine_peak else None,
            "environment": self.environment.to_dict(),
            "unavailable": dict(self.unavailable),
        }
