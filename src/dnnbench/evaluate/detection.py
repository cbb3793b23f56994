"""COCO box mAP of a detector on an image folder, scored by pycocotools against a COCO annotations JSON.

The detector's outputs (torchvision's form: one dict per image with ``boxes`` (N, 4; x1, y1, x2, y2 in the
input image's pixels), ``scores`` and ``labels``) become COCO results (``[x, y, w, h]``, the annotations'
category ids) and pycocotools' ``COCOeval`` scores them: ``box_map`` is its ``stats[0]`` (AP at IoU
.50:.05:.95), ``box_map50`` its ``stats[1]``. The interval is a percentile bootstrap over images: the
per-image matches pycocotools computed once (``evalImgs``) are resampled with replacement and its own
``accumulate`` recomputes AP for each resample, so no matching is re-implemented here.

Instance segmentation (Mask R-CNN) also scores its ``masks`` (N, 1, H, W probabilities in the input's
pixels: resized to the file's size, thresholded at 0.5 and RLE-encoded, as torchvision's reference
``coco_eval`` does) by pycocotools' ``segm`` evaluation: ``mask_map``; keypoint detection its ``keypoints``
(N, K, 3) by the ``keypoints`` (OKS) evaluation: ``kp_map``. Each has the same bootstrap interval. Where the
annotations hold no masks or keypoints those figures are unavailable with the reason; box mAP stands.

Labels become category ids by name when the model has class names (torchvision's COCO weights list 91
names, index = COCO category id, so the names match COCO's ``categories``); without names a label *is* the
category id. Never imports ``dnnbench.sources``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import random
import time
from datetime import datetime, timezone

import torch

from dnnbench.core.accuracy import AccuracyConfig, DetectionAccuracy, bootstrap_interval
from dnnbench.core.errors import DatasetError, DnnbenchError, InputError
from dnnbench.core.optional import require
from dnnbench.core.specs import LoadedModel
from dnnbench.core.version import __version__
from dnnbench.evaluate.imagedata import (MAX_LISTED, decode, describe_transform, first_preprocessed, is_image,
                                         timed_batches)

COCO_STAT_NAMES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
                   "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")
KEYPOINT_STAT_NAMES = ("ap", "ap50", "ap75", "ap_medium", "ap_large", "ar", "ar50", "ar75", "ar_medium", "ar_large")
DETECTION_TASKS = ("detection", "instance_segmentation", "keypoint_detection")
COCO_KEYPOINTS = 17  # pycocotools' OKS sigmas are those of COCO's 17 person keypoints
MASK_THRESHOLD = 0.5  # a mask probability above this is the object's (torchvision's reference evaluation)


def _coco():
    require("pycocotools", "box mAP (detection accuracy)")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


# ---- ground truth --------------------------------------------------------------------------------

def load_annotations(path: str | None, notes: list[str]):
    """A pycocotools ``COCO`` of ``path``, checked: every box, image and category well-formed."""
    COCO, _ = _coco()
    if not path:
        raise InputError("detection accuracy needs --annotations FILE", "box mAP is scored against COCO-style "
                         "ground truth (images, annotations, categories)",
                         "pass --annotations path/to/instances_val2017.json")
    if not os.path.isfile(path):
        raise DatasetError(f"annotations file {path} does not exist", "no such file", "check --annotations")
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read annotations file {path}", f"{type(exc).__name__}: {str(exc)[:120]}",
                           "give a COCO annotations JSON") from exc
    if not isinstance(d, dict) or not all(isinstance(d.get(k), list) for k in ("images", "annotations", "categories")):
        raise DatasetError(f"{path} is not a COCO annotations file",
                           "it needs lists 'images', 'annotations' and 'categories'",
                           "give a COCO annotations JSON such as instances_val2017.json")
    images = {}
    for im in d["images"]:
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"an image entry of {path} has no id or file_name", f"it reads {str(im)[:80]}",
                               "give every image an 'id' and a 'file_name'")
        images[im["id"]] = im
    cats = {}
    for c in d["categories"]:
        if not isinstance(c, dict) or "id" not in c:
            raise DatasetError(f"a category of {path} has no id", f"it reads {str(c)[:80]}",
                               "give every category an 'id' and a 'name'")
        cats[c["id"]] = c
    ids = [a.get("id") if isinstance(a, dict) else None for a in d["annotations"]]
    renumber = any(i is None or i == 0 for i in ids) or len(set(ids)) != len(ids)
    filled = 0
    for n, a in enumerate(d["annotations"]):
        box = a.get("bbox") if isinstance(a, dict) else None
        if (not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box)
                or box[2] < 0 or box[3] < 0):
            raise DatasetError(f"annotation {n} of {path} has no valid bbox", f"it reads {str(a)[:80]}",
                               "give every annotation a 'bbox' [x, y, width, height] in pixels")
        if a.get("image_id") not in images:
            raise DatasetError(f"annotation {n} of {path} names image_id {a.get('image_id')!r}",
                               "no image of that id is in 'images'", "fix the annotations file")
        if a.get("category_id") not in cats:
            raise DatasetError(f"annotation {n} of {path} names category_id {a.get('category_id')!r}",
                               "no category of that id is in 'categories'", "fix the annotations file")
        if "area" not in a or "iscrowd" not in a:
            filled += 1
            a.setdefault("area", float(box[2] * box[3]))
            a.setdefault("iscrowd", 0)
        if renumber:  # pycocotools marks matches by annotation id, so an id of 0 (or a repeated one) would be lost
            a["id"] = n + 1
    if filled:
        notes.append(f"{filled} annotation(s) without 'area'/'iscrowd': area = box width x height, not a crowd")
    if renumber:
        notes.append("annotation ids were missing, 0 or repeated: renumbered 1..N for pycocotools")
    coco = COCO()
    coco.dataset = d
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def match_images(coco, data_dir: str, annotations: str, notes: list[str]) -> tuple[list[tuple[int, str]], int]:
    """(image id, path) of the annotated images found under ``data_dir``, and how many were not found."""
    if not os.path.isdir(data_dir):
        raise DatasetError(f"--data {data_dir} does not exist", "no such directory", "check --data")
    with os.scandir(data_dir) as it:
        on_disk = {e.name: e.path for e in it if e.is_file()}
    found, missing = [], []
    for img_id in sorted(coco.imgs):
        name = coco.imgs[img_id]["file_name"]
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            path = on_disk.get(os.path.basename(name))
        if path is None:
            missing.append(name)
        else:
            found.append((img_id, path))
    if not found:
        listed = sorted(n for n in on_disk if is_image(n))
        raise DatasetError(
            f"none of the {len(coco.imgs)} images of {annotations} is in {data_dir} "
            f"(first: {missing[0] if missing else '-'}; the folder holds {len(listed)} images"
            + (f", first: {listed[0]})" if listed else ")"),
            "the annotations and the image folder must belong together",
            "point --data at the folder holding the files named in the annotations' images[].file_name")
    if missing:
        notes.append(f"{len(missing)} of the {len(coco.imgs)} images in the annotations are not in {data_dir} "
                     f"and are not scored (first: {missing[0]})")
    named = {os.path.abspath(p) for _, p in found}
    extra = sum(1 for n, p in on_disk.items() if is_image(n) and os.path.abspath(p) not in named)
    if extra:
        notes.append(f"{extra} image(s) in {data_dir} are not in the annotations and are not scored")
    return found, len(missing)


def category_map(coco, class_names: list[str] | None, annotations: str) -> tuple[dict[int, int] | None, str]:
    """label -> category id (None = the identity), and how it was made."""
    if not class_names:
        return None, "the model's labels are the annotations' category ids (the model has no class names)"
    by_name: dict[str, int] = {}
    for cid, c in coco.cats.items():
        by_name.setdefault(str(c.get("name")), cid)
    mapping = {i: by_name[n] for i, n in enumerate(class_names) if n in by_name}
    if not mapping:
        raise DatasetError(
            f"none of the {len(coco.cats)} category names of {annotations} is a class of the model "
            f"(first: {next(iter(by_name), '-')!r}; the model's: {', '.join(repr(n) for n in class_names[:3])} ...)",
            "labels are matched to categories by name", "give annotations whose categories the model detects")
    unknown = sorted(set(by_name) - {class_names[i] for i in mapping})
    how = f"by name: {len(mapping)} of the model's {len(class_names)} classes are categories of the annotations"
    if unknown:
        how += f"; {len(unknown)} categor{'y' if len(unknown) == 1 else 'ies'} the model does not know " \
               f"({', '.join(unknown[:3])}) can only score AP 0"
    return mapping, how


# ---- the model's outputs -------------------------------------------------------------------------

def detections_of(output, n: int) -> list[dict]:
    """One dict (boxes, scores, labels) per image from what a detector returns."""
    if isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], dict) and isinstance(output[1], list):
        output = output[1]  # a scripted torchvision detector returns (losses, detections)
    if isinstance(output, dict) and n == 1:
        output = [output]
    if not isinstance(output, (list, tuple)) or len(output) != n or not all(isinstance(o, dict) for o in output):
        got = type(output).__name__ + (f" of {len(output)}" if isinstance(output, (list, tuple)) else "")
        raise InputError(f"the detector returned a {got} for {n} image(s)",
                         "detection accuracy needs one dict per image with 'boxes', 'scores' and 'labels' "
                         "(torchvision's form)", "make the model return [{'boxes': ..., 'scores': ..., 'labels': ...}]")
    for o in output:
        lacking = [k for k in ("boxes", "scores", "labels") if k not in o]
        if lacking:
            raise InputError(f"the detector's output dict has no {', '.join(lacking)}",
                             f"its keys are {', '.join(map(str, o)) or 'none'}",
                             "return 'boxes' (N, 4; x1, y1, x2, y2), 'scores' (N) and 'labels' (N) per image")
        b = o["boxes"]
        if not isinstance(b, torch.Tensor) or b.dim() != 2 or b.shape[1] != 4:
            raise InputError("the detector's boxes are not an (N, 4) tensor",
                             f"got {type(b).__name__}" + (f" of shape {list(b.shape)}" if isinstance(b, torch.Tensor) else ""),
                             "return boxes as x1, y1, x2, y2 pixel coordinates, one row per detection")
    return list(output)


def _category(lab, mapping: dict[int, int] | None, cat_ids: set[int]) -> int | None:
    """The annotations' category id of a label (None: no category of the annotations)."""
    cid = mapping.get(int(lab)) if mapping is not None else int(lab)
    return cid if cid in cat_ids else None


