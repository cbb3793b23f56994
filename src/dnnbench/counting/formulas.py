"""Operator formulas: ATen op -> (MACs, other FLOPs).

Conventions (stated in the README):
- 1 MAC = one multiply-accumulate. Conv, linear (addmm/mm), matmul (bmm), attention and the fused
  attention/transformer kernels count MACs; FLOPs = 2 x MACs is derived by the caller.
- Bias adds, elementwise ops, activations, normalisation, pooling, softmax and reductions are
  ``other_flops``, never mixed into MACs.
- Data movement (views, copies, concatenation, creation of tensors) is zero FLOPs by definition; those
  ops are listed in ``ZERO_COST`` so that the decision is explicit.
- Any op that has no formula here and is not in ``ZERO_COST`` is reported in ``uncounted_ops``.

Formulas take the op's positional args, kwargs and output, all possibly meta tensors; they only read
shapes. ``other_flops`` per element: 1 for arithmetic and activations, 2 for inference batch norm
(scale and shift with folded statistics), 5 for layer/group/instance norm (mean, variance, normalise,
scale, shift), 4 for softmax (max-subtract, exp, sum, divide); pooling costs one op per window element.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any

import torch

Formula = Callable[[tuple, dict, Any], tuple[int, int]]
FORMULAS: dict[str, Formula] = {}


def formula(*names: str):
    """Register a formula for op packets named like ``aten.convolution`` (overload-independent)."""

    def deco(fn: Formula) -> Formula:
        for n in names:
            if n in FORMULAS:
                raise RuntimeError(f"duplicate formula for {n}")
            FORMULAS[n] = fn
        return fn

    return deco


def _numel(t) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _first_tensor(out) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Tensor):
                return o
    return None


# ---- multiply-accumulate ops -------------------------------------------------------------------

@formula("aten.convolution", "aten._convolution", "aten.cudnn_convolution", "aten.mkldnn_convolution",
         "aten.convolution_overrideable", "aten._slow_conv2d_forward", "aten.conv_depthwise2d",
         "aten._mps_convolution", "aten.cudnn_convolution_transpose")
def conv(args, kwargs, out):
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    transposed = bool(args[6]) if len(args) > 6 and isinstance(args[6], bool) else False
    y = _first_tensor(out)
    kernel = prod(w.shape[2:])
    if transposed:
        # weight is [C_in, C_out/groups, *k]; every input element scatters into C_out/groups * k outputs.
        macs = x.numel() * w.shape[1] * kernel
    else:
        # weight is [C_out, C_in/groups, *k]; every output element gathers C_in/groups * k inputs.
        macs = y.numel() * w.shape[1] * kernel
    return macs, (y.numel() if bias is not None else 0)


@formula("aten.mm")
def mm(args, kwargs, out):
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * b.shape[1], 0


@formula("aten.addmm")
def addmm(args, kwargs, out):
    _, a, b = args[0], args[1], args[2]
    return a.shape[0] * a.shape[1] * b.shape[1], a.shape[0] * b.shape[1]


@formula("aten.bmm")
def bmm(args, kwargs, out):
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2], 0


@formula("aten.baddbmm")
def baddbmm(args, kwargs, out):
    a, b = args[1], args[2]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2], _numel(out)


def _attention(q, k, v) -> tuple[int, int]:
    """q [..., L, E], k [..., S, E], v [..., S, Ev]; GQA/broadcast heads handled via the query's batch."""
    batch = prod(q.shape[:-2])
    L, E = q.shape[-2], q.shape[-1]
    S, Ev = k.shape[-2], v.shape[-1]
    macs = batch * L * S * E + batch * L * S * Ev
    # scale + softmax on the L x S score matrix
    return macs, batch * L * S * 5


@formula("aten._scaled_dot_product_flash_attention_for_cpu", "aten._scaled_dot_product_flash_attention",
         "aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_cudnn_attention",
         "aten._scaled_dot_product_fused_attention_overrideable", "aten.scaled_dot_product_attention",
         "aten._scaled_dot_product_attention_math")
def sdpa(args, kwargs, out):
    return _attention(args[0], args[1], args[2])


def _mha_macs(query, key, embed_dim: int, batch_first_bs: int) -> tuple[int, int, int]:
    """In-projection, attention and out-projection MACs of a fused multi-head attention."""
    E = embed_dim
    L = query.shape[-2]
    S = key.shape[-2]
    B = batch_first_bs
    proj = B * L * E * E + 2 * B * S * E * E + B * L * E * E
    attn = 2 * B * L * S * E
    return proj, attn, B * L * S


