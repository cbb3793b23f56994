"""Segmentation accuracy: mIoU and pixel accuracy on tiny masks, the expected figures worked out by hand."""

from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dnnbench import api
from dnnbench.core.accuracy import SegmentationAccuracy, accuracy_from_dict
from dnnbench.core.errors import DatasetError

# The model reads the class off the red channel (0, 100, 200 -> class 0, 1, 2) and scores 4 classes; class 3
# is never predicted nor labelled. Its preprocessing is ToTensor alone, so the red value survives.
FACTORIES = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torchvision import transforms as T

    class RedIsClass(torch.nn.Module):
        def __init__(self, half=False):
            super().__init__()
            self.half = half

        def forward(self, x):
            c = (x[:, 0] * 255 / 100).round().long().clamp(0, 2)
            out = F.one_hot(c, 4).permute(0, 3, 1, 2).float()
            if self.half:  # scores at half the resolution, as strided networks give them
                out = out[..., ::2, ::2]
            return {"out": out, "aux": out}

    def build():
        return RedIsClass(), (torch.zeros(1, 3, 2, 2),)
    build.task = "segmentation"
    build.preprocess = T.ToTensor()

    def build_half():
        return RedIsClass(half=True), (torch.zeros(1, 3, 4, 4),)
    build_half.task = "segmentation"
    build_half.preprocess = T.ToTensor()

    def build_list():
        class M(torch.nn.Module):
            def forward(self, x):
                return [{"boxes": torch.zeros(0, 4)}]
        return M(), (torch.zeros(1, 3, 2, 2),)
    build_list.task = "segmentation"
    build_list.preprocess = T.ToTensor()
