"""The runtime plug-in interface, the prepared callable, and the output-equivalence check.

A ``Runtime`` says whether it works here (``availability``), which precisions it refuses on a device
(``unsupported``), imports its libraries before the worker's memory baseline (``import_libraries``) and turns
a model and one batch of inputs into a ``Prepared``: ``call`` runs one batch (what the worker times, and what
the power step repeats), ``outputs`` runs one batch and returns its outputs for the equivalence check.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from dnnbench.core.measurements import Equivalence, CellWarning, RuntimeInfo, Timing
from dnnbench.core.registry import Registry


@dataclass(frozen=True)
class Availability:
    """Whether a runtime works on this machine and device; if not, why and how to fix it."""

    name: str
    ok: bool
    reason: str = ""
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # e.g. versions, execution providers
    missing_extra: bool = False  # the reason is a missing optional dependency; ``fix`` is its pip command

    def error(self):
        """The one-line error to raise when this runtime was asked for explicitly."""
        from dnnbench.core.errors import MissingExtraError, UnavailableError

        if self.missing_extra:
            return MissingExtraError(self.reason, self.fix)
        return UnavailableError(f"--runtime {self.name} cannot run here", self.reason, self.fix)


@dataclass
class Context:
    """What a runtime prepares from: the built model, one batch of inputs on the device, the cell's settings."""

    module: torch.nn.Module
    args: tuple
    kwargs: dict
    device: torch.device
    runtime: str
    precision: str
    threads: int
    batch_size: int
    model: str  # the reference, for messages
    owns_module: bool  # True in an isolated worker: the module may be changed in place
    # static int8 only: batches to calibrate on, each (args, kwargs) shaped like ``args``/``kwargs`` and on the
    # device, and where they came from (said in the cell's details); see runtimes.calibration
    calibration: list[tuple[tuple, dict]] | None = None
    calibration_source: str = ""


@dataclass
class Prepared:
    """A model ready to run one batch under a runtime and precision; see the module docstring."""

    call: Callable[[], object]
    outputs: Callable[[], list[torch.Tensor]]
    runtime: str
    precision: str
    reference: list[torch.Tensor] | None = None  # the reference's outputs on the same input; None: this is it
    reference_name: str = "eager fp32"
    prepare_s: float | None = None
    first_call_s: float | None = None  # a first call made while preparing (torch.compile compiles in it)
    releases_module: bool = False  # the runtime holds its own weights: the torch module can be freed
    restart_peak: bool = False  # one-off preparation happened: the memory peak restarts before timing
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[CellWarning] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    prepare_peak_rss_bytes: int | None = None
    task: str = "classification"  # core.specs.TASKS: what the outputs are (logits, masks, boxes, flow)
    # the deployable file's size, measured once after timing (before ``close`` removes temporary files):
    # returns (bytes, what was measured); see ``state_dict_artifact`` and ``ort.onnx_artifact``
    artifact: Callable[[], tuple[int, str]] | None = None
    artifact_bytes: int | None = None
    artifact_note: str = ""
    # ``dnnbench export``: write the deployable file(s) into a folder, return their paths (None: cannot)
    save: Callable[[str], list[str]] | None = None
    # accuracy per configuration: run NEW inputs (args, kwargs) of the prepared shapes, return the flat outputs as
    # CPU tensors (floating ones as float32); None: this runtime cannot take other inputs once prepared
    run: Callable[[tuple, dict], list[torch.Tensor]] | None = None

    def after_prepare(self, rss) -> None:
        """Restart the memory peak after one-off preparation, keeping the preparation's own peak on record."""
        if self.restart_peak:
            gc.collect()
            self.prepare_peak_rss_bytes = rss.restart_peak()

    def finish(self, timing: Timing | None) -> tuple[Timing | None, RuntimeInfo]:
        """The cell's timing (the preparation's first call as cold start) and the runtime record with equivalence."""
        if timing is not None and self.first_call_s is not None:
            # the first call ever is the cold start; the timing loop's own first call becomes a warm-up call
            timing = replace(timing, cold_start_s=self.first_call_s, warmup_s=[timing.cold_start_s, *timing.warmup_s],
                             wall_s=timing.wall_s + self.first_call_s)
        self.measure_artifact()
        equivalence = None
        if self.reference is not None:
            try:
                with torch.inference_mode():
                    equivalence = compare(self.reference, self.outputs(), self.reference_name, self.task)
            except Exception as exc:  # the check must not lose a measured cell
                why = f"unavailable: the equivalence run failed ({type(exc).__name__}: {str(exc)[:200]})"
                equivalence = Equivalence(self.reference_name, None, None, None, 0, None,
                                          {"max_abs_diff": why, "top1_agreement": why})
        self.close()
        return timing, self.info(equivalence)

    def measure_artifact(self) -> None:
        """``artifact_bytes`` and ``artifact_note`` from ``artifact`` (outside every timed region); a failure is
        said in the note, never a zero."""
        if self.artifact_bytes is not None or self.artifact_note:
            return
        if self.artifact is None:
            self.artifact_note = f"unavailable: the {self.runtime} runtime does not say what its deployable file is"
            return
        try:
            self.artifact_bytes, self.artifact_note = self.artifact()
        except Exception as exc:  # the size must not lose a measured cell
            self.artifact_note = (f"unavailable: serialising the {self.runtime} {self.precision} artifact failed "
                                  f"({type(exc).__name__}: {str(exc)[:200]})")

    def info(self, equivalence: Equivalence | None = None) -> RuntimeInfo:
        return RuntimeInfo(self.runtime, self.precision, self.prepare_s, dict(self.details), list(self.notes),
                           self.prepare_peak_rss_bytes, equivalence, self.artifact_bytes, self.artifact_note)

    def close(self) -> None:
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except Exception:
                pass


