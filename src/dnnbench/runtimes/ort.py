"""ONNX Runtime: the model exported to ONNX (or an ONNX file as given) run by an InferenceSession.

Export: ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``: fast, and reliable for
torchvision models including ViT), dim 0 of every input and output dynamic; if that fails, the same
exporter at this cell's fixed batch size; then the dynamo exporter when ``onnxscript`` is installed. A
model none of them exports fails its cell with the TorchScript exporter's reason.

Session: ``intra_op_num_threads`` = the cell's thread count (as ``torch.set_num_threads``),
``inter_op_num_threads`` = 1, sequential execution, every graph optimisation. Execution providers: CPU on
``--device cpu``; on CUDA, TensorRT (when present) then CUDA, with inputs bound on the GPU (IOBinding), so
no host copy is timed. Precisions: fp16 converts the graph with ONNX Runtime's float16 converter, keeping
fp32 inputs and outputs; int8 is static quantization: ``quant_pre_process`` (shape inference, graph optimisation),
then ``onnxruntime.quantization.quantize_static`` in QDQ format (int8 weights per channel, int8 activations per
tensor, MinMax ranges observed on the cell's calibration batches), convolutions included — ONNX Runtime fuses
each DequantizeLinear -> Conv/MatMul/Gemm -> QuantizeLinear into an integer kernel when it loads the graph; the
share of the Conv/MatMul/Gemm MACs that run quantized is ``int8_macs_fraction``. int8-dynamic is
``onnxruntime.quantization.quantize_dynamic`` of the linear layers' weights (MatMul with a weight operand; Gemm is
rewritten as MatMul + Add first, since ONNX Runtime has no dynamic integer Gemm) — the same scope as PyTorch's
dynamic quantization, so that both runtimes' int8-dynamic mean the same thing; convolutions stay fp32. bf16 has
no ONNX Runtime kernels and is refused.
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
from dnnbench.runtimes.base import (Availability, Context, Prepared, Runtime, check_fixed_batch, eager_outputs,
                                    register, tensors_only)

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


class _Batches:
    """An ONNX Runtime CalibrationDataReader over the cell's calibration batches, fed by the graph's input names."""

    def __init__(self, feeds: list[dict]):
        self.feeds = feeds
        self.at = 0

    def get_next(self):
        if self.at >= len(self.feeds):
            return None
        self.at += 1
        return self.feeds[self.at - 1]

    def rewind(self) -> None:
        self.at = 0

    def __len__(self) -> int:
        return len(self.feeds)


def graph_inputs(model) -> list:
    """The graph's data inputs (not the initializers that IR < 4 lists as inputs too)."""
    inits = {i.name for i in model.graph.initializer} | {sp.values.name for sp in model.graph.sparse_initializer}
    return [i for i in model.graph.input if i.name not in inits]


