"""torchvision models of every task, built with random weights unless weights are asked for.

Every model of ``torchvision.models.list_models()`` -- classification, detection (boxes, masks, keypoints),
semantic segmentation, video classification, optical flow and the int8 quantized classifiers (named
``quantized_resnet18`` etc., as torchvision registers them) -- is built the way torchvision's own builder
builds it *for its weights*: the builder is called with the weights entry, and only the download is
intercepted (the weights' state dict is read from the local cache, or nothing is loaded for random weights).
So the architecture is always the one the weights were trained with: ViT-H/14's SWAG weights need
``image_size=518``, detectors get frozen batch norm and num_classes from the categories, quantized models
are fused, calibrated and converted for the engine their weights were quantized for. Then the auxiliary heads
an inference does not use are removed (Inception-v3's AuxLogits, the segmentation models'
``aux_classifier``; GoogLeNet's are removed by torchvision itself).

Inputs are those torchvision's published ``_ops``/``num_params`` were computed with (pytorch/vision#6936):
classifiers one image at the weights' crop size; detectors a list of square images, which their own
transform resizes (to 800 x 800 for the R-CNNs, RetinaNet and FCOS, 320 x 320 for the MobileNet-320 and
SSDlite models, 300 x 300 for SSD300); segmentation one image at the transform's resize size (520 x 520);
video a clip of 16 frames at the crop size; optical flow a pair of 512 x 512 images.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import sys
import warnings
from urllib.parse import urlparse

import torch

from dnnbench.core.errors import ModelBuildError, UnavailableError, UnknownModelError
from dnnbench.core.records import ReportedAccuracy
from dnnbench.core.refs import ModelRef
from dnnbench.core.specs import TASKS, InputSpec, LoadedModel, TensorSpec
from dnnbench.sources.checkpoints import _why_unreadable, is_path, load_checkpoint
from dnnbench.sources.meta_build import build_on_meta, cheap_init

# Model groups, each a torchvision.models sub-module; a group is also a built-in set of the same name.
GROUPS = {
    "classification": "",
    "detection": "detection",
    "segmentation": "segmentation",
    "video": "video",
    "optical_flow": "optical_flow",
    "quantized": "quantization",
}
# torchvision's figures for video models count one clip of 16 frames (every published _ops matches at 16,
# also S3D's, whose weights accept 14); optical flow figures count one pair of 512 x 512 images (raft_small
# 47.655 and raft_large 211.007 GMACs, exactly).
VIDEO_FRAMES = 16
FLOW_SIZE = (512, 512)
AUX_HEADS = ("AuxLogits", "aux1", "aux2", "aux_classifier")  # heads a forward at inference leaves unused
# what a task's headline metric is called in a listing (torchvision's meta names in core.specs.TASKS)
METRIC_LABELS = {"acc@1": "top-1", "box_map": "box mAP", "mask_map": "mask mAP", "kp_map": "keypoint mAP",
                 "miou": "mIoU", "pixel_acc": "pixel acc.", "epe": "EPE (px)", "per_image_epe": "per-image EPE (px)",
                 "fl_all": "Fl-all", "acc@5": "top-5"}
UNITLESS_METRICS = ("epe", "per_image_epe")  # published in pixels; every other metric is a percentage


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, tuple[str, str]]:
    """Every torchvision model: name -> (group, task), in groups' order then torchvision's."""
    import importlib

    import torchvision.models as tvm

    out: dict[str, tuple[str, str]] = {}
    for group, sub in GROUPS.items():
        module = importlib.import_module(f"torchvision.models.{sub}") if sub else tvm
        for name in tvm.list_models(module=module):
            out[name] = (group, _task(group, tvm.get_model_builder(name).__module__))
    return out


def _task(group: str, builder_module: str) -> str:
    if group == "detection":
        leaf = builder_module.rsplit(".", 1)[-1]
        return {"mask_rcnn": "instance_segmentation", "keypoint_rcnn": "keypoint_detection"}.get(leaf, "detection")
    return {"quantized": "classification"}.get(group, group)


def models(group: str | None = None, task: str | None = None) -> tuple[str, ...]:
    """Names of the models of one group (see GROUPS) and/or one task (see core.specs.TASKS); all by default."""
    return tuple(n for n, (g, t) in catalogue().items() if group in (None, g) and task in (None, t))


def classification_models() -> tuple[str, ...]:
    """The float ImageNet classifiers (torchvision.models itself)."""
    return models("classification")


def group_of(name: str) -> str:
    return catalogue()[name][0]


def task_of(name: str) -> str:
    return catalogue()[name][1]


def _weights_enum(name: str):
    import torchvision.models as tvm

    return tvm.get_model_weights(name)


def resolve_weights(name: str, tag: str | None):
    """The weights entry a reference names: its tag, or the builder's DEFAULT."""
    enum = _weights_enum(name)
    if tag is None:
        return enum.DEFAULT
    try:
        return enum[tag]
    except KeyError:
        tags = [w.name for w in enum]
        close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.3)
        raise UnknownModelError(
            f"torchvision model {name} has no weights {tag!r}",
            "known weights: " + ", ".join(tags),
            f"use torchvision:{name}.{(close or tags)[0]}",
        ) from None


