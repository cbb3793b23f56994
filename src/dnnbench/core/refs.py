"""Model references: one grammar everywhere.

    torchvision:NAME[.WEIGHTS]     e.g. torchvision:resnet50, torchvision:vit_h_14.IMAGENET1K_SWAG_LINEAR_V1
    timm:NAME[.TAG]                e.g. timm:resnet50.a1_in1k   (needs the `timm` extra)
    python:pkg.module:factory      a callable returning a module, or (module, example_inputs)
    python:path/to/file.py:factory
    onnx:path/to/model.onnx        an ONNX file (needs the `onnx` extra)
    NAME                           shorthand for torchvision:NAME
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dnnbench.core.errors import RefSyntaxError

SOURCES = ("torchvision", "timm", "python", "onnx")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_TAG = re.compile(r"^[A-Za-z0-9_\-]+$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference. ``target`` is the module path or file for ``python:`` refs, the file for ``onnx:``."""

    source: str
    name: str
    tag: str | None = None
    target: str | None = None

    def __str__(self) -> str:
        if self.source == "python":
            return f"python:{self.target}:{self.name}"
        if self.source == "onnx":
            return f"onnx:{self.target}"
        return f"{self.source}:{self.name}" + (f".{self.tag}" if self.tag else "")

    @property
    def short(self) -> str:
        """A display name: the model name (and tag) without the source prefix."""
        if self.source == "python":
            return self.name if self.target is None else f"{self.target.rsplit('/', 1)[-1]}:{self.name}"
        if self.source == "onnx":
            return self.target.rsplit("/", 1)[-1]
        return self.name + (f".{self.tag}" if self.tag else "")


def parse_ref(text: str) -> ModelRef:
    """Parse a reference string; raise RefSyntaxError with the right spelling on a malformed one."""
    raw = text
    text = text.strip()
    if not text:
        raise RefSyntaxError("empty model reference", "a model must be named", "give e.g. resnet50 or torchvision:resnet50")
    if ":" not in text:
        return _named("torchvision", text, raw)
    source, _, rest = text.partition(":")
    if source not in SOURCES:
        raise RefSyntaxError(
            f"unknown model source {source!r} in {raw!r}",
            f"known sources are {', '.join(SOURCES)}",
            "write torchvision:NAME, timm:NAME[.TAG], python:pkg.module:factory, python:path/file.py:factory "
            "or onnx:path/model.onnx",
        )
    if source == "onnx":
        if not rest.lower().endswith(".onnx") or len(rest) <= len(".onnx"):
            raise RefSyntaxError(f"malformed onnx reference {raw!r}", "it names an .onnx file",
                                 "write onnx:path/to/model.onnx")
        stem = rest.replace("\\", "/").rsplit("/", 1)[-1][: -len(".onnx")]
        return ModelRef("onnx", stem, None, rest)
    if source == "python":
        target, sep, factory = rest.rpartition(":")
        if not sep or not target or not factory:
            raise RefSyntaxError(
                f"malformed python reference {raw!r}",
                "it needs a module or file and a factory name",
                "write python:pkg.module:factory or python:path/to/file.py:factory",
            )
        if not _IDENT.match(factory):
            raise RefSyntaxError(f"malformed python reference {raw!r}", f"{factory!r} is not a Python identifier",
                                 "name the factory function after the last ':'")
        if not target.endswith(".py") and not all(_IDENT.match(p) for p in target.split(".")):
            raise RefSyntaxError(f"malformed python reference {raw!r}", f"{target!r} is neither a dotted module path nor a .py file",
                                 "write python:pkg.module:factory or python:path/to/file.py:factory")
        return ModelRef("python", factory, None, target)
    return _named(source, rest, raw)


def _named(source: str, rest: str, raw: str) -> ModelRef:
    name, _, tag = rest.partition(".")
    if not name or not _NAME.match(name) or (tag and not _TAG.match(tag)) or rest.endswith("."):
        raise RefSyntaxError(
            f"malformed model reference {raw!r}",
            f"a {source} reference is NAME or NAME.TAG with letters, digits, '_' and '-'",
            f"write e.g. {source}:resnet50" + (".a1_in1k" if source == "timm" else ""),
        )
    return ModelRef(source, name, tag or None)
