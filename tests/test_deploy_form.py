"""--form deploy: BatchNorm folded into the preceding conv/linear, re-parameterisable blocks fused."""

import csv
import json
import textwrap
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
import torch
from torch import nn

import dnnbench
from dnnbench.core.errors import InputError
from dnnbench.core.measurements import CellSpec
from dnnbench.core.specs import InputSpec, LoadedModel
from dnnbench.counting.deploy import check_form, to_deploy
from tests.conftest import run_cli


def _randomise_bn(bn: nn.BatchNorm2d, gen: torch.Generator) -> None:
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(bn.num_features, generator=gen) * 2 - 1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.bias.copy_(torch.rand(bn.num_features, generator=gen) - 0.5)


def conv_bn_net() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    gen = torch.Generator().manual_seed(1)
    _randomise_bn(m[1], gen)
    _randomise_bn(m[4], gen)
    return m.eval()


def inputs(shape):
    return lambda device: ((torch.randn(1, *shape, device=device),), {})


def test_bn_folding_keeps_the_outputs_and_params_counted_by_hand():
    m = conv_bn_net()
    x = torch.randn(2, 3, 8, 8)
    deployed, report = to_deploy(m, inputs((3, 8, 8)))
    assert report.folded == 2 and not report.left and report.reparameterized_count == 0
    assert not any(isinstance(t, nn.BatchNorm2d) for t in deployed.modules())
    assert isinstance(m[1], nn.BatchNorm2d)  # the original is untouched
    torch.testing.assert_close(deployed(x), m(x), rtol=1e-5, atol=1e-5)
    # conv 3->8 3x3 gains a bias (8); conv 8->4 1x1 keeps its own; linear 144->5
    by_hand = (8 * 3 * 9 + 8) + (4 * 8 + 4) + (144 * 5 + 5)
    assert sum(p.numel() for p in deployed.parameters()) == by_hand
    train = by_hand - 8 + 2 * 8 + 2 * 4  # no conv bias, and each BatchNorm's weight and bias
    assert sum(p.numel() for p in m.parameters()) == train


def test_bn_folding_works_on_meta_and_profile_says_what_it_counted():
    lm = LoadedModel("tiny", conv_bn_net().to("meta"), InputSpec.image(3, 8, 8))
    train = dnnbench.profile(lm)
    deploy = dnnbench.profile(lm, form="deploy")
    assert (train.form, deploy.form) == ("train", "deploy")
    assert deploy.mode == "meta"
    assert deploy.params == train.params - 2 * 8 - 2 * 4 + 8
    assert any("2 BatchNorm(s) folded" in n for n in deploy.notes)
    # the BatchNorms' work is gone from other_flops; the MACs of the convs are the same
    assert deploy.macs == train.macs and deploy.other_flops < train.other_flops
    assert sum(p.numel() for p in lm.module.parameters()) == train.params  # the model given is unchanged


def test_a_bn_whose_conv_output_is_read_elsewhere_is_left_and_said():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # folding would change the second read of y

    m = Residual().eval()
    _randomise_bn(m.bn, torch.Generator().manual_seed(2))
    deployed, report = to_deploy(m, inputs((4, 5, 5)))
    assert report.folded == 0 and sum(report.left.values()) == 1
    assert "read elsewhere" in report.note()
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(deployed(x), m(x))


class RepBlock(nn.Module):
    """RepVGG in miniature: 3x3 + 1x1 branches in training, one 3x3 conv after reparameterize()."""

    def __init__(self, c=4):
        super().__init__()
        self.k3, self.k1 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 1)
        self.fused = None

    def forward(self, x):
        return self.fused(x) if self.fused is not None else self.k3(x) + self.k1(x)

    def reparameterize(self):
        w = self.k3.weight + nn.functional.pad(self.k1.weight, [1, 1, 1, 1])
        self.fused = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
        self.fused.weight = nn.Parameter(w.detach())
        self.fused.bias = nn.Parameter((self.k3.bias + self.k1.bias).detach())
        del self.k3, self.k1


def test_a_reparameterisable_module_is_fused_on_real_and_meta_tensors():
    m = nn.Sequential(RepBlock(), nn.ReLU(), RepBlock()).eval()
    x = torch.randn(2, 4, 6, 6)
    deployed, report = to_deploy(m, inputs((4, 6, 6)))
    assert report.reparameterized == {"RepBlock": 2}
    torch.testing.assert_close(deployed(x), m(x), rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in deployed.parameters()) == 2 * (4 * 4 * 9 + 4)
    prof = dnnbench.profile(LoadedModel("rep", m.to("meta"), InputSpec.image(4, 6, 6)), form="deploy")
    assert prof.params == 2 * (4 * 4 * 9 + 4) and prof.macs == 2 * 36 * 4 * 4 * 9