def check_name(name: str) -> None:
    known = catalogue()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "run `dnnbench models` to list them"
        raise UnknownModelError(
            f"unknown torchvision model {name!r}",
            f"it is not one of torchvision's {len(known)} models (classification, detection, segmentation, "
            "video, optical flow, quantized)",
            hint,
        )


# ---- building: torchvision's own builder, for its weights, without the download --------------------------

class _NoState(dict):
    """What the intercepted ``get_state_dict`` returns when nothing is to be loaded (random weights)."""


@contextlib.contextmanager
def _intercepted_weights(state: dict | None):
    """Within: ``WeightsEnum.get_state_dict`` returns ``state`` (read from the local cache) instead of
    downloading, or, for ``state=None``, an empty marker that ``load_state_dict`` then skips. Always undone."""
    from torch import nn
    from torchvision.models._api import WeightsEnum

    orig_get, orig_load = WeightsEnum.get_state_dict, nn.Module.load_state_dict

    def get_state_dict(self, *args, **kwargs):
        return _NoState() if state is None else dict(state)

    def load_state_dict(self, state_dict, *args, **kwargs):
        if isinstance(state_dict, _NoState):
            return nn.modules.module._IncompatibleKeys([], [])
        return orig_load(self, state_dict, *args, **kwargs)

    WeightsEnum.get_state_dict, nn.Module.load_state_dict = get_state_dict, load_state_dict
    try:
        yield
    finally:
        WeightsEnum.get_state_dict, nn.Module.load_state_dict = orig_get, orig_load


@contextlib.contextmanager
def _small_calibration(builder, entry):
    """torchvision's ``quantize_model`` calibrates the observers on one random 299 x 299 image, which costs
    seconds (28 s for ResNeXt-101 64x4d on a busy 2-core machine) and decides nothing: the scales of random
    weights mean nothing, and real weights bring their own. Calibrate on the smallest image the model takes
    (at least 64 x 64) instead; everything else is torchvision's own code."""
    module = sys.modules[builder.__module__]
    orig = getattr(module, "quantize_model", None)
    if orig is None:
        yield
        return
    side = max(64, *entry.meta.get("min_size", (1, 1)))

    def quantize_model(model, backend):
        from torch.utils._python_dispatch import _disable_current_modes

        handle = model.register_forward_pre_hook(lambda m, args: (torch.rand(1, 3, side, side),))
        try:
            # outside any dispatch mode (cheap_init's): fusing, calibrating and converting are not initialisers
            with _disable_current_modes():
                orig(model, backend)
        finally:
            handle.remove()

    module.quantize_model = quantize_model
    try:
        yield
    finally:
        module.quantize_model = orig


def _check_quantized_engine(name: str, entry) -> str:
    backend = entry.meta["backend"]
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if backend not in engines:
        raise UnavailableError(
            f"torchvision:{name} cannot be built here",
            f"its weights are quantized for the {backend} engine; this torch build supports "
            + (", ".join(engines) or "no quantized engine"),
            f"use the float model torchvision:{name.removeprefix('quantized_')}, or a torch build with {backend}")
    return backend


