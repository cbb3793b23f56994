"""The display formatters, re-exported for analysis modules: they live in ``dnnbench.core.units`` (one set)."""

from dnnbench.core.units import count, joules, metric, mib, pct, rate, seconds, watts  # noqa: F401

__all__ = ["count", "joules", "metric", "mib", "pct", "rate", "seconds", "watts"]
