"""Static profile of an ONNX graph: params, MACs/FLOPs, other FLOPs and activation memory, from shapes only.

Same conventions as the torch counter (``formulas.py``):

- MACs: Conv, ConvTranspose, Gemm, MatMul (batched, broadcast; attention's Q.K^T and A.V included), Einsum,
  LSTM/GRU/RNN (every step's input and recurrent matmuls), their quantized forms (ConvInteger, QLinearConv,
  MatMulInteger, QLinearMatMul, com.microsoft DynamicQuantizeLSTM/MatMulIntegerToFloat) and ONNX Runtime's fused
  FusedConv/FusedGemm. FLOPs = 2 x MACs.
- other_flops: bias adds (1 per output element), elementwise ops and activations (1 per element),
  BatchNormalization (2), Layer/Group/InstanceNormalization (5), Softmax (4), LRN (size + 5, as torch's
  local_response_norm decomposes), ImageScaler (2), pooling (one per window element), global pooling and
  reductions (one per input element), Resize/Upsample (one per output element), recurrent cells (see _recurrent).
- data movement (Reshape, Transpose, Concat, Gather, Cast, ...) is zero by definition; every other op is
  reported in ``uncounted_ops`` with its call count — never a silent zero. So is a MAC op whose shapes
  could not be determined.
- constant subgraphs (nodes whose inputs are all constants: DequantizeLinear of an int8 weight, Cast of an fp16
  one, ConstantOfShape, Identity chains, Reshape/Transpose of weights) are folded, as a runtime does when it
  loads the graph: zero per inference; their outputs are weights.

Params: the elements of every constant tensor a computing node reads as a weight, wherever the file stores it:
initializers (also those listed as graph inputs, as IR < 4 requires: those are not data inputs), sparse
initializers, ``Constant`` nodes (``value``, ``sparse_value``, ``value_floats``...) and the outputs of folded
constant subgraphs. Values derived from one stored tensor by Transpose/Reshape/Cast/DequantizeLinear... are the
same weight, counted once; an ``Identity`` copy counts as its own tensor (torch's exporter deduplicates
equal-valued initializers, e.g. the all-ones BatchNorm scales of a randomly initialised network, and
re-creates each use with an Identity). Not params: 0-d scalars the exporter baked in (Clip bounds, attention
scales), integer tensors (shapes, indices) except the int8/int32 weights and biases of quantized ops,
quantization scales and zero points, Resize scales, and BatchNormalization's running mean/variance and
recurrent initial states (torch buffers, reported as ``buffer_bytes``). ``weight_bytes`` counts each weight at
the type the file stores it in (int8 for a QDQ weight, fp16 for one cast at load; dense float for sparse and
ConstantOfShape tensors).

Shapes come from ``onnx``'s per-node shape inference at the file's own opsets (no conversion needed; any
opset ``onnx`` has schemas for), at the batch size and input sizes asked for (the graph's symbolic batch, or
-1/0 dims, are set to numbers first), fed with the values of shape computations, which are evaluated and cost
nothing (torch does that arithmetic in Python). Values that shape inference cannot determine — ops outside the
ONNX standard, such as ONNX Runtime's com.microsoft contrib ops, and what follows them — get their shapes from
one ONNX Runtime run on generated inputs (the profile's notes say so); if that fails too, the nodes that need
them are listed in ``uncounted_ops`` as "(shape unknown)".
"""

from __future__ import annotations

from collections import defaultdict
from math import prod

from dnnbench.core.errors import InputError
from dnnbench.core.optional import require
from dnnbench.core.records import LayerRow, OpTotal, Profile
from dnnbench.core.specs import InputSpec, LoadedModel

FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_ELEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2, 17: 1, 18: 1,
               19: 1, 20: 1, 21: 1, 22: 1}
# (op, input index) that hold a quantized op's integer weight (and QLinearConv's int32 bias)
QUANT_WEIGHT_INPUTS = {("ConvInteger", 1), ("MatMulInteger", 1), ("QLinearConv", 3), ("QLinearConv", 8),
                       ("QLinearMatMul", 3), ("DequantizeLinear", 0), ("DynamicQuantizeLSTM", 1),
                       ("DynamicQuantizeLSTM", 2), ("MatMulIntegerToFloat", 1), ("DynamicQuantizeMatMul", 1)}
