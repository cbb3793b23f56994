"""ONNX Runtime: the model exported to ONNX (or an ONNX file as given) run by an InferenceSession.

Export: ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``: fast, and reliable for
torchvision models including ViT), dim 0 of every input and output dynamic; if that fails, the same
exporter at this cell's fixed batch size; then the dynamo exporter when ``onnxscript`` is installed. A
model none of them exports fails its cell with the TorchScript exporter's reason.

Session: ``intra_op_num_threads`` = the cell's thread count (as ``torch.set_num_threads``),
``inter_op_num_threads`` = 1, sequential execution, every graph optimisation. Execution providers: CPU on
``--device cpu``; on CUDA, TensorRT (when present) then CUDA, with inputs bound on the GPU (IOBinding), so
no host copy is timed. Precisions: fp16 converts the graph with ONNX Runtime's float16 converter, keeping
fp32 inputs and outputs; int8-dynamic is ``onnxruntime.quantization.quantize_dynamic`` of the linear layers' weights
(MatMul with a weight operand; Gemm is rewritten as MatMul + Add first, since ONNX Runtime has no dynamic
integer Gemm) — the same scope as PyTorch's dynamic quantization, so that both
runtimes' int8 mean the same thing; convolutions stay fp32. bf16 has no ONNX Runtime kernels and is refused.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
import warnings

import torch

from dnnbench.core.errors import InputError, ModelBuildError, UnavailableError
from dnnbench.core.optional import available, require
from dnnbench.runtimes.base import (Availability, Context, Prepared, Runtime, eager_outputs, flat_outputs,
                                            register)

PURPOSE = "--runtime onnxruntime"


def providers_for(ort, device: str) -> list:
    """Execution providers for ``device``, best first; UnavailableError when the device has none here."""
    have = ort.get_available_providers()
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    index = int(device.partition(":")[2] or 0)
    chosen = [(p, {"device_id": index}) for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in have]
    if not chosen:
        raise UnavailableError(f"onnxruntime here has no GPU execution provider for --device {device}",
                               f"available providers: {', '.join(have)}",
                               "pip install onnxruntime-gpu (in place of onnxruntime)")
    return chosen + ["CPUExecutionProvider"]


def session(ort, path: str, threads: int, device: str):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: warnings about unused initializers etc. are noise here
    return ort.InferenceSession(path, so, providers=providers_for(ort, device))


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}"[:300]


def export(module, args, kwargs, path: str, n_outputs: int) -> dict:
    """Export ``module`` to ``path``; return how (exporter, batch axis). ModelBuildError with the reason if impossible."""
    names_in = [f"input_{i}" for i in range(len(args))] + list(kwargs)
    names_out = [f"output_{i}" for i in range(n_outputs)]
    dynamic = {n: {0: "batch"} for n in names_in + names_out}
    attempts = [("torch.onnx.export (TorchScript)", "dynamic", dict(dynamo=False, dynamic_axes=dynamic)),
                ("torch.onnx.export (TorchScript)", f"fixed at {args[0].shape[0] if args else '?'}", dict(dynamo=False))]
    if importlib.util.find_spec("onnxscript") is not None:  # found, not imported: it is large
        attempts.append(("torch.onnx.export (dynamo)", "fixed", dict(dynamo=True)))
    errors = []
    for exporter, batch, kw in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, args, path, kwargs=kwargs or None, input_names=names_in,
                                  output_names=names_out, **kw)
            return {"exporter": exporter, "batch_axis": batch, "file_bytes": os.path.getsize(path)}
        except Exception as exc:
            errors.append(exc)
    raise ModelBuildError("exporting the model to ONNX failed", _first_line(errors[0]),
                          "measure it with --runtime eager or compile, or export it yourself and bench onnx:FILE")


def onnx_file_bytes(onnx, path: str) -> tuple[int, int]:
    """(bytes of ``path``, bytes of the external data files its tensors name): what a deployment ships."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    size = os.path.getsize(path)
    model = onnx.load(path, load_external_data=False)
    base = os.path.dirname(os.path.abspath(path))
    files = {os.path.normpath(os.path.join(base, ExternalDataInfo(t).location))
             for t in _get_all_tensors(model) if uses_external_data(t)}
    return size, sum(os.path.getsize(f) for f in files)


def onnx_artifact(onnx, path: str, what: str):
    """The artifact of an onnxruntime configuration: the ``.onnx`` file it runs, plus external data if any."""

    def measure() -> tuple[int, str]:
        size, external = onnx_file_bytes(onnx, path)
        return size + external, (f"{what}: {os.path.basename(path)} on disk"
                                 + (f" + {external} bytes of external data" if external else ""))

    return measure


