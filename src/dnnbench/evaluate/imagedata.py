"""Image validation sets on disk: layouts, class maps, labels files, stratified subsets, decoding.

Two layouts:

* **imagefolder** — ``DIR/<class>/**/<image>``, one folder per class (ImageNet's ``n01440764/...``).
* **labels-file** — a flat ``DIR/<image>`` plus a labels file: one label per line in sorted file-name
  order, or ``FILENAME LABEL`` lines (whitespace or comma separated; the file name may omit its suffix;
  extra columns are ignored, so Kaggle's ``LOC_val_solution.csv`` works). A label is the model's integer
  class index (0-based) or a class name (a wnid such as ``n01440764``).

Class names become output indices by, in order: the model's own ``class_names`` (from its source, a
factory or a checkpoint); the ImageNet-1k synset order for a 1000-output model (index i = i-th sorted
wnid, the order torchvision and timm use); else the sorted class names — allowed only when there are
exactly as many as the model has outputs, since a partial set cannot be placed by position.

Never imports ``dnnbench.sources``: the api layer hands over the transform and class names.
"""

from __future__ import annotations

import functools
import os
import random
import re
from dataclasses import dataclass, field
from importlib import resources

import torch

from dnnbench.core.errors import DatasetError, DnnbenchError, InputError
from dnnbench.core.specs import IMAGE_SUFFIXES  # what PIL decodes; calibration reads the same

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_FRACTION = 0.875  # resize the shorter side to size / 0.875, then centre-crop: 256 -> 224
WNID = re.compile(r"^n\d{8}$")
MAX_LISTED = 20  # corrupt files and unknown classes named in a record or message


