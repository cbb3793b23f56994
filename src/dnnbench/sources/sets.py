"""Built-in model sets: ``paper`` (Canziani et al. 2016) and ``torchvision`` (every classifier)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources

from dnnbench.sources import timm_models, torchvision_models


@dataclass(frozen=True)
class SetEntry:
    """A member of a set: a reference to build, or ``ref=None`` with the reason it is unavailable."""

    label: str
    ref: str | None
    unavailable: str | None = None
    paper_top1: float | None = None  # fraction, single centre crop, as plotted by the paper


def paper_reference() -> list[dict]:
    """Rows of the paper's table, shipped with the package (data/canziani2016.csv)."""
    text = resources.files("dnnbench").joinpath("data/canziani2016.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def paper_set() -> list[SetEntry]:
    entries = []
    for row in paper_reference():
        ref = row["modern_ref"] or None
        top1 = float(row["paper_top1_percent"]) / 100.0
        reason = None
        if ref is None:
            reason = row["note"] or "no PyTorch implementation with weights exists"
        elif ref.startswith("timm:") and not timm_models.available():
            reason = "needs timm: pip install 'dnnbench[timm]'"
        entries.append(SetEntry(row["paper_model"], ref if reason is None else None, reason, top1))
    return entries


def torchvision_set() -> list[SetEntry]:
    return [SetEntry(n, f"torchvision:{n}") for n in torchvision_models.classification_models()]


SETS = {"paper": paper_set, "torchvision": torchvision_set}


def is_set(text: str) -> bool:
    return text in SETS


def expand(text: str) -> list[SetEntry]:
    return SETS[text]()
