"""Settings objects: one way to build a frozen config from a base and keyword options."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, TypeVar

T = TypeVar("T")


def with_options(cls: type[T], base: T | None, options: dict[str, Any], caller: str) -> T:
    """``base`` (default: ``cls()``) with ``options`` (``cls``'s field names) replacing its values.

    An unknown name is a programming mistake, reported as Python reports an unexpected keyword of ``caller``.
    Building the object runs its own checks (``__post_init__``), once.
    """
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r} "
                        f"(settings: {', '.join(sorted(names))})")
    if base is None:
        return cls(**options)
    return replace(base, **options) if options else base
