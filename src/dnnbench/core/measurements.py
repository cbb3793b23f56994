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

from dnnbench.core.errors import InputError, check_batch_size
from dnnbench.core.energy import Energy
from dnnbench.core.record import CellRecord, CellWarning, now_iso
from dnnbench.core.stats import MIN_BLOCK_SAMPLES, min_samples_for_quantile, summarize

STATUSES = ("ok", "oom", "error", "skipped", "interrupted")
RUNTIMES = ("eager", "compile", "onnxruntime", "executorch", "openvino")  # what runs one batch (measure/runtimes registers each)
# int8: static quantization calibrated on sample inputs, convolutions included (each runtime its own way);
# int8-dynamic: weights of the linear layers int8, activations quantized per batch at run time
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-dynamic")
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
    if threads is not None:
        import os

        # Far more threads than cores cannot be measured meaningfully, and the OpenMP runtime fails to
        # create them with messages that name neither the option nor the cause (a cuDNN symbol error in a
        # worker, a bare libgomp line in-process). Up to 4 per core leaves room for oversubscription studies.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if threads > 4 * cores:
            raise InputError(f"--threads {threads} is more than this machine can run",
                             f"this process may use {cores} logical core(s), and at most 4 threads per core "
                             f"({4 * cores}) are allowed",
                             f"use --threads {cores} or fewer (default: the physical cores)")
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
    if not sizes:
        raise InputError("an empty list of batch sizes is not allowed", "a sweep needs at least one batch size",
                         "write e.g. --batch-sizes 1,2,4")
    for b in sizes:
        check_batch_size(b, "batch size")
    return tuple(sorted(set(sizes)))


# What one item of a batch is, per task (core.specs.TASKS): time per item and items/s are named after it.
ITEM_UNITS = {"classification": "image", "detection": "image", "instance_segmentation": "image",
              "keypoint_detection": "image", "segmentation": "image", "video": "clip", "optical_flow": "pair"}


def item_unit(task: str | None) -> str:
    """"image", "clip" or "pair": one item of a batch of ``task`` (None: classification)."""
    return ITEM_UNITS.get(task or "classification", "item")


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
    input_shape: tuple | None = None  # every input tensor's shape at this batch size, e.g. ((1, 3, 224, 224),)
    machine: str = ""  # the fingerprint of the machine it runs on: the same spec elsewhere is another cell
    task: str = "classification"  # core.specs.TASKS; in the spec's dict only when not classification
    form: str = "train"  # "deploy": BatchNorm folded, re-param blocks fused; in the spec's dict only when deploy
    # static int8's calibration inputs: a folder of images (through the model's own preprocessing), "" = generated
    # batches (with a warning); and how many images/batches (0 = the default). In the spec's dict only for int8.
    calibration: str = ""
    calibration_count: int = 0

    @property
    def item_unit(self) -> str:
        """What one batch item is: an image, a clip (video) or an image pair (optical flow)."""
        return item_unit(self.task)

    @property
    def is_reference(self) -> bool:
        """Eager fp32: the configuration the output-equivalence check compares every other one with."""
        return (self.runtime, self.precision) == REFERENCE

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = [list(s) for s in self.input_shape] if self.input_shape else None
        if d["task"] == "classification":  # the identity of every classification cell stays what it was
            del d["task"]
        if d["form"] == "train":  # likewise every cell of the model as built
            del d["form"]
        if self.precision != "int8" or (not self.calibration and not self.calibration_count):
            del d["calibration"], d["calibration_count"]
        return d

    @property
    def cell_id(self) -> str:
        """The digest of the whole spec: what a study resumes by."""
        from dnnbench.core.record import digest

        return digest(self.to_dict())

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "CellSpec":
        d = dict(d)
        d["timing"] = TimingSpec(**_init_kwargs(TimingSpec, d.get("timing", {})))
        if d.get("input_shape"):
            d["input_shape"] = tuple(tuple(s) for s in d["input_shape"])
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
    cuda_process_used_bytes: int | None = None  # NVML: device memory this process held (ORT's arena included)

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
    hostname: str | None = None

    # What the fingerprint hashes: the machine and the software that sets its speed; not load, clocks or time.
    IDENTITY = ("cpu_model", "physical_cores", "logical_cores", "arch", "gpu_name", "gpu_driver",
                "torch_version", "cuda_version", "cudnn_version")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Environment":
        return Environment(**_init_kwargs(Environment, d))


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
    last dim is the same in both; for segmentation the fraction of pixels whose class (argmax over dim 1) is;
    none for tasks whose outputs have no class dimension (boxes, flow). ``reference`` names what was compared
    with, e.g. "eager fp32"; ``compared`` says what was left out when outputs differ in size (detections).
    """

    reference: str
    max_abs_diff: float | None
    mean_abs_diff: float | None
    top1_agreement: float | None
    rows: int
    reference_max_abs: float | None = None  # largest |output| of the reference: the scale of the differences
    unavailable: dict[str, str] = field(default_factory=dict)
    compared: str = ""  # what was compared, when not every output: e.g. outputs of a data-dependent size left out

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
    ``artifact_bytes``: the size of the deployable file this configuration produces (the serialised state dict
    at the cell's precision for eager and compile, the ``.onnx`` file plus its external data for
    onnxruntime), measured by serialising it once after timing; ``artifact_note`` says what was measured, or
    why nothing was ("unavailable: ...").
    """

    runtime: str
    precision: str
    prepare_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    prepare_peak_rss_bytes: int | None = None
    equivalence: Equivalence | None = None
    artifact_bytes: int | None = None
    artifact_note: str = ""

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


