"""PyTorch eager mode: the module called as it is. At fp32 it is the reference configuration.

int8 is static quantization in FX graph mode (``precision.quantize_static_fx``: prepare_fx, calibration on the
cell's calibration batches, convert_fx), CPU only; int8-dynamic quantizes the linear layers' weights
(``quantize_dynamic``). ``run`` takes new inputs of the prepared shapes (accuracy per configuration); ``save``
writes the module's state dict (``dnnbench export``).
"""

from __future__ import annotations

import os
import time

import torch

from dnnbench.core.errors import InputError
from dnnbench.runtimes.base import (Context, Prepared, Runtime, eager_outputs, flat_outputs, register,
                                    state_dict_artifact)
from dnnbench.runtimes.precision import cast_inputs, convert_module, quantize_static_fx


def torch_only(ctx: Context) -> None:
    if getattr(ctx.module, "onnx_path", None) is not None:
        raise InputError(f"{ctx.model} is an ONNX file: it cannot run under --runtime {ctx.runtime}",
                         "an ONNX graph runs only in ONNX Runtime", "use --runtime onnxruntime (the default for onnx:)")


def unsupported_torch(precision: str, device: str) -> str | None:
    if precision == "int8-dynamic" and device.startswith("cuda"):
        return ("PyTorch dynamic quantization (int8-dynamic) runs on the CPU only; use --runtime onnxruntime for "
                "int8-dynamic on CUDA")
    if precision == "int8" and device.startswith("cuda"):
        return ("PyTorch static quantization (torch.ao quantized::conv2d/linear kernels: fbgemm, onednn, qnnpack) "
                "runs on the CPU only; use --runtime onnxruntime for int8 on CUDA")
    return None


def torch_convert(ctx: Context) -> tuple[torch.nn.Module, dict, list[str]]:
    """The cell's module in its precision (eager and compile): a cast, dynamic or static quantization."""
    if ctx.precision == "int8":
        return quantize_static_fx(ctx.module, ctx.calibration, ctx.args, ctx.kwargs, ctx.owns_module, ctx.model)
    return convert_module(ctx.module, ctx.precision, ctx.owns_module)


def torch_runner(module, ctx: Context):
    """``Prepared.run`` of a PyTorch configuration: new inputs, cast and moved as the prepared ones, flat CPU outputs."""
    from torch.utils._pytree import tree_map

    def run(args, kwargs) -> list[torch.Tensor]:
        args, kwargs = tree_map(lambda t: t.to(ctx.device) if isinstance(t, torch.Tensor) else t,
                                (tuple(args), dict(kwargs)))
        args, kwargs = cast_inputs(args, kwargs, ctx.precision)
        with torch.inference_mode():
            return [t.float() if t.is_floating_point() else t for t in flat_outputs(module(*args, **kwargs))]

    return run


def state_dict_saver(module, precision: str):
    """``dnnbench export`` of a PyTorch configuration: torch.save(state_dict) into the folder."""

    def save(folder: str) -> list[str]:
        import warnings

        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"model.{precision}.pt")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensors' deprecation notices
            torch.save(module.state_dict(), path)
        return [path]

    save.note = save_note(precision)  # what ``dnnbench export`` says beside the file
    return save


def save_note(precision: str) -> str:
    """What the saved state dict needs to run (``save.note``: ``dnnbench export`` says it beside the file)."""
    if precision == "int8":
        return ("export: the int8 state dict holds weights and quantization parameters only: loading it needs the "
                "model's code, prepared and converted with torch.ao.quantization.quantize_fx the same way (backend "
                "and qconfig mapping in the details)")
    return "export: the state dict holds weights only: loading it needs the model's code"


@register
class Eager(Runtime):
    name = "eager"
    description = "PyTorch eager mode (the reference at fp32)"
    precisions = ("fp32", "fp16", "bf16", "int8", "int8-dynamic")

    def unsupported(self, precision: str, device: str) -> str | None:
        return super().unsupported(precision, device) or unsupported_torch(precision, device)

    def prepare(self, ctx: Context) -> Prepared:
        torch_only(ctx)
        reference = None if ctx.precision == "fp32" else eager_outputs(ctx.module, ctx.args, ctx.kwargs)
        module, details, notes = torch_convert(ctx)
        args, kwargs = cast_inputs(ctx.args, ctx.kwargs, ctx.precision)

        def call():
            return module(*args, **kwargs)

        def outputs():
            return [t.float() if t.is_floating_point() else t for t in flat_outputs(call())]

        first = None
        if ctx.precision == "int8":  # a model whose quantized graph lacks a kernel fails here, with its message
            from dnnbench.core.errors import ModelBuildError
            from dnnbench.runtimes.precision import _first_line

            try:
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    call()
                    first = time.perf_counter() - t0
            except Exception as exc:
                raise ModelBuildError(f"the int8 (FX static) model of {ctx.model} does not run", _first_line(exc),
                                      "use --runtime onnxruntime, openvino or executorch for int8") from exc
        return Prepared(call, outputs, self.name, ctx.precision, reference=reference, first_call_s=first,
                        restart_peak=reference is not None, details=details, notes=notes,
                        artifact=state_dict_artifact(module, ctx.precision, int8_note(ctx.precision)),
                        save=state_dict_saver(module, ctx.precision), run=torch_runner(module, ctx))


def int8_note(precision: str) -> str:
    if precision == "int8-dynamic":
        return " (nn.Linear weights packed as int8 by dynamic quantization)"
    if precision == "int8":
        return " (conv and linear weights packed as int8 by FX static quantization)"
    return ""
