"""ExecuTorch with the XNNPACK delegate: the model exported, lowered to a ``.pte`` program and run on the CPU.

Export: ``torch.export.export`` at this cell's fixed batch size (an ExecuTorch program is memory-planned for
fixed shapes), then ``to_edge_transform_and_lower`` with ``XnnpackPartitioner`` and ``to_executorch``; the
``.pte`` is written to a temporary folder and loaded by ExecuTorch's own Python runtime
(``executorch.runtime.Runtime``), whose ``forward`` method runs one batch. What XNNPACK cannot take runs in
ExecuTorch's portable kernels; the share of ops and of convolution/linear/matmul MACs delegated is in the details.

Precisions: fp32, and int8 = static int8 by PT2E quantization: ``XNNPACKQuantizer`` with the symmetric
per-channel configuration (int8 weights per output channel, int8 activations per tensor), ``prepare_pt2e``, the
cell's calibration batches, ``convert_pt2e``, then the same lowering (XNNPACK fuses the quantize/dequantize
pairs into int8 kernels). fp16, bf16 and int8-dynamic are not offered here.

Threads: ExecuTorch's threadpool (which XNNPACK's kernels use) is resized to the cell's thread count with
``_unsafe_reset_threadpool`` before the program is loaded, and read back into the details.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import math
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter

import torch

from dnnbench.core.errors import InputError, MissingExtraError, ModelBuildError, UnavailableError
from dnnbench.core.optional import require
from dnnbench.runtimes.base import (Availability, Context, Prepared, Runtime, eager_outputs, flat_outputs,
                                    register, tensors_only)
from dnnbench.runtimes.eager import torch_only

PURPOSE = "--runtime executorch"
FIX = "pip install 'dnnbench[executorch]'"
QUANTIZATION = ("PT2E static: XNNPACKQuantizer, symmetric, int8 weights per output channel, int8 activations per "
                "tensor (HistogramObserver), prepare_pt2e -> calibration -> convert_pt2e")
COUNTED = ("ops: call_function nodes of the lowered edge graph, inside XNNPACK partitions vs left to portable "
           "kernels, excluding getitem, the delegate calls and int8 quantize/dequantize nodes; MACs: convolution, "
           "linear, mm/bmm/addmm/matmul from their nodes' shapes")


def _version() -> str:
    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _present() -> bool:
    """executorch and its prebuilt runtime can be found (without importing them: that takes seconds)."""
    import importlib.util

    try:
        return importlib.util.find_spec("executorch.extension.pybindings._C") is not None
    except (ImportError, ValueError):
        return False


def _libs():
    """The ExecuTorch modules preparing needs, imported quietly (the runtime's import warns that it is
    experimental, and torchao's pytree registration warns on recent torch)."""
    require("executorch", PURPOSE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from executorch import exir
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                                 get_symmetric_quantization_config)
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime as EtRuntime
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        except ImportError as exc:  # executorch is there, a part of it is not
            raise MissingExtraError(f"executorch is installed but incomplete for {PURPOSE} ({_first_line(exc)})",
                                    f"reinstall it: {FIX}") from exc
    return dict(exir=exir, XnnpackPartitioner=XnnpackPartitioner, XNNPACKQuantizer=XNNPACKQuantizer,
                config=get_symmetric_quantization_config, portable_lib=portable_lib, EtRuntime=EtRuntime,
                prepare_pt2e=prepare_pt2e, convert_pt2e=convert_pt2e)


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0].rstrip(" .\"'")
    return f"{type(exc).__name__}: {text}"[:300]