@functools.lru_cache(maxsize=1)
def imagenet1k_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k synset ids in index order (sorted), shipped as package data."""
    text = resources.files("dnnbench.data").joinpath("imagenet1k_wnids.txt").read_text()
    wnids = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(wnids) != 1000:  # a damaged install must not silently shift every class index
        raise RuntimeError(f"imagenet1k_wnids.txt holds {len(wnids)} synsets, expected 1000")
    return wnids


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


@dataclass
class Listing:
    """The files of a dataset with their class name or raw label, before labels become output indices."""

    root: str
    layout: str  # "imagefolder" | "labels-file"
    files: list[tuple[str, str]]  # (path, class folder name or label token), sorted by path
    source: str  # where the labels come from: the folder names or the labels file
    notes: list[str] = field(default_factory=list)


@dataclass
class ImageSet:
    """Files to evaluate with their output index."""

    root: str
    layout: str  # "imagefolder" | "labels-file"
    samples: list[tuple[str, int]]  # (path, output index), sorted by path
    class_map: str  # how names became indices, in words
    classes: int  # distinct classes among the samples
    notes: list[str] = field(default_factory=list)


# ---- class maps ----------------------------------------------------------------------------------

def class_index_map(names: list[str], num_outputs: int, class_names: list[str] | None,
                    what: str = "class folder") -> tuple[dict[str, int], str]:
    """Map each data class name to a model output index; a name the model does not know is an error."""
    names = sorted(set(names))
    if class_names is not None:
        if len(class_names) != num_outputs:
            raise DatasetError(f"the model declares {len(class_names)} class_names but has {num_outputs} outputs",
                               "class_names must list one name per output, in output order",
                               "fix class_names in the factory or checkpoint")
        index = {n: i for i, n in enumerate(class_names)}
        _unknown(names, index, what, "the model's class_names")
        return {n: index[n] for n in names}, "the model's class_names (index i = i-th name)"
    if num_outputs == 1000:
        wnids = imagenet1k_wnids()
        index = {n: i for i, n in enumerate(wnids)}
        if not any(WNID.match(n) for n in names):
            raise DatasetError(
                f"{what} names ({', '.join(names[:3])}...) are not ImageNet synset ids",
                "a 1000-output model is read as ImageNet-1k, whose classes are wnids such as n01440764",
                "name class folders by wnid, or give a labels file with integer class indices")
        _unknown(names, index, what, "the 1000 ImageNet-1k synsets")
        return {n: index[n] for n in names}, "ImageNet-1k synsets (index i = i-th sorted wnid)"
    if len(names) != num_outputs:
        raise DatasetError(
            f"the data has {len(names)} classes but the model has {num_outputs} outputs",
            "without class_names, classes are matched to outputs by sorted name, which needs one class per output",
            "give the factory a class_names list (or save one in the checkpoint), or evaluate all classes")
    return {n: i for i, n in enumerate(names)}, "sorted class names (index i = i-th name in sorted order)"


def _unknown(names: list[str], index: dict[str, int], what: str, known: str) -> None:
    missing = [n for n in names if n not in index]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetError(f"{what} {shown} is not a class the model knows", f"it is not among {known}",
                           "remove it from the data, or use a model trained on it")


# ---- discovery -----------------------------------------------------------------------------------

def discover(root: str, num_outputs: int, class_names: list[str] | None = None,
             labels: str | None = None) -> ImageSet:
    """List the images under ``root`` with their output index (see the module doc for layouts)."""
    return assign(list_images(root, labels), num_outputs, class_names)


def list_images(root: str, labels: str | None = None) -> Listing:
    """The files of a dataset and their class names or label tokens; every file-system error is raised here."""
    if not os.path.exists(root):
        raise DatasetError(f"data directory {root} does not exist", "no such directory", "check --data")
    if not os.path.isdir(root):
        raise DatasetError(f"--data {root} is not a directory", "it is a file",
                           "give the folder that holds the class folders (or the images and --labels)")
    if labels is not None:
        return _list_labels_layout(root, labels)
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    folders = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    loose = [e.name for e in entries if e.is_file() and is_image(e.name)]
    files: list[tuple[str, str]] = []
    empty = []
    for d in folders:
        found = []
        for dirpath, dirnames, filenames in os.walk(d.path, followlinks=True):
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            found.extend((os.path.join(dirpath, f), d.name) for f in sorted(filenames) if is_image(f))
        files.extend(found) if found else empty.append(d.name)
    if not files:
        if loose:
            raise DatasetError(f"{root} holds {len(loose)} images but no class folders",
                               "a flat folder needs a labels file to know each image's class",
                               "pass --labels FILE, or sort the images into one folder per class")
        raise DatasetError(f"no images in {root}", f"no files ending in {', '.join(IMAGE_SUFFIXES[:4])}... "
                           "in it or in class folders under it", "point --data at the validation set")
    notes = []
    if empty:
        notes.append(f"{len(empty)} folder(s) without images ignored: {', '.join(empty[:5])}")
    if loose:
        notes.append(f"{len(loose)} image(s) directly in {root} ignored: only class folders are read")
    return Listing(root, "imagefolder", files, "folder names", notes)


def _list_labels_layout(root: str, labels: str) -> Listing:
    if not os.path.isfile(labels):
        raise DatasetError(f"labels file {labels} does not exist", "no such file", "check --labels")
    with os.scandir(root) as it:
        images = sorted(e.name for e in it if e.is_file() and is_image(e.name))
    if not images:
        raise DatasetError(f"no images in {root}", "with --labels the images must lie directly in --data",
                           "point --data at the flat folder of validation images")
    try:
        with open(labels, encoding="utf-8") as fh:
            rows = [(n, ln.strip()) for n, ln in enumerate(fh, 1) if ln.strip() and not ln.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read labels file {labels}", f"{type(exc).__name__}: {exc}",
                           "give a text file with one label per line") from exc
    if not rows:
        raise DatasetError(f"labels file {labels} is empty", "it holds no labels", "give one label per image")
    split = [(n, [t for t in re.split(r"[\s,]+", text) if t]) for n, text in rows]
    notes: list[str] = []
    widths = {min(len(toks), 2) for _, toks in split[1:]} or {min(len(split[0][1]), 2)}
    if widths == {1}:
        if len(split) != len(images):
            raise DatasetError(
                f"labels file {labels} has {len(split)} labels but {root} has {len(images)} images",
                "one label per line is matched to the images in sorted file-name order, so the counts must be equal",
                "give one label per image, or 'FILENAME LABEL' lines")
        if any(len(toks) != 1 for _, toks in split):
            raise DatasetError(f"labels file {labels} mixes 'LABEL' and 'FILENAME LABEL' lines",
                               "every line must have the same form", "use one form throughout")
        files = [(os.path.join(root, img), toks[0]) for img, (_, toks) in zip(images, split)]
        return Listing(root, "labels-file", files, f"{labels} (one label per line, sorted file-name order)", notes)
    if len(widths) != 1 or len(split[0][1]) < 1:
        raise DatasetError(f"labels file {labels} mixes 'LABEL' and 'FILENAME LABEL' lines",
                           "every line must have the same form", "use one form throughout")
    stems: dict[str, str] = {}
    for name in images:
        stems.setdefault(os.path.splitext(name)[0], name)
    present = set(images)

    def find(tok: str) -> str | None:
        if tok in present:
            return tok
        return stems.get(tok) or stems.get(os.path.splitext(tok)[0])

    if len(split[0][1]) < 2 or find(split[0][1][0]) is None:  # e.g. Kaggle's "ImageId,PredictionString"
        notes.append(f"first line of {os.path.basename(labels)} read as a header: {rows[0][1][:60]!r}")
        split = split[1:]
    pairs, missing, seen = [], [], set()
    for n, toks in split:
        if len(toks) < 2:
            raise DatasetError(f"line {n} of {labels} has no label", f"it reads {' '.join(toks)!r}",
                               "write 'FILENAME LABEL' on every line")
        name = find(toks[0])
        if name is None:
            missing.append(toks[0])
        elif name not in seen:
            seen.add(name)
            pairs.append((os.path.join(root, name), toks[1]))
    if missing:
        raise DatasetError(f"{len(missing)} file(s) named in {labels} are not in {root} (first: {missing[0]})",
                           "every labelled file must be there", "check that --data and --labels belong together")
    if len(seen) < len(images):
        notes.append(f"{len(images) - len(seen)} image(s) in {root} have no line in the labels file and are not evaluated")
    pairs.sort()
    return Listing(root, "labels-file", pairs, f"{labels} (FILENAME LABEL lines)", notes)


def assign(listing: Listing, num_outputs: int, class_names: list[str] | None = None) -> ImageSet:
    """Turn class names or labels into the model's output indices (errors name what the model lacks)."""
    if listing.layout == "imagefolder":
        mapping, how = class_index_map([c for _, c in listing.files], num_outputs, class_names)
        samples = [(p, mapping[c]) for p, c in listing.files]
        return ImageSet(listing.root, listing.layout, samples, how, len(mapping), list(listing.notes))
    tokens = [t for _, t in listing.files]
    if all(_int(t) is not None for t in tokens):
        values = [int(t) for t in tokens]
        lo, hi = min(values), max(values)
        if lo >= 1 and hi == num_outputs:
            raise DatasetError(
                f"labels run from {lo} to {hi}: they look 1-based (like the ILSVRC2012 devkit's IDs)",
                f"labels must be the model's 0-based output indices (0..{num_outputs - 1})",
                "subtract 1 if they are sorted-wnid indices; devkit IDs are in another order, so write "
                "'FILENAME WNID' lines instead")
        if lo < 0 or hi >= num_outputs:
            bad = next(v for v in values if not 0 <= v < num_outputs)
            raise DatasetError(f"label {bad} in {listing.source} is out of range",
                               f"the model has {num_outputs} outputs (0..{num_outputs - 1})",
                               "give 0-based class indices of this model")
        samples = [(p, int(t)) for p, t in listing.files]
        how = "integer labels are the model's output indices"
    else:
        mapping, how = class_index_map(tokens, num_outputs, class_names, what="label")
        samples = [(p, mapping[t]) for p, t in listing.files]
    samples.sort()
    return ImageSet(listing.root, listing.layout, samples, how, len({t for _, t in samples}), list(listing.notes))