BN_STATS = {("BatchNormalization", 3), ("BatchNormalization", 4)}
# recurrent layers' initial states: state, not parameters (torch passes them as arguments), reported as buffers
RNN_STATES = {("LSTM", 5), ("LSTM", 6), ("GRU", 5), ("RNN", 5), ("DynamicQuantizeLSTM", 5), ("DynamicQuantizeLSTM", 6)}
# constant inputs that are never parameters: resampling scales/sizes, quantization scales and zero points
NOT_PARAMS = ({("Resize", i) for i in (1, 2, 3)} | {("Upsample", 1)}
              | {(op, i) for op in ("QuantizeLinear", "DequantizeLinear") for i in (1, 2)}
              | {(op, i) for op in ("QLinearConv", "QLinearMatMul") for i in (1, 2, 4, 5, 6, 7)}
              | {(op, i) for op in ("ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul") for i in (2, 3)}
              | {("DynamicQuantizeLSTM", i) for i in (8, 9, 10, 11)} | {("MatMulIntegerToFloat", i) for i in (2, 3, 4, 5)})
# ops a constant weight passes through unchanged in count (Transpose(W), DequantizeLinear(W_int8), Cast(W_fp16)):
# their output is the same weight as their input. Identity is not among them (see _param_slots).
SAME_WEIGHT = frozenset("Transpose Reshape Flatten Squeeze Unsqueeze Cast CastLike DequantizeLinear".split())
# never folded: random, or with subgraphs
NOT_FOLDABLE = frozenset("RandomNormal RandomUniform RandomNormalLike RandomUniformLike Multinomial Bernoulli If Loop "
                         "Scan SequenceEmpty".split())

ZERO_COST = frozenset("""
Reshape Flatten Transpose Squeeze Unsqueeze Concat Split Slice Gather GatherElements GatherND Shape Size
Constant ConstantOfShape Identity Cast CastLike Expand Tile Pad Dropout Range ScatterND ScatterElements Scatter
DepthToSpace SpaceToDepth Compress NonZero OneHot Trilu EyeLike RandomNormal RandomUniform RandomNormalLike
RandomUniformLike TopK SplitToSequence SequenceConstruct SequenceAt ConcatFromSequence Optional OptionalGetElement
ReverseSequence Unique Crop
""".split())
POINTWISE = frozenset("""
Add Sub Mul Div Relu Sigmoid Tanh Clip Erf Pow Sqrt Exp Log Neg Abs LeakyRelu HardSigmoid HardSwish Gelu Where
Equal Less Greater LessOrEqual GreaterOrEqual Not And Or Xor Max Min Sum Mean Reciprocal Floor Ceil Round Sign
Softplus Softsign Elu Selu Celu Mish PRelu ThresholdedRelu Sin Cos Tan Mod BitShift IsNaN IsInf QuantizeLinear
DequantizeLinear DynamicQuantizeLinear Shrink BitwiseAnd BitwiseOr BitwiseNot BitwiseXor Asin Acos Atan Sinh Cosh
Asinh Acosh Atanh
""".split())
NORMS = frozenset("LayerNormalization GroupNormalization InstanceNormalization RMSNormalization "
                  "SimplifiedLayerNormalization LpNormalization MeanVarianceNormalization".split())
REDUCTIONS = frozenset("ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum "
                       "ReduceLogSumExp ReduceSumSquare ArgMax ArgMin CumSum".split())
GLOBAL_POOLS = frozenset("GlobalAveragePool GlobalMaxPool GlobalLpPool".split())
POOLS = frozenset("MaxPool AveragePool LpPool".split())
RESAMPLE = frozenset("Resize Upsample GridSample".split())
RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1, "DynamicQuantizeLSTM": 4}  # gates per step
# ONNX Runtime's contrib ops (com.microsoft), written into files saved after its graph optimisations
CONTRIB_CONV = frozenset({"FusedConv"})
CONTRIB_POINTWISE = frozenset("QLinearAdd QLinearMul QLinearSigmoid QLinearLeakyRelu QuickGelu BiasGelu FastGelu "
                              "Gelu BiasAdd".split())


