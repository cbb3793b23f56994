"""Pure functions over stored results: tidy tables, fits, Pareto fronts, the cost model, findings, pick.

Nothing here measures or opens a store: every function takes the store's tidy frame (``Store.frame()``)
or numbers, so it can be tested on synthetic results with known answers.
"""

from dnnbench.analysis.errors import ConstraintError, NoResultsError, UnknownMetricError
from dnnbench.analysis.findings import Finding, findings
from dnnbench.analysis.fit import HyperbolicFit, LinearFit, hyperbolic_fit, linear_fit
from dnnbench.analysis.pareto import pareto_front
from dnnbench.analysis.pick import PickResult, pick

__all__ = ["ConstraintError", "Finding", "HyperbolicFit", "LinearFit", "NoResultsError", "PickResult",
           "UnknownMetricError", "findings", "hyperbolic_fit", "linear_fit", "pareto_front", "pick"]
