"""Accuracy records: top-1/top-5 measured on the user's own copy of a validation set.

Fractions in [0, 1], never percent; counts kept beside them so a figure can be re-derived. The published
figure (``ReportedAccuracy``) travels with the measured one so report and ``pick`` can show both.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dnnbench.core.errors import check_at_least, check_batch_size
from dnnbench.core.records import ReportedAccuracy


@dataclass(frozen=True)
class AccuracyConfig:
    """How one accuracy evaluation runs: which weights, which images, how they are batched and decoded.

    ``weights``: "DEFAULT" (the local torchvision/timm cache; a python factory's own weights), a weights
    tag, a checkpoint path, or "random"/None; nothing is downloaded unless ``download_weights``.
    ``labels``: ground truth for a flat folder. ``limit``: a class-stratified subset of that many images
    (None = all), drawn with ``seed``. ``workers``: decoding processes (None = one per CPU, at most 8;
    0 decodes in the calling process). ``annotations``: detection's COCO annotations JSON, or segmentation's
    mask folder. ``resamples``: bootstrap resamples of the images for detection/segmentation CIs.
    Each value is checked here, once, for the API, the CLI and studies.
    """

    weights: str | None = "DEFAULT"
    labels: str | None = None
    limit: int | None = None
    batch_size: int = 64
    workers: int | None = None
    device: str = "cpu"
    seed: int = 0
    download_weights: bool = False
    annotations: str | None = None
    resamples: int = 200

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        check_at_least("--resamples", self.resamples, 20, "a bootstrap interval needs at least 20 resamples")
        if self.limit is not None:
            check_at_least("--limit", self.limit, 1, "at least one image must be evaluated")
        if self.workers is not None:
            check_at_least("--workers", self.workers, 0, "0 decodes in the main process, N > 0 in N workers")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Unlike the normal (Wald) interval it stays inside [0, 1] and keeps its coverage near 0 and 1,
    where accuracies of good models (top-5) and small ``--limit`` runs live.
    """
    if n <= 0:
        raise ValueError("a binomial interval needs at least one trial")
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside [0, {n}]")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Exact at the ends: 0 successes has lower bound 0, all successes upper bound 1 (no rounding residue).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Accuracy:
    """Top-1/top-5 of one model on one dataset directory, with 95 % Wilson intervals.

    ``images``: images evaluated (decoded and scored); ``corrupt_images``: files with an image suffix that
    could not be decoded — skipped, counted, listed in ``corrupt_files`` (first 20). ``top5_k``: the k of
    "top-5" — min(5, number of model outputs); when it is below 5 the figure is top-``top5_k`` and
    ``notes`` says so. ``images_per_s``: images evaluated / ``wall_s`` (decoding, preprocessing and
    inference together); ``forward_s`` is the time inside the model and ``data_wait_s`` the time the loop
    waited for decoded batches — a large ``data_wait_s`` means data loading was the bottleneck.
    """

    model: str
    weights: str  # weights tag, checkpoint path, "factory" (the factory's own) or "random"
    data_dir: str
    layout: str  # "imagefolder" or "labels-file"
    class_map: str  # how folder names / labels became class indices
    preprocess: str  # the transform applied to every image, as text
    preprocess_source: str  # where it came from
    classes: int  # classes present in the evaluated images
    num_outputs: int  # classes the model scores
    images: int
    corrupt_images: int
    top1: float
    top5: float
    top5_k: int
    top1_correct: int
    top5_correct: int
    top1_ci_low: float
    top1_ci_high: float
    top5_ci_low: float
    top5_ci_high: float
    batch_size: int
    workers: int
    device: str
    threads: int
    wall_s: float
    images_per_s: float
    forward_s: float
    data_wait_s: float
    limit: int | None = None  # --limit: images asked for (class-stratified subset), None = all
    subset_seed: int | None = None
    ci_confidence: float = 0.95
    ci_method: str = "wilson"
    corrupt_files: list[str] = field(default_factory=list)
    reported: ReportedAccuracy | None = None
    tool_version: str = ""
    timestamp: str = ""  # UTC, ISO 8601
    notes: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Accuracy":
        names = {f.name for f in fields(Accuracy)}
        d = {k: v for k, v in d.items() if k in names}
        if isinstance(d.get("reported"), dict):
            d["reported"] = ReportedAccuracy(**d["reported"])
        return Accuracy(**d)


def bootstrap_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``values`` (one figure per resample)."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("a bootstrap interval needs at least one resample")
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(v, [tail, 100 - tail])
    return float(lo), float(hi)


BOOTSTRAP_METHOD = "bootstrap percentile over images (images resampled with replacement, the metric recomputed)"


@dataclass(frozen=True)
class DetectionAccuracy:
    """COCO box mAP of one detector on an image folder scored against a COCO annotations JSON.

    ``box_map``: AP averaged over IoU 0.50:0.05:0.95, all areas, 100 detections per image (pycocotools'
    ``stats[0]``); ``box_map50``: AP at IoU 0.50 (``stats[1]``); fractions in [0, 1]. ``coco_stats``: all
    twelve of pycocotools' summary figures by name (None where pycocotools has no value: -1). CIs: percentile
    bootstrap over the evaluated images (``resamples`` resamples). ``images``: images decoded and scored;
    ``corrupt_images``: files named in the annotations that could not be decoded (skipped, not scored);
    ``images_missing``: images of the annotations not found under ``data_dir`` (not scored).
    """

    model: str
    weights: str
    task: str
    data_dir: str
    annotations: str
    preprocess: str
    preprocess_source: str
    category_map: str  # how the model's labels became the annotations' category ids
    categories: int  # categories of the annotations with a ground-truth box in the evaluated images
    images: int
    corrupt_images: int
    images_missing: int
    ground_truth_boxes: int
    detections: int
    box_map: float | None
    box_map50: float | None
    box_map_ci_low: float | None
    box_map_ci_high: float | None
    box_map50_ci_low: float | None
    box_map50_ci_high: float | None
    coco_stats: dict[str, float | None]
    batch_size: int
    workers: int
    device: str
    threads: int
    wall_s: float
    images_per_s: float
    forward_s: float
    data_wait_s: float
    eval_s: float  # pycocotools' evaluation and the bootstrap
    resamples: int
    limit: int | None = None
    subset_seed: int | None = None
    ci_confidence: float = 0.95
    ci_method: str = BOOTSTRAP_METHOD
    corrupt_files: list[str] = field(default_factory=list)
    reported: ReportedAccuracy | None = None
    tool_version: str = ""
    timestamp: str = ""
    notes: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "DetectionAccuracy":
        return _from_dict(DetectionAccuracy, d)


@dataclass(frozen=True)
class SegmentationAccuracy:
    """mIoU and pixel accuracy of one semantic-segmentation model on image + mask folders.

    From one confusion count over all evaluated pixels (mask value 255 = ignore): IoU of class c =
    TP / (TP + FP + FN); ``miou``: the mean over the classes that occur in the masks or the predictions
    (``classes``; a class absent from both has no IoU); ``pixel_acc``: correct / labelled pixels. The model's
    scores are resized (bilinear) to the mask's size before the argmax. CIs: percentile bootstrap over images.
    """

    model: str
    weights: str
    task: str
    data_dir: str
    masks_dir: str
    preprocess: str
    preprocess_source: str
    num_outputs: int
    classes: int
    images: int
    corrupt_images: int
    unpaired_images: int  # images without a mask of the same stem (not scored)
    labelled_pixels: int
    miou: float
    pixel_acc: float
    miou_ci_low: float
    miou_ci_high: float
    pixel_acc_ci_low: float
    pixel_acc_ci_high: float
    per_class_iou: list[float | None]
    batch_size: int
    workers: int
    device: str
    threads: int
    wall_s: float
    images_per_s: float
    forward_s: float
    data_wait_s: float
    resamples: int
    ignore_index: int = 255
    limit: int | None = None
    subset_seed: int | None = None
    ci_confidence: float = 0.95
    ci_method: str = BOOTSTRAP_METHOD
    corrupt_files: list[str] = field(default_factory=list)
    reported: ReportedAccuracy | None = None
    tool_version: str = ""
    timestamp: str = ""
    notes: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "SegmentationAccuracy":
        return _from_dict(SegmentationAccuracy, d)


def _from_dict(cls, d: dict[str, Any]):
    names = {f.name for f in fields(cls)}
    d = {k: v for k, v in d.items() if k in names}
    if isinstance(d.get("reported"), dict):
        d["reported"] = ReportedAccuracy(**d["reported"])
    return cls(**d)


def accuracy_from_dict(d: dict[str, Any]):
    """The record of any task from its dict: detection and segmentation records carry ``task``."""
    task = d.get("task")
    if task in ("detection", "instance_segmentation", "keypoint_detection"):
        return DetectionAccuracy.from_dict(d)
    if task == "segmentation":
        return SegmentationAccuracy.from_dict(d)
    return Accuracy.from_dict(d)