def quantize_static_int8(onnx, path: str, out: str, feeds: list[dict]) -> dict:
    """Static QDQ int8 of ``path`` into ``out``, calibrated on ``feeds`` (numpy dicts by input name)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    details: dict = {}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs progress and suggestions at INFO/WARNING on the root logger
    try:
        pre = out + ".pre.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quant_pre_process(path, pre)
            source = pre
            details["pre_process"] = "onnxruntime.quantization.quant_pre_process (symbolic shape inference, optimisation)"
        except Exception as exc:  # pre-processing only helps: quantize the graph as exported
            source = path
            details["pre_process"] = f"skipped: quant_pre_process failed ({_first_line(exc)})"
        quantize_static(source, out, _Batches(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=False, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    except Exception as exc:
        raise ModelBuildError("ONNX Runtime static int8 quantization failed", _first_line(exc),
                              "use --precision int8-dynamic, or another runtime for int8") from exc
    finally:
        root.setLevel(level)
        if os.path.exists(out + ".pre.onnx"):
            os.remove(out + ".pre.onnx")
    details.update({"conversion": "onnxruntime.quantization.quantize_static (QDQ)", "quant_format": "QDQ",
                    "weight_type": "QInt8, per channel", "activation_type": "QInt8, per tensor",
                    "calibrate_method": "MinMax", "reduce_range": False, "calibration_batches": len(feeds)})
    return details


MAC_OPS = ("Conv", "MatMul", "Gemm")
_INT8_TYPES = (2, 3)  # UINT8, INT8


def int8_macs(onnx, path: str, shapes_of: dict[str, tuple]) -> dict:
    """The MACs of the graph's Conv/MatMul/Gemm nodes that run quantized, over all of theirs, at the given input shapes.

    A node runs quantized when its first two inputs (data and weight) each come from a DequantizeLinear of an int8
    tensor (a QuantizeLinear's output, or an int8 initializer): ONNX Runtime then fuses it into an integer kernel.
    MACs per node are counting.onnx_count's, from the graph's shapes.
    """
    from dnnbench.counting.onnx_count import _count_node, _Shapes, _Unknown

    model = onnx.load(path)
    for vi in graph_inputs(model):
        want = shapes_of.get(vi.name)
        if want is None:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == len(want):
            for d, n in zip(dims, want):
                d.ClearField("dim_param")
                d.dim_value = int(n)
    del model.graph.value_info[:]  # stale intermediate shapes with a symbolic batch
    for o in model.graph.output:
        if o.type.HasField("tensor_type"):
            o.type.tensor_type.ClearField("shape")
    shapes = _Shapes(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    init_types = {i.name: i.data_type for i in model.graph.initializer}

    def int8_source(name: str) -> bool:
        if name in init_types:
            return init_types[name] in _INT8_TYPES
        node = producer.get(name)
        if node is not None and node.op_type == "QuantizeLinear":
            return True
        return shapes.info.get(name, (None, 0))[1] in _INT8_TYPES

    def dequantized(name: str) -> bool:
        node = producer.get(name)
        return node is not None and node.op_type == "DequantizeLinear" and int8_source(node.input[0])

    total = quantized = unknown = 0
    float_nodes = []
    for node in model.graph.node:
        if node.op_type not in MAC_OPS:
            continue
        try:
            macs, _ = _count_node(node, shapes)
        except (_Unknown, KeyError):
            unknown += 1
            continue
        total += macs
        if len(node.input) > 1 and dequantized(node.input[0]) and dequantized(node.input[1]):
            quantized += macs
        elif macs:
            float_nodes.append(node.name or node.output[0])
    out: dict = {"int8_macs": quantized, "conv_matmul_gemm_macs": total}
    if total:
        out["int8_macs_fraction"] = quantized / total
    else:
        out["int8_macs_fraction"] = ("unavailable: the graph has no Conv/MatMul/Gemm MACs" if not unknown else
                                     f"unavailable: the shapes of all {unknown} Conv/MatMul/Gemm nodes are unknown")
    if unknown and total:
        out["int8_macs_unknown_nodes"] = unknown
    if float_nodes:
        out["float_mac_nodes"] = float_nodes[:20]
    return out


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
    precisions = ("fp32", "fp16", "int8", "int8-dynamic")

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
                check_fixed_batch(ctx)
                names = list(ctx.module.input_names)
                feed_tensors = _by_name(names, ctx.args, ctx.kwargs)
                path = file
                details["source"] = "the ONNX file as given"
                reference, reference_name = None, "onnxruntime fp32 (the file as given)"
                if ctx.precision != "fp32":
                    ref_sess = session(ort, path, ctx.threads, device)
                    reference = [torch.from_numpy(o) for o in ref_sess.run(None, _numpy_feed(ref_sess, feed_tensors))]
                    del ref_sess
            else:
                tensors_only(ctx, "an exported graph",  # a detector's list: the graph would want one input per image
                             "measure it with --runtime eager or compile, or export it yourself and bench onnx:FILE")
                reference = eager_outputs(ctx.module, ctx.args, ctx.kwargs)
                reference_name = "eager fp32"
                path = os.path.join(tmp, "model.onnx")
                t0 = time.perf_counter()
                details.update(export(ctx.module, ctx.args, ctx.kwargs, path, len(reference)))
                details["export_s"] = time.perf_counter() - t0
                names = [f"input_{i}" for i in range(len(ctx.args))]
                feed_tensors = _by_name(names, ctx.args, ctx.kwargs)
            if ctx.precision == "int8":
                out = os.path.join(tmp, "model.int8.onnx")
                model_inputs = [i.name for i in graph_inputs(onnx.load(path, load_external_data=False))]
                feeds = [_numpy_of(model_inputs, _by_name(names, a, k)) for a, k in (ctx.calibration or [])]
                if not feeds:
                    raise UnavailableError("onnxruntime static int8 has nothing to calibrate on",
                                           "no calibration batches were given", "use --precision int8-dynamic")
                t0 = time.perf_counter()
                details.update(quantize_static_int8(onnx, path, out, feeds))
                details["quantize_s"] = time.perf_counter() - t0
                path = out
                try:
                    details.update(int8_macs(onnx, path, {n: tuple(v.shape) for n, v in feeds[0].items()}))
                except Exception as exc:  # the count must not lose the cell
                    details["int8_macs_fraction"] = f"unavailable: counting the graph failed ({_first_line(exc)})"
                frac = details["int8_macs_fraction"]
                notes.append("int8: ONNX Runtime static quantization (QDQ, int8 weights per channel, int8 activations "
                             f"per tensor, MinMax ranges from {len(feeds)} calibration batches), convolutions "
                             "included; " + (f"{100 * frac:.1f} % of the Conv/MatMul/Gemm MACs run quantized"
                                             if isinstance(frac, float) else frac))
            elif ctx.precision == "int8-dynamic":
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

        def run(args, kwargs) -> list[torch.Tensor]:
            feed = _numpy_feed(sess, _by_name(names, args, kwargs))
            types = {i.name: i.type for i in sess.get_inputs()}
            feed = {n: v.astype(_ORT_FLOATS[types[n]]) if v.dtype.kind == "f" and types[n] in _ORT_FLOATS else v
                    for n, v in feed.items()}
            return [torch.from_numpy(o).float() if o.dtype.kind == "f" else torch.from_numpy(o)
                    for o in sess.run(None, feed)]

        return Prepared(call, outputs, self.name, ctx.precision, reference=reference, reference_name=reference_name,
                        releases_module=True, restart_peak=reference is not None or file is None,
                        details=details, notes=notes, cleanups=cleanups,
                        artifact=onnx_artifact(onnx, path, _artifact_what(file is not None, ctx.precision)),
                        save=onnx_saver(onnx, path), run=run)


_ORT_FLOATS = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


def _by_name(names: list[str], args, kwargs) -> dict:
    """The graph's inputs by name: positional ``args`` under ``names``, then ``kwargs`` under their own."""
    tensors = dict(zip(names, args))
    tensors.update(kwargs)
    return tensors


def _numpy_of(wanted: list[str], tensors: dict) -> dict:
    return {n: tensors[n].detach().cpu().contiguous().numpy() for n in wanted if n in tensors}


def onnx_saver(onnx, path: str):
    """``dnnbench export`` of an onnxruntime configuration: the ``.onnx`` file it runs and its external data."""

    def save(folder: str) -> list[str]:
        from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

        os.makedirs(folder, exist_ok=True)
        base = os.path.dirname(os.path.abspath(path))
        model = onnx.load(path, load_external_data=False)
        files = sorted({ExternalDataInfo(t).location for t in _get_all_tensors(model) if uses_external_data(t)})
        written = [shutil.copyfile(path, os.path.join(folder, os.path.basename(path)))]
        for rel in files:
            dest = os.path.join(folder, rel)
            os.makedirs(os.path.dirname(dest) or folder, exist_ok=True)
            written.append(shutil.copyfile(os.path.join(base, rel), dest))
        return written

    return save


def _artifact_what(given: bool, precision: str) -> str:
    source = "the ONNX file as given" if given else "the exported ONNX graph"
    if precision == "int8":
        return f"{source}, statically quantized (QDQ int8, convolutions included)"
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
