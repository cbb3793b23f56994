"""PyTorch eager mode: the module called as it is. At fp32 it is the reference configuration."""

from __future__ import annotations

from dnnbench.core.errors import InputError
from dnnbench.runtimes.base import (Context, Prepared, Runtime, eager_outputs, flat_outputs, register,
                                    state_dict_artifact)
from dnnbench.runtimes.precision import cast_inputs, convert_module


def torch_only(ctx: Context) -> None:
    if getattr(ctx.module, "onnx_path", None) is not None:
        raise InputError(f"{ctx.model} is an ONNX file: it cannot run under --runtime {ctx.runtime}",
                         "an ONNX graph runs only in ONNX Runtime", "use --runtime onnxruntime (the default for onnx:)")


def unsupported_torch(precision: str, device: str) -> str | None:
    if precision == "int8-dynamic" and device.startswith("cuda"):
        return ("PyTorch dynamic quantization (int8-dynamic) runs on the CPU only; use --runtime onnxruntime for "
                "int8-dynamic on CUDA")
    return None


@register
class Eager(Runtime):
    name = "eager"
    description = "PyTorch eager mode (the reference at fp32)"

    def unsupported(self, precision: str, device: str) -> str | None:
        return super().unsupported(precision, device) or unsupported_torch(precision, device)

    def prepare(self, ctx: Context) -> Prepared:
        torch_only(ctx)
        reference = None if ctx.precision == "fp32" else eager_outputs(ctx.module, ctx.args, ctx.kwargs)
        module, details, notes = convert_module(ctx.module, ctx.precision, ctx.owns_module)
        args, kwargs = cast_inputs(ctx.args, ctx.kwargs, ctx.precision)

        def call():
            return module(*args, **kwargs)

        def outputs():
            return [t.float() if t.is_floating_point() else t for t in flat_outputs(call())]

        return Prepared(call, outputs, self.name, ctx.precision, reference=reference,
                        restart_peak=reference is not None, details=details, notes=notes,
                        artifact=state_dict_artifact(module, ctx.precision, int8_note(ctx.precision)))


def int8_note(precision: str) -> str:
    return " (nn.Linear weights packed as int8 by dynamic quantization)" if precision == "int8-dynamic" else ""
