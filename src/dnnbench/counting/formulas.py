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


# ---- other FLOPs: elementwise, norms, pooling, reductions --------------------------------------

_POINTWISE = """
add sub mul div rsub neg abs relu relu_ gelu gelu_ silu silu_ sigmoid sigmoid_ tanh tanh_ hardswish
hardswish_ hardsigmoid hardsigmoid_ hardtanh hardtanh_ clamp clamp_ clamp_min clamp_min_ clamp_max
clamp_max_ leaky_relu leaky_relu_ elu elu_ mish mish_ softplus exp exp_ log log_ sqrt sqrt_ rsqrt
rsqrt_ pow pow_ erf erf_ reciprocal reciprocal_ add_ sub_ mul_ div_ threshold threshold_ where
maximum minimum square sin cos floor ceil round sign lerp addcmul addcdiv prelu _prelu_kernel
eq ne lt le gt ge logical_not logical_and logical_or bitwise_not masked_fill masked_fill_
"""
for _name in _POINTWISE.split():
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
         "aten.avg_pool3d", "aten.max_pool1d", "aten.avg_pool1d", "aten.mkldnn_max_pool2d")
def pool(args, kwargs, out):
    return 0, _numel(_first_tensor(out)) * _window(args[1])


@formula("aten._adaptive_avg_pool2d", "aten.adaptive_avg_pool2d", "aten._adaptive_avg_pool3d",
         "aten.adaptive_max_pool2d", "aten.adaptive_avg_pool1d", "aten.adaptive_max_pool1d")
def adaptive_pool(args, kwargs, out):
    return 0, args[0].numel()


@formula("aten.mean", "aten.sum", "aten.amax", "aten.amin", "aten.max", "aten.min", "aten.var", "aten.std",
         "aten.var_mean", "aten.std_mean", "aten.prod", "aten.norm", "aten.linalg_vector_norm", "aten.argmax",
         "aten.argmin", "aten.logsumexp", "aten.cumsum")
def reduction(args, kwargs, out):
    return 0, args[0].numel() if isinstance(args[0], torch.Tensor) else 0


@formula("aten.upsample_bilinear2d", "aten.upsample_nearest2d", "aten._upsample_bilinear2d_aa",
         "aten.upsample_bicubic2d", "aten.grid_sampler_2d")
def resample(args, kwargs, out):
    return 0, _numel(_first_tensor(out))


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
""".split())


def lookup(packet_name: str) -> Formula | None:
    return FORMULAS.get(packet_name)