''')

# image A: prediction [[0, 1], [1, 2]], mask [[0, 1], [2, 255]]; image B: prediction [[0, 0], [2, 2]],
# mask [[0, 0], [2, 1]]. Over the 7 labelled pixels (A's 255 is ignored, and so is its prediction there):
#   class 0: TP 1 + 2 = 3, predicted 3, labelled 3      -> IoU 3 / (3 + 3 - 3) = 1
#   class 1: TP 1 (A),     predicted 2 (A), labelled 2  -> IoU 1 / (2 + 2 - 1) = 1/3
#   class 2: TP 1 (B),     predicted 2 (B), labelled 2  -> IoU 1 / 3
#   class 3: never predicted or labelled: no IoU, not averaged
# mIoU = (1 + 1/3 + 1/3) / 3 = 5/9; pixel accuracy = 5 correct / 7 labelled.
# Alone, A gives IoUs 1, 1/2, 0 (mIoU 1/2) and B gives 1, 0, 1/2 (mIoU 1/2): every bootstrap resample of
# the two images has mIoU 1/2 or 5/9.
PRED = {"a": [[0, 1], [1, 2]], "b": [[0, 0], [2, 2]]}
MASK = {"a": [[0, 1], [2, 255]], "b": [[0, 0], [2, 1]]}
MIOU, PIXEL_ACC = 5 / 9, 5 / 7


def _image(pred) -> Image.Image:
    red = np.array(pred, dtype=np.uint8) * 100
    return Image.fromarray(np.stack([red, np.zeros_like(red), np.zeros_like(red)], -1), "RGB")


def _write(root, scale=1, palette=False):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem in PRED:
        pred = np.kron(np.array(PRED[stem]), np.ones((scale, scale), dtype=int))
        mask = np.kron(np.array(MASK[stem]), np.ones((scale, scale), dtype=int)).astype(np.uint8)
        _image(pred).save(root / "images" / f"{stem}.png")
        m = Image.fromarray(mask, "L")
        if palette:
            m = m.convert("P")
        m.save(root / "masks" / f"{stem}.png")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    f = root / "tinyseg.py"
    f.write_text(FACTORIES)
    return SimpleNamespace(root=root, data=_write(root / "set"), ref=lambda name: f"python:{f}:{name}")


def test_miou_and_pixel_accuracy_by_hand(world):
    a = api.accuracy(world.ref("build"), str(world.data), workers=0, resamples=200)  # images/ + masks/ found
    assert isinstance(a, SegmentationAccuracy) and a.task == "segmentation"
    assert a.miou == pytest.approx(MIOU, abs=1e-12) and a.pixel_acc == pytest.approx(PIXEL_ACC, abs=1e-12)
    assert a.per_class_iou == pytest.approx([1.0, 1 / 3, 1 / 3, None])
    assert (a.num_outputs, a.classes, a.images, a.labelled_pixels) == (4, 3, 2, 7)
    assert any("3 of 4 classes" in n for n in a.notes)
    assert 0.5 - 1e-12 <= a.miou_ci_low <= a.miou <= a.miou_ci_high <= MIOU + 1e-12
    assert a.miou_ci_low == pytest.approx(0.5)  # the resamples {A, A} and {B, B} occur in 200 draws
    assert a.pixel_acc_ci_low <= a.pixel_acc <= a.pixel_acc_ci_high
    assert accuracy_from_dict(a.to_dict()) == a


def test_scores_resized_to_the_mask_palette_masks_and_an_explicit_mask_folder(world, tmp_path):
    """A model scoring at half resolution (bilinear back up to the mask), palette PNG masks in a folder
    given as --annotations: the same figures at 4x the pixels."""
    data = _write(tmp_path / "big", scale=4, palette=True)
    a = api.accuracy(world.ref("build_half"), str(data / "images"), annotations=str(data / "masks"), workers=0,
                     resamples=20)
    assert a.miou == pytest.approx(MIOU, abs=1e-12) and a.pixel_acc == pytest.approx(PIXEL_ACC, abs=1e-12)
    assert a.labelled_pixels == 7 * 16


def test_unpaired_corrupt_and_limit(world, tmp_path):
    data = _write(tmp_path / "s")
    _image(PRED["a"]).save(data / "images" / "lonely.png")
    (data / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n no")
    Image.fromarray(np.zeros((2, 2), np.uint8), "L").save(data / "masks" / "broken.png")
    a = api.accuracy(world.ref("build"), str(data), workers=0, resamples=20)
    assert (a.images, a.corrupt_images, a.unpaired_images) == (2, 1, 1)
    assert a.corrupt_files[0].endswith("broken.png") and a.miou == pytest.approx(MIOU)
    one = api.accuracy(world.ref("build"), str(world.data), workers=0, resamples=20, limit=1)
    assert one.images == 1 and one.miou == pytest.approx(0.5)  # either image alone: 1/2 (see above)


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
    wrong_size = _write(tmp_path / "size")
    Image.fromarray(np.zeros((3, 2), np.uint8), "L").save(wrong_size / "masks" / "b.png")
    colour = _write(tmp_path / "colour")
    Image.new("RGB", (2, 2)).save(colour / "masks" / "a.png")
    high = _write(tmp_path / "high")
    Image.fromarray(np.full((2, 2), 9, np.uint8), "L").save(high / "masks" / "a.png")
    flat = tmp_path / "flat"
    flat.mkdir()
    _image(PRED["a"]).save(flat / "a.png")
    nomask = tmp_path / "nomask"
    nomask.mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8), "L").save(nomask / "zzz.png")
    m = world.ref("build")
    cases = [
        ((m, "--data", str(wrong_size)), ("b.png is 2x3 but image", "b.png is 2x2", "their image's size")),
        ((m, "--data", str(colour)), ("a.png is a RGB image", "class indices")),
        ((m, "--data", str(high)), ("a.png holds class 9", "scores 4 classes")),
        ((m, "--data", str(flat)), ("needs masks", "--annotations")),
        ((m, "--data", str(flat), "--annotations", str(nomask)), ("none of the 1 images", "has a mask", "by file stem")),
        ((m, "--data", str(flat), "--annotations", str(tmp_path / "none")), ("mask folder", "does not exist")),
        ((world.ref("build_list"), "--data", str(world.data)), ("returned a list", "(batch, classes, height, width)")),
    ]
    for args, fragments in cases:
        _one_line(_main(capsys, "accuracy", *args, "--workers", "0", "--resamples", "20"), *fragments)
    with pytest.raises(DatasetError):
        api.accuracy(m, str(wrong_size), workers=0)


def test_cli_json_and_table(world, capsys):
    proc = _main(capsys, "accuracy", world.ref("build"), "--data", str(world.data), "--workers", "0", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["miou"] == pytest.approx(MIOU) and d["pixel_acc"] == pytest.approx(PIXEL_ACC) and d["resamples"] == 200
    table = _main(capsys, "accuracy", world.ref("build"), "--data", str(world.data), "--workers", "0")
    assert table.returncode == 0 and "mIoU" in table.stdout and "55.56 %" in table.stdout and "71.43 %" in table.stdout


def test_study_stores_miou(world, tmp_path):
    from dnnbench.runner import load_results, study

    db = str(tmp_path / "seg.db")
    s = study([world.ref("build")], metrics="accuracy", store=db, data=str(world.data), threads=1,
              accuracy_batch_size=2)
    assert s.statuses == {"ok": 1}
    df = load_results(db)
    assert df.miou.iloc[0] == pytest.approx(MIOU) and df.pixel_acc.iloc[0] == pytest.approx(PIXEL_ACC)
    assert df.miou_ci_low.iloc[0] - 1e-12 <= MIOU <= df.miou_ci_high.iloc[0] + 1e-12 and df.images.iloc[0] == 2