def build(name: str, entry, device: str = "meta", state: dict | None = None, inference: bool = True):
    """torchvision's builder for ``entry``'s architecture on ``device``; ``state`` is loaded by the builder.

    ``inference=False`` returns the builder's model as it is, with the auxiliary heads torchvision keeps with
    weights (and counts in ``num_params``/``_ops``); the default removes them, as a deployment does.
    Returns (module, notes).
    Quantized models are always built on CPU (torch has no quantized meta tensors).
    """
    import torchvision.models as tvm

    builder = tvm.get_model_builder(name)
    kwargs = {"quantize": True} if group_of(name) == "quantized" else {}
    notes: list[str] = []

    def make():
        with _intercepted_weights(state), _small_calibration(builder, entry):
            return builder(weights=entry, progress=False, **kwargs)

    if kwargs.get("quantize"):
        backend = _check_quantized_engine(name, entry)
        if device != "cpu" and device != "meta":
            raise UnavailableError(f"torchvision:{name} runs on CPU only",
                                   f"its int8 kernels are torch's {backend} CPU kernels", "use --device cpu")
        notes.append(f"int8, quantized for the {backend} engine (torch.backends.quantized.engine is set to it)"
                     + ("; built on CPU: torch has no quantized meta tensors" if device == "meta" else ""))
        # torch deprecates its eager quantized tensors (pytorch/pytorch#184982) and says so on stderr at every
        # build: the docs say it once instead
        with cheap_init(), warnings.catch_warnings():  # cheap_init: initialisers only; weights replace them
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\.")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(vision)?\.")
            module = make()
    elif device == "meta":
        try:
            module = build_on_meta(make)
        except Exception as exc:  # whatever the reason, a CPU build gives the same architecture
            notes.append(f"built on CPU: it cannot be built on meta tensors ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else ''})")
            with cheap_init():
                module = make()
    else:
        with torch.device(device):
            module = make()
    if inference:
        removed = strip_aux_heads(module)
        if removed:
            notes.append(f"built without its auxiliary head ({removed:,} params), which an inference does not use; "
                         "torchvision's published num_params" + (" and _ops include" if group_of(name) == "segmentation"
                                                                 else " includes") + " it")
    return module, notes


def strip_aux_heads(module: torch.nn.Module) -> int:
    """Remove auxiliary heads a forward at inference does not use; returns the params removed."""
    removed = 0
    for attr in AUX_HEADS:
        head = getattr(module, attr, None)
        if isinstance(head, torch.nn.Module):
            removed += sum(p.numel() for p in head.parameters())
            setattr(module, attr, None)
    if hasattr(module, "aux_logits"):
        module.aux_logits = False
    return removed


def cached_weights_path(weights) -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))


def _download(entry, path: str) -> None:
    """Download ``entry``'s file into the torch hub cache; a network failure or bad file is one line."""
    import socket
    from urllib.error import HTTPError, URLError

    folder, name = os.path.dirname(path), os.path.basename(path)
    offline_fix = f"place the file {name} in {folder} (TORCH_HOME/hub/checkpoints), or run without --download-weights"
    try:
        # torch.hub's own loader announces the download on stdout (it would corrupt --format json) and then
        # unpickles the file only for load_checkpoint to read it again: download the file alone instead
        os.makedirs(folder, exist_ok=True)
        digest = torch.hub.HASH_REGEX.search(name)
        torch.hub.download_url_to_file(entry.url, path, digest.group(1) if digest else None, progress=True)
    except HTTPError as exc:
        raise UnavailableError(f"could not download weights for {entry}", f"{entry.url} answered HTTP {exc.code}",
                               offline_fix) from exc
    except (URLError, ConnectionError, TimeoutError, socket.gaierror) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UnavailableError(f"could not download weights for {entry}",
                               f"no network, or {urlparse(entry.url).netloc} cannot be reached "
                               f"({type(reason).__name__}: {reason})", offline_fix) from exc
    except OSError as exc:  # the cache folder cannot be written (permissions, a full disk)
        raise UnavailableError(f"could not save weights for {entry} in {folder}", f"{type(exc).__name__}: {exc}",
                               "make that folder writable with free space, or set TORCH_HOME elsewhere") from exc
    except RuntimeError as exc:  # torch.hub's hash check: a truncated or tampered download
        raise UnavailableError(f"the downloaded weights {entry} are corrupt", str(exc).splitlines()[0][:200],
                               f"delete any partial file in {folder} and try again") from exc