def to_coco_results(det: dict, image_id: int, scale: tuple[float, float], mapping: dict[int, int] | None,
                    cat_ids: set[int]) -> tuple[list[dict], int]:
    """COCO results (xywh in the file's pixels) of one image's detections, and how many had no category."""
    boxes = det["boxes"].detach().float().cpu()
    scores = det["scores"].detach().float().cpu().reshape(-1).tolist()
    labels = det["labels"].detach().cpu().reshape(-1).tolist()
    sx, sy = scale
    out, dropped = [], 0
    for (x1, y1, x2, y2), s, lab in zip(boxes.tolist(), scores, labels):
        cid = _category(lab, mapping, cat_ids)
        if cid is None:
            dropped += 1
            continue
        out.append({"image_id": image_id, "category_id": cid, "score": float(s),
                    "bbox": [x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy]})
    return out, dropped


def to_coco_masks(det: dict, image_id: int, size: tuple[int, int], mapping: dict[int, int] | None,
                  cat_ids: set[int]) -> list[dict]:
    """COCO ``segm`` results of one image's detections: each mask resized to the file's ``size`` (width,
    height), thresholded at 0.5 and RLE-encoded."""
    import numpy as np
    from pycocotools import mask as mask_util

    m = det["masks"]
    labels = det["labels"].detach().cpu().reshape(-1).tolist()
    if isinstance(m, torch.Tensor) and m.dim() == 3:
        m = m.unsqueeze(1)
    if not isinstance(m, torch.Tensor) or m.dim() != 4 or m.shape[1] != 1 or m.shape[0] != len(labels):
        raise InputError("the detector's masks are not an (N, 1, H, W) tensor",
                         f"got {type(m).__name__}" + (f" of shape {list(m.shape)}" if isinstance(m, torch.Tensor)
                                                      else "") + f" for {len(labels)} detections",
                         "return one mask per detection, probabilities in the input image's pixels")
    scores = det["scores"].detach().float().cpu().reshape(-1).tolist()
    w, h = size
    out = []
    for k, (s, lab) in enumerate(zip(scores, labels)):
        cid = _category(lab, mapping, cat_ids)
        if cid is None:
            continue
        one = m[k:k + 1].detach().float().cpu()
        if tuple(one.shape[-2:]) != (h, w):  # one at a time: 100 full-size float masks would be ~1 GB
            one = torch.nn.functional.interpolate(one, size=(h, w), mode="bilinear", align_corners=False)
        binary = np.asfortranarray((one[0, 0] > MASK_THRESHOLD).numpy().astype(np.uint8))
        rle = mask_util.encode(binary)
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({"image_id": image_id, "category_id": cid, "score": float(s), "segmentation": rle})
    return out


