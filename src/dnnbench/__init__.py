"""dnnbench: measure what it costs to deploy a neural network.

The public API lives in :mod:`dnnbench.api` (single measurements) and :mod:`dnnbench.runner` (studies
into the results store); names are re-exported lazily so that ``import dnnbench`` stays cheap (torch is
imported only when a function is called).
"""

from dnnbench.core.version import __version__

_EXPORTS = {
    "profile": "dnnbench.api", "bench": "dnnbench.api", "machine": "dnnbench.api", "load_model": "dnnbench.api",
    "accuracy": "dnnbench.api", "sensors": "dnnbench.api", "list_models": "dnnbench.api",
    "study": "dnnbench.runner", "load_results": "dnnbench.runner",
    "Profile": "dnnbench.core.records", "ModelRef": "dnnbench.core.refs", "DnnbenchError": "dnnbench.core.errors",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name):  # PEP 562: lazy re-exports
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dnnbench' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name, None)
    if value is None:
        raise AttributeError(f"module 'dnnbench' has no attribute {name!r} (not in {module})")
    return value