class _Shapes:
    """name -> (dims, elem_type) for every value; dims None when unknown. ``shape_ops``: nodes that only compute shapes.

    One pass over the nodes in order: ``onnx``'s per-node shape inference, fed with the values of shape
    computations (Shape -> Gather -> Concat -> Reshape...), which this pass evaluates itself with numpy. A
    graph-wide ``infer_shapes`` with data propagation loses those values in exported attention blocks
    (ViT: 48 of its MatMul/Mul nodes stayed shapeless); evaluating them recovers every shape.
    """

    MAX_VALUE_ELEMENTS = 1024  # values larger than this are data, not shapes: never evaluated

    def __init__(self, model):
        from onnx import TypeProto, defs, helper, numpy_helper, shape_inference

        self.info: dict[str, tuple[list[int] | None, int]] = {}
        self.shape_ops: set[int] = set()  # indices of nodes whose outputs are all evaluated shape values
        g = model.graph
        opsets = {o.domain or "": o.version for o in model.opset_import}
        types: dict[str, TypeProto] = {}
        values: dict = {}
        for vi in g.input:
            types[vi.name] = vi.type
        for sp in g.sparse_initializer:
            types[sp.values.name] = helper.make_tensor_type_proto(sp.values.data_type, list(sp.dims))
        for init in g.initializer:
            t = helper.make_tensor_type_proto(init.data_type, list(init.dims))
            types[init.name] = t
            if prod(init.dims) <= self.MAX_VALUE_ELEMENTS and (init.data_type not in FLOAT_TYPES or prod(init.dims) <= 64):
                values[init.name] = numpy_helper.to_array(init)
        for idx, node in enumerate(g.node):
            domain = node.domain if node.domain != "ai.onnx" else ""
            out_types = {}
            try:
                schema = defs.get_schema(node.op_type, opsets.get(domain, 1), domain)
                data = {n: numpy_helper.from_array(values[n], n) for n in node.input if n in values}
                out_types = shape_inference.infer_node_outputs(
                    schema, node, {n: types[n] for n in node.input if n}, data, opset_imports=model.opset_import)
            except Exception:  # no schema (custom domain) or an input of unknown type: outputs stay unknown
                pass
            types.update(out_types)
            try:
                result = _evaluate(node, values, self._dims_of(types))
            except Exception:
                result = None
            if result is not None and all(r is not None and r.size <= self.MAX_VALUE_ELEMENTS for r in result):
                for name, r in zip(node.output, result):
                    values[name] = r
                    types[name] = helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(r.dtype), list(r.shape))
                self.shape_ops.add(idx)
        for name, t in types.items():
            if not t.HasField("tensor_type"):
                continue
            tt = t.tensor_type
            dims = None
            if tt.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
                if any(d is None for d in dims):
                    dims = None
            self.info[name] = (dims, tt.elem_type)

    @staticmethod
    def _dims_of(types):
        def dims(name):
            t = types.get(name)
            if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
                return None
            ds = [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]
            return None if any(d is None for d in ds) else ds

        return dims

    def dims(self, name: str) -> list[int] | None:
        return self.info.get(name, (None, 0))[0]

    def nbytes(self, name: str) -> int | None:
        dims, t = self.info.get(name, (None, 0))
        if dims is None:
            return None
        return prod(dims) * _ELEM_BYTES.get(t, 4)