def test_timm_repvgg_deploy_params_equal_the_fused_model():
    timm = pytest.importorskip("timm")
    from timm.utils.model import reparameterize_model

    fused = reparameterize_model(timm.create_model("repvgg_a0").eval())
    expected = sum(p.numel() for p in fused.parameters())
    train = dnnbench.profile("timm:repvgg_a0")
    deploy = dnnbench.profile("timm:repvgg_a0", form="deploy")
    assert deploy.params == expected == 8_309_384 and train.params == 9_108_968
    assert deploy.mode == "meta" and any("22 module(s) re-parameterised (RepVggBlock x22)" in n for n in deploy.notes)


def test_form_is_in_the_cell_identity_only_when_deploy():
    spec = CellSpec("torchvision:resnet18", 1, "cpu", 2, machine="abc")
    assert "form" not in spec.to_dict()
    assert CellSpec("torchvision:resnet18", 1, "cpu", 2, machine="abc", form="train").cell_id == spec.cell_id
    deploy = CellSpec("torchvision:resnet18", 1, "cpu", 2, machine="abc", form="deploy")
    assert deploy.cell_id != spec.cell_id and deploy.to_dict()["form"] == "deploy"
    assert CellSpec.from_dict(deploy.to_dict()) == deploy


def test_unknown_form_is_an_input_error():
    with pytest.raises(InputError, match="unknown form"):
        check_form("fused")
    with pytest.raises(InputError, match="unknown form"):
        dnnbench.profile(nn.Conv2d(3, 3, 1), form="fused")


FACTORY = '''
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(8, 4))
    return m, (torch.randn(1, 3, 16, 16),)
'''


@pytest.fixture
def factory(tmp_path):
    path = tmp_path / "convbn.py"
    path.write_text(textwrap.dedent(FACTORY))
    return f"python:{path}:build"


def test_cli_profile_form_deploy(factory):
    train = json.loads(run_cli("profile", factory, "--format", "json").stdout)
    proc = run_cli("profile", factory, "--form", "deploy", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    deploy = json.loads(proc.stdout)
    assert (train["form"], deploy["form"]) == ("train", "deploy")
    assert deploy["params"] == train["params"] - 16 + 8
    bad = run_cli("profile", factory, "--form", "fused")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "fused" in bad.stderr


def test_cli_bench_form_deploy(factory):
    proc = run_cli("bench", factory, "--form", "deploy", "--batch-sizes", "1", "--in-process",
                   "--max-time-per-cell", "0.5", "--min-samples", "3", "--target-ci", "0.5", "--sensors", "none",
                   "--format", "json")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)["records"]
    assert [r["status"] for r in records] == ["ok"]
    assert records[0]["spec"]["form"] == "deploy"
    static = records[0]["result"]["static"]
    assert static["macs"] == 14 * 14 * 8 * 27 + 8 * 4
    assert static["weight_bytes"] == 4 * (8 * 27 + 8 + 8 * 4 + 4)  # the conv gained a bias, the BatchNorm is gone


def test_pointwise_meta_shortcuts_match_the_real_meta_kernels():
    """The counter's shortcuts for pointwise ops (profiling speed, issue 15) give the kernel's shape and strides."""
    from dnnbench.counting.counter import META_SHORTCUTS

    aten = torch.ops.aten
    m = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    x, x_cl = m(2, 3, 4, 4), m(2, 3, 4, 4).to(memory_format=torch.channels_last)
    cases = [(aten.gelu.default, (x,)), (aten.gelu.default, (x_cl,)), (aten.hardtanh.default, (x, -1.0, 1.0)),
             (aten.add.Tensor, (x, m(2, 3, 4, 4))), (aten.add.Tensor, (x_cl, x_cl.clone())),
             (aten.mul.Tensor, (x, m(3, 1, 1))), (aten.mul.Tensor, (x, m(1, 3, 1, 1))), (aten.mul.Scalar, (x_cl, 0.5)),
             (aten.add.Tensor, (x, m(()))), (aten._softmax.default, (m(2, 5, 7), -1, False)),
             (aten.sub.Tensor, (m(8, 16), m(16)))]
    for op, args in cases:
        ours, theirs = META_SHORTCUTS[op](args, {}), op(*args)
        assert ours is not None, op
        assert (ours.shape, ours.stride(), ours.dtype) == (theirs.shape, theirs.stride(), theirs.dtype), (op, args)
    # layouts whose result is not unambiguous are left to the kernel
    assert META_SHORTCUTS[aten.add.Tensor]((x_cl, m(3, 1, 1)), {}) is None
    assert META_SHORTCUTS[aten.add.Tensor]((x, m(2, 3, 4, 4).to(torch.float64)), {}) is None
    assert META_SHORTCUTS[aten.gelu.default]((m(4, 4).t()[:, :2],), {}) is None
    inplace = m(2, 3)
    assert META_SHORTCUTS[aten.relu_.default]((inplace,), {}) is inplace


