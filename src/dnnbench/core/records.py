"""Records: what was observed. SI units in names; no milliseconds or millions on disk.

A record is a plain frozen dataclass with ``to_dict()``; JSON output and storage use the same field names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class LayerRow:
    """One module of the model. ``macs``/``flops`` are of ops run directly inside it (children excluded)."""

    name: str
    type: str
    params: int
    macs: int
    flops: int
    other_flops: int
    output_bytes: int
    calls: int = 1


@dataclass(frozen=True)
class OpTotal:
    """Totals for one ATen op type over the whole forward."""

    op: str
    count: int
    macs: int
    flops: int
    other_flops: int


# The names published quality figures take in ``ReportedAccuracy.figures`` (and, prefixed ``reported_``, in
# core.view): fractions in [0, 1], except EPE (end-point error, pixels, lower is better).
REPORTED_FIGURES = ("top1", "top5", "box_map", "mask_map", "kp_map", "miou", "pixel_acc", "epe")


@dataclass(frozen=True)
class ReportedAccuracy:
    """A published quality figure set, labelled with where it comes from.

    ``top1``/``top5`` are the classification (and video clip) accuracy, as records always held them;
    ``figures`` holds every figure published for the task on ``dataset`` under REPORTED_FIGURES' names
    (top-1/top-5 included when published), e.g. ``{"box_map": 0.213}`` for a detector on COCO. Records
    written before ``figures`` existed read back with it empty (``figure()`` still answers top1/top5).
    """

    top1: float | None  # fraction in [0, 1]
    top5: float | None
    source: str  # e.g. "torchvision weights meta"
    weights: str | None  # weights tag the figure belongs to
    note: str | None = None  # e.g. why there is no figure ("not published offline by timm")
    figures: dict[str, float] = field(default_factory=dict)  # metric -> value (fractions; epe in pixels)
    dataset: str | None = None  # what ``figures`` were measured on, e.g. "COCO-val2017"

    def figure(self, name: str) -> float | None:
        """The published ``name`` (REPORTED_FIGURES), or None."""
        if name in self.figures:
            return self.figures[name]
        return {"top1": self.top1, "top5": self.top5}.get(name)

    def all_figures(self) -> dict[str, float]:
        """Every published figure by name, top1/top5 of records older than ``figures`` included."""
        out = {n: v for n, v in (("top1", self.top1), ("top5", self.top5)) if v is not None}
        return out | {n: v for n, v in self.figures.items() if v is not None}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "ReportedAccuracy":
        """Read a stored ``reported`` mapping back; fields this dnnbench does not know are left out."""
        names = {f.name for f in fields(ReportedAccuracy)}
        kept = {k: v for k, v in d.items() if k in names}
        kept.setdefault("source", "unknown")
        kept.setdefault("weights", None)
        kept.setdefault("top1", None)
        kept.setdefault("top5", None)
        kept["figures"] = dict(kept.get("figures") or {})
        return ReportedAccuracy(**kept)


@dataclass(frozen=True)
class Profile:
    """Static profile of one model at one batch size: counted, never timed.

    ``macs``: multiply-accumulates of conv/linear/matmul/attention. ``flops`` = 2 x ``macs``.
    ``other_flops``: elementwise, normalisation, pooling and softmax work, counted apart.
    ``activation_peak_bytes``: peak bytes of live tensors (inputs and intermediates, weights excluded)
    during one forward. ``uncounted_ops``: op name -> calls seen that have no formula.
    """

    model: str
    batch_size: int
    input_shape: list[list[int]]
    params: int
    trainable_params: int
    weight_bytes: int
    buffer_bytes: int
    macs: int
    flops: int
    other_flops: int
    activation_peak_bytes: int
    input_bytes: int
    output_bytes: int
    uncounted_ops: dict[str, int]
    ops: list[OpTotal]
    layers: list[LayerRow]
    mode: str = "meta"  # "meta" (no compute) or "real" (fell back to real tensors on CPU)
    dtype: str = "float32"
    reported: ReportedAccuracy | None = None
    notes: list[str] = field(default_factory=list)
    form: str = "train"  # "train" (as built) or "deploy" (BatchNorm folded, re-param blocks fused: notes say what)

    def to_dict(self, layers: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not layers:
            d.pop("layers")
            d.pop("ops")
        return d