def _int(tok: str) -> int | None:
    try:
        return int(tok)
    except ValueError:
        return None


# ---- subsets -------------------------------------------------------------------------------------

def stratified_subset(samples: list[tuple[str, int]], limit: int, seed: int = 0) -> list[tuple[str, int]]:
    """``limit`` samples spread as evenly as possible over the classes (seeded pick within each class).

    Classes take turns in index order, so every class gets floor or ceil of limit / classes images
    (fewer where a class has fewer). The subset keeps the input order.
    """
    if limit >= len(samples):
        return list(samples)
    by_class: dict[int, list[int]] = {}
    for i, (_, target) in enumerate(samples):
        by_class.setdefault(target, []).append(i)
    rng = random.Random(seed)
    queues = []
    for target in sorted(by_class):
        idx = by_class[target][:]
        rng.shuffle(idx)
        queues.append(idx)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit:
        for q in queues:
            if depth < len(q):
                chosen.append(q[depth])
                if len(chosen) == limit:
                    break
        depth += 1
    return [samples[i] for i in sorted(chosen)]


# ---- decoding ------------------------------------------------------------------------------------

def default_transform(height: int, width: int):
    """Resize the shorter side to size / 0.875 (bilinear, antialiased), centre-crop HxW, ImageNet mean/std."""
    from torchvision import transforms as T

    resize = int(round(min(height, width) / DEFAULT_CROP_FRACTION))
    return T.Compose([T.Resize(resize, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                      T.CenterCrop((height, width)), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def describe_transform(transform) -> str:
    """One line of text for a transform (torchvision and timm reprs span several lines)."""
    return re.sub(r"\s+", " ", repr(transform)).replace("( ", "(").replace(" )", ")").strip()


def decode(path: str):
    """Open an image as RGB, or return the reason it cannot be decoded (a corrupt file is never fatal)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB"), None  # convert() forces the full decode inside the try
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error... on bad files
        return None, f"{type(exc).__name__}: {str(exc)[:120]}"


class ImageFiles(torch.utils.data.Dataset):
    """Decoded, transformed images with their index; a file that cannot be decoded yields ``None``."""

    def __init__(self, samples: list[tuple[str, int]], transform):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, target = self.samples[i]
        img, why = decode(path)
        if img is None:
            return None, target, i, why
        return self.transform(img), target, i, None


def collate(items):
    """Stack the decoded images of a batch; report the ones that could not be decoded as (index, why)."""
    good = [it for it in items if it[0] is not None]
    bad = [(it[2], it[3]) for it in items if it[0] is None]
    for it in good:
        if not isinstance(it[0], torch.Tensor):
            raise TypeError(f"the preprocessing transform returned a {type(it[0]).__name__}, not a tensor")
    x = torch.stack([it[0] for it in good]) if good else None
    y = torch.tensor([it[1] for it in good], dtype=torch.long)
    return x, y, bad, len(items)


def first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    # DataLoader re-raises worker errors with the worker's traceback in the message; the cause is last.
    return (lines[-1] if lines else "")[:200]


def timed_batches(loader):
    """Each batch of ``loader`` with the seconds spent waiting for it (decoding and preprocessing not hidden
    behind the forward). A failing transform, raised here from a worker, is one InputError."""
    import time

    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        except Exception as exc:  # a failing user transform arrives here from a worker
            raise InputError("preprocessing the images failed", f"{type(exc).__name__}: {first_line(exc)}",
                             "fix the model's preprocess transform") from exc
        yield batch, time.perf_counter() - t0


def first_preprocessed(paths, transform, first: int = 64):
    """(path, tensor) of the first of ``paths[:first]`` that decodes, after ``transform``; None if none decodes.

    A transform that fails, or returns anything but one CxHxW tensor, is one InputError naming the file."""
    for path in paths[:first]:
        img, _why = decode(path)
        if img is None:
            continue
        try:
            x = transform(img)
        except DnnbenchError:  # already one line with what/why/fix (a source's stand-in for a transform it lacks)
            raise
        except Exception as exc:
            raise InputError(f"the preprocessing transform failed on {path}", f"{type(exc).__name__}: {str(exc)[:160]}",
                             "fix the model's preprocess transform") from exc
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise InputError("the preprocessing transform must return a CxHxW tensor",
                             f"it returned {type(x).__name__}" + (f" of shape {list(x.shape)}" if isinstance(x, torch.Tensor) else ""),
                             "return one image tensor per PIL image")
        return path, x
    return None


def default_workers() -> int:
    """One decoding worker per CPU the process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))