@formula("aten._native_multi_head_attention")
def native_mha(args, kwargs, out):
    # (query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight, proj_bias, ...)
    query, key, embed_dim = args[0], args[1], int(args[3])
    B = prod(query.shape[:-2]) if query.dim() >= 3 else 1
    proj, attn, scores = _mha_macs(query, key, embed_dim, B)
    L, S = query.shape[-2], key.shape[-2]
    biases = B * L * 3 * embed_dim if key is query else B * (L + 2 * S) * embed_dim
    return proj + attn, biases + B * L * embed_dim + scores * 5


@formula("aten._transformer_encoder_layer_fwd")
def transformer_encoder_layer(args, kwargs, out):
    # (src, embed_dim, num_heads, qkv_w, qkv_b, proj_w, proj_b, use_gelu, norm_first, eps,
    #  norm_w1, norm_b1, norm_w2, norm_b2, ffn_w1, ffn_b1, ffn_w2, ffn_b2, mask, mask_type)
    src, E, ffn_w1 = args[0], int(args[1]), args[14]
    B = prod(src.shape[:-2]) if src.dim() >= 3 else 1
    L = src.shape[-2]
    F = ffn_w1.shape[0]
    proj, attn, scores = _mha_macs(src, src, E, B)
    ffn = 2 * B * L * E * F
    tokens = B * L
    other = tokens * (3 * E + E) + scores * 5 + tokens * (F + E) + tokens * F + 2 * tokens * E * 5 + 2 * tokens * E
    return proj + attn + ffn, other


@formula("aten.mkldnn_rnn_layer")
def mkldnn_lstm_layer(args, kwargs, out):
    # One LSTM layer and direction as CPU inference runs it (the meta path decomposes into the same work):
    # (input, w_ih [4H, I], w_hh [4H, H], b_ih, b_hh, hx, cx, reverse, batch_sizes, mode, hidden_size, ...).
    # Per step and batch item: the two gate products (MACs), their biases (2 x 4H), and 13H elementwise ops
    # (gate sum 4H, sigmoid 3H, tanh 1H, cell update 3H, tanh of the cell 1H, output 1H).
    x, w_ih, w_hh = args[0], args[1], args[2]
    steps = x.numel() // x.shape[-1]
    gates, hidden = w_ih.shape[0], w_hh.shape[1]
    has_bias = isinstance(args[3], torch.Tensor)
    return steps * gates * (w_ih.shape[1] + hidden), steps * ((2 * gates if has_bias else 0) + 13 * hidden)


# ---- quantized kernels (torchvision's quantized_* models: int8 weights in packed parameters) --------

def _quantized_conv(relu: int) -> Formula:
    # (qx, packed_params, output_scale, output_zero_point); the packed weight is [C_out, C_in/groups, *k]
    # (transposed: [C_in, C_out/groups, *k]); the bias adds one op per output element, a fused ReLU one more.
    def count(args, kwargs, out):
        x, packed, y = args[0], args[1], _first_tensor(out)
        w, b = packed.unpack()
        transposed = bool(packed.transpose()) if hasattr(packed, "transpose") else False
        macs = (x.numel() if transposed else y.numel()) * w.shape[1] * prod(w.shape[2:])
        return macs, y.numel() * (int(b is not None) + relu)

    return count


for _name in ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
    formula(f"quantized.{_name}")(_quantized_conv(0))
for _name in ("conv1d_relu", "conv2d_relu", "conv3d_relu", "conv2d_add", "conv2d_add_relu"):
    formula(f"quantized.{_name}")(_quantized_conv(1))


@formula("quantized.linear", "quantized.linear_relu", "quantized.linear_dynamic")
def quantized_linear(args, kwargs, out):
    x, packed = args[0], args[1]
    w, b = packed.unpack()
    rows = x.numel() // x.shape[-1]
    return rows * w.shape[0] * w.shape[1], rows * w.shape[0] * int(b is not None)


# ---- other FLOPs: elementwise, norms, pooling, reductions --------------------------------------

_POINTWISE = """
add sub mul div rsub neg abs relu relu_ gelu gelu_ silu silu_ sigmoid sigmoid_ tanh tanh_ hardswish
hardswish_ hardsigmoid hardsigmoid_ hardtanh hardtanh_ clamp clamp_ clamp_min clamp_min_ clamp_max
clamp_max_ leaky_relu leaky_relu_ elu elu_ mish mish_ softplus exp exp_ log log_ sqrt sqrt_ rsqrt
rsqrt_ pow pow_ erf erf_ reciprocal reciprocal_ add_ sub_ mul_ div_ threshold threshold_ where
maximum minimum square sin cos floor ceil round sign lerp addcmul addcdiv prelu _prelu_kernel
eq ne lt le gt ge logical_not logical_and logical_or bitwise_not bitwise_and bitwise_or bitwise_xor masked_fill
masked_fill_ log2 log10 log1p expm1 exp2 trunc frac fmod remainder atan2 hypot floor_divide
"""
for _name in _POINTWISE.split():
    FORMULAS.setdefault(f"aten.{_name}", lambda args, kwargs, out: (0, _numel(_first_tensor(out))))


