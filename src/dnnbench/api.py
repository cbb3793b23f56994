"""The composition: public functions that tie sources, counting and (later) measurement together."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from dnnbench.core.errors import DnnbenchError, InputError
from dnnbench.core.records import Profile
from dnnbench.core.refs import ModelRef
from dnnbench.core.specs import InputSpec, LoadedModel
from dnnbench.counting.profile import profile_model
from dnnbench.sources import load, sets, torchvision_models

__all__ = ["profile", "profile_many", "load_model", "list_models", "SetResult", "sensors"]


def load_model(ref: str | ModelRef, device: str = "cpu", weights: str | None = None,
               download_weights: bool = False) -> LoadedModel:
    """Build a model from its reference (random weights unless ``weights`` is given)."""
    return load(ref, device=device, weights=weights, download=download_weights)


def _as_loaded(model, device: str = "meta") -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, torch.nn.Module):
        return LoadedModel(type(model).__name__, model, InputSpec.image(3, 224, 224),
                           notes=["no input given: assuming one 3x224x224 image"])
    return load(model, device=device)


def _parse_input_size(input_size) -> tuple[int, int] | None:
    if input_size is None:
        return None
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    if isinstance(input_size, str):
        try:
            parts = [int(p) for p in input_size.replace("x", ",").split(",") if p.strip()]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2):
            raise InputError(f"input size {input_size!r} is malformed", "it must be H or H,W in pixels",
                             "write e.g. --input-size 224 or --input-size 224,320")
        input_size = tuple(parts) if len(parts) == 2 else (parts[0], parts[0])
    h, w = input_size
    if h < 1 or w < 1:
        raise InputError(f"input size {h}x{w} is not allowed", "sizes are positive pixel counts", "use e.g. --input-size 224")
    return int(h), int(w)


def profile(model, batch_size: int = 1, input_size=None, inputs: InputSpec | None = None) -> Profile:
    """Static profile of ``model`` (a reference, an nn.Module or a LoadedModel) at ``batch_size``.

    ``input_size``: H, (H, W) or "H,W" for single-image models; default is the model's native size.
    Nothing is computed for real unless the model cannot run on meta tensors (then ``Profile.mode`` is "real").
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch size {batch_size!r} is not allowed", "a batch holds at least one item",
                         "use a batch size of 1 or more")
    size = _parse_input_size(input_size)
    lm = _as_loaded(model)
    spec = inputs or lm.inputs
    if size is not None:
        spec = spec.with_image_size(*size)
    return profile_model(lm, batch_size, spec)


@dataclass
class SetResult:
    """One member of a set: its profile, or why there is none."""

    label: str
    ref: str | None
    profile: Profile | None = None
    error: str | None = None
    paper_top1: float | None = None


def expand_models(names: list[str]) -> list[sets.SetEntry]:
    """Turn CLI words (set names and references) into set entries, keeping order."""
    entries: list[sets.SetEntry] = []
    for name in names:
        if sets.is_set(name):
            entries.extend(sets.expand(name))
        else:
            entries.append(sets.SetEntry(name, name))
    return entries


def profile_many(names: list[str], batch_size: int = 1, input_size=None,
                 on_start: Callable[[sets.SetEntry], None] | None = None) -> Iterator[SetResult]:
    """Profile each model; a model that fails becomes a result with its error, and the rest go on."""
    for entry in expand_models(names):
        if on_start:
            on_start(entry)
        if entry.ref is None:
            yield SetResult(entry.label, None, None, f"unavailable: {entry.unavailable}", entry.paper_top1)
            continue
        try:
            prof = profile(load(entry.ref, device="meta"), batch_size, input_size)
            yield SetResult(entry.label, entry.ref, prof, None, entry.paper_top1)
        except DnnbenchError as exc:
            if len(names) == 1 and not sets.is_set(names[0]):
                raise
            yield SetResult(entry.label, entry.ref, None, exc.one_line(), entry.paper_top1)


def list_models(pattern: str | None = None) -> list[dict]:
    """Offline listing: published params, GMACs and top-1 of torchvision classifiers (or a set)."""
    if pattern and sets.is_set(pattern):
        rows = []
        for e in sets.expand(pattern):
            row = {"model": e.ref or e.label, "label": e.label, "unavailable": e.unavailable,
                   "paper_top1": e.paper_top1}
            if e.ref and e.ref.startswith("torchvision:"):
                row.update(torchvision_models.describe(e.ref.split(":", 1)[1]))
            rows.append(row)
        return rows
    pat = (pattern or "*").removeprefix("torchvision:")
    if not any(c in pat for c in "*?["):
        pat = f"*{pat}*"
    names = [n for n in torchvision_models.classification_models() if fnmatch.fnmatch(n, pat)]
    return [torchvision_models.describe(n) for n in names]


def sensors(spec: str | None = None, root: str | None = None) -> list:
    """Every power sensor (or those ``spec`` names, e.g. "meter:log.csv"), whether it works here and why not.

    Returns ``SensorInfo`` records (``name``, ``available``, ``reason``, ``scope``, ``domains``, ``method``,
    ``update_period_s``...). ``root``: the sysfs root (default $DNNBENCH_SYSFS_ROOT, else /sys).
    """
    from dnnbench.measure.power import probe_sensors

    return probe_sensors(spec, root)
