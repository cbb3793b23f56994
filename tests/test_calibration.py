"""Static int8's calibration inputs: a folder of images through the model's own preprocessing (``--calibration``,
``--calibration-count``), or generated batches with a warning; every mistake is one line before any cell.

Models are defined here (python:tests/test_calibration.py:NAME); the images are PNGs written by the test.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from dnnbench import api, runner, runtimes
from dnnbench.core.errors import InputError
from dnnbench.core.measurements import CellSpec
from dnnbench.runtimes import calibration
from tests.test_user_errors import one_line_error, run

HERE = "python:tests/test_calibration.py"
FAST = dict(threads=1, max_time_per_cell=0.3, min_samples=3, sensors="none", in_process=True)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4))


def with_preprocess():
    return _net(), torch.randn(1, 3, 16, 16)


with_preprocess.preprocess = T.Compose([T.Resize((16, 16)), T.ToTensor()])


def without_preprocess():
    return _net(), torch.randn(1, 3, 16, 16)


class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 4)

    def forward(self, a, b):
        return self.lin(a + b)


def two_inputs():
    torch.manual_seed(0)
    return _TwoInputs(), (torch.randn(1, 8), torch.randn(1, 8))


two_inputs.preprocess = with_preprocess.preprocess


@pytest.fixture
def images(tmp_path):
    """7 PNGs of different sizes, in two nested folders, plus a text file that is not an image."""
    root = tmp_path / "calib"
    rng = np.random.default_rng(0)
    for i in range(7):
        sub = root / ("a" if i < 4 else "b/deeper")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(sub / f"img{i}.png")
    (root / "README.txt").write_text("not an image")
    return root


def test_a_folder_feeds_the_models_own_preprocessing(images):
    from dnnbench.core.specs import InputSpec, LoadedModel

    model, example = with_preprocess()
    lm = LoadedModel("m", model, InputSpec.from_examples(example), preprocess=with_preprocess.preprocess,
                     preprocess_source="m.preprocess")
    spec = CellSpec("m", 2, "cpu", 1, precision="int8", calibration=str(images), calibration_count=5)
    args = (torch.zeros(2, 3, 16, 16),)
    batches, source, warning = calibration.for_cell(spec, lm, args, {}, torch.device("cpu"))
    assert warning is None
    assert len(batches) == 3 and all(a[0].shape == (2, 3, 16, 16) and k == {} for a, k in batches)
    files = calibration.check_folder(str(images))
    assert len(files) == 7 and files == sorted(files) and not any(f.endswith(".txt") for f in files)
    # the first 5 images (sorted), each through the transform; the last batch filled with the first again
    first = with_preprocess.preprocess(Image.open(files[0]).convert("RGB"))
    fifth = with_preprocess.preprocess(Image.open(files[4]).convert("RGB"))
    assert torch.equal(batches[0][0][0][0], first) and torch.equal(batches[2][0][0][0], fifth)
    assert torch.equal(batches[2][0][0][1], first)
    assert source == (f"5 images from {images} through m.preprocess, in 3 batches of 2 (the last filled with 1 of "
                      "the first images again)")


def test_int8_cells_calibrate_on_the_folder(images):
    for runtime in ("eager", "onnxruntime"):
        if runtime == "onnxruntime" and not runtimes.availability("onnxruntime").ok:
            continue
        run_ = api.bench(f"{HERE}:with_preprocess", batch_sizes=[2], runtime=runtime, precision="int8",
                         calibration=str(images), **FAST)
        (cell,) = run_.cells
        assert cell.status == "ok", cell.message
        assert cell.spec.calibration == str(images) and cell.spec.to_dict()["calibration"] == str(images)
        det = cell.runtime_info.details
        assert det["calibration"].startswith(f"7 images from {images} through python:")
        assert det["calibration_batches"] == 4  # 7 images in batches of 2
        assert not any(w.kind == "calibration" for w in cell.warnings)  # real images: no generated-input warning


def test_generated_calibration_counts_items_and_warns():
    model, example = with_preprocess()
    from dnnbench.core.specs import InputSpec, LoadedModel

    lm = LoadedModel("m", model, InputSpec.from_examples(example))
    spec = CellSpec("m", 4, "cpu", 1, precision="int8", calibration_count=6)
    batches, source, warning = calibration.for_cell(spec, lm, (torch.zeros(4, 3, 16, 16),), {}, torch.device("cpu"))
    assert len(batches) == 2 and batches[0][0][0].shape == (4, 3, 16, 16)
    assert source.startswith("generated: 2 batches of 4") and "generated inputs" in warning.message
    assert "--calibration DIR" in warning.remedy


def test_calibration_mistakes_are_one_line_before_any_cell(images, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    model = f"{HERE}:with_preprocess"
    base = ["bench", model, "--batch-sizes", "1", "--in-process", "--sensors", "none", "--max-time-per-cell", "0.2"]
    one_line_error(run(*base, "--precision", "int8", "--calibration", str(tmp_path / "nope")), "no such folder")
    one_line_error(run(*base, "--precision", "int8", "--calibration", str(empty)), "holds no images")
    one_line_error(run(*base, "--precision", "int8", "--calibration", str(images / "a" / "img0.png")),
                   "is a file, not a folder")
    one_line_error(run(*base, "--precision", "fp32", "--calibration", str(images)), "int8 is not in --precision")
    one_line_error(run(*base, "--precision", "fp32", "--calibration-count", "3"), "--calibration-count",
                   "int8 is not in --precision")
    one_line_error(run(*base, "--precision", "int8", "--calibration-count", "0"), "--calibration-count")
    one_line_error(run("bench", f"{HERE}:without_preprocess", *base[2:], "--precision", "int8", "--calibration",
                       str(images)), "has no known preprocessing")
    one_line_error(run("bench", f"{HERE}:two_inputs", *base[2:], "--precision", "int8", "--calibration",
                       str(images)), "cannot feed", "not one batch of images")
    # the study checks the folder once, before it plans or stores anything
    store = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(InputError, match="no such folder"):
        runner.study([model], metrics="time", precisions="int8", calibration=str(tmp_path / "nope"), store=store)
    with pytest.raises(InputError, match="int8 is not in --precision"):
        runner.study([model], metrics="time", precisions="fp32", calibration=str(images), store=store)
    assert not os.path.exists(tmp_path / "s.db")


def test_an_undecodable_image_fails_the_cell_in_one_line(images):
    (images / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    run_ = api.bench(f"{HERE}:with_preprocess", batch_sizes=[1], precision="int8", calibration=str(images), **FAST)
    (cell,) = run_.cells
    assert cell.status == "error" and "\n" not in cell.message
    assert "broken.png cannot be decoded" in cell.message and "remove or replace the file" in cell.message


def test_a_preprocessing_of_another_size_is_one_line(images):
    run_ = api.bench(f"{HERE}:with_preprocess", batch_sizes=[1], precision="int8", calibration=str(images),
                     input_size="12", **FAST)
    (cell,) = run_.cells
    assert cell.status == "error" and "\n" not in cell.message
    assert "is [3, 16, 16]" in cell.message and "[3, 12, 12]" in cell.message


def test_a_study_carries_the_calibration_into_int8_cells_only(images):
    cfg = runner.StudyConfig(batch_sizes=[1], target_ci=0.02, max_time_per_cell=10.0, sensors="none",
                             precisions="fp32,int8", calibration=str(images),
                             calibration_count=3)
    cells, _ = runner.plan_cells([f"{HERE}:with_preprocess"], cfg, ["time"], 1, "fp0")
    specs = {c.config["precision"]: c.config["spec"] for c in cells}
    assert (specs["int8"].calibration, specs["int8"].calibration_count) == (str(images), 3)
    assert (specs["fp32"].calibration, specs["fp32"].calibration_count) == ("", 0)
    assert "calibration" not in specs["fp32"].to_dict()