# quantized elementwise kernels: one op per output element (requantisation included)
for _name in ("add", "add_relu", "add_scalar", "add_scalar_relu", "mul", "mul_relu", "mul_scalar",
              "mul_scalar_relu", "relu6", "hardswish", "sigmoid", "leaky_relu", "batch_norm2d",
              "batch_norm2d_relu", "batch_norm3d", "layer_norm", "group_norm", "instance_norm", "elu", "celu",
              "threshold", "hardtanh", "gelu", "cat_relu"):
    FORMULAS.setdefault(f"quantized.{_name}", lambda args, kwargs, out: (0, _numel(_first_tensor(out))))
# (de)quantisation: one scale-and-round per element
for _name in ("quantize_per_tensor", "quantize_per_channel", "dequantize", "quantize_per_tensor_dynamic",
              "fake_quantize_per_tensor_affine", "fake_quantize_per_channel_affine"):
    FORMULAS.setdefault(f"aten.{_name}", lambda args, kwargs, out: (0, _numel(_first_tensor(out))))


@formula("aten._softmax", "aten.softmax", "aten._log_softmax", "aten.log_softmax", "aten._safe_softmax")
def softmax(args, kwargs, out):
    return 0, 4 * _numel(_first_tensor(out))


@formula("aten._native_batch_norm_legit_no_training", "aten.native_batch_norm",
         "aten._native_batch_norm_legit", "aten.cudnn_batch_norm", "aten.miopen_batch_norm",
         "aten._batch_norm_with_update", "aten._batch_norm_no_update", "aten.batch_norm")
def batch_norm(args, kwargs, out):
    return 0, 2 * args[0].numel()


@formula("aten.native_layer_norm", "aten.native_group_norm", "aten.layer_norm", "aten.group_norm",
         "aten.instance_norm", "aten._fused_rms_norm", "aten.rms_norm")
def norm(args, kwargs, out):
    return 0, 5 * args[0].numel()


def _window(kernel) -> int:
    if isinstance(kernel, int):
        return kernel * kernel
    k = list(kernel)
    return prod(k) if len(k) > 1 else k[0] * k[0]


@formula("aten.max_pool2d_with_indices", "aten.max_pool2d", "aten.avg_pool2d", "aten.max_pool3d_with_indices",
         "aten.avg_pool3d", "aten.max_pool1d", "aten.avg_pool1d", "aten.mkldnn_max_pool2d",
         "aten.quantized_max_pool2d", "aten.quantized_max_pool1d", "aten.max_pool3d", "aten.max_pool1d_with_indices",
         "quantized.max_pool2d", "quantized.max_pool1d")
def pool(args, kwargs, out):
    return 0, _numel(_first_tensor(out)) * _window(args[1])


@formula("aten._adaptive_avg_pool2d", "aten.adaptive_avg_pool2d", "aten._adaptive_avg_pool3d",
         "aten.adaptive_max_pool2d", "aten.adaptive_avg_pool1d", "aten.adaptive_max_pool1d")
def adaptive_pool(args, kwargs, out):
    return 0, args[0].numel()


@formula("aten.mean", "aten.sum", "aten.amax", "aten.amin", "aten.max", "aten.min", "aten.var", "aten.std",
         "aten.var_mean", "aten.std_mean", "aten.prod", "aten.norm", "aten.linalg_vector_norm", "aten.argmax",
         "aten.argmin", "aten.logsumexp", "aten.cumsum", "aten.all", "aten.any")
def reduction(args, kwargs, out):
    return 0, args[0].numel() if isinstance(args[0], torch.Tensor) else 0


@formula("aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d",
         "aten._upsample_nearest_exact1d", "aten._upsample_nearest_exact2d", "aten._upsample_nearest_exact3d")
def resample_nearest(args, kwargs, out):
    # one index computation per output element, no arithmetic on values
    return 0, _numel(_first_tensor(out))


# Interpolation: a weighted sum of the neighbours each output element reads, one op per tap --
# linear 2, bilinear 4, trilinear 8, bicubic 16 (grid_sample the same per its mode; antialiased modes
# read a scale-dependent window and are counted at the plain mode's taps, a lower bound).
def _taps(n: int) -> Formula:
    return lambda args, kwargs, out: (0, n * _numel(_first_tensor(out)))


formula("aten.upsample_linear1d")(_taps(2))
formula("aten.upsample_bilinear2d", "aten._upsample_bilinear2d_aa")(_taps(4))
formula("aten.upsample_trilinear3d")(_taps(8))
formula("aten.upsample_bicubic2d", "aten._upsample_bicubic2d_aa")(_taps(16))


