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
    ``calibration``/``calibration_count``: where static int8 calibrates when accuracy is measured per
    (runtime, precision) (default: the images of ``--limit``'s subset left out, 64 of them).
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
    # static int8 per configuration (``measure_configs``): a folder of images not evaluated, and how many (0: 64)
    calibration: str | None = None
    calibration_count: int = 0

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        check_at_least("--calibration-count", self.calibration_count, 0, "0 takes the default number of images")
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

    # the configuration evaluated (eager fp32: the model as built, the reference of every other one)
    runtime: str = "eager"
    precision: str = "fp32"
    # raw per-image correctness, the samples every paired statistic is derived from: "1"/"0" per evaluated image,
    # in the order of the evaluated files (sorted paths, or the --limit subset); "" in records older than it
    top1_hits: str = ""
    # time inside this configuration's forward passes over the evaluated images (padded rows included), per image
    forward_per_image_s: float | None = None
    calibration: str = ""  # static int8: which images it was calibrated on
    paired: "PairedComparison | None" = None  # vs eager fp32 on the same images; None for eager fp32 itself

    @property
    def config(self) -> str:
        return f"{self.runtime} {self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Accuracy":
        names = {f.name for f in fields(Accuracy)}
        d = {k: v for k, v in d.items() if k in names}
        if isinstance(d.get("reported"), dict):
            d["reported"] = ReportedAccuracy(**d["reported"])
        if isinstance(d.get("paired"), dict):
            d["paired"] = PairedComparison.from_dict(d["paired"])
        return Accuracy(**d)


@dataclass(frozen=True)
class ConfigUnavailable:
    """A (runtime, precision) whose accuracy could not be measured, and why (one line: what, why, how to fix)."""

    model: str
    runtime: str
    precision: str
    reason: str

    @property
    def config(self) -> str:
        return f"{self.runtime} {self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unavailable": self.reason}


# ---- paired comparison of two configurations on the same images -------------------------------------

MCNEMAR_TEST = ("McNemar exact: two-sided binomial test of b against b + c trials at 1/2 (b: images the reference "
                "gets right and this configuration wrong, c: the reverse); p = 1 when b + c = 0")
PAIRED_CI_METHOD = ("Newcombe (1998) hybrid score interval for paired proportions (Wilson intervals of both "
                    "top-1s, combined with the phi correlation of the 2x2 table)")


@dataclass(frozen=True)
class PairedComparison:
    """Top-1 of a configuration against a reference (eager fp32) on the same images, image by image.

    ``n``: images both scored; ``b``: the reference right and this configuration wrong; ``c``: the reverse;
    ``both_correct`` + ``b`` + ``c`` + ``both_wrong`` = ``n``. ``delta_top1_points``: this configuration's top-1
    minus the reference's, in percentage points, = 100 (c - b) / n, with its 95 % interval; ``p_value``:
    McNemar's exact test (``test``). ``agreement``: the fraction of images whose top-1 class is the reference's
    (a configuration can agree less than its accuracy suggests: both right for different images).
    ``reference_top1_hits``/``agree_hits``: the raw per-image samples ("1"/"0", evaluated-file order).
    """

    reference: str
    n: int
    b: int
    c: int
    both_correct: int
    both_wrong: int
    p_value: float
    delta_top1_points: float
    delta_ci_low_points: float
    delta_ci_high_points: float
    agreement: float
    agreement_count: int
    reference_top1: float
    reference_top1_hits: str = ""
    agree_hits: str = ""
    ci_confidence: float = 0.95
    ci_method: str = PAIRED_CI_METHOD
    test: str = MCNEMAR_TEST

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "PairedComparison":
        names = {f.name for f in fields(PairedComparison)}
        return PairedComparison(**{k: v for k, v in d.items() if k in names})


def hits_string(hits) -> str:
    """Per-image booleans as the "1"/"0" string records keep."""
    return "".join("1" if h else "0" for h in hits)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p: P(X <= min(b, c)) doubled, X ~ Binomial(b + c, 1/2), capped at 1 (exact integers).

    The binomial at 1/2 is symmetric, so this equals scipy.stats.binomtest(b, b + c, 0.5).pvalue."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts are never negative")
    m = b + c
    if m == 0:
        return 1.0
    k = min(b, c)
    if 2 * k == m:
        return 1.0
    from fractions import Fraction

    tail = Fraction(sum(math.comb(m, i) for i in range(k + 1)), 2 ** m)
    return float(min(Fraction(1), 2 * tail))


