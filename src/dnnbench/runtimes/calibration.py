"""Calibration inputs for static int8: what a quantizer observes to choose its activation ranges.

``for_cell`` gives the batches a runtime calibrates on, shaped like the cell's inputs and on its device: images
from ``spec.calibration`` (a folder, read recursively in sorted order, the first ``calibration_count`` or
``DEFAULT_IMAGES``) through the model's own preprocessing, or, when no folder is given, batches generated like
the timing input, with a warning (ranges observed on noise are not those of real images, so the int8 figure's
accuracy means little; its speed and size are still right).

``calibration_count`` counts images (batch items) both ways: a folder's first N images, or generated batches
holding N items (rounded up to whole batches; default ``DEFAULT_GENERATED_BATCHES`` batches). Every batch has
the cell's batch size: the images are cycled to fill the last one, which the source text says.

``check_folder`` is the up-front check (no such folder, no images) the api runs once per bench or study, so that a
user mistake is one line before anything is measured, never an error cell per batch size; ``for_cell`` raises
the same errors (and an undecodable image, a model without preprocessing, an input that is not one image) as
one-line ``InputError``s where the cell would be an error cell.
"""

from __future__ import annotations

import math
import os

import torch

from dnnbench.core.errors import InputError
from dnnbench.core.measurements import CellSpec, CellWarning
from dnnbench.core.specs import IMAGE_SUFFIXES, InputSpec

DEFAULT_GENERATED_BATCHES = 4
DEFAULT_IMAGES = 100
_FIX_FOLDER = ("give --calibration a folder of images (.jpg, .png, ... at any depth), or leave it out to "
               "calibrate on generated inputs")


def check_folder(folder: str) -> list[str]:
    """The folder's image files, recursively, sorted; InputError (one line) when it is no folder or holds none."""
    if not os.path.exists(folder):
        raise InputError(f"--calibration {folder}: no such folder", "static int8 calibrates on the images in it",
                         _FIX_FOLDER)
    if not os.path.isdir(folder):
        raise InputError(f"--calibration {folder} is a file, not a folder",
                         "static int8 calibrates on the images in a folder", _FIX_FOLDER)
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files.extend(os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith("."))
    if not files:
        raise InputError(f"--calibration {folder} holds no images",
                         f"no files ending in {', '.join(IMAGE_SUFFIXES[:4])}... at any depth", _FIX_FOLDER)
    return sorted(files)


def for_cell(spec: CellSpec, lm, args: tuple, kwargs: dict, device) -> tuple[list[tuple[tuple, dict]], str,
                                                                            CellWarning | None]:
    """(batches, where they came from, a warning or None) for ``spec``'s static int8 calibration."""
    if spec.calibration:
        if lm is None:
            raise InputError("--calibration images need the model's preprocessing",
                             "this cell was handed a module without its source", "leave --calibration out")
        batches, source = from_folder(spec, lm, args, kwargs)
        return [_to(device, b) for b in batches], source, None
    b = spec.batch_size
    n = math.ceil(spec.calibration_count / b) if spec.calibration_count else DEFAULT_GENERATED_BATCHES
    gen = torch.Generator(device="cpu").manual_seed(spec.seed + 1)
    # the model's input spec; a module handed over without one (lm None): the spec of the cell's own input
    inputs = lm.inputs if lm is not None else InputSpec.from_examples(dict(kwargs) if kwargs else tuple(args))
    batches = []
    for _ in range(n):
        a, k = inputs.make(b, "cpu", gen)
        batches.append(_to(device, (tuple(a), dict(k))))
    source = f"generated: {n} batches of {b} made like the timing input (seed {spec.seed + 1})"
    warning = CellWarning("calibration", "static int8 was calibrated on generated inputs, not real images",
                          "its activation ranges are not those of real data: trust its speed and size, not its "
                          "accuracy; pass --calibration DIR (a folder of images) to calibrate on real ones")
    return batches, source, warning


def from_folder_mistake(lm, inputs=None, args=None, kwargs=None, model: str | None = None) -> InputError | None:
    """Why ``lm`` cannot be calibrated on images (its input is not one batch of images; it has no preprocessing of its
    own), or None. ``inputs`` (an InputSpec: the api's check before any cell) or the cell's ``args``/``kwargs``."""
    model = model or lm.ref
    if inputs is not None:
        single = inputs.is_single_image and not inputs.as_list and inputs.names is None
        took = ", ".join(str(s) for s in inputs.shapes(1))
    else:
        single = (not kwargs and len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].dim() == 4
                  and args[0].is_floating_point())
        took = ", ".join(f"{type(a).__name__}" + (f" {list(a.shape)}" if isinstance(a, torch.Tensor) else "")
                         for a in (*args, *kwargs.values()))
    if not single:
        return InputError(f"--calibration images cannot feed {model}",
                          f"it takes {took or 'nothing'}, not one batch of images (N, C, H, W)",
                          "leave --calibration out: static int8 then calibrates on generated inputs")
    preprocess = getattr(lm, "preprocess", None)
    unresolved = getattr(preprocess, "unresolved", None)
    if preprocess is None or unresolved is not None:
        return InputError(f"{model} has no known preprocessing for --calibration images",
                          unresolved.one_line() if unresolved is not None else
                          "its source gives no image transform, and images cannot be fed without the model's own",
                          "give a python: factory a .preprocess transform (PIL image -> tensor), or leave "
                          "--calibration out to calibrate on generated inputs")
    return None


def from_folder(spec: CellSpec, lm, args: tuple, kwargs: dict) -> tuple[list[tuple[tuple, dict]], str]:
    """CPU batches of the folder's first images through ``lm.preprocess``, each shaped like ``args[0]``."""
    folder = spec.calibration
    mistake = from_folder_mistake(lm, None, args, kwargs, spec.model)
    if mistake is not None:
        raise mistake
    preprocess = lm.preprocess
    files = check_folder(folder)
    n = spec.calibration_count or DEFAULT_IMAGES
    files = files[:n]
    want = tuple(args[0].shape[1:])
    items = []
    from PIL import Image

    for path in files:
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")  # convert() forces the full decode here
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... on bad files
            raise InputError(f"--calibration image {path} cannot be decoded",
                             f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}",
                             "remove or replace the file") from exc
        try:
            x = preprocess(img)
        except Exception as exc:
            raise InputError(f"the preprocessing of {spec.model} failed on --calibration image {path}",
                             f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}",
                             "give images the model's transform accepts (RGB photos)") from exc
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != want:
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"a --calibration image through the preprocessing of {spec.model} is {got}",
                             f"the cell's input is {list(want)} per image ({lm.preprocess_source or 'its transform'})",
                             "leave --input-size out with --calibration (the transform makes the native size), or "
                             "leave --calibration out")
        items.append(x.to(args[0].dtype))
    b = spec.batch_size
    k = math.ceil(len(items) / b)
    filled = k * b - len(items)
    batches = [((torch.stack([items[(i * b + j) % len(items)] for j in range(b)]),), {}) for i in range(k)]
    source = (f"{len(items)} images from {os.path.abspath(folder)} through {lm.preprocess_source or 'the model preprocess'}"
              f", in {k} batch{'es' if k != 1 else ''} of {b}"
              + (f" (the last filled with {filled} of the first images again)" if filled else ""))
    return batches, source


def _to(device, tree):
    from torch.utils._pytree import tree_map

    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, tree)