def _evaluate(node, values: dict, dims_of) -> list | None:
    """Values of a shape computation's outputs with numpy, or None when its inputs are not all known values."""
    import numpy as np

    op = node.op_type
    at = _attrs(node)
    if op == "Shape":
        d = dims_of(node.input[0])
        if d is None:
            return None
        start, end = at.get("start", 0), at.get("end", None)
        return [np.array(d[start:end], dtype=np.int64)]
    if op == "Size":
        d = dims_of(node.input[0])
        return None if d is None else [np.array(prod(d), dtype=np.int64)]
    if op == "Constant":
        from onnx import numpy_helper

        if "value" in at:
            return [numpy_helper.to_array(at["value"])]
        for key, dtype in (("value_int", np.int64), ("value_float", np.float32), ("value_ints", np.int64),
                           ("value_floats", np.float32)):
            if key in at:
                return [np.array(at[key], dtype=dtype)]
        return None
    ins = [n for n in node.input]
    if not ins or any(n and n not in values for n in ins):
        return None
    x = [values[n] if n else None for n in ins]
    if op == "Identity":
        return [x[0]]
    if op == "Cast":
        from onnx import helper

        return [x[0].astype(helper.tensor_dtype_to_np_dtype(at["to"]))]
    if op == "Gather":
        return [np.take(x[0], x[1], axis=at.get("axis", 0))]
    if op == "Unsqueeze":
        axes = list(x[1]) if len(x) > 1 else at["axes"]
        out = x[0]
        rank = out.ndim + len(axes)
        for a in sorted(a % rank for a in axes):
            out = np.expand_dims(out, a)
        return [out]
    if op == "Squeeze":
        axes = list(x[1]) if len(x) > 1 and x[1] is not None else at.get("axes")
        return [np.squeeze(x[0], axis=tuple(axes)) if axes is not None else np.squeeze(x[0])]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(v) for v in x], axis=at.get("axis", 0))]
    if op == "Slice":
        data, starts, ends = x[0], x[1], x[2]
        axes = x[3] if len(x) > 3 and x[3] is not None else range(len(starts))
        steps = x[4] if len(x) > 4 and x[4] is not None else [1] * len(starts)
        sl = [slice(None)] * data.ndim
        for s_, e_, a, st in zip(starts, ends, axes, steps):
            sl[int(a)] = slice(int(s_), int(e_), int(st))
        return [data[tuple(sl)]]
    if op == "Reshape":
        shape = [int(v) for v in x[1]]
        shape = [x[0].shape[i] if v == 0 and not at.get("allowzero", 0) else v for i, v in enumerate(shape)]
        return [x[0].reshape(shape)]
    # ops that create tensors from a shape: never materialise data-sized tensors (attention masks...)
    limit = _Shapes.MAX_VALUE_ELEMENTS
    if op == "ConstantOfShape" and prod(int(v) for v in x[0]) > limit:
        return None
    if op == "Expand" and x[0].size * prod(max(1, int(v)) for v in x[1]) > limit:  # an upper bound of the output
        return None
    if op == "Range" and abs((float(x[1]) - float(x[0])) / float(x[2] or 1)) > limit:
        return None
    if op == "ConstantOfShape":
        from onnx import numpy_helper

        fill = numpy_helper.to_array(at["value"]) if "value" in at else np.zeros(1, np.float32)
        return [np.full([int(v) for v in x[0]], fill.reshape(-1)[0], dtype=fill.dtype)]
    if op == "Range":
        return [np.arange(x[0], x[1], x[2]).astype(np.asarray(x[0]).dtype)]
    if op == "Expand":
        return [x[0] * np.ones([int(v) for v in x[1]], dtype=x[0].dtype)]
    if op == "Transpose":
        return [np.transpose(x[0], at.get("perm"))]
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Equal": np.equal, "Less": np.less,
              "Greater": np.greater, "Max": np.maximum, "Min": np.minimum, "Pow": np.power, "And": np.logical_and,
              "Or": np.logical_or}
    if op in binary and len(x) == 2:
        out = binary[op](x[0], x[1])
        return [out.astype(x[0].dtype) if op not in ("Equal", "Less", "Greater", "And", "Or") else out]
    if op == "Div":
        if np.issubdtype(x[0].dtype, np.integer):
            return [(np.trunc(x[0] / x[1])).astype(x[0].dtype)]
        return [(x[0] / x[1]).astype(x[0].dtype)]
    if op == "Mod":
        return [np.fmod(x[0], x[1]) if at.get("fmod") else np.mod(x[0], x[1])]
    if op == "Where":
        return [np.where(x[0], x[1], x[2])]
    unary = {"Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil, "Sqrt": np.sqrt,
             "Reciprocal": np.reciprocal, "Not": np.logical_not, "Sign": np.sign}
    if op in unary:
        out = unary[op](x[0])
        return [out.astype(x[0].dtype) if op != "Not" else out]
    if op in ("ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin") and x[0].ndim <= 1:
        fn = {"ReduceProd": np.prod, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min}[op]
        keep = bool(at.get("keepdims", 1))
        return [np.asarray(fn(x[0], keepdims=keep)).astype(x[0].dtype)]
    return None


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _numel(dims) -> int:
    return prod(dims) if dims is not None else 0


class _Unknown(Exception):
    """A shape the formula needs is not known."""


def _need(dims):
    if dims is None:
        raise _Unknown
    return dims


