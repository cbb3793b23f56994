"""Built-in model sets: ``paper`` (Canziani et al. 2016), ``torchvision`` (every torchvision model, of every
task) and one set per torchvision group: ``classification``, ``detection``, ``segmentation``, ``video``,
``optical_flow``, ``quantized`` (see torchvision_models.GROUPS)."""

from __future__ import annotations

import csv
import functools
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


def torchvision_set(group: str | None = None) -> list[SetEntry]:
    """Every torchvision model (of one group: see torchvision_models.GROUPS)."""
    return [SetEntry(n, f"torchvision:{n}") for n in torchvision_models.models(group)]


SETS = {"paper": paper_set, "torchvision": torchvision_set}
SETS.update({group: functools.partial(torchvision_set, group) for group in torchvision_models.GROUPS})


def is_set(text: str) -> bool:
    return text in SETS


def expand(text: str) -> list[SetEntry]:
    return SETS[text]()


def listing(pattern: str | None = None, task: str | None = None) -> list[dict]:
    """Offline rows for ``dnnbench models``: a set's members, or the torchvision models whose name matches
    ``pattern`` (a substring or a glob; all by default), of one task if ``task`` is given. Each torchvision
    row holds the figures published with its weights (torchvision_models.describe)."""
    import fnmatch

    if pattern and is_set(pattern):
        rows = []
        for e in expand(pattern):
            row = {"model": e.ref or e.label, "label": e.label, "unavailable": e.unavailable,
                   "paper_top1": e.paper_top1}
            if e.ref and e.ref.startswith("torchvision:"):
                name, _, tag = e.ref.split(":", 1)[1].partition(".")
                row.update(torchvision_models.describe(name, tag or None))
            rows.append(row)
    else:
        pat = (pattern or "*").removeprefix("torchvision:")
        if not any(c in pat for c in "*?["):
            pat = f"*{pat}*"
        rows = [torchvision_models.describe(n) for n in torchvision_models.models() if fnmatch.fnmatch(n, pat)]
    return [r for r in rows if task is None or r.get("task") == task]
