"""Calibration inputs for static int8: what a quantizer observes to choose its activation ranges.

``for_cell`` gives the batches a runtime calibrates on, shaped like the cell's inputs and on its device: images
from ``spec.calibration`` (a folder) through the model's own preprocessing, or, when no folder is given, batches
generated like the timing input, with a warning (ranges observed on noise are not those of real images, so the
int8 figure's accuracy means little; its speed and size are still right).
"""

from __future__ import annotations

import torch

from dnnbench.core.measurements import CellSpec, CellWarning

DEFAULT_GENERATED_BATCHES = 4


def for_cell(spec: CellSpec, lm, args: tuple, kwargs: dict, device) -> tuple[list[tuple[tuple, dict]], str,
                                                                            CellWarning | None]:
    """(batches, where they came from, a warning or None) for ``spec``'s static int8 calibration."""
    n = spec.calibration_count or DEFAULT_GENERATED_BATCHES
    gen = torch.Generator(device="cpu").manual_seed(spec.seed + 1)
    batches = []
    for _ in range(n):
        a, k = lm.inputs.make(spec.batch_size, "cpu", gen)
        batches.append(_to(device, (tuple(a), dict(k))))
    source = f"generated: {n} batches of {spec.batch_size} made like the timing input (seed {spec.seed + 1})"
    warning = CellWarning("calibration", "static int8 was calibrated on generated inputs, not real images",
                          "its activation ranges are not those of real data: trust its speed and size, not its "
                          "accuracy; pass --calibration DIR (a folder of images) to calibrate on real ones")
    return batches, source, warning


def _to(device, tree):
    from torch.utils._pytree import tree_map

    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, tree)