def _count_node(node, shapes: _Shapes) -> tuple[int, int]:
    """(macs, other_flops) of one node; raises _Unknown (missing shape) or KeyError (no formula)."""
    op = node.op_type
    ins = [shapes.dims(n) if n else None for n in node.input]
    outs = [shapes.dims(n) if n else None for n in node.output]
    has = lambda i: len(node.input) > i and bool(node.input[i])  # noqa: E731
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = _need(ins[3 if op == "QLinearConv" else 1])
        y = _need(outs[0])
        bias = has(8) if op == "QLinearConv" else (op == "Conv" and has(2))
        return _numel(y) * w[1] * prod(w[2:]), (_numel(y) if bias else 0)
    if op == "ConvTranspose":
        x, w, y = _need(ins[0]), _need(ins[1]), _need(outs[0])
        return _numel(x) * w[1] * prod(w[2:]), (_numel(y) if has(2) else 0)
    if op == "Gemm":
        a, b = _need(ins[0]), _need(ins[1])
        at = _attrs(node)
        m, k = (a[1], a[0]) if at.get("transA", 0) else (a[0], a[1])
        n = b[0] if at.get("transB", 0) else b[1]
        return m * k * n, (m * n if has(2) else 0)
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul"):
        a = _need(ins[0])
        y = _need(outs[0])
        return _numel(y) * a[-1], 0  # every output element takes K multiply-accumulates
    if op in RECURRENT:
        return _recurrent(node, ins)
    if op == "LRN":  # as torch's local_response_norm decomposes: square, window sum (size), scale, shift, pow, divide
        return 0, _numel(_need(outs[0])) * (int(_attrs(node)["size"]) + 5)
    if op == "Einsum":
        return _einsum(node, ins, outs)
    if op == "ImageScaler":  # scale and per-channel bias (opsets < 10)
        return 0, 2 * _numel(_need(outs[0]))
    if op in CONTRIB_CONV:  # com.microsoft FusedConv / NCHWc Conv: a Conv with its activation fused
        w, y = _need(ins[1]), _need(outs[0])
        act = 1 if _attrs(node).get("activation") else 0
        return _numel(y) * w[1] * prod(w[2:]), _numel(y) * ((1 if has(2) else 0) + act + (1 if has(3) else 0))
    if op == "FusedGemm":
        a, b = _need(ins[0]), _need(ins[1])
        at = _attrs(node)
        m, k = (a[1], a[0]) if at.get("transA", 0) else (a[0], a[1])
        n = b[0] if at.get("transB", 0) else b[1]
        return m * k * n, m * n * ((1 if has(2) else 0) + (1 if at.get("activation") else 0))
    if op in ("MatMulIntegerToFloat", "DynamicQuantizeMatMul"):
        a, y = _need(ins[0]), _need(outs[0])
        bias = has(6) if op == "MatMulIntegerToFloat" else has(4)
        return _numel(y) * a[-1], (_numel(y) if bias else 0)
    if op in POINTWISE or op in CONTRIB_POINTWISE:
        return 0, _numel(_need(outs[0]))
    if op == "BatchNormalization":
        return 0, 2 * _numel(_need(ins[0]))
    if op in NORMS:
        return 0, 5 * _numel(_need(ins[0]))
    if op in ("Softmax", "LogSoftmax"):
        return 0, 4 * _numel(_need(outs[0]))
    if op in POOLS or op in ("QLinearAveragePool", "NhwcMaxPool"):
        kernel = _attrs(node).get("kernel_shape") or []
        return 0, _numel(_need(outs[0])) * prod(kernel)
    if op in GLOBAL_POOLS or op in REDUCTIONS or op == "QLinearGlobalAveragePool":
        return 0, _numel(_need(ins[0]))
    if op in RESAMPLE:
        return 0, _numel(_need(outs[0]))
    if op in ZERO_COST:
        return 0, 0
    raise KeyError(op)


def _recurrent(node, ins) -> tuple[int, int]:
    """LSTM/GRU/RNN over the whole sequence: every step multiplies x_t by W and h_{t-1} by R for every gate.

    MACs = directions x T x B x gates x H x (I + H), as torch's decomposition into per-step matmuls counts them.
    other_flops per step and hidden unit: the two bias adds per gate when B is given, one activation per gate,
    and the cell update (LSTM: c = f*c + i*g, h = o*tanh(c): 5; GRU: r*(R h), (1-z)*n + z*h: 5; RNN: 0).
    """
    x, w = _need(ins[0]), _need(ins[1])
    at = _attrs(node)
    t, b = (x[1], x[0]) if at.get("layout", 0) else (x[0], x[1])
    gates = RECURRENT[node.op_type]
    dirs, hidden, feat = w[0], w[1] // gates, w[2]
    if node.op_type == "DynamicQuantizeLSTM":  # com.microsoft: W is [dirs, I, 4H] (transposed)
        hidden, feat = w[2] // gates, w[1]
    steps = dirs * t * b * hidden
    has_bias = len(node.input) > 3 and bool(node.input[3])
    update = {"LSTM": 5, "DynamicQuantizeLSTM": 5, "GRU": 5, "RNN": 0}[node.op_type]
    return steps * gates * (feat + hidden), steps * ((2 * gates if has_bias else 0) + gates + update)


def _einsum(node, ins, outs) -> tuple[int, int]:
    """Einsum: a contraction of two or more operands costs one MAC per point of the joint index space (the
    product of every index's size); a single operand is a reduction or a transpose (one op per input element)."""
    eq = _attrs(node)["equation"]
    eq = eq.decode() if isinstance(eq, bytes) else eq
    lhs = eq.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, dims in zip(lhs, ins):
        dims = _need(dims)
        if "..." in term:  # the ellipsis stands for the leading dims, aligned right across operands
            k = len(dims) - (len(term) - 3)
            term = term.replace("...", "".join(chr(0x100 + i) for i in range(max(k, 0))))
        for letter, d in zip(term, dims):
            sizes[letter] = max(sizes.get(letter, 1), d)
    if len(lhs) == 1:
        return 0, _numel(_need(ins[0]))
    return prod(sizes.values()), 0


