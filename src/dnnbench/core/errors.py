"""Typed errors. Each carries what happened, why, and how to fix it, so the CLI can print one line."""

from __future__ import annotations


class DnnbenchError(Exception):
    """A user-facing error: ``what`` happened, ``why``, and ``fix`` (how to fix it)."""

    exit_code = 2

    def __init__(self, what: str, why: str = "", fix: str = ""):
        self.what, self.why, self.fix = what, why, fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [self.what.rstrip(".")]
        if self.why:
            parts.append(self.why.rstrip("."))
        line = ": ".join(parts)
        if self.fix:
            line += f". Fix: {self.fix.rstrip('.')}"
        return line if line.endswith(("?", "!")) else line + "."


class RefSyntaxError(DnnbenchError):
    """A model reference that cannot be parsed."""


class UnknownModelError(DnnbenchError):
    """A well-formed reference naming a model that does not exist."""


class ModelBuildError(DnnbenchError):
    """The model's factory or builder raised."""


class InputError(DnnbenchError):
    """An input size / batch size / shape the model rejects or that is invalid."""


class MissingExtraError(DnnbenchError):
    """An optional dependency is not installed."""


class UnavailableError(DnnbenchError):
    """Something cannot be measured or built on this machine."""


class DatasetError(DnnbenchError):
    """A dataset directory or labels file that cannot be evaluated as given."""


def check_at_least(option: str, value, minimum: int, why: str, error: type = InputError) -> int:
    """``value`` if it is a whole number >= ``minimum``, else ``error`` (one line naming ``option``)."""
    # bool is an int to Python, but True as a batch size is a caller's mistake, not 1
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise error(f"{option} {value!r} is not allowed", why, f"use {option} {minimum} or more")
    return value


def check_batch_size(value, option: str = "--batch-size", error: type = InputError) -> int:
    """The one check of a batch size, wherever one is given."""
    return check_at_least(option, value, 1, "a batch holds at least one item", error)