def paired_difference_interval(both_correct: int, b: int, c: int, both_wrong: int,
                               confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's interval for p_config - p_reference from the paired 2x2 table, as fractions in [-1, 1].

    ``both_correct`` (a), ``b`` (reference only), ``c`` (configuration only), ``both_wrong`` (d). The Wilson
    intervals of the two top-1s are combined with the table's phi, continuity-corrected as in Newcombe (1998)
    and Altman et al., "Statistics with confidence" (2000): a d - b c above n/2 is reduced by n/2, a value in
    [0, n/2] counts as 0, a negative one is kept.
    """
    a, d = both_correct, both_wrong
    n = a + b + c + d
    if n <= 0:
        raise ValueError("a paired interval needs at least one image")
    p_ref, p_cfg = (a + b) / n, (a + c) / n
    l_ref, u_ref = wilson_interval(a + b, n, confidence)
    l_cfg, u_cfg = wilson_interval(a + c, n, confidence)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = 0.0
    if margins > 0:
        det = a * d - b * c
        corrected = det - n / 2 if det > n / 2 else (det if det < 0 else 0.0)
        phi = corrected / math.sqrt(margins)
    delta = p_cfg - p_ref
    low = delta - math.sqrt(max(0.0, (p_cfg - l_cfg) ** 2 - 2 * phi * (p_cfg - l_cfg) * (u_ref - p_ref)
                                + (u_ref - p_ref) ** 2))
    high = delta + math.sqrt(max(0.0, (u_cfg - p_cfg) ** 2 - 2 * phi * (u_cfg - p_cfg) * (p_ref - l_ref)
                                 + (p_ref - l_ref) ** 2))
    return max(-1.0, low), min(1.0, high)


def paired_comparison(reference_hits, config_hits, agree, reference: str = "eager fp32",
                      confidence: float = 0.95) -> PairedComparison:
    """The paired statistics of per-image top-1 correctness (``reference_hits``, ``config_hits``) and top-1
    class agreement (``agree``), three equally long sequences of booleans over the same images."""
    ref, cfg, agr = [bool(x) for x in reference_hits], [bool(x) for x in config_hits], [bool(x) for x in agree]
    if not (len(ref) == len(cfg) == len(agr)):
        raise ValueError(f"paired samples differ in length: {len(ref)}, {len(cfg)}, {len(agr)}")
    n = len(ref)
    if n == 0:
        raise ValueError("a paired comparison needs at least one image")
    a = sum(1 for r, k in zip(ref, cfg) if r and k)
    b = sum(1 for r, k in zip(ref, cfg) if r and not k)
    c = sum(1 for r, k in zip(ref, cfg) if k and not r)
    d = n - a - b - c
    lo, hi = paired_difference_interval(a, b, c, d, confidence)
    agreed = sum(agr)
    return PairedComparison(reference, n, b, c, a, d, mcnemar_exact_p(b, c), 100 * (c - b) / n, 100 * lo, 100 * hi,
                            agreed / n, agreed, (a + b) / n, hits_string(ref), hits_string(agr), confidence)


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

    Instance segmentation (Mask R-CNN: ``masks`` in its outputs) also has ``mask_map``/``mask_map50``, the
    same figures of pycocotools' ``segm`` evaluation (masks thresholded at 0.5, as torchvision's reference
    scripts do); keypoint detection ``kp_map``/``kp_map50`` of its ``keypoints`` evaluation (OKS). None for a
    plain detector; for those tasks, None with the reason in ``unavailable`` when the annotations hold no
    masks or keypoints. ``mask_coco_stats``/``kp_coco_stats``: pycocotools' summary figures of each.
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
    mask_map: float | None = None
    mask_map50: float | None = None
    mask_map_ci_low: float | None = None
    mask_map_ci_high: float | None = None
    mask_map50_ci_low: float | None = None
    mask_map50_ci_high: float | None = None
    mask_coco_stats: dict[str, float | None] | None = None
    kp_map: float | None = None
    kp_map50: float | None = None
    kp_map_ci_low: float | None = None
    kp_map_ci_high: float | None = None
    kp_map50_ci_low: float | None = None
    kp_map50_ci_high: float | None = None
    kp_coco_stats: dict[str, float | None] | None = None
    ground_truth_keypoint_people: int | None = None  # annotations with at least one labelled keypoint

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
