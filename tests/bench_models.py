"""Tiny models for the bench tests, each with a failure injected at a known batch size.

Referenced as python:tests/bench_models.py:NAME (workers rebuild them from the reference) or imported.
"""

import os
import signal

import torch
from torch import nn

FAKE_CPU_OOM = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes (injected by a test)"


def tiny():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), torch.randn(1, 16)


class _FailFrom(nn.Module):
    def __init__(self, at: int, exc, exact: bool = False):
        super().__init__()
        self.lin = nn.Linear(16, 4)
        self.at, self.exc, self.exact = at, exc, exact

    def forward(self, x):
        b = x.shape[0]
        if x.device.type == "meta":  # the static profile runs forward on meta tensors in the parent
            return self.lin(x)
        if b == self.at or (not self.exact and b >= self.at):
            if self.exc == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does
            raise self.exc
        return self.lin(x)


def oom_from_4():
    """Raises the CPU allocator's out-of-memory error from batch 4 up."""
    return _FailFrom(4, RuntimeError(FAKE_CPU_OOM)), torch.randn(1, 16)


def cuda_oom_from_4():
    return _FailFrom(4, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 B (injected by a test)")), \
        torch.randn(1, 16)


def error_at_2():
    """A bug that shows only at batch 2 (not memory): that cell errors, the others run."""
    return _FailFrom(2, ValueError("injected failure at batch 2"), exact=True), torch.randn(1, 16)


def sigkill_from_4():
    """The worker process dies by SIGKILL from batch 4 up, as under the OOM killer."""
    return _FailFrom(4, "sigkill"), torch.randn(1, 16)


class _Ballast(nn.Module):
    def __init__(self, nbytes: int):
        super().__init__()
        self.register_buffer("ballast", torch.ones(nbytes // 4))  # ones: every page touched
        self.lin = nn.Linear(16, 4)

    def forward(self, x):
        return self.lin(x)


def ballast_loader(pid_file: str, nbytes: int):
    """A picklable loader for run_isolated: records the building process's pid, holds ``nbytes``."""
    from dnnbench.core.specs import InputSpec, LoadedModel

    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    return LoadedModel("ballast", _Ballast(nbytes), InputSpec.from_examples(torch.randn(1, 16)))


_RESIDENT = []


class PreparedLoader:
    """A loader whose prepare() makes ``nbytes`` resident for good, as a library import does."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes

    def prepare(self):
        _RESIDENT.append(b"\x01" * self.nbytes)

    def __call__(self):
        from dnnbench.core.specs import InputSpec, LoadedModel

        return LoadedModel("prepared", nn.Linear(16, 4), InputSpec.from_examples(torch.randn(1, 16)))


def tiny_conv():
    """An image model (one 3-channel input), so that --input-size applies."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), \
        torch.randn(1, 3, 8, 8)
