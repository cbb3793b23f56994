"""Pure functions over stored results: tidy tables, fits, Pareto fronts, the cost model, findings, pick.

Nothing here measures or opens a store: every function takes the store's tidy frame (``Store.frame()``)
or numbers, so it can be tested on synthetic results with known answers. Entry points:
``analysis.findings.findings(frame)`` and ``analysis.pick.pick(frame, ...)`` (not re-exported here, so the
submodule names stay modules).
"""

from dnnbench.analysis.errors import ConstraintError, NoResultsError, UnknownMetricError
from dnnbench.analysis.fit import HyperbolicFit, LinearFit, hyperbolic_fit, linear_fit
from dnnbench.analysis.pareto import pareto_front

__all__ = ["ConstraintError", "HyperbolicFit", "LinearFit", "NoResultsError", "UnknownMetricError",
           "hyperbolic_fit", "linear_fit", "pareto_front"]
