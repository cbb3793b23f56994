"""Mask mAP (instance segmentation) and keypoint mAP (keypoint detection) of detectors on images generated
here: a perfect model scores 1, a noisy one exactly what pycocotools gives when run by hand on the same
outputs, masks made at another resolution are resized to the file's pixels, and annotations without masks or
keypoints make those figures unavailable with the reason while box mAP stands."""

from __future__ import annotations

import contextlib
import io
import json
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("pycocotools")

from pycocotools import mask as mask_util  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from dnnbench import api  # noqa: E402
from dnnbench.core.accuracy import DetectionAccuracy, accuracy_from_dict  # noqa: E402
from dnnbench.core.errors import InputError  # noqa: E402

N_IMAGES = 10
RED, GREEN = 1, 2
W, H = 64, 48

# A red and a green rectangle (and a red triangle in odd images, so that masks differ from their boxes) are
# found by thresholding: boxes, masks (the coloured pixels) and 17 keypoints per object (a fixed grid of the
# box). "noisy" erodes the green masks' right 2 columns, moves keypoints 2 px right, and adds a false red
# object in a corner scored above the true ones.
FACTORIES = textwrap.dedent('''
    import torch
    from torchvision import transforms as T

    def grid(box):
        x1, y1, x2, y2 = box.tolist()
        return torch.tensor([[x1 + (x2 - x1) * (j % 5) / 4, y1 + (y2 - y1) * (j // 5) / 3, 1.0] for j in range(17)])

    class Colours(torch.nn.Module):
        def __init__(self, noisy=False, masks=True, keypoints=True, k=17):
            super().__init__()
            self.noisy, self.masks, self.keypoints, self.k = noisy, masks, keypoints, k

        def forward(self, images):
            out = []
            for x in images:
                boxes, scores, labels, masks, kps = [], [], [], [], []
                for label, ch in ((1, 0), (2, 1)):
                    on = (x[ch] > 0.5) & (x[1 - ch] < 0.5)
                    ys, xs = torch.nonzero(on, as_tuple=True)
                    if len(xs) == 0:
                        continue
                    b = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
                    m = on.float()
                    if self.noisy and label == 2:
                        m[:, int(b[2]) - 2:] = 0
                    kp = grid(b)
                    if self.noisy:
                        kp = kp + torch.tensor([2.0, 0.0, 0.0])
                    boxes.append(b), scores.append(0.5 + 0.1 * label), labels.append(label)
                    masks.append(m), kps.append(kp[:self.k])
                if self.noisy:
                    fake = torch.zeros(x.shape[1:])
                    fake[:4, :4] = 1
                    boxes.append(torch.tensor([0.0, 0.0, 4.0, 4.0])), scores.append(0.65), labels.append(1)
                    masks.append(fake), kps.append(grid(boxes[-1])[:self.k])
                d = {"boxes": torch.stack(boxes), "scores": torch.tensor(scores),
                     "labels": torch.tensor(labels, dtype=torch.int64)}
                if self.masks:
                    d["masks"] = torch.stack(masks).unsqueeze(1)
                if self.keypoints:
                    d["keypoints"] = torch.stack(kps)
                out.append(d)
            return out

    def _make(task, **kw):
        def build():
            return Colours(**kw), ([torch.zeros(3, 48, 64)],)
        build.task = task
        return build

    masks = _make("instance_segmentation")
    masks_noisy = _make("instance_segmentation", noisy=True)
    masks_absent = _make("instance_segmentation", masks=False)
    keypoints = _make("keypoint_detection")
    keypoints_noisy = _make("keypoint_detection", noisy=True)
    keypoints_five = _make("keypoint_detection", k=5)
    boxes_only = _make("detection")

    def masks_upscaled():  # sees the image doubled: masks come out at 96 x 128 and are resized back
        return Colours(), ([torch.zeros(3, 96, 128)],)
    masks_upscaled.task = "instance_segmentation"
    masks_upscaled.preprocess = T.Compose([T.Resize((96, 128), interpolation=T.InterpolationMode.NEAREST),
                                           T.ToTensor()])

    def bad_masks():
        class M(Colours):
            def forward(self, images):
                out = super().forward(images)
                for d in out:
                    d["masks"] = torch.cat([d["masks"], d["masks"]], 1)  # (N, 2, H, W): two masks each
                return out
        return M(), ([torch.zeros(3, 48, 64)],)
    bad_masks.task = "instance_segmentation"
''')


def _objects(i: int):
    """(category, x, y, w, h) rectangles of image i, and the triangle's (x, y, size) in odd images."""
    return [(RED, 4 + i, 4, 18, 14), (GREEN, 34, 20 + i % 3, 10 + i, 12)], ((6, 30, 12) if i % 2 else None)


