"""Facts from Canziani, Paszke & Culurciello, "An Analysis of Deep Neural Network Models for Practical
Applications" (arXiv 1605.07678, v4, 2016), copied here so the product never reads outside the package.

The per-model top-1 the paper plotted is stored with every profile cell as ``paper_top1`` (from
``data/canziani2016.csv``); the figures below are the paper's headline hardware facts.
"""

from __future__ import annotations

DEVICE = "NVIDIA Jetson TX1 (Torch7, cuDNN v5)"
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
# Power above idle once the board is saturated: about the same for every network (paper, Sec. power).
POWER_ABOVE_IDLE_W = 11.8
# Memory: a floor of about 200 MB, then linear growth with batch size (paper, Sec. memory).
MEMORY_FLOOR_BYTES = 200e6
# The paper counted a multiply-add as two operations: its "G-Ops" are 2 x GMACs (= our FLOPs).
OPS_PER_MAC = 2
# The abstract's key findings, quoted as the report compares against them.
FINDINGS = {
    "power": "power consumption is independent of batch size and architecture",
    "accuracy_time": "accuracy and inference time are in a hyperbolic relationship",
    "energy": "energy constraint is an upper bound on the maximum achievable accuracy and model complexity",
    "ops_time": "the number of operations is a reliable estimate of the inference time",
    "density": "GoogLeNet uses its parameter space best (most top-1 per parameter of the models compared)",
}
CITATION = ("Canziani, Paszke & Culurciello, An Analysis of Deep Neural Network Models for Practical "
            "Applications, arXiv:1605.07678 (2016)")


def _canonical(ref: str) -> str:
    """'resnet18' and 'torchvision:resnet18' name the same model; timm tags are kept."""
    return ref if ":" in ref else f"torchvision:{ref}"


def paper_top1(ref: str) -> float | None:
    """The top-1 (fraction) the paper plotted for the model ``ref`` names, from the package's data file.

    Used when a profile cell did not store ``paper_top1`` (e.g. it was measured under a shorthand name).
    """
    import csv
    import io
    from importlib import resources

    global _PAPER_TOP1
    if _PAPER_TOP1 is None:
        text = resources.files("dnnbench").joinpath("data/canziani2016.csv").read_text(encoding="utf-8")
        _PAPER_TOP1 = {r["modern_ref"]: float(r["paper_top1_percent"]) / 100
                       for r in csv.DictReader(io.StringIO(text)) if r["modern_ref"]}
    return _PAPER_TOP1.get(_canonical(ref))


_PAPER_TOP1: dict[str, float] | None = None