def to_coco_keypoints(det: dict, image_id: int, scale: tuple[float, float], mapping: dict[int, int] | None,
                      cat_ids: set[int]) -> list[dict]:
    """COCO ``keypoints`` results of one image's detections (x, y in the file's pixels, visibility as given)."""
    kp = det["keypoints"]
    labels = det["labels"].detach().cpu().reshape(-1).tolist()
    if not isinstance(kp, torch.Tensor) or kp.dim() != 3 or kp.shape[2] != 3 or kp.shape[0] != len(labels):
        raise InputError("the detector's keypoints are not an (N, K, 3) tensor",
                         f"got {type(kp).__name__}" + (f" of shape {list(kp.shape)}" if isinstance(kp, torch.Tensor)
                                                       else "") + f" for {len(labels)} detections",
                         "return (x, y, visibility) of K keypoints per detection, in the input image's pixels")
    scores = det["scores"].detach().float().cpu().reshape(-1).tolist()
    pts = kp.detach().float().cpu() * torch.tensor([scale[0], scale[1], 1.0])
    out = []
    for k, (s, lab) in enumerate(zip(scores, labels)):
        cid = _category(lab, mapping, cat_ids)
        if cid is not None:
            out.append({"image_id": image_id, "category_id": cid, "score": float(s),
                        "keypoints": pts[k].reshape(-1).tolist()})
    return out


