"""Detection accuracy: box mAP of a thresholding detector on images generated here, checked against
pycocotools run directly on the same detections, a perfect detector, and every bad input as one line."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("pycocotools")

from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from dnnbench import api  # noqa: E402
from dnnbench.core.accuracy import DetectionAccuracy, accuracy_from_dict  # noqa: E402
from dnnbench.core.errors import DatasetError, InputError, MissingExtraError  # noqa: E402
from dnnbench.evaluate import detection  # noqa: E402

N_IMAGES = 12
RED, GREEN = 1, 2

# The detector finds the red and the green rectangles of an image by thresholding, exactly. The "noisy"
# factory narrows green boxes by 3 pixels (IoU falls with the box's width, so AP drops at the strict IoU
# thresholds only) and adds a false red box, scored above the true red one, in every image's corner.
FACTORIES = textwrap.dedent('''
    import torch
    from torchvision import transforms as T

    class ColourBoxes(torch.nn.Module):
        def __init__(self, noisy=False):
            super().__init__()
            self.noisy = noisy

        def forward(self, images):
            out = []
            for x in images:
                boxes, scores, labels = [], [], []
                for label, ch in ((1, 0), (2, 1)):
                    on = (x[ch] > 0.5) & (x[1 - ch] < 0.5)
                    ys, xs = torch.nonzero(on, as_tuple=True)
                    if len(xs) == 0:
                        continue
                    b = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
                    if self.noisy and label == 2:
                        b = b - torch.tensor([0.0, 0.0, 3.0, 0.0])
                    boxes.append(b)
                    scores.append(0.5 + 0.1 * label)
                    labels.append(label)
                if self.noisy:
                    boxes.append(torch.tensor([0.0, 0.0, 4.0, 4.0]))
                    scores.append(0.65)
                    labels.append(1)
                out.append({"boxes": torch.stack(boxes) if boxes else torch.zeros(0, 4),
                            "scores": torch.tensor(scores), "labels": torch.tensor(labels, dtype=torch.int64)})
            return out

    def build():
        return ColourBoxes(), ([torch.zeros(3, 48, 64)],)
    build.task = "detection"

    def build_noisy():
        return ColourBoxes(noisy=True), ([torch.zeros(3, 48, 64)],)
    build_noisy.task = "detection"

    def build_named():
        return ColourBoxes(), ([torch.zeros(3, 48, 64)],)
    build_named.task = "detection"
    build_named.class_names = ["__background__", "red", "green"]

    def build_upscaled():  # its preprocessing doubles the image: boxes come out in the doubled pixels
        return ColourBoxes(), ([torch.zeros(3, 96, 128)],)
    build_upscaled.task = "detection"
    build_upscaled.preprocess = T.Compose([T.Resize((96, 128), interpolation=T.InterpolationMode.NEAREST),
                                           T.ToTensor()])

    def build_tensor_output():
        class M(torch.nn.Module):
            def forward(self, images):
                return torch.zeros(len(images), 4)
        return M(), ([torch.zeros(3, 48, 64)],)
    build_tensor_output.task = "detection"

    def build_video():
        return torch.nn.Conv3d(3, 4, 1), (torch.zeros(1, 3, 2, 8, 8),)
    build_video.task = "video"
''')


def _objects(i: int) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(category, [x, y, w, h]) of image i: two objects in even images, one green one in odd ones."""
    if i % 2 == 0:
        return [(RED, (5 + i, 4, 20, 15)), (GREEN, (30, 20 + i % 3, 8 + i, 10))]
    return [(GREEN, (8, 8, 10 + 2 * i, 20))]


