"""Model sources: python factories (token-id and multi-input models), timm, sets, weights offline."""

import os
import textwrap

import pytest
import torch
import torchvision

import dnnbench
from dnnbench.core.errors import ModelBuildError, UnavailableError, UnknownModelError
from dnnbench.sources import load, sets


def test_token_id_transformer_from_a_python_file(root):
    p = dnnbench.profile("python:examples/tiny_transformer.py:build", batch_size=8)
    # per token and layer: qkv 64x192, out-proj 64x64, FFN 2x64x256; attention 2x32x64; 2 layers,
    # 32 tokens, batch 8; head 64x5 per sequence
    per_token = 64 * 192 + 64 * 64 + 2 * 64 * 256 + 2 * 32 * 64
    assert p.macs == 8 * (2 * 32 * per_token + 64 * 5)
    assert p.input_shape == [[8, 32], [8, 32]]
    assert p.uncounted_ops == {}


def _write(tmp_path, body):
    f = tmp_path / "user_model.py"
    f.write_text(textwrap.dedent(body))
    return str(f)


def test_module_path_factory_and_multi_input_tuple(tmp_path, monkeypatch):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 3)
                self.b = nn.Linear(6, 3)
            def forward(self, x, y):
                return self.a(x) + self.b(y)
        def make():
            return Two(), (torch.zeros(1, 4), torch.zeros(1, 6))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    p = dnnbench.profile("python:mypkg.nets:make", batch_size=5)
    assert p.macs == 5 * (4 * 3 + 6 * 3)
    assert p.input_shape == [[5, 4], [5, 6]]


def test_factory_returning_only_a_module_assumes_an_image(tmp_path):
    path = _write(tmp_path, """
        from torch import nn
        def build():
            return nn.Conv2d(3, 2, 1, bias=False)
    """)
    p = dnnbench.profile(f"python:{path}:build", input_size=(4, 5))
    assert p.macs == 2 * 3 * 20
    assert any("assuming one 3x224x224 image" in n for n in p.notes)


def test_factory_errors_are_typed(tmp_path):
    path = _write(tmp_path, """
        def broken():
            raise ValueError("no weights here")
        def not_a_model():
            return 42
    """)
    with pytest.raises(ModelBuildError, match="no weights here"):
        load(f"python:{path}:broken")
    with pytest.raises(ModelBuildError, match="returned a int"):
        load(f"python:{path}:not_a_model")
    with pytest.raises(UnknownModelError, match="no factory 'missing'"):
        load(f"python:{path}:missing")
    with pytest.raises(UnknownModelError, match="does not exist"):
        load(f"python:{tmp_path}/nope.py:build")
    with pytest.raises(UnknownModelError, match="cannot import module"):
        load("python:no_such_pkg_xyz.mod:build")


def test_model_that_cannot_run_on_meta_is_counted_on_real_tensors(tmp_path):
    path = _write(tmp_path, """
        import torch
        from torch import nn
        class DataDependent(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4, bias=False)
            def forward(self, x):
                if x.sum().item() > -1e30:   # data-dependent control flow
                    return self.fc(x)
                return x
        def build():
            return DataDependent(), torch.zeros(1, 4)
    """)
    p = dnnbench.profile(f"python:{path}:build", batch_size=3)
    assert p.mode == "real"
    assert p.macs == 3 * 16
    assert any("real CPU tensors" in n for n in p.notes)


def test_timm_model_profiles_with_its_own_input_size():
    pytest.importorskip("timm")
    p = dnnbench.profile("timm:inception_v4", batch_size=1)
    assert p.input_shape == [[1, 3, 299, 299]]
    assert p.params == 42_679_816
    assert 12.2e9 < p.macs < 12.3e9
    assert p.uncounted_ops == {}
    with pytest.raises(UnknownModelError, match="did you mean"):
        load("timm:resnet5O")


def test_paper_set_lists_unavailable_networks_with_reasons():
    entries = sets.paper_set()
    labels = [e.label for e in entries]
    assert len(entries) == 14
    for name in ("BN-AlexNet", "BN-NIN", "ENet (ImageNet variant)"):
        e = entries[labels.index(name)]
        assert e.ref is None and e.unavailable
    refs = {e.ref for e in entries if e.ref}
    for n in ("alexnet", "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
              "vgg16", "vgg19", "inception_v3"):
        assert f"torchvision:{n}" in refs
    assert entries[labels.index("AlexNet (BVLC)")].paper_top1 == pytest.approx(0.5461)


def test_unknown_torchvision_model_suggests_close_names():
    with pytest.raises(UnknownModelError) as info:
        load("resnet5")
    assert "did you mean resnet50" in info.value.one_line()


def test_weights_come_from_the_local_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UnavailableError, match="not in the local cache"):
        load("resnet18", weights="DEFAULT")
    # a cached file (here: a state_dict we write) is used without any network access
    state = torchvision.models.resnet18(weights=None).state_dict()
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / "resnet18-f37072fd.pth")
    lm = load("resnet18", weights="DEFAULT")
    assert torch.equal(lm.module.fc.weight, state["fc.weight"])
    assert lm.weights == "ResNet18_Weights.IMAGENET1K_V1"


def test_weights_file_for_another_architecture_is_refused(tmp_path):
    path = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    with pytest.raises(ModelBuildError, match="does not fit torchvision:resnet18"):
        load("resnet18", weights=str(path))
    os.remove(path)


def test_initialisers_are_skipped_on_meta_only_and_restored():
    from torch import nn

    from dnnbench.sources.meta_build import build_on_meta

    kaiming = nn.init.kaiming_uniform_
    seen = []

    def build():
        lin = nn.Linear(8, 4)  # reset_parameters: kaiming_uniform_ and uniform_, skipped on meta
        seen.append(nn.init.kaiming_uniform_ is not kaiming)
        cpu = nn.init.normal_(torch.zeros(3, device="cpu"), mean=5.0)  # a real tensor is still filled
        assert cpu.abs().sum() > 0
        with pytest.raises(ValueError):  # a shape the initialiser rejects still raises
            nn.init.xavier_uniform_(torch.empty(3, device="meta"))
        return lin

    lin = build_on_meta(build)
    assert seen == [True] and nn.init.kaiming_uniform_ is kaiming  # swapped while building, restored after
    assert lin.weight.device.type == "meta" and lin.weight.shape == (4, 8)