# ---- timm's published param table (issue 15) ------------------------------------------------------------
# benchmarks/timm_published_params.py compared all 900 architectures of timm's results-imagenet.csv: the
# table counts the model as built (--form train), re-parameterisable families included; --form deploy is
# what reparameterize_model leaves (and, for RepVGG, mmpretrain's "deploy" column: 8.31 M for A0).

PUBLISHED = Path(__file__).parent / "data" / "timm_published_params.csv"


def _published() -> list[tuple[str, float]]:
    with PUBLISHED.open(newline="") as f:
        return [(r["model"], float(r["param_count"])) for r in csv.DictReader(l for l in f if not l.startswith("#"))]


def _millions(n: int) -> float:
    """As the table writes param_count: millions at 2 decimals, halves to even (3 of 3 halves in the table)."""
    return float((Decimal(n) / 10**6).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


@pytest.mark.parametrize("model,published", _published(), ids=[m for m, _ in _published()])
def test_train_form_params_equal_timms_published_table(model, published):
    pytest.importorskip("timm")
    from dnnbench.sources import load

    lm = load(f"timm:{model}", device="meta")
    train = dnnbench.profile(lm)
    assert _millions(train.params) == published
    deploy = dnnbench.profile(lm, form="deploy")
    plain = model.startswith("resnet18")  # the control: no re-parameterisable module, only BatchNorms to fold
    assert deploy.params < train.params
    if train.params - deploy.params >= 10_000:  # tiny_vit_5m_224 folds 4,928 params: 5.39 M either way
        assert _millions(deploy.params) != published  # folding (and fusing) removes params the table counts
    note = next(n for n in deploy.notes if n.startswith("deploy form"))
    assert f"params {train.params:,} as built (--form train: the figure timm's published results table gives)" in note
    assert note.endswith(f"{deploy.params:,} deployed") or f"{deploy.params:,} deployed;" in note
    assert ("re-parameterised (" in note) != plain


def test_the_default_tag_of_an_architecture_can_have_another_head_than_the_table():
    """tiny_vit_5m_224's default tag is its ImageNet-22k model (21,841 classes): the table's row is the 1k one."""
    pytest.importorskip("timm")
    from dnnbench.sources import load

    default = sum(p.numel() for p in load("timm:tiny_vit_5m_224", device="meta").module.parameters())
    tagged = sum(p.numel() for p in load("timm:tiny_vit_5m_224.dist_in22k_ft_in1k", device="meta").module.parameters())
    assert default - tagged == (21841 - 1000) * (320 + 1)  # the classifier: 320 features and a bias per class


def test_repvgg_deploy_params_equal_the_published_deploy_figures():
    """mmpretrain's RepVGG table gives both forms: A0 9.11 M (train) | 8.31 M (deploy), B0 15.82 | 14.34."""
    pytest.importorskip("timm")
    for name, train_m, deploy_m in (("repvgg_a0", 9.11, 8.31), ("repvgg_b0", 15.82, 14.34)):
        train, deploy = dnnbench.profile(f"timm:{name}"), dnnbench.profile(f"timm:{name}", form="deploy")
        assert (_millions(train.params), _millions(deploy.params)) == (train_m, deploy_m)


def test_all_and_any_are_reductions():
    """aten.all (timm's gemma4_vit_*_enc asserts on it) and aten.any: 0 MACs, one op per input element."""

    class Checks(nn.Module):
        def forward(self, x):
            ok = (x > 0).all(dim=1, keepdim=True) | (x < -5).any(dim=1, keepdim=True)
            return x * ok + (x != 0).all()

    prof = dnnbench.profile(LoadedModel("checks", Checks(), InputSpec.image(3, 4, 4)))
    assert prof.uncounted_ops == {}
    ops = {o.op: o for o in prof.ops}
    assert (ops["aten.all"].count, ops["aten.any"].count) == (2, 1)
    assert ops["aten.all"].macs == ops["aten.any"].macs == 0
    assert ops["aten.all"].other_flops == 2 * 48 and ops["aten.any"].other_flops == 48
