"""OpenVINO: the model converted to an OpenVINO model, saved as IR (model.xml + model.bin) and compiled for the CPU.

Conversion: ``openvino.convert_model`` of the torch module with the cell's batch as ``example_input`` (an ONNX file
as the model is read from its file), its inputs then fixed to the cell's shapes, so the CPU plugin compiles for
one static shape as a deployment at a fixed batch size would. The converted model is saved as IR
(``openvino.save_model``, ``compress_to_fp16=False``: the weights stay as converted) into a temporary folder,
and that IR is what is compiled, measured (``artifact_bytes``) and exported — what a deployment ships and loads.

Compilation: ``core.compile_model(xml, "CPU", config)`` with ``INFERENCE_NUM_THREADS`` = the cell's thread count,
``NUM_STREAMS`` 1, ``PERFORMANCE_HINT`` LATENCY and an explicit ``INFERENCE_PRECISION_HINT``: f32 for fp32 and
int8 (OpenVINO's CPU plugin would otherwise run fp32 models in bf16 on CPUs with AVX-512 BF16 or AMX), f16 for
fp16 (only where the CPU plugin lists FP16 in its OPTIMIZATION_CAPABILITIES). One InferRequest runs every
timed call, its inputs set once as ``ov.Tensor`` views of the batch (no host conversion is timed).

int8 is static: NNCF post-training quantization (``nncf.quantize`` on the converted OpenVINO model — NNCF's
OpenVINO backend, its path for OpenVINO deployment — with ``target_device=CPU`` and the cell's calibration
batches as an ``nncf.Dataset``), convolutions and linear layers included: FakeQuantize nodes with int8 ranges
the CPU plugin folds into integer kernels. ``int8_macs_fraction`` is read from the compiled model's runtime graph:
the Convolution/FullyConnected/MatMul layers that execute in u8/i8, by their MACs (from the layers' shapes).

OpenVINO's converter and NNCF send usage telemetry unless told not to (a forked process per event, about 0.4 s
per conversion here, inside ``convert_s``): preparation runs with it off, the way both libraries honour
(``CI=true`` for the duration), and NNCF's progress bars and INFO logs kept off stdout.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings

import torch

from dnnbench.core.errors import InputError, MissingExtraError, ModelBuildError, UnavailableError
from dnnbench.core.optional import available, require
from dnnbench.runtimes.base import (Availability, Context, Prepared, Runtime, check_fixed_batch, eager_outputs,
                                    register, tensors_only)

PURPOSE = "--runtime openvino"
FIX = "pip install 'dnnbench[openvino]'"
HINTS = {"fp32": "f32", "fp16": "f16", "int8": "f32"}  # INFERENCE_PRECISION_HINT per precision
MAC_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul")
INT8_RUNTIME = ("u8", "i8")


def _first_line(exc: BaseException) -> str:
    """The reason in one line. OpenVINO's messages start with where in its C++ it failed ("Check 'false' failed at
    src/...cpp:151:", "Exception from ...") and list a conversion's unconverted operations as "-- ..." lines."""
    boilerplate = ("Exception from", "Check '", "FrontEnd API failed", "Summary:")
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    kept = [ln for ln in lines if not ln.startswith(boilerplate)] or lines
    items = [ln.lstrip("- ").strip() for ln in kept if ln.startswith("--")]
    text = "; ".join(items) if items else (kept[0] if kept else "")
    return f"{type(exc).__name__}: {text}"[:300]


@contextlib.contextmanager
def quiet():
    """OpenVINO's and NNCF's telemetry off (both skip it when CI=true), NNCF's progress bars and INFO logs off
    stdout, conversion warnings (torch.jit.trace's deprecation) silenced; everything restored after."""
    old = os.environ.get("CI")
    os.environ["CI"] = "true"
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        nncf_log.setLevel(level)
        if old is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = old