# ---- data ----------------------------------------------------------------------------------------

class DetectionImages(torch.utils.data.Dataset):
    """(tensor or None, index, (width, height) of the file, why it could not be decoded)."""

    def __init__(self, files: list[tuple[int, str]], transform):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        img, why = decode(self.files[i][1])
        if img is None:
            return None, i, None, why
        return self.transform(img), i, img.size, None


def _keep(items):
    return items


def _check_transform(files, transform) -> None:
    first_preprocessed([path for _, path in files], transform)  # a broken transform fails here, in one line


def default_detection_transform():
    """torchvision's detection preset: the image as a float tensor in [0, 1], no resize (the model resizes)."""
    from torchvision import transforms as T

    return T.ToTensor()


# ---- evaluation ----------------------------------------------------------------------------------

def coco_evaluate(coco_gt, results: list[dict], img_ids: list[int], iou_type: str = "bbox",
                  cat_ids: set[int] | None = None):
    """pycocotools' COCOeval (``iou_type`` bbox, segm or keypoints) over ``img_ids`` (and ``cat_ids``:
    default all), evaluated, accumulated and summarised (quietly)."""
    COCO, COCOeval = _coco()
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes refuses an empty list; no detections is a result (AP 0), not an error
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "categories": copy.deepcopy(
                coco_gt.dataset["categories"]), "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.imgIds = sorted(img_ids)
        if cat_ids is not None:
            ev.params.catIds = sorted(cat_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _ap(precision) -> tuple[float | None, float | None]:
    """(AP over all IoU thresholds, AP at IoU .5) from an accumulated precision array (T, R, K, A, M)."""
    import numpy as np

    s, s50 = precision[..., 0, -1], precision[0, ..., 0, -1]  # area "all", the largest maxDets (100)
    ap = float(np.mean(s[s > -1])) if (s > -1).any() else None
    ap50 = float(np.mean(s50[s50 > -1])) if (s50 > -1).any() else None
    return ap, ap50


def resample_ap(ev, pick) -> tuple[float | None, float | None]:
    """AP and AP50 (area all, 100 detections) of the images at positions ``pick`` of ``ev``'s image list
    (repeats allowed), by pycocotools' own ``accumulate`` over ``ev``'s per-image matches."""
    pe = ev._paramsEval
    img_ids = list(pe.imgIds)
    n, n_area = len(img_ids), len(pe.areaRng)
    all_area = pe.areaRngLbl.index("all")
    cats = pe.catIds if pe.useCats else [-1]
    p = copy.copy(pe)
    p.imgIds = [img_ids[i] for i in pick]
    p.areaRng, p.areaRngLbl, p.maxDets = [pe.areaRng[all_area]], ["all"], [max(pe.maxDets)]
    p.catIds = list(pe.catIds)
    boot = copy.copy(ev)  # shares ev's evaluation; accumulate reads _paramsEval and evalImgs, writes eval
    boot._paramsEval = p
    boot.evalImgs = [ev.evalImgs[k * n_area * n + all_area * n + i] for k in range(len(cats)) for i in pick]
    with contextlib.redirect_stdout(io.StringIO()):
        boot.accumulate(copy.copy(p))
    return _ap(boot.eval["precision"])


def bootstrap_map(ev, resamples: int, seed: int) -> tuple[list[float], list[float]]:
    """AP and AP50 of ``resamples`` resamples of the images (with replacement, seeded)."""
    import numpy as np

    n = len(ev._paramsEval.imgIds)
    rng = np.random.default_rng(seed)
    maps, maps50 = [], []
    for _ in range(resamples):
        ap, ap50 = resample_ap(ev, rng.integers(0, n, n))
        if ap is not None:  # a resample of images without any ground-truth box has no AP
            maps.append(ap)
            maps50.append(ap50)
    return maps, maps50


def mask_ground_truth(coco_gt, img_ids: list[int]) -> str | None:
    """Why the annotations of ``img_ids`` cannot score masks (None: they can)."""
    anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=img_ids))
    if not anns:
        return None
    bad = [a for a in anns if not _is_segmentation(a.get("segmentation"))]
    if len(bad) == len(anns):
        return "the annotations hold no masks ('segmentation' polygons or RLE, as instances_val2017.json has)"
    if bad:
        return (f"{len(bad)} of the {len(anns)} annotations of the scored images have no valid 'segmentation' "
                f"(first: annotation {bad[0].get('id')})")
    sizes = {a["image_id"] for a in anns if isinstance(a["segmentation"], list)}
    unsized = [i for i in sizes if not (coco_gt.imgs[i].get("height") and coco_gt.imgs[i].get("width"))]
    if unsized:
        return (f"{len(unsized)} image(s) with polygon masks have no 'height'/'width' in the annotations "
                f"(first: image {unsized[0]}); pycocotools needs them to rasterise the polygons")
    return None


