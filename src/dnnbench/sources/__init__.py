"""Where models come from: torchvision, timm, Python factories, ONNX files; and the built-in model sets."""

from __future__ import annotations

from dnnbench.core.errors import InputError
from dnnbench.core.refs import ModelRef, parse_ref
from dnnbench.core.registry import Registry
from dnnbench.core.specs import LoadedModel
from dnnbench.sources import onnx_models, python_factory, timm_models, torchvision_models

LOADERS: Registry = Registry("model source")
LOADERS.register("torchvision")(torchvision_models.load)
LOADERS.register("timm")(timm_models.load)
LOADERS.register("python")(python_factory.load)
LOADERS.register("onnx")(onnx_models.load)

DEVICES = ("cpu", "meta", "cuda")


def load(ref: str | ModelRef, device: str = "cpu", weights: str | None = None, download: bool = False) -> LoadedModel:
    """Build the model a reference names. ``device="meta"`` builds without memory when the source allows."""
    if isinstance(ref, str):
        ref = parse_ref(ref)
    if device not in DEVICES and not device.startswith("cuda:"):
        raise InputError(f"unknown device {device!r}", f"known devices are {', '.join(DEVICES)}", "use --device cpu")
    return LOADERS.get(ref.source)(ref, device=device, weights=weights, download=download)
