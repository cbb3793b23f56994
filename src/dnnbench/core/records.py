"""Records: what was observed. SI units in names; no milliseconds or millions on disk.

A record is a plain frozen dataclass with ``to_dict()``; JSON output and storage use the same field names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


@dataclass(frozen=True)
class ReportedAccuracy:
    """A published accuracy, labelled with where it comes from."""

    top1: float | None  # fraction in [0, 1]
    top5: float | None
    source: str  # e.g. "torchvision weights meta"
    weights: str | None  # weights tag the figure belongs to
    note: str | None = None  # e.g. why there is no figure ("not published offline by timm")


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
