"""Errors of the analysis layer: one line each, exit code 2 (a user mistake, not a crash)."""

from __future__ import annotations

from dnnbench.core.errors import InputError


class NoResultsError(InputError):
    """The store holds nothing the question can be answered from; the message says how to fill it."""


class UnknownMetricError(InputError):
    """A metric name that is not a column of the results (or not one that can be ranked or bounded)."""


class ConstraintError(InputError):
    """Constraints that are invalid (a negative budget) or contradict each other whatever the data."""