@functools.lru_cache(maxsize=1)
def core():
    """One ``openvino.Core`` per process (it loads the device plugins once)."""
    ov = require("openvino", PURPOSE)
    return ov.Core()


def has_nncf() -> bool:
    """Whether nncf is installed, without importing it (a second or more, and its telemetry start-up)."""
    if "nncf" in sys.modules:
        return sys.modules["nncf"] is not None
    return importlib.util.find_spec("nncf") is not None


def _require_nncf():
    try:
        with quiet():
            import nncf
    except ImportError as exc:
        raise MissingExtraError("nncf is needed for --runtime openvino --precision int8 (static int8 by NNCF "
                                "post-training quantization)", FIX) from exc
    return nncf


def cpu_capabilities() -> list[str]:
    return [str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def _type_name(t) -> str:
    """'f32' from an ov.Type (or whatever a property holds)."""
    return t.get_type_name() if hasattr(t, "get_type_name") else str(t)


# ---- inputs ---------------------------------------------------------------------------------------------------

def _ordered_inputs(model, args: tuple, kwargs: dict, names: list[str] | None = None) -> list[tuple[int, torch.Tensor]]:
    """(the model's input index, the tensor it takes) for every model input: positional ``args`` in order (or by
    ``names``, an ONNX file's input names), ``kwargs`` by their names."""
    by_name = dict(zip(names, args)) if names is not None else {}
    by_name.update(kwargs)
    out = []
    for i, port in enumerate(model.inputs):
        tensor = next((by_name[n] for n in port.get_names() if n in by_name), None)
        if tensor is None and names is None and i < len(args):
            tensor = args[i]
        if tensor is None:
            raise InputError(f"the OpenVINO model's input {i} ({port.get_any_name()}) has no tensor to take",
                             f"dnnbench has {len(args)} positional inputs and {sorted(kwargs)}",
                             "give the model tensors for all of its inputs")
        out.append((i, tensor))
    if len(out) != len(args) + len(kwargs):
        raise InputError(f"the OpenVINO model has {len(out)} inputs", f"dnnbench gives {len(args) + len(kwargs)}",
                         "measure the model with --runtime eager or onnxruntime")
    return out


def _numpy(t: torch.Tensor):
    return t.detach().cpu().contiguous().numpy()


# ---- the compiled model's runtime graph ------------------------------------------------------------------------

def _rt(op, key: str) -> str:
    info = op.get_rt_info()
    return str(info[key].astype(str)) if key in info else ""


def _shape(op, port: int, output: bool = False) -> list[int] | None:
    ps = op.get_output_partial_shape(port) if output else op.get_input_partial_shape(port)
    return [d.get_length() for d in ps] if ps.is_static else None


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


def layer_macs(layer: str, ins: list[list[int] | None], out: list[int] | None) -> int | None:
    """Multiply-accumulates of one runtime-graph layer from its shapes; None when they are unknown."""
    if out is None or not ins or ins[0] is None:
        return None
    x = ins[0]
    w = ins[1] if len(ins) > 1 else None
    if layer in ("Convolution", "GroupConvolution"):
        if w is None:
            return None
        # weights [Cout, Cin/g, k...] or grouped [g, Cout/g, Cin/g, k...]: each output value sums Cin/g * k... terms
        return _prod(out) * _prod(w[2:] if len(w) == len(out) + 1 else w[1:])
    if layer == "Deconvolution":
        if w is None:
            return None
        # each input value scatters into Cout/g * k... outputs; weights [Cin, Cout/g, k...] or [g, Cin/g, Cout/g, k...]
        return _prod(x) * _prod(w[2:] if len(w) == len(x) + 1 else w[1:])
    if layer == "FullyConnected":
        return _prod(out) * x[-1]
    if layer == "MatMul":
        if len(x) == 1:
            return _prod(out) * x[0]
        # x's last two dims are {M, K} in either order (transpose_a): K = their product over M = out[-2]
        m = out[-2] if len(out) >= 2 else 1
        return _prod(out) * (_prod(x[-2:]) // m if m else 0)
    return None


def runtime_graph(compiled) -> dict:
    """What the compiled model executes: the share of Convolution/FullyConnected/MatMul MACs per runtime precision,
    and the int8 share (the layers that run in u8/i8)."""
    by_precision: dict[str, int] = {}
    total = int8 = unknown = 0
    float_layers = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        layer = _rt(op, "layerType")
        if layer not in MAC_LAYERS:
            continue
        macs = layer_macs(layer, [_shape(op, i) for i in range(op.get_input_size())], _shape(op, 0, output=True))
        if macs is None:
            unknown += 1
            continue
        precision = _rt(op, "runtimePrecision") or "unknown"
        by_precision[precision] = by_precision.get(precision, 0) + macs
        total += macs
        if precision in INT8_RUNTIME:
            int8 += macs
        elif macs:
            float_layers.append(f"{op.get_friendly_name()} ({layer}, {precision})")
    out: dict = {"conv_matmul_macs": total, "int8_macs": int8,
                 "macs_by_runtime_precision": {p: n / total for p, n in sorted(by_precision.items())} if total else {},
                 "int8_macs_counted": ("MACs of the Convolution/GroupConvolution/Deconvolution/FullyConnected/MatMul "
                                       "layers of the compiled model's runtime graph (get_runtime_model), from their "
                                       "input/output shapes; int8: runtimePrecision u8 or i8")}
    if total:
        out["int8_macs_fraction"] = int8 / total
    else:
        out["int8_macs_fraction"] = ("unavailable: the compiled graph has no Convolution/FullyConnected/MatMul MACs"
                                     if not unknown else
                                     f"unavailable: the shapes of all {unknown} Convolution/FullyConnected/MatMul "
                                     "layers are dynamic")
    if unknown and total:
        out["macs_unknown_layers"] = unknown
    if float_layers:
        out["float_mac_layers"] = float_layers[:20]
    return out


# ---- the artifact -----------------------------------------------------------------------------------------------

def ir_files(xml: str) -> list[str]:
    return [xml, os.path.splitext(xml)[0] + ".bin"]


def constant_bytes(model) -> int:
    """The bytes of every Constant of ``model``, counted each on its own (what model.bin holds unless it shares)."""
    total = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant":
            bits = op.get_output_element_type(0).bitwidth * _prod(op.get_output_shape(0))
            total += (bits + 7) // 8
    return total


def ir_artifact(xml: str, what: str, constants: int | None = None):
    """The artifact of an openvino configuration: the IR it compiled, model.xml + model.bin on disk.

    ``save_model`` writes identical constants into model.bin once: ``constants`` (their bytes counted each on its
    own) says when that happened, since random weights that repeat (dnnbench's cheap initialisation tiles one
    block of values) share where a trained model's would not."""

    def measure() -> tuple[int, str]:
        files = ir_files(xml)
        sizes = [os.path.getsize(f) for f in files]
        note = f"OpenVINO IR model.xml + model.bin ({sizes[0]} + {sizes[1]} bytes): {what}"
        if constants and sizes[1] < 0.99 * constants:
            note += (f"; model.bin stores identical constants once: {constants - sizes[1]} of the model's {constants} "
                     "constant bytes are repeats (random weights that repeat, as dnnbench's cheap initialisation "
                     "tiles one block, share where trained weights would not: a trained model's IR would be about "
                     f"{sizes[0] + constants} bytes)")
        return sum(sizes), note

    return measure


def ir_saver(xml: str):
    """``dnnbench export`` of an openvino configuration: the IR it compiled (model.xml and model.bin)."""

    def save(folder: str) -> list[str]:
        os.makedirs(folder, exist_ok=True)
        return [shutil.copyfile(f, os.path.join(folder, os.path.basename(f))) for f in ir_files(xml)]

    return save


def _failed(what: str, fix: str, exc: BaseException) -> ModelBuildError:
    return ModelBuildError(what, _first_line(exc), fix)


CONVERT_FIX = ("measure it with --runtime eager or onnxruntime, or convert it yourself (ovc) and check what "
               "OpenVINO's PyTorch frontend reports")


@register
class OpenVino(Runtime):
    name = "openvino"
    description = "OpenVINO on the CPU: the model converted to IR and compiled by the CPU plugin"
    precisions = ("fp32", "fp16", "int8")

    def availability(self, device: str = "cpu") -> Availability:
        if not available("openvino"):
            return Availability(self.name, False, f"openvino is needed for {PURPOSE}", FIX, missing_extra=True)
        import openvino as ov

        details = {"openvino_version": ov.__version__, "available_devices": list(core().available_devices),
                   "nncf": "installed (int8)" if has_nncf() else f"not installed: int8 needs it ({FIX})"}
        if device.startswith("cuda"):
            return Availability(self.name, False, f"OpenVINO does not run on {device}: it runs Intel GPUs as its "
                                                  "\"GPU\" device, not CUDA devices", "use --device cpu", details)
        return Availability(self.name, True, details=details)

    def unsupported(self, precision: str, device: str) -> str | None:
        if precision == "bf16":
            return ("dnnbench does not offer OpenVINO bf16 (the CPU plugin's bf16 is an inference-precision hint on "
                    "the fp32 IR, not yet measured by dnnbench): measure bf16 with --runtime eager or compile")
        if precision == "int8-dynamic":
            return ("OpenVINO's int8 is static (NNCF post-training quantization, calibrated, convolutions included): "
                    "use --precision int8; its dynamic quantization applies only to weight-compressed LLM MatMuls")
        why = super().unsupported(precision, device)
        if why or not available("openvino"):
            return why  # a missing openvino is availability's to say
        if precision == "fp16" and "FP16" not in cpu_capabilities():
            return ("OpenVINO's CPU plugin has no fp16 inference on this CPU (its OPTIMIZATION_CAPABILITIES are "
                    f"{', '.join(cpu_capabilities())}: it lists FP16 only where the CPU has native half-precision "
                    "arithmetic)")
        if precision == "int8" and not has_nncf():
            return f"static int8 under OpenVINO is NNCF post-training quantization, and nncf is not installed: {FIX}"
        return None

    def import_libraries(self) -> None:
        ov = require("openvino", PURPOSE)
        with quiet():
            if has_nncf():
                import nncf  # noqa: F401  (1-3 s, ~40 MiB resident: the tool's, not an int8 cell's)
            # the PyTorch frontend's and the CPU plugin's one-off start-up are the tool's cost, not the model's:
            # pay them before the memory baseline on a one-layer model
            model = ov.convert_model(torch.nn.Linear(2, 2).eval(), example_input=torch.zeros(1, 2))
            core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1})

    def prepare(self, ctx: Context) -> Prepared:
        ov = require("openvino", PURPOSE)
        if ctx.device.type != "cpu":
            raise UnavailableError(f"--runtime openvino cannot run on --device {ctx.device}",
                                   "OpenVINO runs Intel GPUs as its \"GPU\" device, not CUDA devices",
                                   "use --device cpu")
        nncf = _require_nncf() if ctx.precision == "int8" else None  # a missing nncf: one line naming the extra
        why = self.unsupported(ctx.precision, "cpu")
        if why:
            raise UnavailableError(f"--runtime openvino --precision {ctx.precision} cannot run here", why,
                                   "choose another precision or runtime")
        tmp = tempfile.mkdtemp(prefix="dnnbench-openvino-")
        cleanups = [lambda: shutil.rmtree(tmp, ignore_errors=True)]
        details: dict = {"openvino_version": ov.__version__, "device": "CPU"}
        notes: list[str] = []
        try:
            file = getattr(ctx.module, "onnx_path", None)
            names = None
            if file is not None:  # an ONNX file as the model: its module runs ONNX Runtime, the file's reference
                check_fixed_batch(ctx)
                names = list(ctx.module.input_names)
                reference_name = "onnxruntime fp32 (the file as given)"
                details["source"] = "the ONNX file as given"
            else:
                tensors_only(ctx, "a converted model")  # a detector's list: one input per image
                reference_name = "eager fp32"
                details["source"] = "openvino.convert_model of the torch module (PyTorch frontend)"
            reference = eager_outputs(ctx.module, ctx.args, ctx.kwargs)
            t0 = time.perf_counter()
            model = self._convert(ov, ctx, file)
            feeds = _ordered_inputs(model, ctx.args, ctx.kwargs, names)
            try:
                model.reshape({i: list(t.shape) for i, t in feeds})  # the cell's one static shape
            except Exception as exc:
                raise _failed(f"fixing the OpenVINO model's inputs to {[list(t.shape) for _, t in feeds]} failed",
                              CONVERT_FIX, exc) from exc
            details["convert_s"] = time.perf_counter() - t0
            if ctx.precision == "int8":
                t0 = time.perf_counter()
                model = self._quantize(nncf, model, ctx, names, details)
                details["quantize_s"] = time.perf_counter() - t0
            xml = os.path.join(tmp, "model.xml")
            t0 = time.perf_counter()
            with quiet():
                ov.save_model(model, xml, compress_to_fp16=False)
            details["save_s"] = time.perf_counter() - t0
            constants = constant_bytes(model)
            input_types = [p.get_element_type() for p in model.inputs]
            del model  # the compiled model holds its own weights; the IR is on disk
            config = {"INFERENCE_NUM_THREADS": ctx.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_PRECISION_HINT": HINTS[ctx.precision]}
            t0 = time.perf_counter()
            try:
                with quiet():
                    compiled = core().compile_model(xml, "CPU", config)
            except Exception as exc:
                raise _failed("OpenVINO's CPU plugin could not compile the model", CONVERT_FIX, exc) from exc
            details["compile_s"] = time.perf_counter() - t0
            details.update(self._compiled_details(compiled, ctx))
            if ctx.precision == "int8":
                frac = details["int8_macs_fraction"]
                notes.append(f"int8: NNCF post-training quantization (static, {details['calibration_batches']} "
                             "calibration batches, target device CPU), convolutions included; "
                             + (f"{100 * frac:.1f} % of the Convolution/FullyConnected/MatMul MACs execute in int8"
                                if isinstance(frac, float) else frac) + "; the rest run in f32 (precision hint)")
            else:
                notes.append(f"{ctx.precision}: INFERENCE_PRECISION_HINT {HINTS[ctx.precision]} (set explicitly: "
                             "OpenVINO's CPU plugin would otherwise pick bf16 on CPUs with AVX-512 BF16 or AMX)")
        except Exception:
            for c in cleanups:
                c()
            raise
        request = compiled.create_infer_request()
        # the arrays behind the request's input tensors: an ov.Tensor on shared memory does not keep its array
        # alive, so ``call`` holds them (the cell's own input tensors may be freed once prepared)
        keep = [_numpy(t).astype(typ.to_dtype(), copy=True) for (_, t), typ in zip(feeds, input_types)]
        for (i, _), arr in zip(feeds, keep):
            request.set_input_tensor(i, ov.Tensor(arr, shared_memory=True))

        def call(_inputs=keep):
            return request.infer(share_outputs=True)

        def outputs() -> list[torch.Tensor]:
            call()
            return [_torch(request.get_output_tensor(j).data) for j in range(len(compiled.outputs))]

        shapes = {i: tuple(t.shape) for i, t in feeds}
        spare: list = []  # a second request for new inputs, made on first use: the timed one keeps its inputs

        def run(args, kwargs) -> list[torch.Tensor]:
            if not spare:
                spare.append(compiled.create_infer_request())
            new = _ordered_inputs(compiled, tuple(args), dict(kwargs), names)
            for i, t in new:
                if tuple(t.shape) != shapes[i]:
                    raise InputError(f"the OpenVINO model is compiled for input {i} of shape {list(shapes[i])}",
                                     f"this input has shape {list(t.shape)}",
                                     "run inputs of the prepared shape (pad the last batch)")
            result = spare[0].infer({i: _numpy(t).astype(typ.to_dtype(), copy=False)
                                     for (i, t), typ in zip(new, input_types)})
            return [_torch(result[j]) for j in range(len(compiled.outputs))]

        what = {"fp32": "fp32 weights (compress_to_fp16=False)",
                "fp16": "fp32 weights (compress_to_fp16=False), run with the f16 precision hint",
                "int8": "NNCF-quantized: int8 weights of the quantized layers, the rest fp32"}[ctx.precision]
        return Prepared(call, outputs, self.name, ctx.precision, reference=reference, reference_name=reference_name,
                        releases_module=True, restart_peak=True, details=details, notes=notes, cleanups=cleanups,
                        artifact=ir_artifact(xml, what, constants), save=ir_saver(xml), run=run)

    @staticmethod
    def _convert(ov, ctx: Context, file: str | None):
        try:
            with quiet():
                if file is not None:
                    return ov.convert_model(file)
                if ctx.kwargs:  # by the forward's parameter names, positional ones first
                    import inspect

                    bound = inspect.signature(ctx.module.forward).bind(*ctx.args, **ctx.kwargs)
                    example = dict(bound.arguments)
                else:
                    example = ctx.args[0] if len(ctx.args) == 1 else tuple(ctx.args)
                with torch.no_grad():
                    return ov.convert_model(ctx.module, example_input=example)
        except Exception as exc:
            raise _failed("converting the model to OpenVINO failed", CONVERT_FIX, exc) from exc

    @staticmethod
    def _quantize(nncf, model, ctx: Context, names, details: dict):
        batches = ctx.calibration or []
        if not batches:
            raise UnavailableError("openvino static int8 has nothing to calibrate on",
                                   "no calibration batches were given",
                                   "pass --calibration DIR (a folder of images), or use --precision fp32")

        def transform(batch):
            a, k = batch
            return {i: _numpy(t) for i, t in _ordered_inputs(model, tuple(a), dict(k), names)}

        try:
            with quiet():
                q = nncf.quantize(model, nncf.Dataset(batches, transform), subset_size=len(batches),
                                  target_device=nncf.TargetDevice.CPU)
        except Exception as exc:
            raise _failed("NNCF post-training quantization failed", "use another runtime for int8, or fp32", exc) \
                from exc
        details.update({"conversion": "nncf.quantize (post-training, OpenVINO backend, target device CPU, "
                                      "preset performance: symmetric int8)",
                        "nncf_version": nncf.__version__, "calibration_batches": len(batches)})
        return q

    @staticmethod
    def _compiled_details(compiled, ctx: Context) -> dict:
        out = {"inference_num_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
               "num_streams": int(compiled.get_property("NUM_STREAMS")),
               "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
               "inference_precision_hint": _type_name(compiled.get_property("INFERENCE_PRECISION_HINT")),
               "execution_devices": [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]}
        try:
            graph = runtime_graph(compiled)
        except Exception as exc:  # the count must not lose the cell
            graph = {"int8_macs_fraction": f"unavailable: reading the runtime graph failed ({_first_line(exc)})"}
        if ctx.precision != "int8":  # nothing was quantized: the int8 share says nothing
            for key in ("int8_macs_fraction", "int8_macs", "int8_macs_counted", "float_mac_layers"):
                graph.pop(key, None)
        out.update(graph)
        return out


def _torch(arr) -> torch.Tensor:
    """A CPU torch tensor of its own (copied out of OpenVINO's buffer); floating ones float32."""
    t = torch.from_numpy(arr.copy())
    return t.float() if t.is_floating_point() else t
