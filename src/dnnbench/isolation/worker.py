"""The isolation package's stable import path: ``from dnnbench.isolation.worker import run_isolated, ...``.

The code lives in rooms that never import each other in a circle (an import-linter contract says so):
``dispatch`` chooses how a cell's worker starts (``run_isolated``, ``run_processes``, ``prestart``);
``forkserver`` and ``fresh`` are the two ways; ``protocol`` is what a worker and its parent say to each other
and how a worker's exit becomes a cell; ``dnnbench.latency.cell`` is the measurement a worker runs
(``run_cell``). ``python -m dnnbench.isolation.worker FD`` still starts a fresh worker (``fresh.main``).
"""

import sys

from dnnbench.isolation.dispatch import MAX_PROCESS_FACTOR, prestart, run_isolated, run_one, run_processes
from dnnbench.isolation.fresh import main, run_fresh
from dnnbench.isolation.protocol import (WORKER_FORKED, WORKER_FRESH, cell_from_exit, child_env, default_timeout,
                                         log_tail, serve_cell)
from dnnbench.latency.cell import Loader, WorkerStart, _trace_unavailable, classify, describe, run_cell

__all__ = ["MAX_PROCESS_FACTOR", "WORKER_FORKED", "WORKER_FRESH", "Loader", "WorkerStart", "_trace_unavailable",
           "cell_from_exit", "child_env", "classify", "default_timeout", "describe", "log_tail", "main",
           "prestart", "run_cell", "run_fresh", "run_isolated", "run_one", "run_processes", "serve_cell"]

if __name__ == "__main__":
    sys.exit(main(sys.argv))
