"""timm models (optional extra ``dnnbench[timm]``), imported lazily."""

from __future__ import annotations

import contextlib
import difflib
import functools
import os

import torch

from dnnbench.core.errors import MissingExtraError, ModelBuildError, UnavailableError, UnknownModelError
from dnnbench.core.records import ReportedAccuracy
from dnnbench.core.refs import ModelRef
from dnnbench.core.specs import InputSpec, LoadedModel
from dnnbench.sources.checkpoints import is_path, load_checkpoint
from dnnbench.sources.meta_build import build_on_meta


def available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise MissingExtraError("timm is needed for timm: models", "it is an optional extra",
                                "pip install 'dnnbench[timm]'") from exc
    return timm


def load(ref: ModelRef, device: str = "cpu", weights: str | None = None, download: bool = False) -> LoadedModel:
    timm = _timm()
    full = ref.name + (f".{ref.tag}" if ref.tag else "")
    if not timm.is_model(ref.name):
        close = difflib.get_close_matches(ref.name, timm.list_models(), n=3, cutoff=0.6)
        raise UnknownModelError(f"unknown timm model {ref.name!r}", "timm has no such architecture",
                                f"did you mean {', '.join(close)}?" if close else "see timm.list_models()")
    pretrained = weights is not None and not is_path(weights)
    build_device = device if weights is None else "cpu"
    try:
        if build_device == "meta":
            module = build_on_meta(lambda: timm.create_model(full, pretrained=False))
        else:
            with torch.device(build_device), _hub_offline(pretrained and not download):
                module = timm.create_model(full, pretrained=pretrained)
    except Exception as exc:
        if pretrained and not download:
            raise UnavailableError(f"timm weights for {full} are not in the local Hugging Face cache",
                                   f"dnnbench never downloads unless asked ({type(exc).__name__})",
                                   "pass --download-weights, or put the weights in the cache (HF_HOME)") from exc
        if pretrained:
            raise UnavailableError(f"timm weights for {full} could not be loaded", f"{type(exc).__name__}: {str(exc)[:160]}",
                                   "pass --download-weights, or check the local Hugging Face cache") from exc
        raise ModelBuildError(f"building timm:{full} failed", f"{type(exc).__name__}: {str(exc)[:160]}",
                              "check the model name and tag") from exc
    class_names = None
    if weights is not None and is_path(weights):
        class_names = load_checkpoint(module, weights, f"timm:{full}")
    cfg = getattr(module, "pretrained_cfg", {}) or {}
    c, h, w = cfg.get("input_size", (3, 224, 224))
    preprocess, source = _transform(timm, module, full)
    if not class_names:
        class_names = _class_names(timm, module, full)
        if isinstance(class_names, Unresolved):  # accuracy must not map classes by guesswork: it raises this
            if not isinstance(preprocess, Unresolved):
                preprocess, source = class_names, f"unavailable: {class_names.unresolved.one_line()}"
            class_names = None
    return LoadedModel(f"timm:{full}", module, InputSpec.image(c, h, w), weights, reported_accuracy(full), [],
                       preprocess=preprocess, preprocess_source=source, class_names=class_names)


@contextlib.contextmanager
def _hub_offline(active: bool):
    """Only the local Hugging Face cache while active: no request leaves the machine without --download-weights.

    huggingface_hub reads HF_HUB_OFFLINE once, at import (and timm imports it), so setting the variable
    now would be too late; its module constant is what each download checks, so that is what is set.
    """
    if not active:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:  # timm without the hub client can only use torch.hub URLs, which we do not fetch
        constants = None
    old_env, old_flag = os.environ.get("HF_HUB_OFFLINE"), getattr(constants, "HF_HUB_OFFLINE", None)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_flag
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def reported_accuracy(full: str) -> ReportedAccuracy:
    """timm publishes its ImageNet results as CSVs in its repository, not in the package: say so, invent nothing."""
    return ReportedAccuracy(None, None, "timm", full,
                            note="not published offline by timm (its package ships no results table)")


class Unresolved:
    """Stands for what accuracy needs from timm (transform, class names) when timm failed to give it.

    ``load`` serves profile and bench too, which need neither, so the failure is not raised there: accuracy
    raises ``unresolved`` (a one-line DnnbenchError naming timm's error) before it evaluates anything, rather than
    falling back to a default transform as if the model defined none. Calling it raises the same error.
    """

    def __init__(self, error):
        self.unresolved = error  # the attribute accuracy looks for (it never imports sources)

    def __call__(self, img):
        raise self.unresolved

    def __repr__(self) -> str:
        return f"<unresolved: {self.unresolved.one_line()}>"


def _timm_error(what: str, full: str, exc: BaseException):
    first = (str(exc).strip().splitlines() or [""])[0]
    return ModelBuildError(f"timm could not give the {what} of timm:{full}", f"{type(exc).__name__}: {first[:160]}",
                           "check the model's pretrained_cfg, or upgrade timm (pip install -U timm)")


def _transform(timm, module, full: str):
    """timm's eval transform from the model's data config (resize by crop_pct, centre crop, mean/std).

    (None, None) only where this timm has no such helpers (the model then has no preprocessing of its own);
    a failure of timm's is kept as an ``Unresolved`` that accuracy raises, never a silent default.
    """
    try:
        from timm.data import create_transform, resolve_model_data_config
    except ImportError:  # an old timm without these helpers: accuracy falls back to its default transform
        return None, None
    try:
        cfg = resolve_model_data_config(module)
        return create_transform(**cfg, is_training=False), f"timm data config of {full}: {cfg}"
    except Exception as exc:  # noqa: BLE001 - any timm failure becomes the reason, raised when accuracy needs it
        error = _timm_error("preprocessing (data config / eval transform)", full, exc)
        return Unresolved(error), f"unavailable: {error.one_line()}"


def _class_names(timm, module, full: str = "") -> "list[str] | Unresolved | None":
    """The wnids of the label space timm infers from the model's config (ImageNet-1k, -12k, -22k...).

    None where timm knows no such label space (or is too old to say); an ``Unresolved`` where timm failed.
    """
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset
    except ImportError:
        return None
    try:
        subset = infer_imagenet_subset(module)
        names = list(_label_names(ImageNetInfo, subset)) if subset else None
    except Exception as exc:  # noqa: BLE001
        return Unresolved(_timm_error("class names", full, exc))
    n = getattr(module, "num_classes", None)
    return names if names and n == len(names) else None


@functools.lru_cache(maxsize=None)
def _label_names(info_class, subset: str) -> tuple[str, ...]:
    """timm's wnids of one ImageNet subset, read once per process.

    ``ImageNetInfo`` parses three packaged files (lemmas and definitions of 21k synsets) each time it is built:
    about 35 ms, which was an eighth of profiling a timm model on meta tensors.
    """
    return tuple(info_class(subset).label_names())
