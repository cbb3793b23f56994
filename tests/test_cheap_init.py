"""cheap_init: weight initialisers tile a fixed random block — same distribution, same buffers, far less work."""

import torch
import torchvision
from torch import nn

from dnnbench.sources.meta_build import cheap_init


def test_initialisers_keep_their_range_mean_and_spread():
    t = torch.empty(300_000)
    with cheap_init():
        t.uniform_(-0.5, 2.0)
        assert -0.5 <= t.min().item() and t.max().item() <= 2.0
        assert abs(t.mean().item() - 0.75) < 0.01
        n = torch.empty(200_000).normal_(3.0, 0.5)
        assert abs(n.mean().item() - 3.0) < 0.01 and abs(n.std().item() - 0.5) < 0.01
        k = torch.empty(256, 128, 3, 3)
        nn.init.kaiming_normal_(k, mode="fan_out", nonlinearity="relu")
    expected_std = (2 / (256 * 9)) ** 0.5
    assert abs(k.std().item() / expected_std - 1) < 0.02
    # the block repeats with a prime period, so consecutive rows differ
    assert not torch.equal(k[0], k[1])


def test_model_weights_match_the_default_distribution_and_buffers_are_untouched():
    torch.manual_seed(0)
    default = torchvision.models.resnet18()
    with cheap_init():
        cheap = torchvision.models.resnet18()
    for (name, p), (_, q) in zip(default.named_parameters(), cheap.named_parameters()):
        assert p.shape == q.shape
        if p.numel() > 1000:
            assert abs(q.std().item() / p.std().item() - 1) < 0.05, name
    assert all(torch.equal(a, b) for a, b in zip(default.buffers(), cheap.buffers()))
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.isfinite(cheap.eval()(x)).all()


def test_outside_the_context_initialisers_draw_as_before():
    torch.manual_seed(1)
    a = torch.empty(1000).normal_()
    with cheap_init():
        torch.empty(10).normal_()
    torch.manual_seed(1)
    b = torch.empty(1000).normal_()
    assert torch.equal(a, b)


def test_non_contiguous_and_integer_tensors_fall_back_to_the_real_op():
    base = torch.zeros(100, 100)
    with cheap_init():
        base.t().uniform_(1.0, 2.0)  # non-contiguous view: the real initialiser fills it
        i = torch.zeros(10, dtype=torch.int64)
        i.random_(0, 5)
    assert base.min().item() >= 1.0
    assert i.max().item() < 5


def test_no_two_randomly_initialised_tensors_are_equal():
    # formats that store equal constants once (OpenVINO IR) would otherwise report a smaller file than a trained
    # model's; only the constant-initialised tensors (BatchNorm's ones and zeros) may repeat
    import hashlib

    import torchvision

    with cheap_init():
        m = torchvision.models.resnet18()
    random = [p for n, p in m.named_parameters() if "bn" not in n and "downsample.1" not in n]
    digests = {hashlib.sha1(p.detach().numpy().tobytes()).hexdigest() for p in random}
    assert len(random) == 22 and len(digests) == 22