@register
class ExecuTorch(Runtime):
    name = "executorch"
    description = "ExecuTorch .pte program with the XNNPACK delegate (CPU)"
    precisions = ("fp32", "int8")

    def availability(self, device: str = "cpu") -> Availability:
        if not _present():
            return Availability(self.name, False, f"executorch is needed for {PURPOSE}", FIX, missing_extra=True)
        details = {"executorch_version": _version(), "delegate": "XNNPACK"}
        if device != "cpu":
            return Availability(self.name, False, f"ExecuTorch's XNNPACK delegate runs on the CPU only, not {device}",
                                "use --device cpu, or --runtime onnxruntime or compile on the GPU", details)
        return Availability(self.name, True, details=details)

    def unsupported(self, precision: str, device: str) -> str | None:
        if precision in ("fp16", "bf16"):
            other = "--runtime eager or onnxruntime" if precision == "fp16" else "--runtime eager or compile"
            return (f"dnnbench's executorch runtime lowers fp32 and static int8 only, not {precision}; "
                    f"measure {precision} with {other}")
        if precision == "int8-dynamic":
            return ("dnnbench's executorch runtime quantizes statically (--precision int8, calibrated), not "
                    "dynamically; use --precision int8 here, or --runtime eager or onnxruntime for int8-dynamic")
        return super().unsupported(precision, device)

    def import_libraries(self) -> None:
        libs = _libs()
        # the first lowering's one-off start-up (lazy imports and registrations, ~5 s and tens of MB that stay
        # resident) is the tool's cost, not the model's: pay it before the memory baseline on a one-layer model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(torch.nn.Linear(2, 2).eval(), (torch.zeros(1, 2),))
            libs["exir"].to_edge_transform_and_lower(ep, partitioner=[libs["XnnpackPartitioner"]()]).to_executorch()

    def prepare(self, ctx: Context) -> Prepared:
        torch_only(ctx)
        if ctx.device.type != "cpu":
            raise UnavailableError(f"--runtime executorch cannot run on {ctx.device}",
                                   "ExecuTorch's XNNPACK delegate runs on the CPU only", "use --device cpu")
        tensors_only(ctx, "an ExecuTorch program")  # a detector's list: the program would want one input per image
        if ctx.precision == "int8" and not ctx.calibration:
            raise InputError("static int8 under --runtime executorch needs calibration batches",
                             "none were given to the runtime (Context.calibration is empty)",
                             "prepare int8 through dnnbench.runtimes.prepare, which makes them (from --calibration "
                             "DIR, or generated)")
        libs = _libs()
        details: dict = {"executorch_version": _version(), "delegate": "XNNPACK"}
        notes: list[str] = []
        reference = eager_outputs(ctx.module, ctx.args, ctx.kwargs)
        tmp = tempfile.mkdtemp(prefix="dnnbench-executorch-")
        cleanups = [lambda: shutil.rmtree(tmp, ignore_errors=True)]
        try:
            path, ep_spec = _build(libs, ctx, os.path.join(tmp, "model.pte"), details)
            flat = _flat_inputs(ep_spec, ctx.args, ctx.kwargs)
            _threads(libs["portable_lib"], ctx.threads, details, notes)
            method = _load(libs, path, len(flat))
        except Exception:
            for c in cleanups:
                c()
            raise
        if ctx.precision == "int8":
            notes.append(f"int8: static quantization ({QUANTIZATION}), calibrated on {details['calibration_batches']} "
                         "batches; ops the quantizer does not annotate run in fp32")
        portable = details.get("portable_ops")
        if portable:
            notes.append(f"{sum(portable.values())} ops run in ExecuTorch's portable kernels, not XNNPACK: "
                         + ", ".join(f"{k} x{v}" for k, v in sorted(portable.items())))
        shapes = [tuple(t.shape) for t in flat]

        def call():
            return method.execute(flat)

        def outputs():
            return _float(call())

        def run(args: tuple, kwargs: dict) -> list[torch.Tensor]:
            new = _flat_inputs(ep_spec, args, kwargs)
            got = [tuple(t.shape) for t in new]
            if got != shapes:
                raise InputError("the ExecuTorch program was prepared for other input shapes",
                                 f"it takes {shapes}, these are {got} (its shapes are fixed when it is exported)",
                                 "prepare it again at these shapes, or pass inputs of the prepared batch size")
            return _float(method.execute([t.detach().cpu().contiguous() for t in new]))

        constants, repeated = details["constant_bytes"], details["repeated_constant_bytes"]

        def artifact() -> tuple[int, str]:
            return pte_artifact(path, ctx.precision, constants, repeated)

        def save(folder: str) -> list[str]:
            os.makedirs(folder, exist_ok=True)
            dest = os.path.join(folder, f"model.executorch.{ctx.precision}.pte")
            shutil.copyfile(path, dest)
            return [dest]

        return Prepared(call, outputs, self.name, ctx.precision, reference=reference, reference_name="eager fp32",
                        releases_module=True, restart_peak=True, details=details, notes=notes, cleanups=cleanups,
                        artifact=artifact, save=save, run=run)