def _shapes_from_a_run(model, spec: InputSpec, batch_size: int, names: list[str], folder: str | None):
    """{value: (dims, elem_type)} for ``names`` from one ONNX Runtime run of ``model`` on generated inputs, or the
    reason it could not be had (a str). Used only for values ONNX's shape inference leaves unknown: ops outside
    the ONNX standard (ONNX Runtime's com.microsoft contrib ops have no ONNX schema) and what follows them."""
    from onnx import ModelProto, helper

    from dnnbench.core.optional import available

    if not available("onnxruntime"):
        return "onnxruntime is not installed (pip install 'dnnbench[onnx]')"
    import onnxruntime as ort

    m = ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(helper.ValueInfoProto(name=name))
    so = ort.SessionOptions()
    so.log_severity_level = 4  # the failure, if any, is reported in the profile's notes
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every value the graph names
    if folder:
        so.add_session_config_entry("session.model_external_initializers_file_folder_path", folder)
    try:
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        real = [i.name for i in sess.get_inputs()]
        args, kwargs = spec.make(batch_size)
        feed = dict(zip(spec.names or real, args)) if args else dict(kwargs)
        outs = sess.run(names, {k: v.numpy() for k, v in feed.items() if k in real})
    except Exception as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        text = text.rpartition("Status Message: ")[2]  # ONNX Runtime's own reason, after its source path
        text = text.split(".h:")[-1].split(".cc:")[-1][:200]
        return (f"ONNX Runtime could not run it at this input size either ({text}): pass an --input-size the "
                "graph accepts")
    return {n: (list(o.shape), helper.np_dtype_to_tensor_dtype(o.dtype)) for n, o in zip(names, outs)}


