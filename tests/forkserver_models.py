"""Loaders and models for the fork-server tests: each records where it ran or fails in one chosen way.

Loaders are picklable classes (run_isolated sends them to the server); ``prepare()`` runs in the server's
model process, ``__call__`` (the build) in the forked cell.
"""

import json
import os
import signal
import sys
import threading
import time

import torch
from torch import nn


def _lm(name: str, module: nn.Module):
    from dnnbench.core.specs import InputSpec, LoadedModel

    return LoadedModel(name, module, InputSpec.from_examples(torch.randn(1, 16)))


class _Ballast(nn.Module):
    def __init__(self, nbytes: int):
        super().__init__()
        self.register_buffer("ballast", torch.ones(max(nbytes // 4, 1)))  # ones: every page touched
        self.lin = nn.Linear(16, 4)

    def forward(self, x):
        return self.lin(x)


class WhereLoader:
    """Builds a model holding ``nbytes``; writes the building process's pid, parent pid and thread env to ``path``."""

    def __init__(self, path: str, nbytes: int = 0):
        self.path, self.nbytes = path, nbytes

    def __call__(self):
        with open(self.path, "w") as f:
            json.dump({"pid": os.getpid(), "ppid": os.getppid(), "omp": os.environ.get("OMP_NUM_THREADS")}, f)
        return _lm("where", _Ballast(self.nbytes))

    def read(self) -> dict:
        with open(self.path) as f:
            return json.load(f)


class ExitHardLoader:
    """The cell prints a line and leaves with os._exit(3) while building (no result, no exception)."""

    def __call__(self):
        print("about to leave with os._exit(3)", flush=True)
        os._exit(3)


class RaiseLoader:
    def __call__(self):
        raise ValueError("injected failure in the build")


class SigkillLoader:
    """The cell dies by SIGKILL while building, as under the kernel's OOM killer."""

    def __call__(self):
        print("allocating a lot", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


class HangLoader:
    def __call__(self):
        time.sleep(1000)


class KillServerLoader:
    """prepare() runs in the server's model process: it kills the server (its parent), taking everything down."""

    def prepare(self):
        print("killing the fork server", file=sys.stderr, flush=True)
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)  # dies with it (PR_SET_PDEATHSIG)

    def __call__(self):
        return _lm("never", nn.Linear(16, 4))


class KillModelProcessLoader:
    """prepare() kills the model process it runs in."""

    def prepare(self):
        os.kill(os.getpid(), signal.SIGKILL)

    def __call__(self):
        return _lm("never", nn.Linear(16, 4))


class ThreadLoader:
    """prepare() leaves a thread running, as some library imports do: forking is then unsafe."""

    def prepare(self):
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()

    def __call__(self):
        return _lm("threaded", nn.Linear(16, 4))
