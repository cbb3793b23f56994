"""Dispatch-level counting: sees every ATen op the forward runs, including fused attention paths.

The counter is a ``TorchDispatchMode``: it works on meta tensors (no compute, no memory) and on real
tensors alike. Module attribution uses global module hooks installed only for the duration of the
count and removed in ``finally``; the model is never modified.

Live-tensor accounting for ``activation_peak_bytes``: every tensor an op returns is tracked by its
storage; a storage is live until the last tensor referring to it is garbage collected. Storages of
parameters and buffers are excluded. The model's inputs are counted as live for the whole forward.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from dnnbench.counting.formulas import ZERO_COST, lookup


def _storage_key(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage()._cdata
    except Exception:  # sparse, nested or otherwise storage-less tensors
        return None


def _storage_bytes(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().nbytes()
    except Exception:
        return t.numel() * t.element_size()


def _stat_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _fast_batch_norm(args, kwargs):
    x = args[0]
    if x.dim() < 2:
        raise RuntimeError(f"batch norm expects an input with a channel dimension, got {x.dim()}-D input")
    channels = x.shape[1]
    for what, t in zip(("weight", "bias", "running_mean", "running_var"), args[1:5]):
        if t is not None and t.numel() != channels:
            raise RuntimeError(f"{what} should contain {channels} elements not {t.numel()}")
    stat = torch.empty((channels,), dtype=_stat_dtype(x), device="meta")
    return torch.empty_like(x), stat, torch.empty_like(stat)


def _fast_layer_norm(args, kwargs):
    x, normalized = args[0], list(args[1])
    weight, bias = (list(args[2:4]) + [None, None])[:2]
    if x.dim() < len(normalized) or list(x.shape[x.dim() - len(normalized):]) != normalized:
        raise RuntimeError(f"Given normalized_shape={normalized}, expected input with shape "
                           f"[*, {', '.join(map(str, normalized))}], but got input of size{list(x.shape)}")
    for what, t in (("weight", weight), ("bias", bias)):
        if t is not None and list(t.shape) != normalized:
            raise RuntimeError(f"Expected {what} to be of same shape as normalized_shape, but got {what} of shape "
                               f"{list(t.shape)} and normalized_shape = {normalized}")
    keep = x.dim() - len(normalized)
    stat = torch.empty((*x.shape[:keep], *([1] * len(normalized))), dtype=_stat_dtype(x), device="meta")
    # the kernel's output is laid out like x.contiguous() (a transposed input gave transposed strides before)
    out = torch.empty_like(x) if x.is_contiguous() else torch.empty(x.shape, dtype=x.dtype, device="meta")
    return out, stat, torch.empty_like(stat)


def _fast_addmm(args, kwargs):
    bias, a, b = args[0], args[1], args[2]
    if a.dim() != 2 or b.dim() != 2:
        raise RuntimeError(f"mat1 and mat2 must be matrices, got {a.dim()}-D and {b.dim()}-D tensors")
    if a.shape[1] != b.shape[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({a.shape[0]}x{a.shape[1]} and "
                           f"{b.shape[0]}x{b.shape[1]})")
    out_shape = (a.shape[0], b.shape[1])
    if bias.dim() > 2 or any(s not in (1, o) for s, o in zip(reversed(bias.shape), reversed(out_shape))):
        raise RuntimeError(f"the bias of shape {list(bias.shape)} does not broadcast to the output "
                           f"{list(out_shape)}")
    return torch.empty(out_shape, dtype=a.dtype, device="meta")


# PyTorch's meta kernels for these ops are Python reference decompositions costing ~1-2 ms a call,
# which dominated profiling time; on meta tensors their output metadata is simple enough to produce
# directly (tests compare these against the real meta kernels). Meta tensors hold no data, so a shape
# check is all that tells a model that cannot run from one that can: each shortcut keeps the kernel's
# checks (raising as the real CPU kernel would), or nn.Linear(10, 4) on a (2, 7) input would "count".
META_SHORTCUTS = {
    torch.ops.aten.native_batch_norm.default: _fast_batch_norm,
    torch.ops.aten.native_layer_norm.default: _fast_layer_norm,
    torch.ops.aten.addmm.default: _fast_addmm,
}


# Pointwise ops, whose meta kernels are Python reference decompositions too (gelu 2 ms, add 0.4 ms a call:
# a third of profiling a timm model). Only the layouts whose result is unambiguous are taken -- a dense
# float input (and, for binary ops, an operand of the same dtype that has its layout or is contiguous and
# broadcasts into it); anything else returns None and the real meta kernel runs (tests/test_formulas.py
# compares both on every layout taken).
def _dense(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype.is_floating_point and (
        t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last))


def _fast_unary(args, kwargs):
    x = args[0]
    if not _dense(x) or any(isinstance(a, torch.Tensor) for a in args[1:]):
        return None
    return torch.empty_like(x)


def _non_overlapping(t) -> bool:
    """No two elements share memory (sufficient test: each stride spans the dimensions below it)."""
    span = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz > 1):
        if stride < span:
            return False
        span = stride * size
    return True


def _fast_unary_inplace(args, kwargs):
    # an in-place op returns its input whatever the layout (the LSTM's sigmoid_ on gate chunks: strided
    # views, 0.6 ms each through the reference kernel); only overlapping memory is left to the real kernel
    x = args[0]
    if not (isinstance(x, torch.Tensor) and x.dtype.is_floating_point and (_dense(x) or _non_overlapping(x))) \
            or any(isinstance(a, torch.Tensor) for a in args[1:]):
        return None
    return x


def _row_major(t) -> bool:
    strides = [st for sz, st in zip(t.shape, t.stride()) if sz > 1]
    return all(x > y for x, y in zip(strides, strides[1:])) and _non_overlapping(t)


def _fast_binary(args, kwargs):
    a, b = args[0], args[1]
    if (len(args) == 2 and isinstance(b, torch.Tensor) and b.device.type == "meta" and a.dtype == b.dtype
            and a.dtype.is_floating_point and a.shape == b.shape and _row_major(a) and _row_major(b)):
        # same shape, both laid out in row-major order (strided views, like the LSTM's gate chunks, too):
        # the result is contiguous
        return torch.empty(a.shape, dtype=a.dtype, device="meta")
    if not _dense(a) or len(args) != 2:
        return None
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        return torch.empty_like(a)
    if not isinstance(b, torch.Tensor) or b.dtype != a.dtype:
        return None
    if b.shape == a.shape and b.stride() == a.stride():
        return torch.empty_like(a)
    if (a.is_contiguous() and b.is_contiguous() and b.dim() <= a.dim()
            and all(s in (1, o) for s, o in zip(reversed(b.shape), reversed(a.shape)))):
        return torch.empty(a.shape, dtype=a.dtype, device="meta")
    return None


def _fast_softmax(args, kwargs):
    x = args[0]
    if not (isinstance(x, torch.Tensor) and x.dtype.is_floating_point and x.is_contiguous()) or len(args) > 3 \
            or (len(args) == 3 and args[2]) or not -x.dim() <= args[1] < max(x.dim(), 1):
        return None
    return torch.empty_like(x)


def _pointwise_shortcuts():
    aten = torch.ops.aten
    table = {}
    for name in ("gelu", "silu", "relu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "hardtanh", "elu",
                 "leaky_relu", "neg", "exp", "sqrt", "rsqrt", "erf", "clamp_min", "clamp_max", "mish", "abs"):
        packet = getattr(aten, name, None)
        if packet is not None and "default" in packet.overloads():
            table[packet.default] = _fast_unary
        inplace = getattr(aten, name + "_", None)
        if inplace is not None and "default" in inplace.overloads():
            table[inplace.default] = _fast_unary_inplace
    for name in ("add", "mul", "sub", "div"):
        packet = getattr(aten, name)
        table[packet.Tensor] = _fast_binary
        table[packet.Scalar] = _fast_binary
    table[aten._softmax.default] = _fast_softmax
    if hasattr(aten, "_safe_softmax"):
        table[aten._safe_softmax.default] = _fast_softmax
    return table


META_SHORTCUTS.update(_pointwise_shortcuts())


@dataclass
class _ModuleStats:
    macs: int = 0
    other_flops: int = 0
    output_bytes: int = 0
    calls: int = 0


@dataclass
class _OpStats:
    count: int = 0
    macs: int = 0
    other_flops: int = 0


@dataclass
class CountResult:
    macs: int = 0
    other_flops: int = 0
    activation_peak_bytes: int = 0
    output_bytes: int = 0
    uncounted_ops: dict[str, int] = field(default_factory=dict)
    ops: dict[str, _OpStats] = field(default_factory=dict)
    modules: dict[str, _ModuleStats] = field(default_factory=dict)


class _LiveTensors:
    """Bytes of storages alive right now, and the peak."""

    def __init__(self, excluded: set[int]):
        self.excluded = excluded
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def track(self, t: torch.Tensor) -> None:
        key = _storage_key(t)
        if key is None or key in self.excluded:
            return
        if key not in self.refs:
            self.refs[key] = 0
            size = _storage_bytes(t)
            self.sizes[key] = size
            self.current += size
            if self.current > self.peak:
                self.peak = self.current
        self.refs[key] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        n = self.refs.get(key)
        if n is None:
            return
        if n <= 1:
            del self.refs[key]
            self.current -= self.sizes.pop(key)
        else:
            self.refs[key] = n - 1


_OP_NAMES: dict = {}  # OpOverload -> "aten.conv2d": the formula table's key, computed once per op


# Ops whose arithmetic a counting run with random weights may skip (see OpCounter's ``synthetic``).
SYNTHETIC_OPS = frozenset({
    "aten.convolution", "aten._convolution", "aten.mkldnn_convolution", "aten._slow_conv2d_forward",
    "aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm",
    "aten._scaled_dot_product_flash_attention_for_cpu", "aten._scaled_dot_product_efficient_attention",
})


_PATTERN_LENGTH = 65521  # prime: a pattern this long does not line up with power-of-two shapes


def fill_pseudo_random(t: torch.Tensor, generator: torch.Generator, low: float = -1.0, high: float = 1.0):
    """Fill ``t`` with uniform values cheaply: one drawn block of 65,521 values, tiled (a memory copy)."""
    block = torch.empty(_PATTERN_LENGTH, dtype=t.dtype).uniform_(low, high, generator=generator)
    flat = t.view(-1) if t.is_contiguous() else torch.empty(t.numel(), dtype=t.dtype)
    whole = flat.numel() // _PATTERN_LENGTH
    if whole:
        flat[: whole * _PATTERN_LENGTH].view(whole, _PATTERN_LENGTH).copy_(block.expand(whole, _PATTERN_LENGTH))
    rest = flat.numel() - whole * _PATTERN_LENGTH
    if rest:
        flat[whole * _PATTERN_LENGTH:].copy_(block[:rest])
    if not t.is_contiguous():
        t.copy_(flat.view(t.shape))
    return t


def _as_meta(x):
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta") if isinstance(x, torch.Tensor) else x


class OpCounter(TorchDispatchMode):
    """Count MACs and other FLOPs per op and per module while tracking live tensor bytes.

    ``synthetic`` (a generator): on real tensors, the ops of ``SYNTHETIC_OPS`` are not computed; their
    outputs are pseudo-random values in [-1, 1) at the exact shape and strides their meta kernel gives. Only for
    models whose weights are random anyway: the values data-dependent ops (NMS, thresholds) read are then
    as arbitrary as a real forward's, and the count costs a fraction of one.
    """

    def __init__(self, module_names: dict[int, str], excluded_storages: set[int],
                 synthetic: torch.Generator | None = None):
        super().__init__()
        self._synthetic = synthetic
        self.result = CountResult()
        self._names = module_names
        self._stack: list[str] = [""]
        self._live = _LiveTensors(excluded_storages)
        self._handles: list = []
        self._ops = defaultdict(_OpStats)
        self._modules = defaultdict(_ModuleStats)
        self._uncounted: dict[str, int] = defaultdict(int)

    # -- module attribution ------------------------------------------------------------------
    def _pre(self, module, args):
        name = self._names.get(id(module))
        if name is not None:
            self._stack.append(name)

    def _post(self, module, args, output):
        name = self._names.get(id(module))
        if name is None:
            return
        if self._stack and self._stack[-1] == name:
            self._stack.pop()
        stats = self._modules[name]
        stats.calls += 1
        flat, _ = tree_flatten(output)
        stats.output_bytes += sum(t.numel() * t.element_size() for t in flat if isinstance(t, torch.Tensor))

    def __enter__(self):
        from torch.nn.modules import module as nn_module

        self._handles = [
            nn_module.register_module_forward_pre_hook(self._pre),
            nn_module.register_module_forward_hook(self._post),
        ]
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            for h in self._handles:
                h.remove()
            self._handles = []

    def track_inputs(self, tensors) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._live.track(t)

    # -- the dispatch hook -------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        fast = META_SHORTCUTS.get(func)
        out = None
        if fast is not None and not kwargs and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta":
            out = fast(args, kwargs)  # None: a layout the shortcut does not take
        name = _OP_NAMES.get(func)
        if name is None:
            name = _OP_NAMES[func] = func._overloadpacket._qualified_op_name.replace("::", ".")
        if out is None and self._synthetic is not None and name in SYNTHETIC_OPS:
            out = self._synthesize(func, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        fn = lookup(name)
        stats = self._ops[name]
        stats.count += 1
        if fn is not None:
            macs, other = fn(args, kwargs, out)
            if macs or other:
                stats.macs += macs
                stats.other_flops += other
                mod = self._modules[self._stack[-1]]
                mod.macs += macs
                mod.other_flops += other
        elif name not in ZERO_COST:
            self._uncounted[name] += 1
        if isinstance(out, torch.Tensor):
            self._live.track(out)
        elif isinstance(out, (tuple, list)):
            for o in out:
                if isinstance(o, torch.Tensor):
                    self._live.track(o)
        return out

    def _synthesize(self, func, args, kwargs):
        from torch.utils._pytree import tree_map

        if "out" in kwargs or not (isinstance(args[0], torch.Tensor) and args[0].device.type == "cpu"):
            return None
        shaped = func(*tree_map(_as_meta, args), **tree_map(_as_meta, kwargs))

        def real(t):
            if not isinstance(t, torch.Tensor):
                return t
            r = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")
            return fill_pseudo_random(r, self._synthetic) if r.is_floating_point() else r.zero_()

        return tree_map(real, shaped)

    def finish(self, output) -> CountResult:
        r = self.result
        r.ops = dict(self._ops)
        r.modules = dict(self._modules)
        r.uncounted_ops = dict(sorted(self._uncounted.items()))
        r.macs = sum(s.macs for s in r.ops.values())
        r.other_flops = sum(s.other_flops for s in r.ops.values())
        r.activation_peak_bytes = self._live.peak
        flat, _ = tree_flatten(output)
        r.output_bytes = sum(t.numel() * t.element_size() for t in flat if isinstance(t, torch.Tensor))
        return r