def _write_set(root, categories=None, ids=None):
    from PIL import Image

    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    images, anns = [], []
    for i in range(N_IMAGES):
        im = Image.new("RGB", (64, 48))
        px = im.load()
        for cat, (x, y, w, h) in _objects(i):
            for yy in range(y, y + h):
                for xx in range(x, x + w):
                    px[xx, yy] = (255, 0, 0) if cat == RED else (0, 255, 0)
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": (ids or {}).get(cat, cat),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        im.save(img_dir / f"im{i:02d}.png")
        images.append({"id": 100 + i, "file_name": f"im{i:02d}.png", "width": 64, "height": 48})
    cats = categories or [{"id": RED, "name": "red"}, {"id": GREEN, "name": "green"}]
    ann = root / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return img_dir, ann


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    img_dir, ann = _write_set(root)
    factories = root / "tinydet.py"
    factories.write_text(FACTORIES)
    return SimpleNamespace(root=root, images=img_dir, ann=ann, ref=lambda name: f"python:{factories}:{name}")


def _direct_map(module, img_dir, ann) -> tuple[float, float, int]:
    """pycocotools run by hand on the detector's outputs: (stats[0], stats[1], detections)."""
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    gt = COCO(str(ann))
    results = []
    for img in gt.dataset["images"]:
        x = to_tensor(Image.open(img_dir / img["file_name"]).convert("RGB"))
        det = module([x])[0]
        for (x1, y1, x2, y2), s, lab in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
            results.append({"image_id": img["id"], "category_id": lab, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1]), len(results)


def test_perfect_detector_scores_one(world):
    a = api.accuracy(world.ref("build"), str(world.images), annotations=str(world.ann), workers=0, resamples=50)
    assert isinstance(a, DetectionAccuracy) and a.task == "detection"
    assert (a.box_map, a.box_map50) == (1.0, 1.0)
    assert (a.box_map_ci_low, a.box_map_ci_high) == (1.0, 1.0)
    n_boxes = sum(len(_objects(i)) for i in range(N_IMAGES))
    assert a.images == N_IMAGES and a.ground_truth_boxes == n_boxes and a.detections == n_boxes
    assert a.corrupt_images == 0 and a.images_missing == 0 and a.categories == 2
    assert "category ids" in a.category_map


def test_map_equals_pycocotools_run_directly(world):
    """Our path (DataLoader, conversion, subset of image ids, quiet COCOeval) gives pycocotools' own figures."""
    ns = {}
    exec(FACTORIES, ns)
    expected, expected50, n_det = _direct_map(ns["ColourBoxes"](noisy=True), world.images, world.ann)
    assert 0.2 < expected < expected50 < 0.95  # figures that a wrong conversion or score order would move
    a = api.accuracy(world.ref("build_noisy"), str(world.images), annotations=str(world.ann), workers=2,
                     batch_size=5, resamples=200)
    assert a.box_map == pytest.approx(expected, abs=1e-12)
    assert a.box_map50 == pytest.approx(expected50, abs=1e-12)
    assert a.detections == n_det and a.workers == 2
    assert a.box_map_ci_low <= a.box_map <= a.box_map_ci_high and a.box_map_ci_low < a.box_map_ci_high
    assert a.box_map50_ci_low <= a.box_map50 <= a.box_map50_ci_high
    assert a.coco_stats["ap"] == a.box_map and a.coco_stats["ap_large"] is None  # no large objects: not 0
    assert accuracy_from_dict(a.to_dict()) == a


def test_bootstrap_recomputes_pycocotools_ap(world):
    """The resampling machinery itself: the identity resample gives summarize()'s AP, a doubled set the same
    AP (precision/recall are ratios), and a resample of one image that image's AP evaluated alone."""
    ns = {}
    exec(FACTORIES, ns)
    module = ns["ColourBoxes"](noisy=True)
    from PIL import Image
    from torchvision.transforms.functional import to_tensor

    gt = detection.load_annotations(str(world.ann), [])
    rows = []
    for img in gt.dataset["images"]:
        det = module([to_tensor(Image.open(world.images / img["file_name"]).convert("RGB"))])[0]
        rows += detection.to_coco_results(det, img["id"], (1.0, 1.0), None, set(gt.cats))[0]
    ids = sorted(gt.imgs)
    ev = detection.coco_evaluate(gt, rows, ids)
    n = len(ids)
    assert detection.resample_ap(ev, np.arange(n)) == pytest.approx((ev.stats[0], ev.stats[1]), abs=1e-12)
    assert detection.resample_ap(ev, np.r_[np.arange(n), np.arange(n)]) == pytest.approx(
        (ev.stats[0], ev.stats[1]), abs=1e-12)
    alone = detection.coco_evaluate(gt, [r for r in rows if r["image_id"] == ids[3]], [ids[3]])
    assert detection.resample_ap(ev, [3]) == pytest.approx((alone.stats[0], alone.stats[1]), abs=1e-12)


