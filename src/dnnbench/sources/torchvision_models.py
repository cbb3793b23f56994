"""torchvision classification models, built with random weights unless weights are asked for.

The architecture built is the one that matches the chosen weights (e.g. ViT-H/14's default SWAG weights
need ``image_size=518``; GoogLeNet and Inception-v3 are built without auxiliary heads, as at inference),
and the input size is the weights' own crop size.
"""

from __future__ import annotations

import difflib
import functools
import os
from urllib.parse import urlparse

import torch

from dnnbench.core.errors import ModelBuildError, UnavailableError, UnknownModelError
from dnnbench.core.records import ReportedAccuracy
from dnnbench.core.refs import ModelRef
from dnnbench.core.specs import InputSpec, LoadedModel
from dnnbench.sources.checkpoints import is_path, load_checkpoint
from dnnbench.sources.meta_build import build_on_meta


@functools.lru_cache(maxsize=1)
def classification_models() -> tuple[str, ...]:
    import torchvision.models as tvm

    return tuple(tvm.list_models(module=tvm))


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


def builder_kwargs(name: str, weights) -> dict:
    """Constructor arguments that give the architecture the weights were trained with, minus aux heads."""
    kw: dict = {"num_classes": len(weights.meta["categories"])}
    if name.startswith("vit_"):
        kw["image_size"] = weights.meta["min_size"][0]
    if name.startswith("maxvit"):
        kw["input_size"] = weights.meta["min_size"]
    if name in ("googlenet", "inception_v3"):
        kw.update(aux_logits=False, init_weights=False, transform_input=True)
    return kw


def native_input_size(weights) -> tuple[int, int]:
    keywords = getattr(weights.transforms, "keywords", {}) or {}
    crop = keywords.get("crop_size")
    if crop is None:
        crop = weights.meta.get("min_size", (224, 224))
    if isinstance(crop, int):
        return crop, crop
    crop = list(crop)
    return (crop[0], crop[0]) if len(crop) == 1 else (crop[0], crop[1])


def reported_accuracy(weights) -> ReportedAccuracy | None:
    metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K")
    if not metrics:
        return None
    top1, top5 = metrics.get("acc@1"), metrics.get("acc@5")
    return ReportedAccuracy(
        top1=None if top1 is None else top1 / 100.0,
        top5=None if top5 is None else top5 / 100.0,
        source="torchvision weights meta",
        weights=str(weights),
    )


def check_name(name: str) -> None:
    models = classification_models()
    if name not in models:
        close = difflib.get_close_matches(name, models, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "run `dnnbench models` to list them"
        raise UnknownModelError(
            f"unknown torchvision model {name!r}",
            "it is not one of torchvision's classification models",
            hint,
        )


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


def load(ref: ModelRef, device: str = "cpu", weights: str | None = None, download: bool = False) -> LoadedModel:
    """Build ``ref``; ``weights`` is None (random), "DEFAULT"/a tag (from the cache), or a checkpoint path."""
    import torchvision.models as tvm

    check_name(ref.name)
    tag = ref.tag
    if weights not in (None, "DEFAULT") and not is_path(weights):
        tag = weights  # --weights IMAGENET1K_V2
    entry = resolve_weights(ref.name, tag)
    kwargs = builder_kwargs(ref.name, entry)
    builder = tvm.get_model_builder(ref.name)
    notes: list[str] = []
    build_device = device if weights is None else "cpu"
    try:
        if build_device == "meta":
            module = build_on_meta(lambda: builder(weights=None, **kwargs))
        else:
            with torch.device(build_device):
                module = builder(weights=None, **kwargs)
    except Exception as exc:
        raise ModelBuildError(f"building torchvision:{ref.name} failed", f"{type(exc).__name__}: {exc}",
                              "report this with your torch/torchvision versions") from exc
    loaded_weights = None
    class_names = None
    if weights is not None:
        if weights == "DEFAULT" or weights == tag:
            path = cached_weights_path(entry)
            if not os.path.exists(path):
                if not download:
                    raise UnavailableError(
                        f"weights {entry} are not in the local cache",
                        f"expected {path}; dnnbench never downloads unless asked",
                        "pass --download-weights, or put the file there",
                    )
                _download(entry, path)
            load_checkpoint(module, path, f"torchvision:{ref.name}")
            loaded_weights = str(entry)
        else:
            class_names = load_checkpoint(module, weights, f"torchvision:{ref.name}")
            loaded_weights = weights
    h, w = native_input_size(entry)
    canonical = f"torchvision:{ref.name}" + (f".{ref.tag}" if ref.tag else "")
    # The weights entry's own eval transform (resize, centre crop, mean/std), also for random weights.
    return LoadedModel(canonical, module, InputSpec.image(3, h, w), loaded_weights, reported_accuracy(entry), notes,
                       preprocess=entry.transforms(), preprocess_source=f"torchvision {entry}.transforms()",
                       class_names=class_names)


def describe(name: str) -> dict:
    """Offline metadata for listings: params, GMACs and accuracy as published with the DEFAULT weights."""
    entry = _weights_enum(name).DEFAULT
    meta = entry.meta
    h, w = native_input_size(entry)
    acc = reported_accuracy(entry)
    return {
        "model": f"torchvision:{name}",
        "weights": str(entry),
        "params": meta.get("num_params"),
        "macs": None if meta.get("_ops") is None else int(round(meta["_ops"] * 1e9)),
        "weight_bytes_published": None if meta.get("_file_size") is None else int(meta["_file_size"] * 2**20),
        "input_size": [h, w],
        "top1": acc.top1 if acc else None,
        "top5": acc.top5 if acc else None,
    }