def derive_roofline(status: str, flops: int | None, median_s: float | None, precision: str,
                    peak_flops_per_s: float | None, peak_why: str | None,
                    static_why: str | None = None) -> Roofline | None:
    """Achieved FLOP/s (static FLOPs / median latency) against the machine's measured fp32 peak; None if not ok."""
    if status != "ok" or median_s is None or median_s <= 0:
        return None
    if flops is None:
        why = f"unavailable: {static_why or 'no static profile'}"
        return Roofline(None, peak_flops_per_s, None, {"achieved_flops_per_s": why, "fraction_of_peak": why})
    achieved = flops / median_s
    if peak_flops_per_s is None:
        return Roofline(achieved, None, None, {"fraction_of_peak": peak_why or "unavailable: no measured peak"})
    if precision != "fp32":
        return Roofline(achieved, peak_flops_per_s, None, {
            "fraction_of_peak": f"unavailable: the measured peak is fp32's and this cell ran {precision}"})
    return Roofline(achieved, peak_flops_per_s, achieved / peak_flops_per_s)


def peak_warning(roofline: Roofline | None) -> CellWarning | None:
    """A result above 100 % of the measured peak means the probe or the operation count is wrong."""
    if roofline is None or roofline.fraction_of_peak is None or roofline.fraction_of_peak <= 1:
        return None
    return CellWarning(
        "peak", f"achieved {roofline.achieved_flops_per_s / 1e9:.1f} GFLOP/s is "
                f"{100 * roofline.fraction_of_peak:.0f} % of the measured peak "
                f"{roofline.peak_flops_per_s / 1e9:.1f} GFLOP/s: the peak probe or the operation count is wrong",
        "run `dnnbench machine` again on a quiet machine, and report the model if it persists")


