"""``onnx:path/to/model.onnx`` models: an ONNX file, counted from its graph and run by ONNX Runtime.

The file is parsed with ``onnx`` (extra ``dnnbench[onnx]``, imported lazily); its weights stay in the file.
Inputs come from the graph: dim 0 of every input is the batch (symbolic, or fixed by the file — then only
that batch size runs); other dimensions must be fixed, except the height and width of a single NCHW image
input, which default to 224 (``--input-size`` changes them). The module returned is an ``OnnxModel``: it
carries the path for the counter and the onnxruntime runtime, and its ``forward`` runs the file through an
ONNX Runtime session on the CPU, so anything that calls a module (accuracy, a reference output) works too.
"""

from __future__ import annotations

import os

import torch

from dnnbench.core.errors import InputError, ModelBuildError, UnknownModelError
from dnnbench.core.optional import require
from dnnbench.core.refs import ModelRef
from dnnbench.core.specs import InputSpec, LoadedModel, TensorSpec

DEFAULT_IMAGE_SIZE = 224

# ONNX TensorProto element type -> torch dtype (inputs dnnbench can generate)
_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
           9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


def parse_file(path: str):
    """The ModelProto of ``path`` without external weight data; one-line errors for a missing or unparsable file."""
    onnx = require("onnx", "onnx: models")
    if not os.path.isfile(path):
        raise UnknownModelError(f"ONNX file {path} does not exist", "no such file", "check the path")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelBuildError(f"{path} is not a valid ONNX model", f"it does not parse ({type(exc).__name__}: {first})",
                              "give a complete .onnx file, e.g. one written by torch.onnx.export") from exc
    if not model.graph.node:
        raise ModelBuildError(f"{path} is not a valid ONNX model", "its graph has no nodes",
                              "give a complete .onnx file, e.g. one written by torch.onnx.export")
    return model


def graph_inputs(model) -> list:
    """The graph's real inputs (old opsets also list initializers as inputs)."""
    inits = {i.name for i in model.graph.initializer} | {sp.values.name for sp in model.graph.sparse_initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_spec(model, path: str) -> tuple[InputSpec, list[str], int | None]:
    """(inputs, notes, batch size the file fixes or None) from the graph's input declarations."""
    notes: list[str] = []
    specs, names, fixed = [], [], set()
    inputs = graph_inputs(model)
    if not inputs:
        raise ModelBuildError(f"{path} has no graph inputs", "dnnbench feeds a model its inputs",
                              "export the model with its inputs, not as constants")
    for vi in inputs:
        tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if tt is None or tt.elem_type not in _DTYPES:
            raise InputError(f"input {vi.name!r} of {path} is not a tensor dnnbench can generate",
                             "supported: float, int, bool tensors", "export the model with tensor inputs")
        # a dim_value of 0 or -1 (Paddle's exporter writes -1) is as dynamic as a dim_param
        dims = [(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None, d.dim_param or "?")
                for d in tt.shape.dim]
        if not dims:
            raise InputError(f"input {vi.name!r} of {path} has no batch dimension", "dim 0 of every input is the batch",
                             "export the model with a batch dimension (dynamic_axes={name: {0: 'batch'}})")
        if dims[0][0]:
            fixed.add(dims[0][0])
        dtype = _DTYPES[tt.elem_type]
        rest = [v for v, _ in dims[1:]]
        if any(v is None or v <= 0 for v in rest):
            if len(dims) == 4 and dtype.is_floating_point and rest[0] and len(inputs) == 1:
                rest = [rest[0], rest[1] or DEFAULT_IMAGE_SIZE, rest[2] or DEFAULT_IMAGE_SIZE]
                notes.append(f"input {vi.name!r} has a symbolic height/width: assuming {rest[1]}x{rest[2]}; "
                             "pass --input-size to change it")
            else:
                sym = [p for v, p in dims[1:] if not v]
                raise InputError(f"input {vi.name!r} of {path} has symbolic dimensions ({', '.join(sym)}) besides the batch",
                                 "dnnbench needs the size of every non-batch dimension",
                                 "export the model with fixed sizes except dim 0")
        specs.append(TensorSpec(tuple(rest), dtype, None if dtype.is_floating_point or dtype == torch.bool else 2))
        names.append(vi.name)
    if len(fixed) > 1:
        raise InputError(f"{path} fixes different batch sizes on its inputs ({sorted(fixed)})",
                         "dim 0 of every input is the batch", "export the model with one batch axis")
    batch = fixed.pop() if fixed else None
    if batch is not None:
        notes.append(f"the file fixes the batch size to {batch}: other batch sizes cannot run "
                     "(export with a dynamic batch axis to measure them)")
    return InputSpec(tuple(specs), tuple(names)), notes, batch


class OnnxModel(torch.nn.Module):
    """An ONNX file as a module: ``onnx_path`` for the counter and runtimes; ``forward`` runs ONNX Runtime on the CPU."""

    def __init__(self, path: str, input_names: list[str], output_names: list[str], fixed_batch: int | None,
                 proto=None):
        super().__init__()
        self.onnx_path = path
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.fixed_batch = fixed_batch
        self.proto = proto  # the parsed graph without weight data (kept for counting on meta loads)
        self._session = None

    def session(self):
        if self._session is None:
            ort = require("onnxruntime", "running ONNX models")
            so = ort.SessionOptions()
            so.intra_op_num_threads = torch.get_num_threads()
            so.inter_op_num_threads = 1
            self._session = ort.InferenceSession(self.onnx_path, so, providers=["CPUExecutionProvider"])
        return self._session

    def forward(self, *args, **kwargs):
        feed = dict(zip(self.input_names, args))
        feed.update(kwargs)
        outs = self.session().run(None, {k: v.detach().cpu().contiguous().numpy() for k, v in feed.items()})
        tensors = tuple(torch.from_numpy(o) for o in outs)
        return tensors[0] if len(tensors) == 1 else tensors

    def extra_repr(self) -> str:
        return f"onnx_path={self.onnx_path!r}"


def load(ref: ModelRef, device: str = "cpu", weights: str | None = None, download: bool = False) -> LoadedModel:
    if weights is not None:
        raise InputError(f"weights {weights!r} cannot be given for {ref}", "an ONNX file carries its own weights",
                         "leave --weights out for onnx: models")
    path = ref.target
    model = parse_file(path)
    inputs, notes, batch = input_spec(model, path)
    outputs = [o.name for o in model.graph.output]
    module = OnnxModel(path, list(inputs.names), outputs, batch, proto=model if device == "meta" else None)
    return LoadedModel(str(ref), module, inputs, None, None, notes)