def _is_segmentation(seg) -> bool:
    if isinstance(seg, dict):
        return "counts" in seg and isinstance(seg.get("size"), list) and len(seg["size"]) == 2
    return (isinstance(seg, list) and bool(seg) and all(
        isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(isinstance(v, (int, float)) for v in p)
        for p in seg))


def keypoint_ground_truth(coco_gt, img_ids: list[int]) -> tuple[set[int], str | None]:
    """The categories whose annotations of ``img_ids`` carry COCO's 17 keypoints (``num_keypoints``
    filled in where missing), or why there are none."""
    by_cat: dict[int, list[dict]] = {}
    for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=img_ids)):
        by_cat.setdefault(a["category_id"], []).append(a)
    cats: set[int] = set()
    odd = 0
    for cid, anns in by_cat.items():
        kps = [a.get("keypoints") for a in anns]
        if not any(kps):
            continue
        if not all(isinstance(k, list) and len(k) == 3 * COCO_KEYPOINTS and all(isinstance(v, (int, float))
                                                                                for v in k) for k in kps):
            odd += 1
            continue
        for a in anns:
            a.setdefault("num_keypoints", sum(1 for v in a["keypoints"][2::3] if v > 0))
        cats.add(cid)
    if cats:
        return cats, None
    if odd:
        return cats, (f"the annotations' keypoints are not COCO's {COCO_KEYPOINTS} (x, y, v) triples on every "
                      "annotation of their category; pycocotools' OKS scores those 17")
    return cats, "the annotations hold no keypoints (COCO's person_keypoints_val2017.json has them)"


