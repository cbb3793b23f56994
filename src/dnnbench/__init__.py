"""dnnbench: measure what it costs to deploy a neural network.

The public API lives in :mod:`dnnbench.api`; names are re-exported lazily so that
``import dnnbench`` stays cheap (torch is imported only when a function is called).
"""

from dnnbench.core.version import __version__

__all__ = ["profile", "load_model", "bench", "machine", "Profile", "ModelRef", "DnnbenchError", "__version__"]


def __getattr__(name):  # PEP 562: lazy re-exports
    if name in ("profile", "load_model", "bench", "machine"):
        from dnnbench import api

        return getattr(api, name)
    if name == "Profile":
        from dnnbench.core.records import Profile

        return Profile
    if name == "ModelRef":
        from dnnbench.core.refs import ModelRef

        return ModelRef
    if name == "DnnbenchError":
        from dnnbench.core.errors import DnnbenchError

        return DnnbenchError
    raise AttributeError(f"module 'dnnbench' has no attribute {name!r}")