def _read_cached(entry, download: bool) -> dict:
    """The state dict of torchvision's file for ``entry`` from the local cache (downloaded only if asked)."""
    path = cached_weights_path(entry)
    if not os.path.exists(path):
        if not download:
            raise UnavailableError(
                f"weights {entry} are not in the local cache",
                f"expected {path}; dnnbench never downloads unless asked",
                "pass --download-weights, or put the file there",
            )
        _download(entry, path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelBuildError(f"cannot read weights file {path}", _why_unreadable(path, exc),
                              f"delete it and pass --download-weights to fetch {entry} again") from exc


# ---- inputs and published figures ----------------------------------------------------------------------

def native_input_size(weights) -> tuple[int, int]:
    """The image size a weights entry's eval transform gives: its crop, else its resize, else min_size."""
    keywords = getattr(weights.transforms, "keywords", {}) or {}
    size = keywords.get("crop_size") or keywords.get("resize_size")
    if size is None:
        size = weights.meta.get("min_size", (224, 224))
    if isinstance(size, int):
        return size, size
    size = list(size)
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def detection_size(module) -> tuple[int, int]:
    """The square image a detector's own transform keeps as it is (so a square input of any size is resized
    to it): SSD's fixed size, else the R-CNN transform's eval ``min_size``."""
    t = module.transform
    if t.fixed_size is not None:
        return int(t.fixed_size[1]), int(t.fixed_size[0])
    side = int(t.min_size[-1])
    return side, side


@functools.lru_cache(maxsize=None)
def _detection_size_of(name: str, tag: str | None) -> tuple[int, int]:
    module, _ = build(name, resolve_weights(name, tag), "meta")
    return detection_size(module)


def input_spec(name: str, entry, module=None) -> InputSpec:
    """The input torchvision's published figures count, per task (see the module docstring)."""
    group, task = catalogue()[name]
    if task in ("detection", "instance_segmentation", "keypoint_detection"):
        h, w = detection_size(module) if module is not None else _detection_size_of(name, entry.name)
        return InputSpec((TensorSpec((3, h, w)),), as_list=True)
    h, w = native_input_size(entry)
    if task == "video":
        return InputSpec((TensorSpec((3, VIDEO_FRAMES, h, w)),))
    if task == "optical_flow":
        return InputSpec((TensorSpec((3, *FLOW_SIZE)), TensorSpec((3, *FLOW_SIZE))))
    return InputSpec.image(3, h, w)


def _percent(metric: str, value: float) -> float:
    # published with at most 3 decimals of a percent: rounding the fraction to 8 removes only float noise
    return value if metric in UNITLESS_METRICS else round(value / 100.0, 8)


def published_metrics(weights) -> dict[str, dict[str, float]]:
    """dataset -> metric -> value as the weights meta publishes it, percentages as fractions (EPE in pixels)."""
    return {ds: {m: _percent(m, v) for m, v in ms.items()} for ds, ms in weights.meta.get("_metrics", {}).items()}


def headline_metric(name: str, weights) -> tuple[str, str | None, float | None]:
    """(metric, dataset, value) of the task's published quality metric (the first dataset that has it)."""
    metric = TASKS[task_of(name)]
    for ds, ms in published_metrics(weights).items():
        if metric in ms:
            return metric, ds, ms[metric]
    return metric, None, None


# torchvision's meta metric names -> the names of ReportedAccuracy.figures (core.records.REPORTED_FIGURES)
FIGURE_NAMES = {"acc@1": "top1", "acc@5": "top5"}


def reported_accuracy(weights, name: str | None = None) -> ReportedAccuracy | None:
    """Every quality figure the weights publish on the task's dataset: ``figures`` under core.view's names
    (top1, top5, box_map, mask_map, kp_map, miou, pixel_acc, epe), with ``dataset``; ``top1``/``top5`` as
    well for ImageNet-1K (and Kinetics-400 clip accuracy). The dataset is that of the task's headline metric
    (the first that publishes it); figures on other datasets (e.g. RAFT on Sintel Final pass and KITTI) are
    named in the note, not in ``figures``."""
    metrics = published_metrics(weights)
    if not metrics:
        return None
    ds = next((d for d in ("ImageNet-1K", "Kinetics-400") if d in metrics), None)
    metric = value = None
    if ds is None:
        if name is None:
            return None
        metric, ds, value = headline_metric(name, weights)
        if value is None:
            return None
    figures = {FIGURE_NAMES.get(m, m): v for m, v in metrics[ds].items()}
    if ds == "ImageNet-1K":
        note = None
    elif ds == "Kinetics-400":
        note = f"{ds} clip accuracy"
    else:
        shown = f"{value:.4g} px" if metric in UNITLESS_METRICS else f"{100 * value:.1f} %"
        note = f"published {METRIC_LABELS[metric]} {shown} on {ds}"
    others = [d for d in metrics if d != ds]
    if others:
        note = (f"{note}; " if note else "") + f"also published on {', '.join(others)} (see the weights meta)"
    return ReportedAccuracy(top1=figures.get("top1"), top5=figures.get("top5"), source="torchvision weights meta",
                            weights=str(weights), note=note, figures=figures, dataset=ds)


# ---- the source ----------------------------------------------------------------------------------------

def load(ref: ModelRef, device: str = "cpu", weights: str | None = None, download: bool = False) -> LoadedModel:
    """Build ``ref``; ``weights`` is None (random), "DEFAULT"/a tag (from the cache), or a checkpoint path."""
    check_name(ref.name)
    tag = ref.tag
    if weights not in (None, "DEFAULT") and not is_path(weights):
        tag = weights  # --weights IMAGENET1K_V2
    entry = resolve_weights(ref.name, tag)
    official = weights is not None and (weights == "DEFAULT" or weights == tag)
    state = _read_cached(entry, download) if official else None
    build_device = device if weights is None else "cpu"
    try:
        module, notes = build(ref.name, entry, build_device, state, inference=not (weights and not official))
    except (UnavailableError, UnknownModelError):
        raise
    except Exception as exc:
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if official:
            raise ModelBuildError(f"weights {entry} do not load into torchvision:{ref.name}", why,
                                  "delete the cached file and pass --download-weights to fetch it again") from exc
        raise ModelBuildError(f"building torchvision:{ref.name} failed", why,
                              "report this with your torch/torchvision versions") from exc
    loaded_weights = str(entry) if official else None
    class_names = None
    if weights is not None and not official:  # a checkpoint file: saved with the aux heads or without
        try:
            class_names = load_checkpoint(module, weights, f"torchvision:{ref.name}")
        except ModelBuildError:
            if not strip_aux_heads(module):
                raise
            class_names = load_checkpoint(module, weights, f"torchvision:{ref.name}")
        strip_aux_heads(module)
        loaded_weights = weights
    canonical = f"torchvision:{ref.name}" + (f".{ref.tag}" if ref.tag else "")
    # The weights entry's own eval transform (resize, crop, mean/std), also for random weights.
    return LoadedModel(canonical, module, input_spec(ref.name, entry, module), loaded_weights,
                       reported_accuracy(entry, ref.name), notes, preprocess=entry.transforms(),
                       preprocess_source=f"torchvision {entry}.transforms()", class_names=class_names,
                       task=task_of(ref.name))


def describe(name: str, tag: str | None = None) -> dict:
    """Offline metadata for listings: task, params, GMACs and quality as published with the weights
    (the DEFAULT ones unless ``tag``), and the input the figures count."""
    check_name(name)
    entry = resolve_weights(name, tag)
    meta = entry.meta
    group, task = catalogue()[name]
    spec = input_spec(name, entry)
    metric, dataset, value = headline_metric(name, entry)
    metrics = published_metrics(entry)
    acc = metrics.get("ImageNet-1K") or metrics.get("Kinetics-400") or {}
    return {
        "model": f"torchvision:{name}",
        "task": task,
        "group": group,
        "weights": str(entry),
        "params": meta.get("num_params"),
        "macs": None if meta.get("_ops") is None else int(round(meta["_ops"] * 1e9)),
        "weight_bytes_published": None if meta.get("_file_size") is None else int(meta["_file_size"] * 2**20),
        "input_size": list(spec.tensors[0].shape[-2:]),
        "input": describe_input(spec),
        "top1": acc.get("acc@1"),
        "top5": acc.get("acc@5"),
        "metric": metric,
        "metric_value": value,
        "dataset": dataset,
        "metrics": metrics,
    }


def describe_input(spec: InputSpec) -> str:
    """One model call's input in words, per item (e.g. "list of 3x800x800 images")."""
    shapes = ["x".join(map(str, t.shape)) for t in spec.tensors]
    if spec.as_list:
        return f"list of {shapes[0]} images"
    if len(spec.tensors) == 2:
        return f"pair of {shapes[0]} images"
    if len(spec.tensors[0].shape) == 4:
        c, t, h, w = spec.tensors[0].shape
        return f"clip of {t} frames {c}x{h}x{w}"
    return f"{shapes[0]} image"
