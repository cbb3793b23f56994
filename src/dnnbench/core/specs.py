"""Specs: what is to be measured (never observations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from dnnbench.core.errors import InputError, check_batch_size
from dnnbench.core.records import ReportedAccuracy


@dataclass(frozen=True)
class TensorSpec:
    """One model input without its batch dimension (dim 0 of every input is the batch)."""

    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    # For integer inputs (token ids), real tensors are drawn from [0, high).
    high: int | None = None


@dataclass(frozen=True)
class InputSpec:
    """Positional (``names`` is None) or keyword inputs of a model.

    ``as_list``: the model takes one positional argument, a Python list of the batch's items, each a tensor
    of ``tensors[0].shape`` (torchvision's detection models: ``model([img0, img1])``). The batch size is the
    list's length; ``shapes()`` still reports ``[batch, *item_shape]``.
    """

    tensors: tuple[TensorSpec, ...]
    names: tuple[str, ...] | None = None
    as_list: bool = False

    def __post_init__(self):
        if self.as_list and (len(self.tensors) != 1 or self.names is not None):
            raise ValueError("a list input holds items of one tensor spec, passed positionally")

    @staticmethod
    def image(channels: int, height: int, width: int) -> "InputSpec":
        return InputSpec((TensorSpec((channels, height, width)),))

    @property
    def is_single_image(self) -> bool:
        return len(self.tensors) == 1 and len(self.tensors[0].shape) == 3 and self.tensors[0].dtype.is_floating_point

    @property
    def is_images(self) -> bool:
        """Every input is an image or a clip (float, (C, H, W) or (C, T, H, W)): an image, a list of images,
        a video clip, an image pair (optical flow)."""
        return bool(self.tensors) and all(t.dtype.is_floating_point and len(t.shape) in (3, 4) for t in self.tensors)

    def with_image_size(self, height: int, width: int) -> "InputSpec":
        """The same inputs at ``height`` x ``width`` pixels (every image of a pair, every frame of a clip)."""
        if not self.is_images:
            raise InputError(
                "--input-size applies only to models whose inputs are images or clips",
                "this model takes " + ", ".join(str(list(t.shape)) for t in self.tensors),
                "leave --input-size out; the model's source defines its inputs",
            )
        tensors = tuple(TensorSpec((*t.shape[:-2], height, width), t.dtype, t.high) for t in self.tensors)
        return InputSpec(tensors, self.names, as_list=self.as_list)

    def shapes(self, batch_size: int) -> list[list[int]]:
        return [[batch_size, *t.shape] for t in self.tensors]

    def nbytes(self, batch_size: int) -> int:
        total = 0
        for t in self.tensors:
            n = batch_size
            for s in t.shape:
                n *= s
            total += n * torch.empty((), dtype=t.dtype).element_size()
        return total

    def make(self, batch_size: int, device: str | torch.device = "cpu", generator: torch.Generator | None = None):
        """Build (args, kwargs) for one forward call at ``batch_size``."""
        check_batch_size(batch_size, "batch size")
        tensors = []
        for spec in self.tensors:
            shape = (batch_size, *spec.shape)
            if str(device) == "meta":
                t = torch.empty(shape, dtype=spec.dtype, device="meta")
            elif spec.dtype.is_floating_point:
                t = torch.randn(shape, dtype=spec.dtype, device=device, generator=generator)
            else:
                t = torch.randint(0, spec.high or 2, shape, dtype=spec.dtype, device=device, generator=generator)
            tensors.append(t)
        if self.as_list:
            return (list(tensors[0].unbind(0)),), {}
        if self.names is None:
            return tuple(tensors), {}
        return (), dict(zip(self.names, tensors))

    @staticmethod
    def from_examples(example: Any) -> "InputSpec":
        """Derive a spec from example inputs: a tensor, a tuple/list of tensors, or a dict of tensors.

        ``([img0, img1],)`` -- one positional list of same-shape tensors -- is a list input (``as_list``):
        the list's length is the batch size and each item has no batch dimension.
        """
        if isinstance(example, torch.Tensor):
            example = (example,)
        if (isinstance(example, (tuple, list)) and len(example) == 1 and isinstance(example[0], list)):
            items = example[0]
            if not items or not all(isinstance(v, torch.Tensor) and v.dim() >= 1 for v in items):
                raise InputError("a list input must hold at least one tensor item",
                                 f"got a list of {len(items)} item(s): "
                                 + ", ".join(sorted({type(v).__name__ for v in items}) or ["nothing"]),
                                 "return (model, ([tensor, ...],)) with one tensor per image")
            if len({(tuple(v.shape), v.dtype) for v in items}) != 1:
                raise InputError("the items of a list input differ in shape or dtype",
                                 "got " + ", ".join(sorted({str(list(v.shape)) for v in items})),
                                 "give items of one shape; dnnbench builds batches of copies of it")
            v = items[0]
            return InputSpec((TensorSpec(tuple(v.shape), v.dtype),), as_list=True)
        names = None
        if isinstance(example, dict):
            names = tuple(example.keys())
            values = list(example.values())
        elif isinstance(example, (tuple, list)):
            values = list(example)
        else:
            raise InputError("example inputs must be a tensor, a tuple of tensors or a dict of tensors",
                             f"got {type(example).__name__}", "return (model, (tensor, ...)) from the factory")
        specs = []
        for v in values:
            if not isinstance(v, torch.Tensor) or v.dim() == 0:
                raise InputError("every example input must be a tensor with a batch dimension",
                                 f"got {type(v).__name__}" + (" of 0 dimensions" if isinstance(v, torch.Tensor) else ""),
                                 "give tensors whose dim 0 is the batch")
            high = None
            if not v.dtype.is_floating_point and v.dtype != torch.bool and v.numel() and v.device.type != "meta":
                high = int(v.max().item()) + 1
            specs.append(TensorSpec(tuple(v.shape[1:]), v.dtype, high))
        return InputSpec(tuple(specs), names)


@dataclass
class LoadedModel:
    """A model ready to profile or measure: the module, its inputs and its metadata."""

    ref: str
    module: torch.nn.Module
    inputs: InputSpec
    weights: str | None = None  # weights tag or checkpoint path; None = random weights
    reported: ReportedAccuracy | None = None
    notes: list[str] = field(default_factory=list)
    # For accuracy: the model's own image transform (PIL image -> CHW float tensor) and where it came from,
    # and its class list in output-index order (wnids or folder names); None = not known to the source.
    preprocess: Any = None
    preprocess_source: str | None = None
    class_names: list[str] | None = None
    # What the model does (see TASKS); its published quality figures are per task.
    task: str = "classification"


# Image files dnnbench reads (what PIL decodes): evaluation sets and static int8's calibration folders.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm")

# Vision tasks and the quality metric each publishes (the name torchvision's weights meta uses).
TASKS = {
    "classification": "acc@1",
    "detection": "box_map",
    "instance_segmentation": "mask_map",
    "keypoint_detection": "kp_map",
    "segmentation": "miou",
    "video": "acc@1",
    "optical_flow": "epe",
}