class Runtime:
    """Base of the runtime plug-ins; subclasses set ``name`` and implement ``prepare``."""

    name = ""
    description = ""
    precisions: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8-dynamic")

    def availability(self, device: str = "cpu") -> Availability:
        return Availability(self.name, True)

    def unsupported(self, precision: str, device: str) -> str | None:
        """Why ``precision`` cannot run under this runtime on ``device``, or None when it may."""
        if precision not in self.precisions:
            return f"{self.name} does not run {precision}"
        return None

    def import_libraries(self) -> None:
        """Import what preparing needs, so that the worker's memory baseline includes the libraries."""

    def prepare(self, ctx: Context) -> Prepared:
        raise NotImplementedError


RUNTIMES: Registry = Registry("runtime")


def tensors_only(ctx: Context, takes: str, fix: str = "measure it with --runtime eager or compile") -> None:
    """UnavailableError when the model takes inputs other than tensors (a detector's list of images): exported
    graphs, converted models and programs are fed tensors only. ``takes``: what the runtime feeds."""
    other = [a for a in (*ctx.args, *ctx.kwargs.values()) if not isinstance(a, torch.Tensor)]
    if other:
        from dnnbench.core.errors import UnavailableError

        what = (f"a list of {len(other[0])} images" if isinstance(other[0], (list, tuple))
                else f"a {type(other[0]).__name__}")
        raise UnavailableError(f"--runtime {ctx.runtime} cannot run {ctx.model}",
                               f"it takes {what}, and dnnbench feeds {takes} tensors only", fix)


def check_fixed_batch(ctx: Context) -> None:
    """InputError when an ONNX file as given fixes a batch size other than the cell's."""
    fixed = getattr(ctx.module, "fixed_batch", None)
    if fixed is not None and fixed != ctx.batch_size:
        from dnnbench.core.errors import InputError

        raise InputError(f"{ctx.model} fixes the batch size to {fixed}", f"batch size {ctx.batch_size} cannot run",
                         f"use --batch-sizes {fixed}, or export the model with a dynamic batch axis")


# ---- the deployable artifact's size ---------------------------------------------------------------

class _CountingWriter:
    """A write-only file object that counts what is written to it: ``torch.save`` into it measures the
    serialised size exactly, without holding the bytes in memory or on disk."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        self.bytes += n
        return n

    def flush(self) -> None:
        pass


def state_dict_bytes(module: torch.nn.Module) -> int:
    """The exact size of ``torch.save(module.state_dict(), f)``: serialised, counted, not kept."""
    import warnings

    sink = _CountingWriter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors' deprecation notices
        torch.save(module.state_dict(), sink)
    return sink.bytes


def state_dict_artifact(module: torch.nn.Module, precision: str, note: str = "") -> Callable[[], tuple[int, str]]:
    """The artifact of a PyTorch configuration: the module's state dict at ``precision``, as torch.save writes it."""

    def measure() -> tuple[int, str]:
        return state_dict_bytes(module), (f"torch.save(state_dict) of the {precision} module" + note)

    return measure


def register(cls):
    RUNTIMES.register(cls.name)(cls())
    return cls


# ---- outputs and the equivalence check ------------------------------------------------------------

def flat_outputs(out) -> list[torch.Tensor]:
    """Every tensor of a model's output (tensor, tuple, list, dict, numpy arrays) as CPU tensors, in order."""
    from torch.utils._pytree import tree_flatten

    leaves, _ = tree_flatten(out)
    result = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            result.append(leaf.detach().cpu())
        elif hasattr(leaf, "__array__") and hasattr(leaf, "dtype"):
            result.append(torch.from_numpy(leaf.copy()) if hasattr(leaf, "copy") else torch.as_tensor(leaf))
    return result