# ---- export, quantize, lower ------------------------------------------------------------------------

def _build(libs: dict, ctx: Context, path: str, details: dict):
    """Export (and for int8 quantize) ``ctx.module``, lower it to XNNPACK and write the ``.pte`` to ``path``.

    Returns (path, the exported program's input spec); fills ``details``. Every failure is a ModelBuildError with
    the library's reason."""
    fix = "measure it with --runtime eager or onnxruntime"
    t0 = time.perf_counter()
    try:
        # a failing export prints its partial graph to stderr; the error's first line says why, in one line
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            ep = torch.export.export(ctx.module, ctx.args, ctx.kwargs or None)
    except Exception as exc:
        raise ModelBuildError("exporting the model with torch.export failed", _first_line(exc),
                              fix + ", or make its forward exportable (no data-dependent Python control flow)") \
            from exc
    details["export_s"] = time.perf_counter() - t0
    in_spec = ep.call_spec.in_spec
    if ctx.precision == "int8":
        t0 = time.perf_counter()
        try:
            ep = _quantize(libs, ep, ctx)
        except Exception as exc:
            raise ModelBuildError("quantizing the model to static int8 (PT2E, XNNPACKQuantizer) failed",
                                  _first_line(exc), "measure it at --precision fp32, or with --runtime eager") from exc
        details["quantize_s"] = time.perf_counter() - t0
        details["quantization"] = QUANTIZATION
        details["calibration_batches"] = len(ctx.calibration)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            edge = libs["exir"].to_edge_transform_and_lower(ep, partitioner=[libs["XnnpackPartitioner"]()])
            lowered_s = time.perf_counter() - t0
            gm = edge.exported_program().graph_module
            details.update(delegation(gm, ctx.precision == "int8"))  # counting is not lowering: not in lower_s
            details["constant_bytes"], details["repeated_constant_bytes"] = constant_bytes(gm)
            t0 = time.perf_counter()
            program = edge.to_executorch()
            with open(path, "wb") as f:
                program.write_to_file(f)
    except Exception as exc:
        raise ModelBuildError("lowering the model to an ExecuTorch program (XNNPACK) failed", _first_line(exc),
                              fix) from exc
    details["lower_s"] = lowered_s + time.perf_counter() - t0
    details["delegation_counted"] = COUNTED
    return path, in_spec


def pte_artifact(path: str, precision: str, constants: int, repeated: int) -> tuple[int, str]:
    """The artifact of an executorch configuration: the ``.pte`` it runs, on disk.

    ExecuTorch keys the delegate's constants by a hash of their bytes, so identical constants are stored once:
    ``repeated`` (bytes of weights equal to another, of ``constants`` counted each on its own; see
    ``constant_bytes``) says when that happened, since generated weights that repeat share where trained weights
    would not."""
    size = os.path.getsize(path)
    note = f".pte program on disk ({os.path.basename(path)}) (XNNPACK delegate, {precision})"
    if constants and repeated > 0.01 * constants:
        note += (f"; ExecuTorch stores identical constants once: {repeated} of the {constants} bytes of its weights "
                 "are repeats (generated weights that repeat share where trained weights would not: a trained "
                 f"model's .pte would be about {size + repeated} bytes)")
    return size, note


