"""`dnnbench accuracy`: a tiny model trained here, on images generated here, scored by dnnbench and by hand."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dnnbench import api
from dnnbench.core.accuracy import Accuracy, wilson_interval
from dnnbench.core.errors import DatasetError, InputError, ModelBuildError, UnavailableError
from dnnbench.evaluate import imagedata

sys.path.insert(0, str(Path(__file__).parent))
import accuracy_tinynet as tiny  # noqa: E402

FACTORY = "python:tests/accuracy_tinynet.py:build"
PER_CLASS = 25


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained tiny model (checkpoints with and without class_names) and its validation set on disk."""
    root = tmp_path_factory.mktemp("acc")
    model = tiny.train()
    ckpt, bare = root / "tiny.pt", root / "tiny_bare.pt"
    torch.save({"state_dict": model.state_dict(), "class_names": tiny.WNIDS}, ckpt)
    torch.save(model.state_dict(), bare)
    val = root / "val"
    samples = tiny.write_imagefolder(val, PER_CLASS)
    (val / tiny.WNIDS[1] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated, not a JPEG")
    logits = tiny.predict(model, [p for p, _ in samples])
    labels = torch.tensor([y for _, y in samples])
    # Flat ILSVRC-style copy: val_XXXX.jpg/png plus labels files.
    flat = root / "flat"
    flat.mkdir()
    names = []
    for i, (p, _) in enumerate(samples):
        name = f"val_{i:04d}{os.path.splitext(p)[1]}"
        shutil.copy(p, flat / name)
        names.append(name)
    (root / "labels.txt").write_text("".join(f"{y}\n" for _, y in samples))
    (root / "solution.csv").write_text("ImageId,PredictionString\n" + "".join(
        f"{os.path.splitext(n)[0]},{tiny.WNIDS[y]} 1 2 3 4\n" for n, (_, y) in zip(names, samples)))
    return {"root": root, "model": model, "ckpt": str(ckpt), "bare": str(bare), "val": str(val),
            "flat": str(flat), "samples": samples, "logits": logits, "labels": labels,
            "top1": int((logits.argmax(1) == labels).sum())}


def test_trained_model_separates_the_classes_but_not_perfectly(world):
    acc = world["top1"] / len(world["samples"])
    assert 0.6 < acc < 1.0, acc  # well above chance (0.25), and imperfect, so a wrong class map would show


def test_cli_equals_direct_computation(world, cli):
    """The real CLI, as a subprocess: same top-1 count as calling the model by hand; corrupt file counted."""
    proc = cli("accuracy", FACTORY, "--data", world["val"], "--weights", world["ckpt"], "--batch-size", "16",
               "--workers", "2", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    n = len(world["samples"])
    assert d["images"] == n and d["corrupt_images"] == 1
    assert d["corrupt_files"][0].endswith("broken.jpg")
    assert d["top1_correct"] == world["top1"]
    assert d["top1"] == pytest.approx(world["top1"] / n)
    # 4 classes: "top-5" is top-4 and trivially 1; the record says so.
    assert d["top5_k"] == 4 and d["top5"] == 1.0 and d["top5_correct"] == n
    assert any("top-4" in note for note in d["notes"])
    assert (d["top1_ci_low"], d["top1_ci_high"]) == pytest.approx(wilson_interval(world["top1"], n))
    assert d["top1_ci_low"] < d["top1"] < d["top1_ci_high"]
    assert d["class_map"].startswith("the model's class_names")
    assert d["weights"] == world["ckpt"] and d["layout"] == "imagefolder" and d["classes"] == 4
    assert d["num_outputs"] == 4 and d["workers"] == 2
    assert d["images_per_s"] > 0 and d["wall_s"] > 0 and d["forward_s"] > 0
    assert "Resize(size=(16, 16)" in d["preprocess"]
    assert Accuracy.from_dict(d).to_dict() == d


def test_cli_table(world, cli):
    proc = cli("accuracy", FACTORY, "--data", world["val"], "--weights", world["ckpt"], "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert f"{world['top1']} / {len(world['samples'])}" in proc.stdout
    assert "top-5 (top-4)" in proc.stdout and "1 corrupt" in proc.stdout


def test_flat_folder_with_one_label_per_line(world):
    a = api.accuracy(FACTORY, world["flat"], weights=world["ckpt"], labels=str(world["root"] / "labels.txt"),
                     workers=0)
    assert a.layout == "labels-file" and a.images == len(world["samples"]) and a.corrupt_images == 0
    assert a.top1_correct == world["top1"]
    assert a.class_map == "integer labels are the model's output indices"


def test_flat_folder_with_filename_wnid_csv_and_header(world):
    a = api.accuracy(FACTORY, world["flat"], weights=world["ckpt"], labels=str(world["root"] / "solution.csv"),
                     workers=1, batch_size=7)
    assert a.top1_correct == world["top1"] and a.images == len(world["samples"])
    assert any("header" in n for n in a.notes)


def test_sorted_folder_names_and_default_transform(world, tmp_path):
    """No class_names, no preprocess: folders map by sorted name; resize+crop 224 with ImageNet mean/std."""
    f = "python:tests/accuracy_tinynet.py:build_no_names"
    a = api.accuracy(f, world["val"], weights=world["bare"], workers=0)
    assert a.class_map.startswith("sorted class names")
    assert a.preprocess_source.startswith("default: resize shorter side to 256, centre-crop 224x224")
    model = world["model"]
    direct = tiny.predict(model, [p for p, _ in world["samples"]], imagedata.default_transform(224, 224))
    assert a.top1_correct == int((direct.argmax(1) == world["labels"]).sum())


def test_factory_class_names_attribute(world):
    a = api.accuracy("python:tests/accuracy_tinynet.py:build_with_names", world["val"], weights=world["bare"],
                     workers=0)
    assert a.class_map.startswith("the model's class_names") and a.top1_correct == world["top1"]


def test_limit_takes_a_class_stratified_subset(world):
    a = api.accuracy(FACTORY, world["val"], weights=world["ckpt"], limit=10, workers=0)
    assert a.limit == 10 and a.images + a.corrupt_images == 10 and a.subset_seed == 0
    assert any("class-stratified" in n for n in a.notes)
    samples = [(f"f{c}_{i}", c) for c in range(4) for i in range(30 if c else 3)]
    sub = imagedata.stratified_subset(samples, 11, seed=3)
    counts = [sum(1 for _, c in sub if c == k) for k in range(4)]
    assert counts == [3, 3, 3, 2]  # class 0 has only 3; the others take turns
    assert sub == [s for s in samples if s in set(sub)] and len(set(sub)) == 11  # input order kept
    assert imagedata.stratified_subset(samples, 11, seed=3) == sub  # seeded: repeatable


def _const_factory(tmp_path, n_out: int, hot: int) -> str:
    f = tmp_path / "const.py"
    f.write_text(textwrap.dedent(f"""
        import torch
        class Const(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.zeros(1))
            def forward(self, x):
                out = torch.zeros(x.shape[0], {n_out}) + self.w
                out[:, {hot}] = 1.0
                return out
        def build():
            return Const()
    """))
    return f"python:{f}:build"


def test_1000_outputs_read_as_imagenet_synsets(world, tmp_path):
    """A model that always answers class 1 is right exactly on the n01443537 folder (index 1 of sorted wnids)."""
    a = api.accuracy(_const_factory(tmp_path, 1000, 1), world["val"], workers=0)
    assert a.class_map.startswith("ImageNet-1k synsets") and a.weights == "factory"
    assert a.top1_correct == PER_CLASS and a.images == 4 * PER_CLASS
    assert a.top5_k == 5
    assert any("no example inputs" in n for n in a.notes)  # default 224 crop, said so


def test_unknown_class_folder_is_a_clear_error(world, tmp_path, cli):
    data = tmp_path / "val"
    shutil.copytree(world["val"], data)
    shutil.copy(world["samples"][0][0], data / tiny.WNIDS[0] / "extra.jpg")
    (data / "n09999999").mkdir()
    shutil.copy(world["samples"][0][0], data / "n09999999" / "x.jpg")
    proc = cli("accuracy", FACTORY, "--data", str(data), "--weights", world["ckpt"], "--workers", "0")
    _one_line_error(proc, "'n09999999' is not a class the model knows")
    with pytest.raises(DatasetError, match="not among the 1000 ImageNet-1k synsets"):
        api.accuracy(_const_factory(tmp_path, 1000, 0), str(data), workers=0)


def test_partial_classes_need_class_names(world, tmp_path):
    data = tmp_path / "val"
    shutil.copytree(world["val"], data)
    shutil.rmtree(data / tiny.WNIDS[3])
    with pytest.raises(DatasetError, match="the data has 3 classes but the model has 4 outputs"):
        api.accuracy("python:tests/accuracy_tinynet.py:build_no_names", str(data), weights=world["bare"], workers=0)
    # With class_names the subset is fine: each folder is placed by name.
    a = api.accuracy(FACTORY, str(data), weights=world["ckpt"], workers=0)
    assert a.classes == 3 and a.images == 3 * PER_CLASS


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dnnbench: error:") and "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def _main(capsys, *args):
    """Run ``dnnbench.cli.main`` in this process; return what a subprocess would (returncode, stdout, stderr)."""
    from types import SimpleNamespace

    from dnnbench.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=exit_info.value.code, stdout=captured.out, stderr=captured.err)


def test_bad_input_gives_one_line(world, tmp_path, cli, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    short = tmp_path / "short.txt"
    short.write_text("0\n1\n2\n")
    cases = [
        (("--data", str(tmp_path / "nope"), "--weights", world["ckpt"]), ("does not exist", "check --data")),
        (("--data", str(empty), "--weights", world["ckpt"]), ("no images in",)),
        (("--data", world["flat"], "--labels", str(short), "--weights", world["ckpt"]),
         ("has 3 labels but", f"has {len(world['samples'])} images")),
    ]
    for args, fragments in cases:  # in-process main(): the same code path as the console script, faster
        _one_line_error(_main(capsys, "accuracy", FACTORY, *args, "--workers", "0"), *fragments)
    # A checkpoint of another architecture, through a real subprocess.
    _one_line_error(cli("accuracy", "resnet18", "--data", world["val"], "--weights", world["ckpt"]),
                    "does not fit torchvision:resnet18", "same architecture")


@pytest.mark.parametrize("labels, message", [
    ("".join(f"{i % 4 + 1}\n" for i in range(100)), "look 1-based"),
    ("".join(f"{i % 5}\n" for i in range(100)), "label 4 in"),
    ("".join(f"{i % 4} extra\n" for i in range(50)) + "".join(f"{i % 4}\n" for i in range(50)), "mixes"),
])
def test_bad_labels_files(world, tmp_path, labels, message):
    f = tmp_path / "labels.txt"
    f.write_text(labels)
    with pytest.raises(DatasetError, match=message):
        api.accuracy(FACTORY, world["flat"], weights=world["ckpt"], labels=str(f), workers=0)


def test_flat_folder_without_labels_and_missing_labels_file(world, tmp_path):
    with pytest.raises(DatasetError, match="no class folders"):
        api.accuracy(FACTORY, world["flat"], weights=world["ckpt"], workers=0)
    with pytest.raises(DatasetError, match="labels file .* does not exist"):
        api.accuracy(FACTORY, world["flat"], weights=world["ckpt"], labels=str(tmp_path / "x.txt"), workers=0)


def test_only_corrupt_images_is_an_error(world, tmp_path):
    d = tmp_path / "bad" / tiny.WNIDS[0]
    d.mkdir(parents=True)
    for i in range(3):
        (d / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="could be decoded"):
        api.accuracy(FACTORY, str(tmp_path / "bad"), weights=world["ckpt"], workers=0)


def test_failing_transform_in_a_worker_is_one_error(world, tmp_path):
    f = tmp_path / "badtf.py"
    f.write_text(textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        import accuracy_tinynet as t
        calls = []
        def tf(img):
            calls.append(1)
            if len(calls) > 1:  # the probe in the main process passes; the workers' calls fail
                raise ValueError("boom in preprocess")
            return t.PREPROCESS(img)
        def build():
            return t.TinyNet(4)
        build.preprocess = tf
    """))
    with pytest.raises(InputError, match="preprocessing the images failed.*boom in preprocess"):
        api.accuracy(f"python:{f}:build", world["val"], workers=1)


def test_checkpoint_class_names_must_be_strings(world, tmp_path):
    p = tmp_path / "odd.pt"
    torch.save({"state_dict": world["model"].state_dict(), "class_names": [1, 2, 3, 4]}, p)
    with pytest.raises(ModelBuildError, match="not a list of strings"):
        api.accuracy(FACTORY, world["val"], weights=str(p), workers=0)


def test_package_exports_accuracy():
    import dnnbench

    assert dnnbench.accuracy is api.accuracy


def test_preprocess_and_reported_accuracy_from_sources():
    lm = api.load_model("resnet18", device="meta")
    assert type(lm.preprocess).__name__ == "ImageClassification" and lm.preprocess.crop_size == [224]
    assert lm.preprocess_source == "torchvision ResNet18_Weights.IMAGENET1K_V1.transforms()"
    rep = api.reported_accuracy("resnet18")
    assert rep.top1 == pytest.approx(0.69758) and rep.top5 == pytest.approx(0.89078)
    assert rep.source == "torchvision weights meta" and rep.weights == "ResNet18_Weights.IMAGENET1K_V1"
    big = api.load_model("torchvision:vit_h_14", device="meta")  # SWAG weights: 518 crop, bicubic
    assert big.preprocess.crop_size == [518] and big.inputs.tensors[0].shape == (3, 518, 518)


def test_timm_preprocess_class_names_and_no_invented_accuracy():
    pytest.importorskip("timm")
    lm = api.load_model("timm:resnet18", device="meta")
    assert "CenterCrop(size=(224, 224))" in imagedata.describe_transform(lm.preprocess)
    assert lm.class_names == list(imagedata.imagenet1k_wnids())
    rep = api.reported_accuracy("timm:resnet18.a1_in1k")
    assert rep.top1 is None and rep.top5 is None and rep.source == "timm"
    assert rep.note.startswith("not published offline by timm") and rep.weights == "resnet18.a1_in1k"


def test_imagenet_wnids_package_data():
    wnids = imagedata.imagenet1k_wnids()
    assert len(wnids) == 1000 and list(wnids) == sorted(set(wnids))
    assert wnids[0] == "n01440764" and wnids[-1] == "n15075141"
    assert all(imagedata.WNID.match(w) for w in wnids)


def test_wnid_order_matches_torchvision_categories():
    """Index i of torchvision's ImageNet categories names the i-th sorted wnid (checked via timm's lemmas)."""
    timm = pytest.importorskip("timm")
    import torchvision.models as tvm

    lemmas_file = Path(timm.__file__).parent / "data" / "_info" / "imagenet_synset_to_lemma.txt"
    if not lemmas_file.exists():
        pytest.skip("this timm has no synset lemma table")
    lemmas = dict(line.split("\t", 1) for line in lemmas_file.read_text().splitlines() if "\t" in line)
    cats = tvm.ResNet18_Weights.DEFAULT.meta["categories"]
    words = [{w.strip().lower() for w in lemmas[wnid].split(",")} for wnid in imagedata.imagenet1k_wnids()]
    hits = sum(cat.lower() in ws for cat, ws in zip(cats, words))
    assert hits >= 950, hits  # torchvision renames a few duplicates ("crane" twice) and spells some differently
    shifted = sum(cat.lower() in ws for cat, ws in zip(cats[1:], words))
    assert shifted < 50  # and an off-by-one order would not match


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(3.8415 / (10 + 3.8415), abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + 3.8415), abs=1e-4)
    lo, hi = wilson_interval(81, 263)  # a textbook example (Newcombe 1998 style): 0.2553 - 0.3662
    assert (lo, hi) == pytest.approx((0.2553, 0.3662), abs=2e-4)
    lo90, hi90 = wilson_interval(50, 100, confidence=0.90)
    assert hi90 - lo90 < 0.5962 - 0.4038
    with pytest.raises(ValueError):
        wilson_interval(1, 0)


def test_unpicklable_transform_falls_back_to_main_process_decoding(monkeypatch):
    """Spawned workers (macOS, Windows, Python 3.14's forkserver) need the dataset pickled; lambdas cannot be."""
    from dnnbench.evaluate import accuracy as acc_mod

    monkeypatch.setattr(torch.multiprocessing, "get_start_method", lambda allow_none=False: "spawn")
    assert not acc_mod._workers_can_start(imagedata.ImageFiles([("x.jpg", 0)], lambda img: img))
    assert acc_mod._workers_can_start(imagedata.ImageFiles([("x.jpg", 0)], tiny.PREPROCESS))


def test_limit_above_the_file_count_evaluates_all(world):
    a = api.accuracy(FACTORY, world["val"], weights=world["ckpt"], limit=10_000, workers=0)
    assert a.images == len(world["samples"]) and any("all are evaluated" in n for n in a.notes)


def test_timm_default_weights_never_reach_the_network(world, monkeypatch):
    """Without --download-weights only the local Hugging Face cache is read, even though timm imported
    huggingface_hub before dnnbench could set HF_HUB_OFFLINE; the offline flag is restored afterwards."""
    pytest.importorskip("timm")
    constants = pytest.importorskip("huggingface_hub.constants")
    import socket

    before = constants.HF_HUB_OFFLINE
    lookups = []

    def no_dns(*args, **kwargs):
        lookups.append(args)
        raise OSError("the test forbids the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(UnavailableError, match="not in the local Hugging Face cache.*--download-weights"):
        api.accuracy("timm:resnet18.a1_in1k", world["val"], workers=0)
    assert constants.HF_HUB_OFFLINE == before and not lookups  # no host name was even resolved


def test_filename_label_lines_without_header(world, tmp_path):
    names = sorted(os.listdir(world["flat"]))
    f = tmp_path / "pairs.txt"
    # every image but the last, reversed order, some without their suffix, integer labels
    lines = [f"{n if i % 2 else os.path.splitext(n)[0]} {y}" for i, (n, (_, y)) in
             enumerate(zip(names[:-1], world["samples"][:-1]))]
    f.write_text("\n".join(reversed(lines)) + "\n")
    listing = imagedata.list_images(world["flat"], str(f))
    assert len(listing.files) == len(names) - 1 and not any("header" in n for n in listing.notes)
    assert any("1 image(s)" in n and "no line in the labels file" in n for n in listing.notes)
    s = imagedata.assign(listing, 4)
    assert [y for _, y in s.samples] == [y for _, y in world["samples"][:-1]]


def test_study_stores_accuracy_cells_and_retries_failed_ones(world, tmp_path):
    from dnnbench.runner import load_results, study

    db = str(tmp_path / "acc.db")
    weights = tmp_path / "later.pt"  # not there yet: the cell fails and is stored with its status
    kw = dict(metrics="accuracy", store=db, data=world["val"], weights=str(weights), threads=1,
              accuracy_batch_size=16)
    s = study([FACTORY], **kw)
    assert s.statuses == {"error": 1}
    df = load_results(db)
    assert list(df.status) == ["error"] and "does not exist" in df.message.iloc[0]
    shutil.copy(world["ckpt"], weights)  # the cause is fixed: the same cell is measured again
    s = study([FACTORY], **kw)
    assert s.statuses == {"ok": 1} and s.skipped_existing == 0
    df = load_results(db)
    assert list(df.status) == ["ok"] and list(df.metric_group) == ["accuracy"]
    n = len(world["samples"])
    assert df.top1.iloc[0] == pytest.approx(world["top1"] / n)
    assert df.images.iloc[0] == n and df.corrupt_images.iloc[0] == 1
    again = study([FACTORY], **kw)  # ok cells are final
    assert (again.measured, again.skipped_existing) == (0, 1)
