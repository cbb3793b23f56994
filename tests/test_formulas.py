"""Operator formulas on tiny modules with hand-computed answers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnnbench.core.specs import InputSpec, LoadedModel, TensorSpec
from dnnbench.counting.profile import profile_model


def count(module, *shapes, mode="meta", batch=1):
    spec = InputSpec(tuple(TensorSpec(tuple(s)) for s in shapes))
    return profile_model(LoadedModel("t", module, spec), batch, mode=mode)


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


@pytest.mark.parametrize("module, shape, macs, other", [
    # out 8x8x8 = 512 elements, each 3 in-channels x 3x3 kernel; bias adds 512
    (nn.Conv2d(3, 8, 3, padding=1), (3, 8, 8), 512 * 3 * 9, 512),
    # grouped: out 16x6x6 = 576, each gathers 8/4 channels x 9
    (nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False), (8, 6, 6), 576 * 2 * 9, 0),
    # depthwise: out 8x10x10, one channel x 9 each
    (nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), (8, 10, 10), 800 * 9, 0),
    # strided: (9-3)//2+1 = 4 -> out 4x4x4 = 64
    (nn.Conv2d(3, 4, 3, stride=2, bias=False), (3, 9, 9), 64 * 3 * 9, 0),
    # dilated: effective kernel 5 -> out 2x5x5 = 50
    (nn.Conv2d(2, 2, 3, dilation=2, bias=False), (2, 9, 9), 50 * 2 * 9, 0),
    # transposed: every input element (4x3x3 = 36) scatters into 2 channels x 2x2; bias on 2x6x6 = 72
    (nn.ConvTranspose2d(4, 2, 2, stride=2), (4, 3, 3), 36 * 2 * 4, 72),
    # 1-d conv: out 4 x 8, each 2 x 3
    (nn.Conv1d(2, 4, 3, padding=1, bias=False), (2, 8), 32 * 2 * 3, 0),
    # linear: 10 x 6 MACs per row, bias 6 per row
    (nn.Linear(10, 6), (10,), 60, 6),
    # linear on a sequence: 5 tokens x 10 x 6
    (nn.Linear(10, 6, bias=False), (5, 10), 300, 0),
    (nn.MaxPool2d(2), (4, 8, 8), 0, 64 * 4),
    (nn.AvgPool2d(3, stride=1), (1, 5, 5), 0, 9 * 9),
    (nn.AdaptiveAvgPool2d(1), (4, 3, 3), 0, 36),
    (nn.BatchNorm2d(4).eval(), (4, 3, 3), 0, 2 * 36),
    (nn.LayerNorm(8), (3, 8), 0, 5 * 24),
    (nn.GroupNorm(2, 4), (4, 2, 2), 0, 5 * 16),
    (nn.ReLU(), (10,), 0, 10),
    (nn.Softmax(dim=-1), (3, 7), 0, 4 * 21),
])
@pytest.mark.parametrize("mode", ["meta", "real"])
def test_single_op_formulas(module, shape, macs, other, mode):
    p = count(module, shape, mode=mode)
    assert p.macs == macs
    assert p.flops == 2 * macs
    assert p.other_flops == other
    assert p.uncounted_ops == {}


def test_matmul_and_bmm():
    # [2,4,5] @ [2,5,3]: 2 x 4 x 3 outputs, 5 MACs each
    p = count(Fn(torch.matmul), (4, 5), (5, 3), batch=2)
    assert p.macs == 2 * 4 * 5 * 3
    p = count(Fn(torch.bmm), (4, 5), (5, 3), batch=2)
    assert p.macs == 2 * 4 * 5 * 3
    # 2-d mm through matmul
    p = count(Fn(lambda a: a @ torch.ones(7, 2, device=a.device)), (7,), batch=3)
    assert p.macs == 3 * 7 * 2


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_functional_attention(mode):
    # q [1,2,4,8], k/v [1,2,6,8]: QK^T 2 heads x 4 x 6 x 8 + AV 2 x 4 x 6 x 8
    p = count(Fn(F.scaled_dot_product_attention), (2, 4, 8), (2, 6, 8), (2, 6, 8), mode=mode)
    assert p.macs == 2 * (2 * 4 * 6 * 8)
    assert p.uncounted_ops == {}


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_multihead_attention_module_including_fused_fast_path(mode):
    # eval + no_grad on real CPU tensors takes torch._native_multi_head_attention (the fast path);
    # meta tensors take the decomposed path. Both must give: in-proj 5x8x24, scores+AV 2x5x5x8, out 5x8x8.
    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    p = count(SelfAttention(), (5, 8), mode=mode)
    assert p.macs == 5 * 8 * 24 + 2 * 5 * 5 * 8 + 5 * 8 * 8
    if mode == "real":
        assert any(o.op == "aten._native_multi_head_attention" for o in p.ops)


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_transformer_encoder_layer_fused_path(mode):
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True).eval()
    p = count(layer, (5, 8), mode=mode, batch=2)
    per_token = 8 * 24 + 8 * 8 + 2 * 8 * 16
    assert p.macs == 2 * (5 * per_token + 2 * 5 * 5 * 8)
    if mode == "real":
        assert any(o.op == "aten._transformer_encoder_layer_fwd" for o in p.ops)


def test_unknown_op_is_reported_not_zero():
    p = count(Fn(lambda x: torch.fft.fft(x).real), (8,))
    assert p.uncounted_ops, "an op without a formula must be listed"
    assert all(v >= 1 for v in p.uncounted_ops.values())


def test_activation_peak_hand_computed():
    # batch 4: input 4x10 floats = 160 B; linear1 out 320 B; relu out 320 B (input and linear1 out
    # still alive) -> 800 B peak; linear1 out dies before linear2 (80 B) -> 560 B.
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    p = count(model, (10,), batch=4)
    assert p.activation_peak_bytes == 800
    assert p.input_bytes == 160 and p.output_bytes == 80
    # in-place ReLU writes into linear1's output: no new storage
    p = count(nn.Sequential(nn.Linear(10, 20), nn.ReLU(inplace=True), nn.Linear(20, 5)), (10,), batch=4)
    assert p.activation_peak_bytes == 160 + 320 + 80


def test_layer_rows_attribute_work_and_params():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 2))
    p = count(model, (3, 5, 5))
    rows = {r.name: r for r in p.layers}
    assert rows["0"].macs == 100 * 27 and rows["0"].params == 4 * 27 + 4
    assert rows["0"].output_bytes == 100 * 4
    assert rows["3"].macs == 100 * 2 and rows["3"].params == 202
    assert rows["1"].other_flops == 100
    assert sum(r.params for r in p.layers) == p.params
    assert sum(r.macs for r in p.layers) == p.macs


def test_meta_shortcuts_match_the_real_meta_kernels():
    from dnnbench.counting.counter import META_SHORTCUTS

    aten = torch.ops.aten
    m = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    x_cl = m(2, 3, 4, 4).to(memory_format=torch.channels_last)
    cases = [
        (aten.native_batch_norm.default, (x_cl, m(3), m(3), m(3), m(3), False, 0.1, 1e-5)),
        (aten.native_batch_norm.default, (m(2, 3, 5), m(3), m(3), m(3), m(3), False, 0.1, 1e-5)),
        (aten.native_layer_norm.default, (m(2, 5, 8), [8], m(8), m(8), 1e-5)),
        (aten.native_layer_norm.default, (m(2, 5, 4, 8), [4, 8], None, None, 1e-5)),
        (aten.addmm.default, (m(16), m(5, 8), m(16, 8).t())),
    ]
    for op, args in cases:
        ours, theirs = META_SHORTCUTS[op](args, {}), op(*args)
        ours = ours if isinstance(ours, tuple) else (ours,)
        theirs = theirs if isinstance(theirs, tuple) else (theirs,)
        for a, b in zip(ours, theirs):
            assert (a.shape, a.stride(), a.dtype, a.device) == (b.shape, b.stride(), b.dtype, b.device), op


def test_meta_shortcuts_on_strided_views_match_the_real_meta_kernels():
    # the LSTM's gates are chunks of one (batch, 4 x hidden) matrix: strided views, which the in-place
    # and same-shape binary shortcuts take; every layout they take must give the real kernel's strides
    from dnnbench.counting.counter import META_SHORTCUTS

    aten = torch.ops.aten
    base = torch.empty(6, 4, 20, device="meta")
    views = [*base.chunk(4, dim=2), base[:, 1:3], base[::2], base.transpose(0, 1), base[:, :1, ::3],
             torch.empty(6, 1, device="meta").expand(6, 5), torch.empty(6, 4, 5, device="meta")]
    taken = 0
    for x in views:
        for op in (aten.sigmoid_.default, aten.tanh_.default):
            ours = META_SHORTCUTS[op]((x,), {})
            if ours is not None:
                taken += 1
                assert ours is x and op(x) is x
        for y in views:
            if y.shape != x.shape:
                continue
            for op in (aten.mul.Tensor, aten.add.Tensor):
                ours = META_SHORTCUTS[op]((x, y), {})
                if ours is not None:
                    taken += 1
                    theirs = op(x, y)
                    assert (ours.shape, ours.stride(), ours.dtype) == (theirs.shape, theirs.stride(), theirs.dtype)
    assert taken >= 20  # the chunks are taken, not left to the reference kernels
    expanded = views[-2]  # overlapping memory: left to the real kernel
    assert META_SHORTCUTS[aten.sigmoid_.default]((expanded,), {}) is None


@pytest.mark.parametrize("fn, shape, other", [
    # 1x4x4 -> 1x8x8 = 64 outputs: nearest reads 1 tap, bilinear 4, bicubic 16
    (lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), (1, 4, 4), 64),
    (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), (1, 4, 4), 4 * 64),
    (lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"), (1, 4, 4), 16 * 64),
    # 2 channels x 5 -> 2 x 10 = 20 outputs, 2 taps each; trilinear 1x2x2x2 -> 1x4x4x4 = 64, 8 taps
    (lambda x: F.interpolate(x, scale_factor=2, mode="linear"), (2, 5), 2 * 20),
    (lambda x: F.interpolate(x, scale_factor=2, mode="trilinear"), (1, 2, 2, 2), 8 * 64),
    # grid_sample onto a 3x3 grid of 2 channels: 18 outputs, bilinear 4 taps, nearest 1
    (lambda x: F.grid_sample(x, torch.zeros(1, 3, 3, 2, device=x.device), align_corners=False), (2, 4, 4), 4 * 18),
    (lambda x: F.grid_sample(x, torch.zeros(1, 3, 3, 2, device=x.device), mode="nearest", align_corners=False),
     (2, 4, 4), 18),
    # creation and splitting are data movement: zero, and counted as zero (not "uncounted")
    (lambda x: x + torch.eye(4, device=x.device), (4, 4), 16),
])
@pytest.mark.parametrize("mode", ["meta", "real"])
def test_resampling_and_creation_ops(fn, shape, other, mode):
    p = count(Fn(fn), shape, mode=mode)
    assert (p.macs, p.other_flops, p.uncounted_ops) == (0, other, {})


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_lstm_counts_the_same_on_meta_and_on_the_cpu_kernel(mode):
    # meta decomposes the LSTM (addmm, unsafe_split, sigmoid...); real CPU runs aten.mkldnn_rnn_layer.
    # 2 layers x 2 directions, hidden 8 (4 gates: 32 rows): per step and item, layer 1 reads 4 + 8 inputs,
    # layer 2 reads 16 + 8: 2 x 32 x (12 + 24) = 2304 MACs; 5 steps x batch 2. Other: per layer and
    # direction, 2 biases x 32 + 13 x 8 elementwise = 168.
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0]

    p = count(Seq(), (5, 4), mode=mode, batch=2)
    assert (p.macs, p.other_flops, p.uncounted_ops) == (10 * 2304, 10 * 4 * 168, {})


def test_detection_ops_roi_align_and_nms():
    from torchvision.ops import nms, roi_align

    boxes = torch.tensor([[0, 0, 0, 4, 4], [0, 2, 2, 6, 6], [0, 1, 1, 7, 7]], dtype=torch.float)
    # 3 boxes x 2 channels x 2x2 bins = 24 outputs, each 2x2 samples of 4 bilinear taps
    p = count(Fn(lambda x: roi_align(x, boxes, output_size=2, sampling_ratio=2)), (2, 8, 8), mode="real")
    assert (p.macs, p.other_flops, p.uncounted_ops) == (0, 24 * 4 * 4, {})
    # 5 boxes: 3 ops per area, then at most 5 x 4 / 2 = 10 IoU tests of 13 ops
    scores = torch.rand(5)
    p = count(Fn(lambda b: nms(b[0], scores, 0.5).float().sum()), (5, 4), mode="real")
    assert p.ops and p.uncounted_ops == {}
    assert next(o for o in p.ops if o.op == "torchvision.nms").other_flops == 3 * 5 + 13 * 10


def test_quantized_conv_and_linear_count_like_float_and_their_packed_weights_are_params():
    qnn = torch.ao.nn.quantized

    class Q(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = qnn.Conv2d(3, 4, 3, padding=1)
            self.fc = qnn.Linear(4 * 5 * 5, 6)

        def forward(self, x):
            q = torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)
            return self.fc(self.conv(q).flatten(1)).dequantize()

    p = count(Q(), (3, 5, 5), mode="real")
    # conv: 4x5x5 = 100 outputs x 3 x 9; linear 100 x 6. Other: quantize 75, conv bias 100, fc bias 6,
    # dequantize 6
    assert (p.macs, p.other_flops, p.uncounted_ops) == (2700 + 600, 75 + 100 + 6 + 6, {})
    assert p.params == (4 * 27 + 4) + (600 + 6)  # int8 weights and float biases, each counted once
    assert p.trainable_params == 0 and p.dtype == "qint8"
    assert p.weight_bytes == 4 * 27 + 4 * 4 + 600 + 6 * 4


def test_a_meta_failure_falls_back_whatever_it_raises():
    class MetaHater(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            if x.device.type == "meta":
                raise ValueError("this model checks something no meta tensor can answer")
            return self.fc(x)

    p = count(MetaHater(), (4,), mode="auto")
    assert p.mode == "real" and p.macs == 8
    assert any("cannot run on meta tensors (this model checks" in n for n in p.notes)


def test_a_model_that_fails_on_real_tensors_too_names_the_real_error():
    from dnnbench.core.errors import InputError

    class Broken(nn.Module):
        def forward(self, x):
            if x.device.type == "meta":
                raise NotImplementedError("no meta kernel")
            raise KeyError("the real cause")

    with pytest.raises(InputError, match="failed in its forward.*KeyError: 'the real cause'") as err:
        count(Broken(), (4,), mode="auto")
    assert "--input-size" not in str(err.value)  # not the input's fault


def test_a_meta_built_model_with_data_dependent_ops_counts_on_synthetic_values():
    from dnnbench.sources.meta_build import build_on_meta

    class Picky(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            y = self.conv(x)
            pooled = y.flatten(2).mean(-1)
            keep = torch.nonzero(pooled[0] > -10).flatten()  # data-dependent; all kept for values in [-1, 1)
            return self.fc(pooled[:, keep])

    model = build_on_meta(Picky)
    p = count(model, (3, 6, 6), mode="auto")
    assert p.mode == "real"
    # conv 4x6x6 x 27 and fc 4 x 2: shapes are exact whatever the values
    assert p.macs == 144 * 27 + 8
    assert any("random values of the exact shape" in n for n in p.notes)
    assert any("data-dependent ops ran" in n and "aten.nonzero" in n for n in p.notes)
    assert all(t.device.type == "meta" for t in model.parameters())  # the model itself stays on meta


@pytest.mark.slow
def test_a_timm_lstm_model_has_nothing_uncounted():
    pytest.importorskip("timm")
    from dnnbench.sources import load

    # Sequencer's BiLSTM2d: LSTMs over rows and columns (unsafe_split, addmm, sigmoid/tanh on meta)
    lm = load("timm:sequencer2d_s", device="meta")
    p = profile_model(lm, 1)
    assert p.mode == "meta" and p.uncounted_ops == {}
    # on CPU tensors the LSTMs run as aten.mkldnn_rnn_layer: the same count by another path
    real = profile_model(lm, 1, mode="real")
    assert real.uncounted_ops == {} and any(o.op == "aten.mkldnn_rnn_layer" and o.macs for o in real.ops)
    assert (real.macs, real.other_flops) == (p.macs, p.other_flops)