def _fix_inputs(model, spec: InputSpec, batch_size: int) -> None:
    """Set the graph's input dimensions to the numbers of this profile (batch and input sizes)."""
    inits = {i.name for i in model.graph.initializer} | {sp.values.name for sp in model.graph.sparse_initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    shapes = spec.shapes(batch_size)
    by_name = dict(zip(spec.names, shapes)) if spec.names else dict(zip((i.name for i in real), shapes))
    for vi in real:
        want = by_name.get(vi.name)
        if want is None:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(want):
            raise InputError(f"input {vi.name!r} has {len(dims)} dimensions in the graph, not {len(want)}",
                             f"asked for shape {want}", "leave --input-size out, or give the size the graph takes")
        for d, n in zip(dims, want):
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != n:  # 0 and -1 mean dynamic
                raise InputError(f"input {vi.name!r} is fixed to {[x.dim_value or x.dim_param for x in dims]} in the graph",
                                 f"cannot profile it at {want}",
                                 "use the batch size and input size the file fixes, or export with dynamic axes")
            d.ClearField("dim_param")
            d.dim_value = n
    # stale intermediate shapes (with symbolic batch) would conflict with the numbers just set
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")


def _constant_nodes(model) -> set[int]:
    """Indices of the nodes whose inputs are all constants (initializers, Constant nodes, or such nodes' outputs).

    These are folded: an inference runtime computes them once when it loads the graph (ONNX Runtime's constant
    folding), so they cost nothing per inference, and their outputs are weights if a computing node reads them.
    A node that reads a graph input, even only through ``Shape``, is not constant.
    """
    g = model.graph
    const = {i.name for i in g.initializer} | {sp.values.name for sp in g.sparse_initializer}
    folded: set[int] = set()
    for idx, node in enumerate(g.node):
        if node.domain not in ("", "ai.onnx") or node.op_type in NOT_FOLDABLE:
            continue
        if node.op_type == "Constant" or (any(node.input) and all(not n or n in const for n in node.input)):
            folded.add(idx)
            const.update(o for o in node.output if o)
    return folded


def _param_slots(model, shapes: "_Shapes", folded: set[int]):
    """Weights, buffers and their bytes, by the conventions in the module docstring.

    Returns (weights, buffers, nbytes, slot_of, unknown, storage): ``weights``/``buffers`` map a weight's root
    to its elements, ``nbytes`` a root to its bytes as stored, ``slot_of`` each constant value a computing node
    reads to its root, ``unknown`` the constants read by computing nodes whose shape is not known, ``storage``
    a root to its stored element type. A root is a stored tensor (an initializer, a ``Constant`` node's value,
    an ``Identity`` copy, or a folded computation such as ``ConstantOfShape``); values derived from it by
    SAME_WEIGHT ops are the same weight, counted once. Each root is classified by the computing nodes that read
    it (BatchNormalization statistics and recurrent states are buffers; quantization scales and resampling
    scales are neither).
    """
    g = model.graph
    root: dict[str, str] = {}
    storage: dict[str, int] = {}
    for init in g.initializer:
        root[init.name], storage[init.name] = init.name, init.data_type
    for sp in g.sparse_initializer:
        root[sp.values.name], storage[sp.values.name] = sp.values.name, sp.values.data_type
    nodes = list(g.node)
    for idx in sorted(folded):
        node = nodes[idx]
        for out in node.output:
            if not out:
                continue
            src = node.input[0] if node.input and node.input[0] in root else None
            if node.op_type in SAME_WEIGHT and src is not None:
                root[out], storage[out] = root[src], storage[root[src]]
            else:
                root[out] = out
                kind = shapes.info.get(out, (None, 0))[1]
                storage[out] = storage[root[src]] if node.op_type == "Identity" and src is not None else kind
    uses: dict[str, set[tuple[str, int]]] = defaultdict(set)
    slot_of: dict[str, str] = {}
    elements: dict[str, int] = {}
    kinds: dict[str, int] = {}
    unknown = 0
    for idx, node in enumerate(nodes):
        if idx in folded or idx in shapes.shape_ops:
            continue
        for i, name in enumerate(node.input):
            if name not in root:
                continue
            r = root[name]
            dims, kind = shapes.info.get(name, (None, 0))
            if dims is None:
                unknown += 1
                continue
            slot_of[name] = r
            uses[r].add((node.op_type, i))
            if len(dims) > 0:  # a 0-d value is a scalar the exporter baked in (Clip bounds, scales), not a weight
                elements[r] = max(elements.get(r, 0), prod(dims))
                kinds[r] = kind if kind in FLOAT_TYPES else kinds.get(r, kind)
    weights, buffers, nbytes = {}, {}, {}
    for r, used in uses.items():
        n = elements.get(r)
        if n is None:
            continue
        nbytes[r] = n * _ELEM_BYTES.get(storage.get(r) or kinds[r], 4)
        rest = used - NOT_PARAMS
        if rest and rest <= (BN_STATS | RNN_STATES):
            buffers[r] = n
        elif rest and (kinds[r] in FLOAT_TYPES or rest & QUANT_WEIGHT_INPUTS):
            weights[r] = n
    return weights, buffers, nbytes, slot_of, unknown, storage


def profile_onnx(lm: LoadedModel, batch_size: int = 1, inputs: InputSpec | None = None) -> Profile:
    """Count the ONNX graph of ``lm`` (an ``OnnxModel``) at ``batch_size``: shape inference, no compute."""
    onnx = require("onnx", "counting onnx: models")

    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size {batch_size} is not allowed", "a batch holds at least one item",
                         "use --batch-size 1 or more")
    spec = inputs or lm.inputs
    module = lm.module
    proto = getattr(module, "proto", None)
    if proto is None:
        proto = onnx.load(module.onnx_path, load_external_data=False)
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    _fix_inputs(model, spec, batch_size)
    try:
        shapes = _Shapes(model)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(f"{lm.ref} rejected input of shape {' and '.join(map(str, spec.shapes(batch_size)))}",
                         f"ONNX shape inference failed: {first}",
                         "pass an --input-size and batch size the graph accepts") from exc
    folded = _constant_nodes(model)
    notes = list(lm.notes)
    read = {n for node in model.graph.node for n in node.input} | {o.name for o in model.graph.output}
    missing = [o for idx, node in enumerate(model.graph.node) if idx not in folded and idx not in shapes.shape_ops
               for o in node.output if o and o in read and shapes.dims(o) is None]  # unread outputs (masks) don't matter
    if missing:
        import os

        path = getattr(module, "onnx_path", None)
        got = _shapes_from_a_run(model, spec, batch_size, missing, os.path.dirname(os.path.abspath(path)) if path else None)
        lost = set(missing)
        ops = sorted({f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                      for n in model.graph.node if any(o in lost for o in n.output)},
                     key=lambda name: ("." not in name, name))[:6]  # ops outside the standard (the cause) first
        if isinstance(got, dict):
            shapes.info.update(got)
            notes.append(f"ONNX shape inference left {len(missing)} values unknown (from {', '.join(ops)}): their "
                         "shapes were read from one ONNX Runtime run on generated inputs")
        else:
            notes.append(f"ONNX shape inference left {len(missing)} values unknown (from {', '.join(ops)}) and {got}")
    weights, buffers, slot_bytes, slot_of, unknown_consts, storage = _param_slots(model, shapes, folded)

    ops: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # count, macs, other
    uncounted: dict[str, int] = defaultdict(int)
    rows: list[LayerRow] = []
    credited: set[str] = set()
    unknown_shapes = 0
    for idx, node in enumerate(model.graph.node):
        name = f"onnx.{node.op_type}" if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        try:
            # shape arithmetic (Shape -> Gather -> Mul...) is bookkeeping, done in Python under torch: zero
            # constant subgraphs are folded when the runtime loads the graph: zero per inference, like the above
            macs, other = (0, 0) if idx in shapes.shape_ops or idx in folded else _count_node(node, shapes)
        except _Unknown:
            uncounted[f"{name} (shape unknown)"] += 1
            unknown_shapes += 1
            macs = other = 0
        except KeyError:
            if node.domain not in ("", "ai.onnx") or node.op_type not in ZERO_COST:
                uncounted[name] += 1
            macs = other = 0
        st = ops[name]
        st[0] += 1
        st[1] += macs
        st[2] += other
        params = 0
        for inp in node.input if idx not in folded else ():
            r = slot_of.get(inp)
            if r in weights and r not in credited:  # a weight is credited to its first computing consumer
                credited.add(r)
                params += weights[r]
        if macs or other or params:
            out_bytes = sum(shapes.nbytes(o) or 0 for o in node.output if o)
            rows.append(LayerRow(node.name or (node.output[0] if node.output else node.op_type), node.op_type, params,
                                 macs, 2 * macs, other, out_bytes, 1))
    if unknown_consts:
        notes.append(f"{unknown_consts} constant inputs of computing nodes have no known shape: not in params")
    n_folded = sum(1 for i in folded if model.graph.node[i].op_type != "Constant")
    if n_folded:
        notes.append(f"{n_folded} nodes compute only from constants: folded as a runtime does when it loads the "
                     "graph (zero per inference; their outputs count as weights)")
    if unknown_shapes:
        notes.append(f"{unknown_shapes} nodes have shapes ONNX shape inference could not determine: listed in "
                     "uncounted_ops")

    total_macs = sum(v[1] for v in ops.values())
    total_other = sum(v[2] for v in ops.values())
    peak = _activation_peak(model, shapes, folded)
    param_count = sum(weights.values())
    weight_bytes = sum(slot_bytes[n] for n in weights)
    elem = storage.get(max(weights, key=weights.get), 1) if weights else 1  # the largest weight's stored type
    dtype = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 3: "int8", 2: "uint8"}.get(elem, "float32")
    outputs = sum(shapes.nbytes(o.name) or 0 for o in model.graph.output)
    notes.append("counted from the ONNX graph (shape inference, no compute); ONNX has no trainable flag: "
                 "trainable_params = params")
    op_totals = sorted((OpTotal(op, c, m, 2 * m, o) for op, (c, m, o) in ops.items()),
                       key=lambda t: (-t.macs, -t.other_flops, t.op))
    return Profile(
        model=lm.ref, batch_size=batch_size, input_shape=spec.shapes(batch_size),
        params=param_count, trainable_params=param_count, weight_bytes=weight_bytes,
        buffer_bytes=sum(slot_bytes[n] for n in buffers),
        macs=total_macs, flops=2 * total_macs, other_flops=total_other,
        activation_peak_bytes=peak, input_bytes=spec.nbytes(batch_size), output_bytes=outputs,
        uncounted_ops=dict(sorted(uncounted.items())), ops=op_totals, layers=rows, mode="onnx", dtype=dtype,
        reported=lm.reported, notes=notes,
    )