def _score(coco_gt, results: list[dict], img_ids: list[int], iou_type: str, name: str, noun: str,
           config: AccuracyConfig, notes: list[str], cat_ids: set[int] | None = None):
    """One pycocotools evaluation with its bootstrap: (record fields ``name``, ``name``50 and their CIs,
    pycocotools' summary figures by name, why the AP is unavailable or None)."""
    ev = coco_evaluate(coco_gt, results, img_ids, iou_type, cat_ids)
    stat_names = KEYPOINT_STAT_NAMES if iou_type == "keypoints" else COCO_STAT_NAMES
    stats = {n: (None if float(v) < 0 else float(v)) for n, v in zip(stat_names, ev.stats)}
    f = {name: stats["ap"], f"{name}50": stats["ap50"]}
    f.update({f"{name}{k}_ci_{e}": None for k in ("", "50") for e in ("low", "high")})
    if stats["ap"] is None:
        return f, stats, f"unavailable: the scored images have no ground-truth {noun} (pycocotools gives -1)"
    maps, maps50 = bootstrap_map(ev, config.resamples, config.seed)
    f[f"{name}_ci_low"], f[f"{name}_ci_high"] = bootstrap_interval(maps)
    f[f"{name}50_ci_low"], f[f"{name}50_ci_high"] = bootstrap_interval(maps50)
    if len(maps) < config.resamples:
        notes.append(f"{config.resamples - len(maps)} of {config.resamples} resamples held no ground-truth {noun} "
                     f"and were left out of the {name} interval")
    return f, stats, None


def _figures(name: str) -> tuple[str, ...]:
    return (name, f"{name}50", f"{name}_ci_low", f"{name}_ci_high", f"{name}50_ci_low", f"{name}50_ci_high")


def _lacking(key: str, n: int, of: int) -> str | None:
    if not n:
        return None
    return (f"the model's outputs had no '{key}' for {n} of the {of} scored images" if n < of
            else f"the model's outputs have no '{key}' (torchvision's form: one per detection)")