def eager_outputs(module, args, kwargs) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [t.clone() for t in flat_outputs(module(*args, **kwargs))]


# Tasks whose first output holds class scores, and the dim that holds them (None: no class dimension).
_CLASS_DIM = {"classification": -1, "video": -1, "segmentation": 1}


def _no_class_dim(task: str) -> str:
    return (f"unavailable: a {task.replace('_', ' ')} model's outputs have no class dimension "
            "(boxes, scores, masks or flow are compared by |difference|)")


def compare(reference: list[torch.Tensor], outputs: list[torch.Tensor], reference_name: str,
            task: str = "classification") -> Equivalence:
    """Max and mean |difference| over the floating outputs of equal shape, and top-1 agreement of the first output.

    Outputs of any structure arrive flattened (``flat_outputs``). When their number differs nothing is
    compared. A detector's outputs have a data-dependent size (how many boxes pass the threshold): tensors whose
    shapes differ are left out, and ``compared`` says how many of how many were compared. Top-1 agreement is
    over the class dimension of the task's first output (the last dim of logits; dim 1 of a segmentation
    map's, per pixel); detection and flow outputs have none, which is said.
    """
    why: dict[str, str] = {}
    if len(reference) != len(outputs):
        msg = (f"unavailable: the outputs do not match the reference's in number ({len(outputs)} tensors vs "
               f"{len(reference)})")
        return Equivalence(reference_name, None, None, None, 0, None, {"max_abs_diff": msg, "top1_agreement": msg},
                           compared=f"nothing: {len(outputs)} output tensors vs the reference's {len(reference)}")
    floating = [(r, o) for r, o in zip(reference, outputs) if r.is_floating_point()]
    pairs = [(r, o) for r, o in floating if r.shape == o.shape]
    resized = [(tuple(r.shape), tuple(o.shape)) for r, o in floating if r.shape != o.shape]
    compared = ""
    if resized:
        shown = ", ".join(f"{list(o)} vs {list(r)}" for r, o in resized[:3]) + (", ..." if len(resized) > 3 else "")
        compared = (f"{len(pairs)} of {len(floating)} floating output tensors (equal shapes); {len(resized)} differ "
                    f"in size, as a data-dependent output does (e.g. a detector's boxes above its threshold): {shown} (this "
                    "run's vs the reference's)")
    if not pairs:
        msg = ("unavailable: the outputs do not match the reference's in shape: " +
               (f"{compared}" if compared else "the outputs hold no floating tensor"))
        top1 = msg if _CLASS_DIM.get(task) is not None else _no_class_dim(task)
        return Equivalence(reference_name, None, None, None, 0, None, {"max_abs_diff": msg, "top1_agreement": top1},
                           compared=compared or "nothing: no floating output")
    total = count = 0.0
    worst = 0.0
    ref_max = 0.0
    nonfinite = 0
    for r, o in pairs:
        r, o = r.double(), o.double()
        finite = torch.isfinite(o) & torch.isfinite(r)
        nonfinite += int((~finite).sum())
        d = (o - r).abs()[finite]
        if d.numel():
            worst = max(worst, float(d.max()))
            total += float(d.sum())
            count += d.numel()
        rf = r[torch.isfinite(r)].abs()
        if rf.numel():
            ref_max = max(ref_max, float(rf.max()))
    max_abs: float | None = worst
    mean_abs: float | None = total / count if count else None
    if nonfinite:
        msg = f"unavailable: {nonfinite} output values are NaN or infinite (overflow in this precision?)"
        why["max_abs_diff"] = why["mean_abs_diff"] = msg
        max_abs = mean_abs = None
    agreement, rows = None, 0
    dim = _CLASS_DIM.get(task)
    r0, o0 = reference[0], outputs[0]
    if dim is None:
        why["top1_agreement"] = _no_class_dim(task)
    elif not r0.is_floating_point() or r0.shape != o0.shape or r0.dim() < (2 if dim == 1 else 1) \
            or r0.shape[dim] < 2:
        why["top1_agreement"] = ("unavailable: the first output has no class dimension"
                                 + (" (dim 1 < 2)" if dim == 1 else " (last dim < 2)") if r0.shape == o0.shape else
                                 "unavailable: the first output's shape differs from the reference's")
    else:
        ra = r0.float().movedim(dim, -1)
        oa = o0.float().movedim(dim, -1)
        ra = ra.reshape(-1, ra.shape[-1]).argmax(-1)
        oa = oa.reshape(-1, oa.shape[-1]).argmax(-1)
        rows = int(ra.numel())
        agreement = float((ra == oa).double().mean()) if rows else None
    if agreement is not None and not math.isfinite(agreement):
        agreement = None
    return Equivalence(reference_name, max_abs, mean_abs, agreement, rows, ref_max, why, compared)