def test_categories_by_name_and_resized_preprocessing(world, tmp_path):
    """Class names map labels to the annotations' own ids (here swapped and renumbered); boxes of a model
    that sees a resized image are scaled back to the file's pixels."""
    img_dir, ann = _write_set(tmp_path, categories=[{"id": 7, "name": "green"}, {"id": 3, "name": "red"}],
                              ids={RED: 3, GREEN: 7})
    a = api.accuracy(world.ref("build_named"), str(img_dir), annotations=str(ann), workers=0, resamples=20)
    assert a.box_map == 1.0 and a.category_map.startswith("by name: 2 of the model's 3 classes")
    without_names = api.accuracy(world.ref("build"), str(img_dir), annotations=str(ann), workers=0, resamples=20)
    assert without_names.box_map == 0.0  # labels 1/2 are no category here: dropped, and the record says so
    assert any("were dropped" in n for n in without_names.notes)
    up = api.accuracy(world.ref("build_upscaled"), str(world.images), annotations=str(world.ann), workers=0,
                      resamples=20)
    assert up.box_map == 1.0 and any("scaled back" in n for n in up.notes)


def test_corrupt_missing_and_unlisted_images_are_counted(world, tmp_path):
    img_dir, ann = _write_set(tmp_path)
    (img_dir / "im03.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (img_dir / "im05.png").unlink()
    (img_dir / "im05.png.bak").write_bytes(b"")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(img_dir / "stranger.png")
    a = api.accuracy(world.ref("build"), str(img_dir), annotations=str(ann), workers=0, resamples=20, limit=11)
    assert a.images == N_IMAGES - 2 and a.corrupt_images == 1 and a.images_missing == 1
    assert a.corrupt_files[0].endswith("im03.png") and a.box_map == 1.0
    notes = " | ".join(a.notes)
    assert "not in the annotations" in notes and "could not be decoded" in notes and "not in " in notes
    assert "--limit 11 is not below the 11 images" in notes
    few = api.accuracy(world.ref("build"), str(world.images), annotations=str(world.ann), workers=0, resamples=20,
                       limit=4)
    assert few.images == 4 and few.limit == 4 and few.subset_seed == 0


def test_no_ground_truth_box_is_unavailable_not_zero(world, tmp_path):
    img_dir, ann = _write_set(tmp_path)
    d = json.loads(ann.read_text())
    d["annotations"] = []
    ann.write_text(json.dumps(d))
    a = api.accuracy(world.ref("build"), str(img_dir), annotations=str(ann), workers=0, resamples=20)
    assert a.box_map is None and "no ground-truth box" in a.unavailable["box_map"]


def _main(capsys, *args):
    from dnnbench.cli import main

    capsys.readouterr()
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


def _one_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dnnbench: error:") and "Traceback" not in proc.stderr, proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_bad_inputs_are_one_line(world, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(other / "cat.jpg")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    no_lists = tmp_path / "nolists.json"
    no_lists.write_text(json.dumps({"images": []}))
    wrong_cat = tmp_path / "wrongcat.json"
    d = json.loads(world.ann.read_text())
    d["annotations"][0]["category_id"] = 99
    wrong_cat.write_text(json.dumps(d))
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({**json.loads(world.ann.read_text()), "categories": [{"id": 1, "name": "zebra"},
                                                                                       {"id": 2, "name": "giraffe"}]}))
    det, data, ann = world.ref("build"), str(world.images), str(world.ann)
    cases = [
        ((det, "--data", data), ("needs --annotations FILE",)),
        ((det, "--data", str(other), "--annotations", ann), ("none of the 12 images of", "the folder holds 1 images",
                                                            "belong together")),
        ((det, "--data", data, "--annotations", str(tmp_path / "nope.json")), ("does not exist",)),
        ((det, "--data", data, "--annotations", str(bad_json)), ("cannot read annotations file", "JSONDecodeError")),
        ((det, "--data", data, "--annotations", str(no_lists)), ("is not a COCO annotations file",)),
        ((det, "--data", data, "--annotations", str(wrong_cat)), ("category_id 99",)),
        ((world.ref("build_named"), "--data", data, "--annotations", str(foreign)), ("none of the 2 category names",)),
        ((det, "--data", data, "--annotations", ann, "--labels", ann), ("--labels is for classification",)),
        ((det, "--data", data, "--annotations", ann, "--resamples", "5"), ("--resamples 5 is not allowed",)),
        ((world.ref("build_tensor_output"), "--data", data, "--annotations", ann), ("the detector returned a Tensor",)),
        ((world.ref("build_video"), "--data", data), ("accuracy of video models is not implemented yet",)),
    ]
    for args, fragments in cases:
        _one_line(_main(capsys, "accuracy", *args, "--workers", "0"), *fragments)