def measure_detection(loaded: LoadedModel, data_dir: str, config: AccuracyConfig, *, weights: str | None = None,
                      notes: list[str] | None = None, on_progress=None) -> DetectionAccuracy:
    """Box mAP of ``loaded`` on the images of ``config.annotations`` found under ``data_dir``."""
    from dnnbench.evaluate.imagedata import default_workers

    notes = list(notes or [])
    limit, device, seed = config.limit, config.device, config.seed
    workers = default_workers() if config.workers is None else config.workers
    coco_gt = load_annotations(config.annotations, notes)
    files, n_missing = match_images(coco_gt, data_dir, config.annotations, notes)
    mapping, how = category_map(coco_gt, loaded.class_names, config.annotations)
    cat_ids = set(coco_gt.cats)
    if limit is not None and limit >= len(files):
        notes.append(f"--limit {limit} is not below the {len(files)} images: all are evaluated")
    elif limit is not None:
        chosen = sorted(random.Random(seed).sample(range(len(files)), limit))
        files = [files[i] for i in chosen]
        notes.append(f"--limit {limit}: a random subset of {limit} images (seed {seed})")
    if loaded.preprocess is not None:
        transform, preprocess_source = loaded.preprocess, loaded.preprocess_source or ""
    else:
        transform = default_detection_transform()
        preprocess_source = "default: the image as a float tensor in [0, 1] (torchvision's detection preset)"
    unresolved = getattr(transform, "unresolved", None)
    if isinstance(unresolved, DnnbenchError):
        raise unresolved
    _check_transform(files, transform)
    module = loaded.module
    module.eval()
    module.to(device)
    as_list = loaded.inputs.as_list
    if not as_list:
        notes.append("the model takes a batch tensor, not a list of images: images were run one at a time")
    loader = torch.utils.data.DataLoader(
        DetectionImages(files, transform), batch_size=config.batch_size, shuffle=False, num_workers=workers,
        collate_fn=_keep, prefetch_factor=4 if workers > 0 else None)
    want_masks = loaded.task == "instance_segmentation"
    want_kp = loaded.task == "keypoint_detection"
    results: list[dict] = []
    extra: dict[str, list[dict]] = {"masks": [], "keypoints": []}
    lacking: dict[str, int] = {"masks": 0, "keypoints": 0}  # images whose outputs had no such key
    kp_per_detection: set[int] = set()
    scored_ids: list[int] = []
    corrupt: list[str] = []
    dropped = scaled = 0
    forward_s = wait_s = 0.0
    total, done = len(files), 0
    start = time.perf_counter()
    if on_progress:
        on_progress(0, total, 0, 0.0)
    for batch, waited_s in timed_batches(loader):
        wait_s += waited_s
        t1 = time.perf_counter()
        done += len(batch)
        good = [b for b in batch if b[0] is not None]
        corrupt.extend(files[b[1]][1] for b in batch if b[0] is None)
        if good:
            xs = [b[0].to(device) for b in good]
            dets = []
            with torch.inference_mode():
                try:
                    if as_list:
                        dets = detections_of(module(xs), len(xs))
                    else:
                        for x in xs:
                            dets += detections_of(module(x.unsqueeze(0)), 1)
                except DnnbenchError:
                    raise
                except Exception as exc:
                    raise InputError(f"the detector failed on an image of shape {list(xs[0].shape)}",
                                     f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}",
                                     "give the model a preprocess transform that produces the input it takes") from exc
            for (x, i, (w, h), _), det in zip(good, dets):
                img_id = files[i][0]
                in_h, in_w = x.shape[-2:]
                scale = (w / in_w, h / in_h)
                scaled += scale != (1.0, 1.0)
                rows, lost = to_coco_results(det, img_id, scale, mapping, cat_ids)
                results += rows
                dropped += lost
                if want_masks and "masks" in det:
                    extra["masks"] += to_coco_masks(det, img_id, (w, h), mapping, cat_ids)
                if want_kp and "keypoints" in det:
                    extra["keypoints"] += to_coco_keypoints(det, img_id, scale, mapping, cat_ids)
                    kp_per_detection.add(int(det["keypoints"].shape[1]))
                lacking["masks"] += want_masks and "masks" not in det
                lacking["keypoints"] += want_kp and "keypoints" not in det
                scored_ids.append(img_id)
        forward_s += time.perf_counter() - t1
        if on_progress:
            on_progress(done, total, len(scored_ids), time.perf_counter() - start)
    wall_s = time.perf_counter() - start
    if not scored_ids:
        raise DatasetError(f"none of the {total} annotated images in {data_dir} could be decoded",
                           f"first: {corrupt[0] if corrupt else '-'}", "check that --data holds JPEG/PNG images")
    if corrupt:
        notes.append(f"{len(corrupt)} file(s) could not be decoded and were not scored (first: {corrupt[0]})")
    if scaled:
        notes.append(f"the preprocessing resized {scaled} image(s): boxes were scaled back to the file's pixels "
                     "(a crop would misplace them)")
    if dropped:
        notes.append(f"{dropped} detection(s) had a label that is no category of the annotations and were dropped")
    if not results:
        notes.append("no detection of a category of the annotations on the scored images: every AP is 0"
                     if dropped else "the model made no detections on the scored images: every AP is 0")
    t_eval = time.perf_counter()
    unavailable: dict[str, str] = {}
    box, stats, why = _score(coco_gt, results, scored_ids, "bbox", "box_map", "box", config, notes)
    if why:
        unavailable.update(dict.fromkeys(box, why))
    gt_boxes = len(coco_gt.getAnnIds(imgIds=scored_ids, iscrowd=False))
    more: dict = {}
    if want_masks:
        why = _lacking("masks", lacking["masks"], len(scored_ids)) or mask_ground_truth(coco_gt, scored_ids)
        if why is None:
            f, more["mask_coco_stats"], why = _score(coco_gt, extra["masks"], scored_ids, "segm", "mask_map",
                                                     "mask", config, notes)
            more.update(f)
        else:
            why = f"unavailable: {why}"
        if why:
            unavailable.update(dict.fromkeys(_figures("mask_map"), why))
    if want_kp:
        why = _lacking("keypoints", lacking["keypoints"], len(scored_ids))
        if why is None and kp_per_detection - {COCO_KEYPOINTS}:
            why = (f"the model gives {', '.join(map(str, sorted(kp_per_detection)))} keypoints per detection; "
                   f"pycocotools' OKS scores COCO's {COCO_KEYPOINTS}")
        kp_cats, gt_why = keypoint_ground_truth(coco_gt, scored_ids)
        why = why or gt_why
        if why is None:
            f, more["kp_coco_stats"], why = _score(coco_gt, extra["keypoints"], scored_ids, "keypoints", "kp_map",
                                                   "keypoint", config, notes, kp_cats)
            more.update(f)
            more["ground_truth_keypoint_people"] = sum(
                1 for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=scored_ids, catIds=sorted(kp_cats)))
                if a.get("num_keypoints", 0) > 0)
        else:
            why = f"unavailable: {why}"
        if why:
            unavailable.update(dict.fromkeys(_figures("kp_map"), why))
    eval_s = time.perf_counter() - t_eval
    categories = len({a["category_id"] for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=scored_ids))})
    return DetectionAccuracy(
        model=loaded.ref, weights=(loaded.weights or "as given") if weights is None else weights, task=loaded.task,
        data_dir=os.path.abspath(data_dir), annotations=os.path.abspath(config.annotations),
        preprocess=describe_transform(transform), preprocess_source=preprocess_source, category_map=how,
        categories=categories, images=len(scored_ids), corrupt_images=len(corrupt), images_missing=n_missing,
        ground_truth_boxes=gt_boxes, detections=len(results), **box, coco_stats=stats, **more,
        batch_size=config.batch_size, workers=workers, device=device, threads=torch.get_num_threads(),
        wall_s=wall_s, images_per_s=len(scored_ids) / wall_s, forward_s=forward_s, data_wait_s=wait_s,
        eval_s=eval_s, resamples=config.resamples, limit=limit, subset_seed=seed if limit is not None else None,
        corrupt_files=corrupt[:MAX_LISTED], reported=loaded.reported, tool_version=__version__,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"), notes=notes, unavailable=unavailable)
