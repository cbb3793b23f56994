"""`dnnbench profile` and `dnnbench models` as a user runs them: real subprocesses."""

import json
import textwrap

import pytest


def _one_line_error(proc, *fragments):
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dnnbench: error:")
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_profile_single_model_json(cli):
    proc = cli("profile", "resnet18", "--batch-size", "4", "--format", "json", "--layers")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in ("model", "batch_size", "input_shape", "params", "trainable_params", "weight_bytes", "macs",
                "flops", "other_flops", "activation_peak_bytes", "uncounted_ops", "layers"):
        assert key in data
    assert data["macs"] == 4 * 1_814_073_344 and data["flops"] == 2 * data["macs"]
    assert data["params"] == 11_689_512
    assert {"name", "type", "params", "macs", "flops", "output_bytes"} <= set(data["layers"][0])
    assert sum(r["macs"] for r in data["layers"]) == data["macs"]


def test_profile_table_and_layers(cli):
    proc = cli("profile", "alexnet", "--layers")
    assert proc.returncode == 0, proc.stderr
    # AlexNet at 224x224 by hand: five convs (out channels x out pixels x in channels x kernel) + 3 FCs
    convs = 64 * 55 * 55 * 3 * 121 + 192 * 27 * 27 * 64 * 25 + 384 * 13 * 13 * 192 * 9 \
        + 256 * 13 * 13 * 384 * 9 + 256 * 13 * 13 * 256 * 9
    fcs = 9216 * 4096 + 4096 * 4096 + 4096 * 1000
    assert f"{convs + fcs:,}" in proc.stdout
    assert "features.0" in proc.stdout and "aten.convolution" in proc.stdout


def test_profile_paper_set(cli):
    proc = cli("profile", "paper")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name in ("alexnet", "googlenet", "resnet152", "vgg19", "inception_v3"):
        assert name in out
    for name in ("BN-AlexNet", "BN-NIN", "ENet"):
        assert name in out
    assert out.count("unavailable") >= 3


def test_models_listing(cli):
    proc = cli("models", "resnet", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    r50 = next(r for r in rows if r["model"] == "torchvision:resnet50")
    assert r50["params"] == 25_557_032 and r50["top1"] == pytest.approx(0.80858)
    proc = cli("models", "paper")
    assert proc.returncode == 0 and "BN-NIN" in proc.stdout


@pytest.mark.parametrize("args, fragments", [
    (("profile", "resnet5"), ("unknown torchvision model 'resnet5'", "did you mean resnet50")),
    (("profile", "torchvision:resnet50."), ("malformed model reference",)),
    (("profile", "tf:resnet50"), ("unknown model source 'tf'",)),
    (("profile", "vit_b_16", "--input-size", "256"), ("rejected input", "Expected 224")),
    (("profile", "resnet18", "--batch-size", "0"), ("--batch-size 0",)),
    (("profile", "resnet18", "--input-size", "a,b"), ("input size 'a,b' is malformed",)),
    (("profile", "resnet18", "--bogus"), ("No such option",)),
    (("models", "no_such_thing_xyz"), ("no model matches",)),
])
def test_bad_input_gives_one_line(cli, args, fragments):
    _one_line_error(cli(*args), *fragments)


def test_factory_that_raises(cli, tmp_path):
    f = tmp_path / "bad.py"
    f.write_text(textwrap.dedent("""
        def build():
            raise RuntimeError("cannot build this")
    """))
    _one_line_error(cli("profile", f"python:{f}:build"), "factory", "cannot build this")