_GRID_TAPS = {0: 4, 1: 1, 2: 16}  # grid_sample interpolation_mode: bilinear, nearest, bicubic


@formula("aten.grid_sampler_2d", "aten.grid_sampler", "aten.cudnn_grid_sampler")
def grid_sample_2d(args, kwargs, out):
    mode = int(args[2]) if len(args) > 2 and isinstance(args[2], int) else 0
    return 0, _GRID_TAPS.get(mode, 4) * _numel(_first_tensor(out))


@formula("aten.grid_sampler_3d")
def grid_sample_3d(args, kwargs, out):
    mode = int(args[2]) if len(args) > 2 and isinstance(args[2], int) else 0
    return 0, (8 if mode == 0 else 1) * _numel(_first_tensor(out))


# ---- torchvision's detection ops ------------------------------------------------------------------

@formula("torchvision.roi_align", "torchvision._roi_align")
def roi_align(args, kwargs, out):
    # (input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned): every output bin averages
    # sampling_ratio^2 bilinear samples of 4 taps each. An adaptive ratio (<= 0) depends on each box's
    # size; it is counted as one sample per bin, a lower bound.
    ratio = int(args[5]) if len(args) > 5 else int(kwargs.get("sampling_ratio", -1))
    samples = ratio * ratio if ratio > 0 else 1
    return 0, _numel(_first_tensor(out)) * samples * 4


@formula("torchvision.roi_pool", "torchvision.ps_roi_pool", "torchvision.ps_roi_align")
def roi_pool(args, kwargs, out):
    # one op per output bin (the window each bin reads depends on the box: counted as one element)
    return 0, _numel(_first_tensor(out))


@formula("torchvision.nms")
def nms(args, kwargs, out):
    # N boxes: 3 ops per box area, then at most N(N-1)/2 IoU tests of 13 ops each (intersection corners 4,
    # width/height 4, area 1, union and ratio 3, threshold 1). Boxes suppressed early skip their tests:
    # this is the upper bound the kernel can run, as its actual work depends on the boxes' values.
    n = args[0].shape[0]
    return 0, 3 * n + 13 * (n * (n - 1) // 2)


@formula("torchvision.deform_conv2d")
def deform_conv2d(args, kwargs, out):
    # (input, weight, offset, mask, bias, ...): a convolution whose taps are bilinear samples (4 each)
    x, w, y = args[0], args[1], _first_tensor(out)
    kernel = prod(w.shape[2:])
    macs = y.numel() * w.shape[1] * kernel
    return macs, (y.numel() // w.shape[0]) * x.shape[1] * kernel * 4 + y.numel()


# ---- zero-cost ops: data movement and tensor creation (explicitly zero, not "uncounted") ---------

ZERO_COST = frozenset(f"aten.{n}" for n in """
view _unsafe_view reshape expand expand_as permute transpose transpose_ t squeeze squeeze_ unsqueeze
unsqueeze_ flatten unflatten contiguous clone copy copy_ _to_copy to detach detach_ alias slice
slice_scatter select select_scatter narrow split split_with_sizes unbind chunk cat stack concat
index_select gather index index_put index_put_ roll flip pad constant_pad_nd reflection_pad2d
replication_pad2d as_strided as_strided_ movedim view_as empty empty_like empty_strided new_empty
new_empty_strided zeros zeros_like ones ones_like full full_like new_zeros new_ones new_full arange
fill fill_ zero_ lift_fresh lift_fresh_copy scalar_tensor _local_scalar_dense randn rand randn_like
rand_like normal_ uniform_ bernoulli bernoulli_ dropout native_dropout feature_dropout alpha_dropout
masked_select nonzero repeat repeat_interleave tile channel_shuffle pixel_shuffle pixel_unshuffle
_reshape_alias _unsafe_split _unsafe_index diagonal triu tril meshgrid linspace sort topk item
is_same_size _has_compatible_shallow_copy_type set_ resize_ _assert_async sym_size sym_stride
sym_numel sym_storage_offset _assert_tensor_metadata unfold im2col col2im one_hot embedding
_embedding_bag_forward_only _nested_tensor_from_mask _nested_tensor_from_mask_left_aligned
eye unsafe_split unsafe_split_with_sizes unsafe_chunk _unique2 unique_dim unique_consecutive argsort
nonzero_static masked_scatter scatter scatter_ index_copy index_fill index_fill_
_pin_memory
""".split()) | frozenset(f"quantized.{n}" for n in """
cat
""".split())


def lookup(packet_name: str) -> Formula | None:
    return FORMULAS.get(packet_name)