def test_missing_pycocotools_names_the_extra(world, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import pycocotools now raises ImportError
    with pytest.raises(MissingExtraError, match=r"dnnbench\[detection\]"):
        api.accuracy(world.ref("build"), str(world.images), annotations=str(world.ann), workers=0)


def test_errors_are_typed(world):
    with pytest.raises(InputError):
        api.accuracy(world.ref("build"), str(world.images), workers=0)
    with pytest.raises(DatasetError):
        api.accuracy(world.ref("build"), str(world.root / "nowhere"), annotations=str(world.ann), workers=0)


def test_cli_end_to_end(world, cli, capsys):
    proc = cli("accuracy", world.ref("build_noisy"), "--data", str(world.images), "--annotations", str(world.ann),
               "--resamples", "50", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    ns = {}
    exec(FACTORIES, ns)
    expected, expected50, _ = _direct_map(ns["ColourBoxes"](noisy=True), world.images, world.ann)
    assert d["box_map"] == pytest.approx(expected, abs=1e-12) and d["box_map50"] == pytest.approx(expected50, abs=1e-12)
    assert d["resamples"] == 50 and d["task"] == "detection"
    table = _main(capsys, "accuracy", world.ref("build"), "--data", str(world.images), "--annotations",
                  str(world.ann), "--workers", "0", "--resamples", "20")
    assert table.returncode == 0, table.stderr
    assert "box mAP@[.5:.95]" in table.stdout and "100.00 %" in table.stdout


def test_study_stores_box_map_like_top1(world, tmp_path):
    from dnnbench.runner import load_results, study

    db = str(tmp_path / "det.db")
    s = study([world.ref("build_noisy")], metrics="accuracy", store=db, data=str(world.images),
              annotations=str(world.ann), threads=1, accuracy_batch_size=4)
    assert s.statuses == {"ok": 1}
    df = load_results(db)
    ns = {}
    exec(FACTORIES, ns)
    expected, expected50, _ = _direct_map(ns["ColourBoxes"](noisy=True), world.images, world.ann)
    assert df.box_map.iloc[0] == pytest.approx(expected) and df.box_map50.iloc[0] == pytest.approx(expected50)
    assert df.box_map_ci_low.iloc[0] <= expected <= df.box_map_ci_high.iloc[0]
    assert df.images.iloc[0] == N_IMAGES and df.corrupt_images.iloc[0] == 0