def _grid(x, y, w, h):
    return [v for j in range(17) for v in (x + w * (j % 5) / 4, y + h * (j // 5) / 3, 2)]


def _write_set(root, segmentation=True, keypoints=True):
    from PIL import Image

    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    images, anns = [], []
    for i in range(N_IMAGES):
        im = Image.new("RGB", (W, H))
        px = im.load()
        rects, tri = _objects(i)
        masks = {RED: np.zeros((H, W), np.uint8), GREEN: np.zeros((H, W), np.uint8)}
        for cat, x, y, w, h in rects:
            masks[cat][y:y + h, x:x + w] = 1
        if tri:  # a red triangle: part of the red object (its box grows, its mask does not fill the box)
            tx, ty, n = tri
            for r in range(n):
                masks[RED][ty + r, tx:tx + r + 1] = 1
        for yy in range(H):
            for xx in range(W):
                if masks[RED][yy, xx]:
                    px[xx, yy] = (255, 0, 0)
                elif masks[GREEN][yy, xx]:
                    px[xx, yy] = (0, 255, 0)
        for cat, m in masks.items():
            ys, xs = np.nonzero(m)
            x, y, w, h = int(xs.min()), int(ys.min()), int(xs.max() + 1 - xs.min()), int(ys.max() + 1 - ys.min())
            a = {"id": len(anns) + 1, "image_id": 100 + i, "category_id": cat, "bbox": [x, y, w, h],
                 "area": int(m.sum()), "iscrowd": 0}
            if segmentation:
                rle = mask_util.encode(np.asfortranarray(m))
                a["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            if keypoints:
                a["keypoints"], a["num_keypoints"] = _grid(x, y, w, h), 17
            anns.append(a)
        im.save(img_dir / f"im{i:02d}.png")
        images.append({"id": 100 + i, "file_name": f"im{i:02d}.png", "width": W, "height": H})
    cats = [{"id": RED, "name": "red"}, {"id": GREEN, "name": "green"}]
    ann = root / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return img_dir, ann


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("masks")
    img_dir, ann = _write_set(root)
    factories = root / "tinyseg.py"
    factories.write_text(FACTORIES)
    ns: dict = {}
    exec(FACTORIES, ns)
    return SimpleNamespace(root=root, images=img_dir, ann=ann, ns=ns,
                           ref=lambda name: f"python:{factories}:{name}")


def _direct(module, img_dir, ann, iou_type) -> tuple[float, float]:
    """pycocotools run by hand on the model's outputs: (stats[0], stats[1]) of ``iou_type``."""
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    gt = COCO(str(ann))
    results = []
    for img in gt.dataset["images"]:
        det = module([to_tensor(Image.open(img_dir / img["file_name"]).convert("RGB"))])[0]
        for k, (s, lab) in enumerate(zip(det["scores"].tolist(), det["labels"].tolist())):
            r = {"image_id": img["id"], "category_id": lab, "score": s}
            if iou_type == "segm":
                rle = mask_util.encode(np.asfortranarray((det["masks"][k, 0] > 0.5).numpy().astype(np.uint8)))
                r["segmentation"] = rle
            else:
                r["keypoints"] = det["keypoints"][k].reshape(-1).tolist()
            results.append(r)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def test_perfect_masks_score_one_and_a_box_is_not_a_mask(world):
    a = api.accuracy(world.ref("masks"), str(world.images), annotations=str(world.ann), workers=0, resamples=30)
    assert isinstance(a, DetectionAccuracy) and a.task == "instance_segmentation"
    assert (a.box_map, a.mask_map, a.mask_map50) == (1.0, 1.0, 1.0)
    assert (a.mask_map_ci_low, a.mask_map_ci_high) == (1.0, 1.0)
    assert a.mask_coco_stats["ap"] == 1.0 and a.kp_map is None and "kp_map" not in a.unavailable
    assert accuracy_from_dict(a.to_dict()) == a
    up = api.accuracy(world.ref("masks_upscaled"), str(world.images), annotations=str(world.ann), workers=0,
                      resamples=20)
    assert (up.box_map, up.mask_map) == (1.0, 1.0)  # 96 x 128 masks resized to the 48 x 64 files, exactly


def test_noisy_masks_equal_pycocotools_segm_run_directly(world):
    expected, expected50 = _direct(world.ns["Colours"](noisy=True), world.images, world.ann, "segm")
    assert 0.2 < expected < expected50 < 0.99  # the eroded masks lose only at strict IoU thresholds
    a = api.accuracy(world.ref("masks_noisy"), str(world.images), annotations=str(world.ann), workers=0,
                     batch_size=3, resamples=200)
    assert a.mask_map == pytest.approx(expected, abs=1e-12) and a.mask_map50 == pytest.approx(expected50, abs=1e-12)
    assert a.mask_map_ci_low <= a.mask_map <= a.mask_map_ci_high and a.mask_map_ci_low < a.mask_map_ci_high
    assert a.mask_map != a.box_map  # scored on the masks, not the boxes


def test_keypoints_perfect_and_noisy_equal_pycocotools(world):
    a = api.accuracy(world.ref("keypoints"), str(world.images), annotations=str(world.ann), workers=0, resamples=20)
    assert a.task == "keypoint_detection" and (a.kp_map, a.kp_map50) == (1.0, 1.0)
    assert a.ground_truth_keypoint_people == 2 * N_IMAGES and a.mask_map is None
    expected, expected50 = _direct(world.ns["Colours"](noisy=True), world.images, world.ann, "keypoints")
    assert 0.0 < expected < 1.0
    noisy = api.accuracy(world.ref("keypoints_noisy"), str(world.images), annotations=str(world.ann), workers=0,
                         resamples=50)
    assert noisy.kp_map == pytest.approx(expected, abs=1e-12) and noisy.kp_map50 == pytest.approx(expected50, abs=1e-12)
    assert noisy.kp_coco_stats["ap"] == noisy.kp_map and noisy.kp_map_ci_low <= noisy.kp_map <= noisy.kp_map_ci_high


def test_missing_masks_or_keypoints_are_unavailable_with_why_box_map_stands(world, tmp_path):
    bare = tmp_path / "bare"
    img_dir, ann = _write_set(bare, segmentation=False, keypoints=False)
    a = api.accuracy(world.ref("masks"), str(img_dir), annotations=str(ann), workers=0, resamples=20)
    assert a.box_map == 1.0 and a.mask_map is None and "hold no masks" in a.unavailable["mask_map"]
    k = api.accuracy(world.ref("keypoints"), str(img_dir), annotations=str(ann), workers=0, resamples=20)
    assert k.box_map == 1.0 and k.kp_map is None and "hold no keypoints" in k.unavailable["kp_map"]
    no_out = api.accuracy(world.ref("masks_absent"), str(world.images), annotations=str(world.ann), workers=0,
                          resamples=20)
    assert no_out.mask_map is None and "outputs have no 'masks'" in no_out.unavailable["mask_map"]
    five = api.accuracy(world.ref("keypoints_five"), str(world.images), annotations=str(world.ann), workers=0,
                        resamples=20)
    assert five.kp_map is None and "5 keypoints per detection" in five.unavailable["kp_map"]
    plain = api.accuracy(world.ref("boxes_only"), str(world.images), annotations=str(world.ann), workers=0,
                         resamples=20)
    assert plain.mask_map is None and plain.kp_map is None and not plain.unavailable  # not its task's figures
    with pytest.raises(InputError, match="masks are not an"):
        api.accuracy(world.ref("bad_masks"), str(world.images), annotations=str(world.ann), workers=0, resamples=20)


def test_cli_and_study_store_mask_map_as_the_tasks_metric(world, cli, tmp_path):
    proc = cli("accuracy", world.ref("masks_noisy"), "--data", str(world.images), "--annotations", str(world.ann),
               "--workers", "0", "--resamples", "20")
    assert proc.returncode == 0, proc.stderr
    assert "mask mAP@[.5:.95]" in proc.stdout and "box and mask mAP" in proc.stdout
    from dnnbench.analysis.tables import models_table
    from dnnbench.runner import load_results, study

    db = str(tmp_path / "seg.db")
    s = study([world.ref("masks_noisy")], metrics="accuracy", store=db, data=str(world.images),
              annotations=str(world.ann), threads=1, accuracy_batch_size=4)
    assert s.statuses == {"ok": 1}
    df = load_results(db)
    expected, _ = _direct(world.ns["Colours"](noisy=True), world.images, world.ann, "segm")
    assert df.mask_map.iloc[0] == pytest.approx(expected) and df.task.iloc[0] == "instance_segmentation"
    assert "kp_map" not in df.columns or df.kp_map.isna().all()
    models = models_table(df)
    row = models.set_index("model").loc[world.ref("masks_noisy")]
    assert row["quality_metric"] == "mask_map" and row["quality"] == pytest.approx(expected)


def test_mask_conversion_by_hand(world):
    """Hand-checked conversions: no detections give no rows; a 3 x 4 block above the threshold (and one pixel
    below it) is a 12-pixel RLE whose box is the block's."""
    from dnnbench.evaluate import detection

    gt = detection.load_annotations(str(world.ann), [])
    none = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros(0, 1, H, W)}
    assert detection.to_coco_masks(none, 100, (W, H), None, set(gt.cats)) == []
    m = torch.zeros(1, 1, H, W)
    m[0, 0, 2:5, 3:7] = 0.8  # 3 x 4 pixels above the threshold
    m[0, 0, 10, 10] = 0.4  # below it
    one = {"boxes": torch.tensor([[3.0, 2.0, 7.0, 5.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1]),
           "masks": m}
    (r,) = detection.to_coco_masks(one, 100, (W, H), None, set(gt.cats))
    assert mask_util.area(r["segmentation"]) == 12 and list(mask_util.toBbox(r["segmentation"])) == [3, 2, 4, 3]
