"""Runtimes: what runs one batch of a cell — PyTorch eager, torch.compile, ONNX Runtime — as registered plug-ins.

Each runtime checks whether it works here (``availability``: a missing extra, compiler or execution provider
is a reason with its fix), which precisions it refuses (``unsupported``), and prepares a model into the
callable that runs one batch (``prepare``). Timing, memory and power are the worker's, identical for every
runtime; a runtime only adds its preparation (export, session, compilation, quantization) and the
output-equivalence check of every configuration other than eager fp32.
"""

from __future__ import annotations

import time

from dnnbench.core.errors import InputError
from dnnbench.core.measurements import CellSpec, CellWarning
from dnnbench.runtimes import compiled, eager, et, ort, ov  # noqa: F401  (each registers itself)
from dnnbench.runtimes import precision as precisions
from dnnbench.runtimes.base import RUNTIMES, Availability, Context, Prepared, Runtime, compare

__all__ = ["RUNTIMES", "Availability", "Context", "Prepared", "Runtime", "compare", "get", "availability",
           "prepare", "import_libraries", "precisions"]


def get(name: str) -> Runtime:
    rt = RUNTIMES.get(name)
    if rt is None:
        raise InputError(f"unknown runtime {name!r}", f"runtimes are {', '.join(RUNTIMES.names())}",
                         "use --runtime eager, compile or onnxruntime")
    return rt


def availability(name: str, device: str = "cpu") -> Availability:
    return get(name).availability(device)


def import_libraries(spec: CellSpec) -> None:
    """The runtime's libraries, imported before the worker's memory baseline (they are not the model's cost).

    Every runtime's first: ``torch._dynamo``, which building any ``nn.Module`` imports lazily (its init
    methods are wrapped in ``torch._disable_dynamo``): about 170 MiB resident (sympy and friends) that a
    model built from a python: file charged to itself, where torchvision and timm models, built on the meta
    device in ``prepare()``, had it in the baseline.
    """
    import torch._dynamo  # noqa: F401

    get(spec.runtime).import_libraries()


def prepare(spec: CellSpec, module, args: tuple, kwargs: dict, device, owns_module: bool, lm=None) -> Prepared:
    """Prepare ``module`` to run one batch of ``args``/``kwargs`` under the cell's runtime and precision.

    Raises what preparation raises (an export failure is a ModelBuildError with the exporter's reason):
    the worker turns it into an error cell. ``prepare_s`` excludes a first call made while preparing.
    """
    rt = get(spec.runtime)
    ctx = Context(module, args, kwargs, device, spec.runtime, spec.precision, spec.threads, spec.batch_size,
                  spec.model, owns_module)
    calibration_warning = None
    if spec.precision == "int8":  # static int8: the quantizer observes these (``lm``: the model's preprocessing)
        from dnnbench.runtimes import calibration

        ctx.calibration, ctx.calibration_source, calibration_warning = calibration.for_cell(
            spec, lm, args, kwargs, device)
    t0 = time.perf_counter()
    prepared = rt.prepare(ctx)
    prepared.prepare_s = time.perf_counter() - t0 - (prepared.first_call_s or 0.0)
    if ctx.calibration_source:
        prepared.details.setdefault("calibration", ctx.calibration_source)
    if calibration_warning is not None:
        prepared.warnings.append(calibration_warning)
    prepared.details.setdefault("threads", spec.threads)
    prepared.task = spec.task  # what the equivalence check compares depends on it (logits, masks, boxes)
    sup = precisions.support(spec.precision, spec.device)
    if sup.isa:  # what "native" rested on, kept with the cell (an int8 figure means little without it)
        prepared.details.setdefault("isa", sup.isa)
        prepared.details.setdefault("precision_native", sup.native)
    if sup.note and not sup.native:
        prepared.warnings.append(CellWarning(
            "precision", f"{spec.precision} is not native here: {sup.note}",
            f"read this {spec.precision} figure as this machine's, not as {spec.precision} hardware's; "
            f"measure {spec.precision} on a device that has it natively"))
    return prepared
