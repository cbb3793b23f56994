"""Loading weights from checkpoint files, with a clear error when they belong to another architecture."""

from __future__ import annotations

import os
import re
import warnings
import zipfile

import torch

from dnnbench.core.errors import ModelBuildError, UnavailableError

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")


def is_path(weights: str) -> bool:
    """True when a --weights value names a file rather than a weights tag."""
    return os.sep in weights or weights.endswith(CHECKPOINT_SUFFIXES) or os.path.exists(weights)


def _why_unreadable(path: str, exc: BaseException) -> str:
    """Why torch.load refused ``path``, in one whole sentence (torch's own messages run to paragraphs)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as os_exc:
        return f"{type(os_exc).__name__}: {os_exc}"
    if not head:
        return "the file is empty"
    # torch.save writes a zip archive; files from torch < 1.6 are a pickle, whose first byte is 0x80
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":
        return f"it is not a checkpoint: neither a torch.save zip archive nor a legacy pickle (it starts {head.hex()})"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    unpickler = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", " ".join(lines))
    if unpickler:  # weights_only reads only tensors and plain containers, and so does dnnbench
        return (f"torch.load(weights_only=True) cannot read it: {unpickler.group(1).strip().rstrip('.')} "
                "(a pickle that is not a torch.save file, or Python objects beside the tensors)")
    first = lines[0] if lines else ""
    if len(first) > 200:  # end on a whole sentence, else a whole word
        cut = max(first.rfind(". ", 0, 200), first.rfind("; ", 0, 200))
        first = first[:cut + 1] if cut > 40 else first[:200].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_checkpoint(module: torch.nn.Module, path: str, ref: str) -> list[str] | None:
    """Load a state_dict (bare or under state_dict/model/model_state_dict) into ``module``, strictly.

    Returns the checkpoint's ``class_names`` (its classes in output-index order, e.g. wnids) when it is a
    dict that holds them beside the weights, else None.
    """
    if os.path.isdir(path):
        raise UnavailableError(f"weights file {path} is a directory", "--weights takes one checkpoint file",
                               "give the path of the .pth file inside it")
    if not os.path.isfile(path):
        raise UnavailableError(f"weights file {path} does not exist", "no such file", "check the path")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says what matters
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelBuildError(f"cannot read weights file {path}", _why_unreadable(path, exc),
                              "give a state_dict saved with torch.save(model.state_dict(), path)") from exc
    class_names = None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            names = state.get("class_names")
            if names is not None:
                if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                    raise ModelBuildError(f"class_names in {path} is not a list of strings",
                                          f"it is a {type(names).__name__}", "save class_names as a list of str")
                class_names = list(names)
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ModelBuildError(f"weights file {path} holds no state_dict", f"it holds a {type(state).__name__}",
                              "save model.state_dict() with torch.save")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        example = (mismatched or missing or unexpected)[0]
        raise ModelBuildError(
            f"weights file {path} does not fit {ref}",
            f"{len(missing)} missing, {len(unexpected)} unexpected and {len(mismatched)} mis-shaped tensors "
            f"(first: {example})",
            "use a checkpoint saved from the same architecture",
        )
    module.load_state_dict(state, strict=True)
    return class_names
