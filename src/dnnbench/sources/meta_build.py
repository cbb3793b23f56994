"""Build a model without allocating or initialising its weights.

First try ``torch.device("meta")`` (everything on meta). Builders that compute with tensors while
constructing (RegNet's width schedule calls ``.tolist()``) fail there; for those, parameters and buffers
are moved to meta as they are registered, so their initialisers run on meta tensors and cost nothing.
That patch is scoped to the build and always undone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode


class _SkipInPlaceOnMeta(TorchDispatchMode):
    """In-place ops on meta tensors (weight initialisers) change nothing; skip their Python meta kernels."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if (func._schema.name.endswith("_") and args and isinstance(args[0], torch.Tensor)
                and args[0].device.type == "meta" and func._schema.returns
                and func._schema.returns[0].alias_info is not None):
            return args[0]
        return func(*args, **(kwargs or {}))


def _meta_registration(build: Callable[[], nn.Module]) -> nn.Module:
    orig_param = nn.Module.register_parameter
    orig_buffer = nn.Module.register_buffer

    def register_parameter(self, name, param):
        orig_param(self, name, param)
        if param is not None and param.device.type != "meta":
            p = self._parameters[name]
            self._parameters[name] = type(p)(p.to("meta"), requires_grad=p.requires_grad)

    def register_buffer(self, name, tensor, persistent=True):
        if tensor is not None and tensor.device.type != "meta":
            tensor = tensor.to("meta")
        orig_buffer(self, name, tensor, persistent)

    nn.Module.register_parameter = register_parameter
    nn.Module.register_buffer = register_buffer
    try:
        return build()
    finally:
        nn.Module.register_parameter = orig_param
        nn.Module.register_buffer = orig_buffer


# Initialisers that only fill values: on a meta tensor they change nothing, yet each runs several ops
# through Python (timm's trunc_normal_: uniform_, erfinv_, mul_, add_, clamp_ under no_grad). Those named
# here return a meta tensor at once; the ones whose fan they compute keep that check, so a shape they reject
# still raises. Initialisers with more checks (orthogonal_, dirac_, eye_, sparse_) are left alone.
_FILL_INITS = {"torch.nn.init": ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_"),
               "timm.layers.weight_init": ("trunc_normal_", "trunc_normal_tf_")}
_FAN_INITS = {"torch.nn.init": ("xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"),
              "timm.layers.weight_init": ("variance_scaling_", "lecun_normal_")}


def _skip_on_meta(orig: Callable, check_fan: bool) -> Callable:
    def init(tensor, *args, **kwargs):
        if isinstance(tensor, torch.Tensor) and tensor.device.type == "meta":
            if check_fan:
                nn.init._calculate_fan_in_and_fan_out(tensor)
            return tensor
        return orig(tensor, *args, **kwargs)

    init.__wrapped__ = orig
    return init


_swaps: dict = {}  # original initialiser -> its meta-skipping twin
_sites: list = []  # (module, attribute name, original) wherever an original is bound
_scanned: set[str] = set()  # modules already searched (timm imports all its models at once: scanned once)


def _find_sites() -> None:
    import sys

    if not _swaps:
        for table, check_fan in ((_FILL_INITS, False), (_FAN_INITS, True)):
            for modname, names in table.items():
                mod = sys.modules.get(modname)
                for name in names:
                    orig = getattr(mod, name, None) if mod is not None else None
                    if orig is not None:
                        _swaps[orig] = _skip_on_meta(orig, check_fan)
    for name, mod in list(sys.modules.items()):
        if name in _scanned or not (name.startswith("timm") or name.startswith("torch.nn")):
            continue
        _scanned.add(name)
        for attr, value in list(getattr(mod, "__dict__", {}).items()):
            try:
                if value in _swaps:
                    _sites.append((mod, attr, value))
            except TypeError:  # unhashable module attributes
                continue


@contextlib.contextmanager
def _initialisers_skipped_on_meta():
    """Swap the initialisers above, wherever a loaded module bound them (``from timm.layers import
    trunc_normal_`` copies the function into each model's module), for ones that skip meta tensors."""
    _find_sites()
    patched = []
    try:
        for mod, attr, orig in _sites:
            if mod.__dict__.get(attr) is orig:
                setattr(mod, attr, _swaps[orig])
                patched.append((mod, attr, orig))
        yield
    finally:
        for mod, attr, orig in reversed(patched):
            setattr(mod, attr, orig)


def build_on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """Run ``build`` so that the resulting module's parameters and buffers live on the meta device."""
    with _initialisers_skipped_on_meta():
        try:
            with torch.device("meta"), _SkipInPlaceOnMeta():
                return build()
        except Exception:
            with _SkipInPlaceOnMeta():
                return _meta_registration(build)


# ---- cheap initialisation for timing ------------------------------------------------------------

_BLOCK = 65521  # a prime: rows of a weight matrix do not line up with the block's period
_blocks: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}


def _block(kind: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (kind, dtype, device)
    if key not in _blocks:
        gen = torch.Generator().manual_seed(0x5EED)
        base = torch.rand(_BLOCK, generator=gen) if kind == "uniform" else torch.randn(_BLOCK, generator=gen)
        _blocks[key] = base.to(device=device, dtype=dtype)
    return _blocks[key]


def _tile(t: torch.Tensor, values: torch.Tensor) -> None:
    flat = t.view(-1)
    n = flat.numel()
    whole = n // _BLOCK
    if whole:
        flat[:whole * _BLOCK].view(whole, _BLOCK).copy_(values.expand(whole, _BLOCK))
    if n - whole * _BLOCK:
        flat[whole * _BLOCK:].copy_(values[:n - whole * _BLOCK])


class _CheapInit(TorchDispatchMode):
    """``uniform_``/``normal_`` fill from a fixed block of random values instead of drawing every value."""

    _fills = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        if name in ("aten::uniform_", "aten::normal_") and args and isinstance(args[0], torch.Tensor):
            t = args[0]
            if (t.device.type != "meta" and t.is_floating_point() and t.is_contiguous()
                    and t.numel() > 0):
                params = list(args[1:]) + [None, None]
                if name == "aten::uniform_":
                    a = kwargs.get("from", params[0] if params[0] is not None else 0.0)
                    b = kwargs.get("to", params[1] if params[1] is not None else 1.0)
                    values = _block("uniform", t.dtype, t.device) * (b - a) + a
                else:
                    mean = kwargs.get("mean", params[0] if params[0] is not None else 0.0)
                    std = kwargs.get("std", params[1] if params[1] is not None else 1.0)
                    values = _block("normal", t.dtype, t.device) * std + mean
                # every tensor starts at another place of the block: tensors of one shape and range must not
                # come out identical (formats that store equal constants once — OpenVINO IR — would shrink)
                offset = (self._fills * 7919) % _BLOCK
                self._fills += 1
                _tile(t, torch.roll(values, offset) if offset else values)
                return t
        return func(*args, **kwargs)


def cheap_init():
    """A context in which weight initialisers (``uniform_``, ``normal_`` and every ``nn.init`` function built
    on them) fill tensors by tiling a fixed block of 65,521 random values drawn once, at the requested
    range or mean and std, instead of drawing each value.

    For timing and memory only: the values keep the initialiser's distribution, so no denormals or
    infinities appear, but the weights repeat with that period (each tensor from another offset, so no two
    tensors are equal). vgg16 builds in about 0.4 s instead of
    2.6 s. Buffers computed while building (indices, running statistics) are untouched.
    """
    return _CheapInit()
