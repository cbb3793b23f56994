"""Build a model without allocating or initialising its weights.

First try ``torch.device("meta")`` (everything on meta). Builders that compute with tensors while
constructing (RegNet's width schedule calls ``.tolist()``) fail there; for those, parameters and buffers
are moved to meta as they are registered, so their initialisers run on meta tensors and cost nothing.
That patch is scoped to the build and always undone.
"""

from __future__ import annotations

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


def build_on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """Run ``build`` so that the resulting module's parameters and buffers live on the meta device."""
    try:
        with torch.device("meta"), _SkipInPlaceOnMeta():
            return build()
    except Exception:
        with _SkipInPlaceOnMeta():
            return _meta_registration(build)