def _activation_peak(model, shapes: _Shapes, folded: set[int]) -> int:
    """Peak bytes of live values over the graph's node order (topological by the ONNX spec).

    Graph inputs live throughout, as in the torch counter; a value is freed after its last consumer unless it
    is a graph output. Initializers (weights) are excluded. Values of unknown shape count as 0.
    """
    g = model.graph
    inits = {i.name for i in g.initializer}
    outputs = {o.name for o in g.output}
    last_use: dict[str, int] = {}
    for idx, node in enumerate(g.node):
        for name in node.input:
            if name:
                last_use[name] = idx
    live = sum(shapes.nbytes(i.name) or 0 for i in g.input if i.name not in inits)
    peak = live
    sizes: dict[str, int] = {}
    for idx, node in enumerate(g.node):
        for name in node.output:
            if name and name not in inits:
                size = shapes.nbytes(name) or 0
                if idx in folded:  # constants (weights), not activations
                    size = 0
                sizes[name] = size
                live += size
        peak = max(peak, live)
        for name in set(node.input):
            if name in sizes and last_use.get(name) == idx and name not in outputs:
                live -= sizes.pop(name)
        for name in node.output:  # produced but never used
            if name in sizes and name not in last_use and name not in outputs:
                live -= sizes.pop(name)
    return peak