@dataclass(frozen=True)
class BenchCell:
    """The typed form of one bench cell's record: status, raw timing, memory, energy, provenance, warnings.

    Built by the worker that measured it and finished by ``api.bench`` (static counts, machine peak);
    ``to_record()`` is the one document it travels and is stored as, ``from_record`` reads it back.
    Every statistic (``latency_s``, throughput, roofline) is derived from the raw samples on demand.
    """

    spec: CellSpec
    status: str  # one of STATUSES
    message: str = ""
    timing: Timing | None = None
    memory: MemoryPeak | None = None
    environment: Environment | None = None
    static: StaticEstimate | None = None
    machine_peak_flops_per_s: float | None = None  # the fp32 peak `dnnbench machine` measured here
    warnings: tuple[CellWarning, ...] = ()
    unavailable: dict[str, str] = field(default_factory=dict)
    energy: tuple[Energy, ...] = ()  # one record per power sensor (or one unavailable)
    runtime_info: RuntimeInfo | None = None
    started_at: str = field(default_factory=now_iso)
    finished_at: str = field(default_factory=now_iso)

    def __post_init__(self):  # lists given by callers become tuples: the cell is frozen all the way down
        object.__setattr__(self, "warnings", tuple(self.warnings))
        object.__setattr__(self, "energy", tuple(self.energy))

    def with_(self, **changes: Any) -> "BenchCell":
        from dataclasses import replace

        return replace(self, **changes)

    # -- derived views, SI names --
    @property
    def power(self) -> Energy | None:
        """The headline energy record: the sensor that covers the device measured (see ``core.energy.headline``)."""
        from dnnbench.core.energy import headline

        return headline(self.energy, self.spec.device)[0]

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

    @functools.cached_property
    def latency_s(self) -> LatencyStats | None:
        return self.timing.stats if self.timing and self.timing.samples_s else None

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

    @property
    def roofline(self) -> Roofline | None:
        st = self.latency_s
        return derive_roofline(self.status, self.static.flops if self.static else None, st.median_s if st else None,
                               self.spec.precision, self.machine_peak_flops_per_s,
                               self.unavailable.get("machine_peak"), self.unavailable.get("static"))

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
        r = self.roofline
        return r.achieved_flops_per_s if r else None

    @property
    def fraction_of_peak(self) -> float | None:
        r = self.roofline
        return r.fraction_of_peak if r else None

    # -- the record --
    def to_record(self) -> CellRecord:
        """The cell as its one result document (raw observations only: no statistic is written)."""
        samples: dict[str, list[float]] = {}
        result: dict[str, Any] = {}
        if self.timing is not None:
            t = self.timing
            samples["latency_s"] = list(t.samples_s)
            samples["warmup_s"] = list(t.warmup_s)
            if t.process_samples:  # latency_s came from these worker processes in turn, this many each
                samples["latency_process_samples"] = [float(n) for n in t.process_samples]
                samples["process_cold_start_s"] = list(t.process_cold_starts_s)
            result["timing"] = {k: v for k, v in t.to_dict().items()
                                if k not in ("samples_s", "warmup_s", "process_samples", "process_cold_starts_s")}
        if self.memory is not None:
            result["memory"] = self.memory.to_dict()
        if self.static is not None:
            result["static"] = self.static.to_dict()
        if self.machine_peak_flops_per_s is not None:
            result["machine_peak_flops_per_s"] = self.machine_peak_flops_per_s
        if self.energy:
            result["energy"] = [e.to_dict() for e in self.energy]
        if self.runtime_info is not None:
            result["runtime_info"] = self.runtime_info.to_dict()
        return CellRecord("bench", self.spec.to_dict(), self.status, self.message,
                          self.environment.to_dict() if self.environment else {}, samples, result,
                          dict(self.unavailable), self.warnings, self.started_at, self.finished_at)

    @staticmethod
    def from_record(rec: CellRecord) -> "BenchCell":
        r, smp = rec.result, rec.samples
        timing = None
        if "timing" in r:
            timing = Timing.from_dict({**r["timing"], "samples_s": smp.get("latency_s", []),
                                       "warmup_s": smp.get("warmup_s", []),
                                       "process_samples": [int(n) for n in smp.get("latency_process_samples", [])],
                                       "process_cold_starts_s": smp.get("process_cold_start_s", [])})
        return BenchCell(
            spec=CellSpec.from_dict(rec.spec), status=rec.status, message=rec.message, timing=timing,
            memory=MemoryPeak.from_dict(r["memory"]) if r.get("memory") else None,
            environment=Environment.from_dict(rec.environment) if rec.environment else None,
            static=StaticEstimate(**r["static"]) if r.get("static") else None,
            machine_peak_flops_per_s=r.get("machine_peak_flops_per_s"),
            warnings=rec.warnings, unavailable=dict(rec.unavailable),
            energy=tuple(Energy.from_dict(e) for e in r.get("energy", [])),
            runtime_info=RuntimeInfo.from_dict(r["runtime_info"]) if r.get("runtime_info") else None,
            started_at=rec.started_at, finished_at=rec.finished_at)

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON document (what the worker sends, ``bench --format json`` prints, the store keeps)."""
        return self.to_record().to_dict()

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "BenchCell":
        return BenchCell.from_record(CellRecord.from_dict(d))


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


def fit_memory(cells: "list[BenchCell]", quantity: str,
               with_weights: bool = True) -> "tuple[MemoryFit | None, str | None]":
    """``quantity`` over batch sizes, floor + slope x batch, beside the static estimate of the same thing.

    RSS and CUDA's allocated peak hold the weights (``with_weights``), so their static counterpart is
    weights + activation peak; ``cpu_activation_peak_bytes`` holds neither weights nor the input, so its
    counterpart is the activation peak alone (which counts the input: its slope is higher by one input item).
    """
    from dnnbench.core.stats import linear_fit

    points = [(c.batch_size, getattr(c, quantity), c.static) for c in cells
              if c.status == "ok" and getattr(c, quantity) is not None]
    if len(points) < 2:
        return None, f"unavailable: fewer than two batch sizes with a measured {quantity}"
    bs = [p[0] for p in points]
    ys = [p[1] for p in points]
    fit = linear_fit(bs, ys)
    monotonic = all(b >= a for a, b in zip(ys, ys[1:]))
    s_floor = s_slope = ratio = None
    if all(p[2] is not None for p in points):
        sfit = linear_fit(bs, [p[2].activation_peak_bytes for p in points])
        s_floor, s_slope = (points[0][2].weight_bytes if with_weights else 0) + sfit.intercept, sfit.slope
        ratio = fit.slope / s_slope if s_slope > 0 else None
    return MemoryFit(quantity, fit.intercept, fit.slope, fit.r2, fit.n, monotonic, s_floor, s_slope, ratio), None


@dataclass(frozen=True)
class BenchRun:
    """All cells of one ``bench`` call, with the machine's provenance and roofline peak; fits derived on demand."""

    model: str
    device: str
    threads: int
    cells: list[BenchCell]
    environment: Environment
    machine_peak: MachinePeak | None
    unavailable: dict[str, str] = field(default_factory=dict)
    runtime: str = "eager"
    precision: str = "fp32"
    interrupted: bool = False  # Ctrl-C stopped the run: ``cells`` are those finished before it

    def cell(self, batch_size: int) -> BenchCell:
        for c in self.cells:
            if c.batch_size == batch_size:
                return c
        raise KeyError(batch_size)

    @functools.cached_property
    def _fits(self) -> dict[str, tuple]:
        on_gpu = self.device.startswith("cuda")
        fits = {"memory_fit": fit_memory(self.cells, "cuda_peak_allocated_bytes" if on_gpu
                                         else "rss_above_baseline_bytes")}
        if not on_gpu:
            fits["activation_fit"] = fit_memory(self.cells, "cpu_activation_peak_bytes", with_weights=False)
        return fits

    @property
    def memory_fit(self) -> MemoryFit | None:
        """RSS above baseline (CPU) or CUDA's allocated peak over batch sizes: floor + slope x batch."""
        return self._fits["memory_fit"][0]

    @property
    def activation_fit(self) -> MemoryFit | None:
        """The CPU allocator's activation peak over batch sizes (CPU only)."""
        return self._fits.get("activation_fit", (None, None))[0]

    def why_unavailable(self) -> dict[str, str]:
        """Run-level figures that are missing, with why (the machine peak, the fits)."""
        out = dict(self.unavailable)
        for name, (fit, why) in self._fits.items():
            if fit is None and why:
                out[name] = why
        return out

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON: each cell's record, the document the store keeps (``core.view`` derives figures)."""
        return {
            "model": self.model, "device": self.device, "threads": self.threads,
            "runtime": self.runtime, "precision": self.precision, "interrupted": self.interrupted,
            "records": [c.to_dict() for c in self.cells],
            "memory_fit": self.memory_fit.to_dict() if self.memory_fit else None,
            "activation_fit": self.activation_fit.to_dict() if self.activation_fit else None,
            "machine_peak": self.machine_peak.to_dict() if self.machine_peak else None,
            "environment": self.environment.to_dict(),
            "unavailable": self.why_unavailable(),
        }