def linear_nodes(model) -> list:
    """MatMul nodes whose second operand is a weight (an initializer, maybe transposed): the linear layers."""
    inits = {i.name for i in model.graph.initializer}
    derived = {n.output[0] for n in model.graph.node
               if n.op_type in ("Transpose", "Identity", "Cast") and n.input and n.input[0] in inits}
    weights = inits | derived
    return [n for n in model.graph.node if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in weights]


def gemm_as_matmul(onnx, model) -> int:
    """Rewrite Gemm(x, W, b) with a weight W as MatMul(x, W') + b, in place; return how many.

    ONNX Runtime's dynamic quantization has no integer Gemm (only MatMulInteger), and torch exports
    ``nn.Linear`` on 2-D inputs as Gemm: without this, a classifier's linear layers would stay fp32.
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    done = 0
    for node in model.graph.node:
        at = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or len(node.input) < 2 or node.input[1] not in inits or at.get("transA", 0)
                or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if at.get("transB", 0):
            w = w.T.copy()
        wname = f"{node.input[1]}__matmul_{done}"
        model.graph.initializer.append(numpy_helper.from_array(w, wname))
        base = node.name or f"gemm_{done}"
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = f"{node.output[0]}__matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], wname], [mm_out], name=f"{base}/MatMul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{base}/Add"))
        done += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return done


def quantize_int8(onnx, path: str, out: str) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(path)
    if gemm_as_matmul(onnx, model):
        path = out + ".matmul.onnx"
        onnx.save(model, path)
    nodes = linear_nodes(model)
    names = [n.name for n in nodes]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a pre-processing suggestion at WARNING on the root logger
    try:
        if nodes and all(names):
            quantize_dynamic(path, out, weight_type=QuantType.QInt8, nodes_to_quantize=names)
            scope = f"{len(names)} linear layers (MatMul with a weight operand; Gemm rewritten as MatMul + Add)"
        else:
            quantize_dynamic(path, out, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
            scope = "every MatMul (the graph's nodes are unnamed)"
    finally:
        root.setLevel(level)
    return {"conversion": "onnxruntime.quantization.quantize_dynamic (QInt8 weights)", "quantized": scope,
            "quantized_layers": len(nodes)}


def convert_fp16(onnx, path: str, out: str) -> dict:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, out)
    return {"conversion": "onnxruntime.transformers.float16 (fp32 inputs/outputs kept)"}


@register
class OnnxRuntime(Runtime):
    name = "onnxruntime"
    description = "ONNX Runtime InferenceSession on the exported graph"
    precisions = ("fp32", "fp16", "int8-dynamic")

    def availability(self, device: str = "cpu") -> Availability:
        for mod in ("onnxruntime", "onnx"):
            if not available(mod):
                return Availability(self.name, False, f"{mod} is needed for {PURPOSE}", "pip install 'dnnbench[onnx]'",
                                    missing_extra=True)
        import onnxruntime as ort

        details = {"onnxruntime_version": ort.__version__, "providers": ort.get_available_providers()}
        try:
            providers_for(ort, device)
        except UnavailableError as exc:
            return Availability(self.name, False, f"{exc.what}: {exc.why}", exc.fix, details)
        return Availability(self.name, True, details=details)

    def unsupported(self, precision: str, device: str) -> str | None:
        if precision == "bf16":
            return "ONNX Runtime has no bfloat16 Conv/MatMul kernels on its CPU and CUDA execution providers"
        return super().unsupported(precision, device)

    def import_libraries(self) -> None:
        require("onnxruntime", PURPOSE)
        require("onnx", PURPOSE)
        # the exporter's one-off start-up (lazy imports, symbolic registrations: ~70 MB that stay resident) is the
        # tool's cost, not the model's: pay it before the memory baseline by exporting a one-layer model
        import io

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), io.BytesIO(), dynamo=False,
                              input_names=["x"], dynamic_axes={"x": {0: "batch"}})

    def prepare(self, ctx: Context) -> Prepared:
        ort = require("onnxruntime", PURPOSE)
        onnx = require("onnx", PURPOSE)
        device = str(ctx.device)
        tmp = tempfile.mkdtemp(prefix="dnnbench-onnx-")
        cleanups = [lambda: shutil.rmtree(tmp, ignore_errors=True)]
        details: dict = {"onnxruntime_version": ort.__version__, "intra_op_num_threads": ctx.threads,
                         "inter_op_num_threads": 1}
        notes: list[str] = []
        try:
            file = getattr(ctx.module, "onnx_path", None)
            if file is not None:  # an ONNX file as the model: its fp32 session is the reference
                fixed = getattr(ctx.module, "fixed_batch", None)
                if fixed is not None and fixed != ctx.batch_size:
                    raise InputError(f"{ctx.model} fixes the batch size to {fixed}",
                                     f"batch size {ctx.batch_size} cannot run", f"use --batch-sizes {fixed}, or "
                                     "export the model with a dynamic batch axis")
                names = list(ctx.module.input_names)
                feed_tensors = dict(zip(names, ctx.args))
                feed_tensors.update(ctx.kwargs)
                path = file
                details["source"] = "the ONNX file as given"
                reference, reference_name = None, "onnxruntime fp32 (the file as given)"
                if ctx.precision != "fp32":
                    ref_sess = session(ort, path, ctx.threads, device)
                    reference = [torch.from_numpy(o) for o in ref_sess.run(None, _numpy_feed(ref_sess, feed_tensors))]
                    del ref_sess
            else:
                untensored = [a for a in (*ctx.args, *ctx.kwargs.values()) if not isinstance(a, torch.Tensor)]
                if untensored:  # a detector's list of images: the graph would want one input per image
                    what = (f"a list of {len(untensored[0])} images" if isinstance(untensored[0], (list, tuple))
                            else f"a {type(untensored[0]).__name__}")
                    raise UnavailableError(f"--runtime onnxruntime cannot run {ctx.model}",
                                           f"it takes {what}, and dnnbench feeds an exported graph tensors only",
                                           "measure it with --runtime eager or compile, or export it yourself "
                                           "and bench onnx:FILE")
                reference = eager_outputs(ctx.module, ctx.args, ctx.kwargs)
                reference_name = "eager fp32"
                path = os.path.join(tmp, "model.onnx")
                t0 = time.perf_counter()
                details.update(export(ctx.module, ctx.args, ctx.kwargs, path, len(reference)))
                details["export_s"] = time.perf_counter() - t0
                feed_tensors = {f"input_{i}": a for i, a in enumerate(ctx.args)}
                feed_tensors.update(ctx.kwargs)
            if ctx.precision == "int8-dynamic":
                out = os.path.join(tmp, "model.int8.onnx")
                details.update(quantize_int8(onnx, path, out))
                path = out
                notes.append(f"int8-dynamic: ONNX Runtime dynamic quantization of {details['quantized']}; convolutions "
                             "and all other nodes stay fp32")
            elif ctx.precision == "fp16":
                out = os.path.join(tmp, "model.fp16.onnx")
                details.update(convert_fp16(onnx, path, out))
                path = out
            t0 = time.perf_counter()
            sess = session(ort, path, ctx.threads, device)
            details["session_s"] = time.perf_counter() - t0
            details["providers"] = sess.get_providers()
        except Exception:
            for c in cleanups:
                c()
            raise
        call, outputs = _runner(sess, feed_tensors, device)
        return Prepared(call, outputs, self.name, ctx.precision, reference=reference, reference_name=reference_name,
                        releases_module=True, restart_peak=reference is not None or file is None,
                        details=details, notes=notes, cleanups=cleanups,
                        artifact=onnx_artifact(onnx, path, _artifact_what(file is not None, ctx.precision)))


def _artifact_what(given: bool, precision: str) -> str:
    source = "the ONNX file as given" if given else "the exported ONNX graph"
    if precision == "int8-dynamic":
        return f"{source}, dynamically quantized (int8 linear weights)"
    if precision == "fp16":
        return f"{source}, converted to float16"
    return source


def _numpy_feed(sess, tensors: dict) -> dict:
    wanted = [i.name for i in sess.get_inputs()]
    missing = [n for n in wanted if n not in tensors]
    if missing:
        raise InputError(f"the ONNX graph wants inputs {missing}", f"dnnbench has {sorted(tensors)}",
                         "give the model's inputs by the graph's names")
    return {n: tensors[n].detach().cpu().contiguous().numpy() for n in wanted}


def _runner(sess, tensors: dict, device: str):
    """(call, outputs): one batch through the session; on CUDA with inputs and outputs bound on the device."""
    if not device.startswith("cuda"):
        feed = _numpy_feed(sess, tensors)

        def call():
            return sess.run(None, feed)

        def outputs():
            return [torch.from_numpy(o).float() if o.dtype.kind == "f" else torch.from_numpy(o) for o in call()]

        return call, outputs
    import numpy as np

    index = int(device.partition(":")[2] or 0)
    binding = sess.io_binding()
    keep = {}
    for inp in sess.get_inputs():
        t = tensors[inp.name].contiguous()
        keep[inp.name] = t
        binding.bind_input(inp.name, "cuda", index, _np_dtype(t, np), list(t.shape), t.data_ptr())
    for out in sess.get_outputs():
        binding.bind_output(out.name, "cuda", index)

    def call():
        sess.run_with_iobinding(binding)

    def outputs():
        call()
        return [torch.from_numpy(o).float() if o.dtype.kind == "f" else torch.from_numpy(o)
                for o in binding.copy_outputs_to_cpu()]

    return call, outputs


def _np_dtype(t: torch.Tensor, np):
    return {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.int32: np.int32,
            torch.bool: np.bool_, torch.uint8: np.uint8, torch.int8: np.int8}[t.dtype]