def _quantize(libs: dict, ep, ctx: Context):
    """Static int8: annotate with XNNPACKQuantizer, observe the calibration batches, convert, export again."""
    quantizer = libs["XNNPACKQuantizer"]().set_global(libs["config"](is_per_channel=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = libs["prepare_pt2e"](ep.module(), quantizer)
        with torch.no_grad():
            for args, kwargs in ctx.calibration:
                prepared(*args, **kwargs)
        converted = libs["convert_pt2e"](prepared)
        return torch.export.export(converted, ctx.args, ctx.kwargs or None)


def _threads(portable_lib, threads: int, details: dict, notes: list[str]) -> None:
    """Resize ExecuTorch's threadpool (XNNPACK's) to ``threads`` before loading: a delegate keeps the pool it was
    initialised with. If this build cannot, say so; never pretend."""
    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    count = getattr(portable_lib, "_threadpool_get_thread_count", None)
    if reset is None or count is None:
        why = ("unavailable: this executorch build has no _unsafe_reset_threadpool/_threadpool_get_thread_count; "
               "XNNPACK uses its default threadpool (one thread per core)")
        details["xnnpack_threads"] = why
        notes.append(f"threads: {why}")
        return
    try:
        reset(int(threads))
        details["xnnpack_threads"] = int(count())
    except Exception as exc:
        why = f"unavailable: resizing ExecuTorch's threadpool failed ({_first_line(exc)})"
        details["xnnpack_threads"] = why
        notes.append(f"threads: {why}")
        return
    if details["xnnpack_threads"] != threads:
        notes.append(f"threads: ExecuTorch's threadpool has {details['xnnpack_threads']} threads, not the {threads} "
                     "asked for")


def _load(libs: dict, path: str, n_inputs: int):
    try:
        method = libs["EtRuntime"].get().load_program(path).load_method("forward")
        wanted = method.metadata.num_inputs()
    except Exception as exc:
        raise ModelBuildError("loading the ExecuTorch program failed", _first_line(exc),
                              "measure it with --runtime eager or onnxruntime") from exc
    if wanted != n_inputs:
        raise ModelBuildError("the ExecuTorch program's inputs do not match the model's",
                              f"it takes {wanted} tensors, the model was given {n_inputs}",
                              "measure it with --runtime eager or onnxruntime")
    return method


def _flat_inputs(in_spec, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The tensors of (args, kwargs) in the order the exported program takes them (kwargs in its order)."""
    from torch.export._tree_utils import reorder_kwargs
    from torch.utils._pytree import tree_flatten

    try:
        leaves, _ = tree_flatten((tuple(args), reorder_kwargs(dict(kwargs), in_spec)))
    except ValueError as exc:  # other keyword inputs than the program was exported with
        raise InputError("the inputs do not match the ExecuTorch program's", _first_line(exc),
                         "pass the keyword inputs the model was prepared with") from exc
    return [t.contiguous() if isinstance(t, torch.Tensor) else t for t in leaves]


def _float(out) -> list[torch.Tensor]:
    return [t.float() if t.is_floating_point() else t for t in flat_outputs(list(out))]


# ---- how much runs in XNNPACK, and in int8 ------------------------------------------------------------

_QDQ = ("quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel", "dequantize_per_channel",
        "quantize_per_token", "dequantize_per_token", "choose_qparams", "quantize_affine", "dequantize_affine")
_SKIP = ("getitem", "executorch_call_delegate")


def op_name(target) -> str:
    """"aten.convolution.default" for an edge op, "getitem" for operator.getitem."""
    op = getattr(target, "_op", target)  # an EdgeOpOverload wraps the torch OpOverload
    if isinstance(op, torch._ops.OpOverload):
        return str(op)
    return getattr(op, "__name__", str(op))


def _shape(node) -> tuple[int, ...] | None:
    val = getattr(node, "meta", {}).get("val") if isinstance(node, torch.fx.Node) else None
    return tuple(int(d) for d in val.shape) if isinstance(val, torch.Tensor) else None


def _dequantized(node) -> bool:
    return (isinstance(node, torch.fx.Node) and node.op == "call_function"
            and "dequantize" in op_name(node.target))


def mac_op(node) -> tuple[int, bool] | None:
    """(MACs, whether both operands come from dequantize nodes) of a convolution/linear/matmul node, else None."""
    name = op_name(node.target).split(".")
    base = name[1] if len(name) > 1 else name[0]
    out = _shape(node)
    if out is None:
        return None
    a = b = None
    if base in ("convolution", "conv1d", "conv2d", "conv3d"):
        a, b = node.args[0], node.args[1]
        w = _shape(b)
        transposed = base == "convolution" and len(node.args) > 6 and bool(node.args[6])
        x = _shape(a)
        if w is None or (transposed and x is None):
            return None
        # each output element sums Cin/groups * kernel products; a transposed conv spreads each input element
        macs = (math.prod(x) if transposed else math.prod(out)) * math.prod(w[1:])
    elif base == "linear":
        a, b = node.args[0], node.args[1]
        w = _shape(b)
        if w is None:
            return None
        macs = math.prod(out) * w[-1]
    elif base in ("mm", "bmm", "matmul", "addmm"):
        a, b = (node.args[1], node.args[2]) if base == "addmm" else (node.args[0], node.args[1])
        x = _shape(a)
        if x is None:
            return None
        macs = math.prod(out) * x[-1]
    else:
        return None
    return macs, _dequantized(a) and _dequantized(b)


def constant_bytes(gm: torch.fx.GraphModule) -> tuple[int, int]:
    """(bytes of the weights and biases of the convolution/linear/matmul nodes inside XNNPACK partitions, each
    tensor counted once (the int8 tensor behind a dequantize node); of those, the bytes of tensors whose contents
    equal an earlier one's).

    These are the bulk of what the delegate stores in the .pte's named data, which is keyed by content, so equal
    tensors are stored once. Other constants (BatchNorm's, which XNNPACK folds into the convolution; scales) are
    not counted. A tensor used twice (tied weights) counts once: trained models share it too."""
    import hashlib

    from executorch.exir.lowered_backend_module import get_lowered_backend_modules

    seen: set = set()
    digests: set = set()
    total = repeated = 0
    for module in get_lowered_backend_modules(gm):
        ep = module.original_module
        sig = ep.graph_signature
        names = {**sig.inputs_to_parameters, **sig.inputs_to_buffers, **sig.inputs_to_lifted_tensor_constants}
        for node in ep.graph.nodes:
            if node.op != "call_function" or mac_op(node) is None:
                continue
            for arg in node.args[:3]:
                if _dequantized(arg):
                    arg = arg.args[0]
                if not isinstance(arg, torch.fx.Node) or arg.op != "placeholder" or arg.name not in names:
                    continue
                key = names[arg.name]
                t = ep.state_dict[key] if key in ep.state_dict else ep.constants.get(key)
                if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                    continue
                same = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
                if same in seen:  # the same tensor again (tied weights), not a repeat
                    continue
                seen.add(same)
                data = t.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                total += len(data)
                digest = hashlib.sha256(data).digest()
                if digest in digests:
                    repeated += len(data)
                digests.add(digest)
    return total, repeated


def delegation(gm: torch.fx.GraphModule, int8: bool) -> dict:
    """What of the lowered graph runs in XNNPACK partitions, what in portable kernels, and (int8) in int8.

    ``delegated_ops_fraction``: call_function nodes inside the partitions over all (getitem, delegate calls and
    q/dq nodes excluded); ``delegated_macs_fraction``: convolution/linear/matmul MACs inside them over all such
    MACs; ``int8_macs_fraction``: those MACs inside a partition with both operands dequantized from int8 (XNNPACK
    fuses that q/dq pattern into an int8 kernel) over all. A fraction without a denominator is "unavailable: ...".
    """
    from executorch.exir.lowered_backend_module import get_lowered_backend_modules

    ops = Counter()
    portable = Counter()
    macs = Counter()
    partitions = get_lowered_backend_modules(gm)
    graphs = [(True, m.original_module.graph) for m in partitions] + [(False, gm.graph)]
    for delegated, graph in graphs:
        for node in graph.nodes:
            if node.op != "call_function":
                continue
            name = op_name(node.target)
            short = name.split(".")[1] if name.startswith(("aten.", "quantized_decomposed.")) else name
            if short in _SKIP:
                continue
            if not delegated:
                portable[name] += 1
            if short in _QDQ:
                continue
            ops[delegated] += 1
            m = mac_op(node)
            if m is not None:
                macs[delegated] += m[0]
                if delegated and m[1]:
                    macs["int8"] += m[0]
    out: dict = {"delegated_partitions": len(partitions), "portable_ops": dict(portable)}
    total_ops = ops[True] + ops[False]
    total_macs = macs[True] + macs[False]
    no_macs = "unavailable: the graph has no convolution, linear or matmul"
    out["delegated_ops_fraction"] = ops[True] / total_ops if total_ops else "unavailable: the graph has no ops"
    out["delegated_macs_fraction"] = macs[True] / total_macs if total_macs else no_macs
    out["delegated_macs"] = macs[True]
    out["portable_macs"] = macs[False]
    if int8:
        out["int8_macs_fraction"] = macs["int8"] / total_macs if total_macs else no_macs
    return out