@dataclass(frozen=True)
class BenchConfig:
    """How ``bench`` measures (everything but the model): validated by ``api.plan_bench``."""

    batch_sizes: Any = (1, 2, 4, 8, 16, 32, 64)  # ints, or "1,2,4"
    device: str = "cpu"
    threads: int | None = None  # default: the physical cores
    target_ci: float = 0.02
    max_time_per_cell: float = 10.0
    min_samples: int = 10
    in_process: bool = False
    input_size: Any = None  # "H[,W]" or (H, W): the image size in pixels (default: native)
    sensors: str = "auto"
    estimate_power_w: float | None = None
    runtime: str | None = None  # None: eager (onnxruntime for an ONNX file)
    precision: str = "fp32"
    processes: int | None = None  # None: 5 for isolated eager cells, else 1
    form: str = "train"  # "deploy": measure the model with BatchNorm folded and re-param blocks fused
    # static int8 only: a folder of calibration images (None: generated batches) and how many images (None: default)
    calibration: str | None = None
    calibration_count: int | None = None

    def sizes(self) -> tuple[int, ...]:
        return parse_batch_sizes(self.batch_sizes)

    def with_(self, **changes: Any) -> "BenchConfig":
        from dnnbench.core.config import with_options

        return with_options(BenchConfig, self, changes, "bench")
