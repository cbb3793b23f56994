"""Optional dependencies, imported lazily with a one-line error naming the extra (after pandas' compat/_optional)."""

from __future__ import annotations

import importlib
from types import ModuleType

from dnnbench.core.errors import MissingExtraError

# module -> extra that installs it
EXTRAS = {"onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx", "timm": "timm", "pynvml": "nvml",
          "pycocotools": "detection", "executorch": "executorch", "openvino": "openvino", "nncf": "openvino",
          "ray": "fleet"}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise MissingExtraError: "<module> is needed for <purpose>: pip install 'dnnbench[extra]'"."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module, module)
        raise MissingExtraError(f"{module} is needed for {purpose}", f"pip install 'dnnbench[{extra}]'") from exc


def missing_message(module: str, purpose: str) -> str:
    """The message ``require`` raises, exactly: "<module> is needed for <purpose>: pip install 'dnnbench[extra]'"."""
    return f"{module} is needed for {purpose}: pip install 'dnnbench[{EXTRAS.get(module, module)}]'"


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
