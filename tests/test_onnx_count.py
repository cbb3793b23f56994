"""ONNX files as models: the graph counter's formulas on hand-built graphs with hand-computed answers, torchvision
models exported to ONNX counted within 1 % of the torch counter (params equal), and bad files."""

import warnings

import pytest
import torch

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import dnnbench  # noqa: E402
from dnnbench.core.errors import InputError, ModelBuildError, UnknownModelError  # noqa: E402
from tests.conftest import run_cli  # noqa: E402


def _save(tmp_path, nodes, inputs, outputs, inits, name="g.onnx", opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, path)
    return f"onnx:{path}"


def _w(name, *shape):
    return numpy_helper.from_array(torch.randn(*shape).numpy(), name)


def _x(name, *shape, batch="batch"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, *shape])


def test_formulas_on_a_hand_built_graph(tmp_path):
    # x [B,3,8,8] -Conv(4,3,3x3,pad1,bias)-> [B,4,8,8] -BN-> -Relu-> -MaxPool 2x2-> [B,4,4,4] -Flatten-> [B,64]
    # -Gemm(64->10, transB, bias)-> [B,10] -Softmax->
    inits = [_w("cw", 4, 3, 3, 3), _w("cb", 4), _w("g", 4), _w("b", 4), _w("mean", 4), _w("var", 4),
             _w("fw", 10, 64), _w("fb", 10)]
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "mean", "var"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y0"], transB=1),
        helper.make_node("Softmax", ["y0"], ["y"], axis=1),
    ]
    ref = _save(tmp_path, nodes, [_x("x", 3, 8, 8)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    p = dnnbench.profile(ref, batch_size=2)
    conv = 2 * 4 * 8 * 8 * (3 * 9)  # every output element gathers C_in x k x k inputs
    gemm = 2 * 64 * 10
    assert p.macs == conv + gemm and p.flops == 2 * p.macs
    other = (2 * 4 * 64) + 2 * (2 * 4 * 64) + 2 * 4 * 64 + (2 * 4 * 16 * 4) + 2 * 10 + 4 * 2 * 10
    #        conv bias     batch norm (2)      relu        max pool (window 4)  gemm bias  softmax (4)
    assert p.other_flops == other
    # params: conv w+b, BN scale+shift, fc w+b; BN running mean/var are buffers, as in torch
    assert p.params == 4 * 27 + 4 + 4 + 4 + 640 + 10
    assert p.buffer_bytes == 2 * 4 * 4
    assert p.uncounted_ops == {} and p.mode == "onnx" and p.input_shape == [[2, 3, 8, 8]]
    assert p.activation_peak_bytes > 0 and p.output_bytes == 2 * 10 * 4


def test_batched_matmul_identity_copies_scalars_shape_math_and_unknown_ops(tmp_path):
    # attention-style: q [B,2,5,4] x k^T [B,2,4,5] -> [B,2,5,5]; scale by a 0-d constant; x [B,2,5,5] x v
    # the batch is read back with Shape -> Gather -> Concat -> Reshape (shape arithmetic: free, like Python in torch)
    inits = [numpy_helper.from_array(torch.tensor(0.5).numpy(), "scale"),
             numpy_helper.from_array(torch.tensor([0]).numpy(), "zero"),
             numpy_helper.from_array(torch.tensor([-1]).numpy(), "minus1"),
             _w("wshared", 4, 4)]
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["s2"]),
        helper.make_node("MatMul", ["s2", "v"], ["o"]),
        helper.make_node("Shape", ["o"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["bdim"], axis=0),
        helper.make_node("Concat", ["bdim", "minus1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["o", "newshape"], ["flat"]),
        # the exporter's deduplicated weights: two linear layers share one initializer through Identity copies
        helper.make_node("Identity", ["wshared"], ["w1"]),
        helper.make_node("Identity", ["wshared"], ["w2"]),
        helper.make_node("MatMul", ["q", "w1"], ["l1"]),
        helper.make_node("MatMul", ["l1", "w2"], ["l2"]),
        helper.make_node("Det", ["sq"], ["det"]),  # no formula: reported, never a silent zero
    ]
    ins = [_x("q", 2, 5, 4), _x("k", 2, 5, 4), _x("v", 2, 5, 4), _x("sq", 3, 3)]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("flat", "l2", "det")]
    ref = _save(tmp_path, nodes, ins, outs, inits)
    p = dnnbench.profile(ref, batch_size=3)
    attn = 3 * 2 * 5 * 5 * 4 * 2  # Q.K^T and A.V: B*H*L*S*E each
    lin = 2 * (3 * 2 * 5 * 4 * 4)  # two [B,2,5,4] x [4,4] matmuls
    assert p.macs == attn + lin
    assert p.other_flops == 3 * 2 * 5 * 5  # the scale Mul; the shape arithmetic costs nothing
    assert p.params == 2 * 16  # each Identity copy is a weight; the 0-d scale and int64 shapes are not
    assert p.uncounted_ops == {"onnx.Det": 1}
    assert [list(s) for s in p.input_shape] == [[3, 2, 5, 4], [3, 2, 5, 4], [3, 2, 5, 4], [3, 3, 3]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """torchvision models (random weights) exported once, BatchNorm kept (no constant folding), dynamic batch."""
    tmp = tmp_path_factory.mktemp("onnx")

    def export(name: str):
        import torchvision

        model = getattr(torchvision.models, name)().eval()
        path = tmp / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), path, dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "batch"}}, do_constant_folding=False)
        return f"onnx:{path}"

    return export


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", pytest.param("vit_b_16", marks=pytest.mark.slow)])
def test_exported_torchvision_models_count_like_the_torch_counter(exported, name):
    ref = exported(name)
    for batch in (1, 2):
        torch_p = dnnbench.profile(name, batch_size=batch)
        onnx_p = dnnbench.profile(ref, batch_size=batch)
        assert onnx_p.params == torch_p.params
        assert abs(onnx_p.macs / torch_p.macs - 1) < 0.01, (onnx_p.macs, torch_p.macs)
        assert onnx_p.uncounted_ops == {}
        assert onnx_p.flops == 2 * onnx_p.macs


def test_fixed_batch_and_bad_files_are_one_line_errors(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    fixed = _save(tmp_path, nodes, [_x("x", 4, batch=1)], [_x("y", 4, batch=1)], [], name="fixed.onnx")
    assert dnnbench.profile(fixed).other_flops == 4  # the Relu, at the batch the file fixes
    with pytest.raises(InputError, match="fixed to"):
        dnnbench.profile(fixed, batch_size=2)
    (tmp_path / "junk.onnx").write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelBuildError, match="is not a valid ONNX model"):
        dnnbench.profile(f"onnx:{tmp_path / 'junk.onnx'}")
    with pytest.raises(UnknownModelError, match="does not exist"):
        dnnbench.profile(f"onnx:{tmp_path / 'missing.onnx'}")
    sym = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [], name="sym.onnx")
    with pytest.raises(InputError, match="symbolic dimensions"):
        dnnbench.profile(sym)


def test_cli_profile_of_an_onnx_file(tmp_path):
    import tests.runtime_models as rm

    model, example = rm.small_cnn()
    path = tmp_path / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), path, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    r = run_cli("profile", f"onnx:{path}", "--batch-size", "4", "--format", "json")
    assert r.returncode == 0, r.stderr
    import json

    d = json.loads(r.stdout)
    torch_p = dnnbench.profile(model, input_size=16, batch_size=4)
    assert d["macs"] == torch_p.macs and d["mode"] == "onnx" and d["input_shape"] == [[4, 3, 16, 16]]
    (tmp_path / "bad.onnx").write_text("garbage")
    r = run_cli("profile", f"onnx:{tmp_path / 'bad.onnx'}")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "is not a valid ONNX model" in r.stderr and "Traceback" not in r.stderr


# ---- weights in every form an ONNX file can hold them; old opsets; quantized graphs; more formulas ----------------

def _model(nodes, inputs, outputs, inits=(), opset=13, ir=None, sparse=(), domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits), sparse_initializer=list(sparse))
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=ops)
    if ir is not None:
        model.ir_version = ir
    return model


def _write(tmp_path, model, name):
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _a(name, array):
    return numpy_helper.from_array(array, name)


def _out(name):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def _run_ort(path, feed):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [i.name for i in sess.get_inputs()], sess.run(None, feed)


def test_weights_in_initializers_constants_sparse_tensors_and_folded_subgraphs(tmp_path):
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    sparse = helper.make_sparse_tensor(_a("ws", np.array([1.0, 2.0, 3.0], np.float32)), _a("ws_i", np.array([0, 7, 29])), [6, 5])
    const_sparse = helper.make_sparse_tensor(_a("v", np.array([1.0, -1.0], np.float32)), _a("i", np.array([1, 8])), [5, 2])
    inits = [_a("wq", rng.integers(-127, 127, (4, 3, 3, 3)).astype(np.int8)), _a("wscale", np.full(4, 0.01, np.float32)),
             _a("wzp", np.zeros(4, np.int8)), _a("slope_shape", np.array([4, 1, 1])), _a("wh", f32(4, 6).astype(np.float16)),
             _a("wm", f32(6, 6)), _a("wt", f32(6, 6)), _a("scales", np.array([1, 1, 2, 2], np.float32))]
    nodes = [
        # a QDQ weight: int8 in the file, dequantized once at load (a folded subgraph); its per-channel scale is no param
        helper.make_node("DequantizeLinear", ["wq", "wscale", "wzp"], ["wf"], axis=0),
        helper.make_node("Constant", [], ["cb"], value=_a("cbv", f32(4))),  # a Constant node's tensor
        helper.make_node("Conv", ["x", "wf", "cb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Constant", [], ["slope_flat"], value_floats=[0.1, 0.2, 0.3, 0.4]),  # value_floats
        helper.make_node("Reshape", ["slope_flat", "slope_shape"], ["slope"]),
        helper.make_node("PRelu", ["c", "slope"], ["p"]),
        helper.make_node("ConstantOfShape", ["slope_shape"], ["shift"], value=_a("half", np.array([0.5], np.float32))),
        helper.make_node("Add", ["p", "shift"], ["q"]),
        helper.make_node("Resize", ["q", "", "scales"], ["up"], mode="nearest"),  # resampling scales: no param
        helper.make_node("GlobalAveragePool", ["q"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Cast", ["wh"], ["whf"], to=TensorProto.FLOAT),  # an fp16 weight cast at load
        helper.make_node("MatMul", ["f", "whf"], ["h1"]),
        helper.make_node("Identity", ["wm"], ["wm1"]),
        helper.make_node("Identity", ["wm1"], ["wm2"]),  # an Identity chain: one weight
        helper.make_node("MatMul", ["h1", "wm2"], ["h2"]),
        helper.make_node("MatMul", ["h2", "wt"], ["h3"]),
        helper.make_node("Transpose", ["wt"], ["wtt"]),  # the same weight transposed: counted once
        helper.make_node("MatMul", ["h3", "wtt"], ["h4"]),
        helper.make_node("MatMul", ["h4", "ws"], ["h5"]),  # a sparse initializer
        helper.make_node("Constant", [], ["wsp"], sparse_value=const_sparse),  # a Constant node's sparse_value
        helper.make_node("MatMul", ["h5", "wsp"], ["y"]),
    ]
    model = _model(nodes, [_x("x", 3, 8, 8)], [_out("y"), _out("up")], inits, sparse=[sparse])
    path = _write(tmp_path, model, "forms.onnx")
    p = dnnbench.profile(f"onnx:{path}", batch_size=2)
    #               conv w  bias  slope  shift  fp16 w  chain  shared  sparse init  sparse const
    assert p.params == 108 + 4 + 4 + 4 + 24 + 36 + 36 + 30 + 10 == 256
    # bytes as stored: int8 conv weight, fp16 weight; ConstantOfShape and sparse tensors at their dense float32 size
    assert p.weight_bytes == 108 * 1 + 16 + 16 + 16 + 24 * 2 + 144 + 144 + 120 + 40
    conv = 2 * 4 * 64 * 27
    assert p.macs == conv + 2 * (4 * 6 + 6 * 6 + 6 * 6 + 6 * 6 + 6 * 5 + 5 * 2)
    #                 conv bias, PRelu, Add   GAP (input)   Resize (output); the folded DQ, Reshape, Cast cost nothing
    assert p.other_flops == 3 * (2 * 4 * 64) + 2 * 4 * 64 + 2 * 4 * 16 * 16
    assert p.uncounted_ops == {}
    assert any("compute only from constants" in n for n in p.notes)
    names, outs = _run_ort(path, {"x": np.ones((2, 3, 8, 8), np.float32)})  # the file is valid and runs
    assert names == ["x"] and outs[0].shape == (2, 2)


def test_old_opset_and_ir3_initializers_listed_as_graph_inputs(tmp_path):
    """onnx-caffe2's layout (the onnx package's own model-zoo files): IR 3, every initializer also a graph input,
    weights generated by ConstantOfShape; classic ops (LRN, Upsample at opset 9). Counted as written, and the same
    after onnx.version_converter takes the graph to opset 13."""
    np = pytest.importorskip("numpy")
    from onnx import version_converter

    inits = [_a("w_shape", np.array([4, 3, 3, 3])), _a("b", np.zeros(4, np.float32)),
             _a("scales", np.array([1, 1, 2, 2], np.float32)), _a("s", np.ones(4, np.float32)), _a("t", np.zeros(4, np.float32)),
             _a("mean", np.zeros(4, np.float32)), _a("var", np.ones(4, np.float32)),
             _a("fw", np.full((10, 1024), 0.01, np.float32)), _a("fb", np.zeros(10, np.float32))]
    nodes = [
        helper.make_node("ConstantOfShape", ["w_shape"], ["w"], value=_a("v", np.array([0.02], np.float32))),
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("LRN", ["c"], ["l"], size=3, alpha=1e-4, beta=0.75, bias=1.0),
        helper.make_node("Upsample", ["l", "scales"], ["u"], mode="nearest"),
        helper.make_node("BatchNormalization", ["u", "s", "t", "mean", "var"], ["n"]),
        helper.make_node("Flatten", ["n"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    as_inputs = [helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in inits]
    model = _model(nodes, [_x("x", 3, 8, 8, batch=1), *as_inputs], [_out("y")], inits, opset=9, ir=3)
    path = _write(tmp_path, model, "old.onnx")
    p = dnnbench.profile(f"onnx:{path}")
    assert p.input_shape == [[1, 3, 8, 8]]  # the initializers listed as inputs are not data inputs
    assert p.params == 108 + 4 + 4 + 4 + 10240 + 10  # conv (ConstantOfShape) + bias, BN scale/shift, Gemm
    assert p.buffer_bytes == 2 * 4 * 4  # BN running statistics
    assert p.macs == 4 * 64 * 27 + 1024 * 10
    #                  conv bias   LRN: size + 5 per element   Upsample (output)   BN (2)         Gemm bias
    assert p.other_flops == 4 * 64 + 4 * 64 * (3 + 5) + 4 * 256 + 2 * 4 * 256 + 10
    assert p.uncounted_ops == {}
    names, outs = _run_ort(path, {"x": np.ones((1, 3, 8, 8), np.float32)})
    assert names == ["x"] and outs[0].shape == (1, 10)  # ONNX Runtime asks for no initializer either
    newer = version_converter.convert_version(onnx.load(path), 13)
    q = dnnbench.profile(f"onnx:{_write(tmp_path, newer, 'old13.onnx')}")
    assert (q.params, q.macs, q.other_flops) == (p.params, p.macs, p.other_flops)


def test_quantized_graphs_qlinearconv_and_matmulinteger(tmp_path):
    np = pytest.importorskip("numpy")
    s = lambda v: _a(v, np.array(0.05, np.float32))  # noqa: E731
    z = lambda v, t=np.uint8: _a(v, np.array(0, t))  # noqa: E731
    inits = [s("xs"), z("xz"), _a("wq", np.ones((4, 3, 3, 3), np.int8)), _a("wsc", np.full(4, 0.02, np.float32)),
             _a("wz", np.zeros(4, np.int8)), s("ys"), z("yz"), _a("bq", np.arange(4, dtype=np.int32)),
             _a("mw", np.ones((4, 5), np.int8)), z("mz", np.int8)]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("QLinearConv", ["xq", "xs", "xz", "wq", "wsc", "wz", "ys", "yz", "bq"], ["cq"], pads=[1, 1, 1, 1]),
        helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("DynamicQuantizeLinear", ["f"], ["fq", "fs", "fz"]),
        helper.make_node("MatMulInteger", ["fq", "mw", "fz", "mz"], ["yi"]),
    ]
    model = _model(nodes, [_x("x", 3, 8, 8)], [helper.make_tensor_value_info("yi", TensorProto.INT32, None)], inits)
    path = _write(tmp_path, model, "quant.onnx")
    p = dnnbench.profile(f"onnx:{path}", batch_size=3)
    assert p.params == 108 + 4 + 20  # int8 conv weight, its int32 bias, the int8 matmul weight; no scale or zero point
    assert p.weight_bytes == 108 + 16 + 20 and p.dtype == "int8"
    assert p.macs == 3 * 4 * 64 * 27 + 3 * 4 * 5
    #                   Quantize    QLinearConv bias   Dequantize   GAP          DynamicQuantizeLinear
    assert p.other_flops == 3 * 192 + 3 * 256 + 3 * 256 + 3 * 256 + 3 * 4
    assert p.uncounted_ops == {}
    names, outs = _run_ort(path, {"x": np.ones((3, 3, 8, 8), np.float32)})
    assert outs[0].shape == (3, 5)


def test_recurrent_einsum_and_lrn_formulas(tmp_path):
    np = pytest.importorskip("numpy")
    f32 = lambda *s: np.ones(s, np.float32)  # noqa: E731
    inits = [_a("W", f32(2, 16, 3)), _a("R", f32(2, 16, 4)), _a("B", f32(2, 32)), _a("gW", f32(1, 6, 3)),
             _a("gR", f32(1, 6, 2)), _a("E", f32(3, 4))]
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["ly"], hidden_size=4, direction="bidirectional", layout=1),
        helper.make_node("GRU", ["x", "gW", "gR"], ["gy"], hidden_size=2, layout=1),
        helper.make_node("Einsum", ["x", "E"], ["ey"], equation="bti,ij->btj"),
        helper.make_node("LRN", ["img"], ["ly2"], size=3),
    ]
    model = _model(nodes, [_x("x", 5, 3), _x("img", 2, 3, 3)], [_out(n) for n in ("ly", "gy", "ey", "ly2")], inits, opset=14)
    p = dnnbench.profile(f"onnx:{_write(tmp_path, model, 'rnn.onnx')}", batch_size=2)
    lstm = 2 * 5 * 2 * 4 * 4 * (3 + 4)  # dirs x T x B x gates x H x (I + H)
    gru = 1 * 5 * 2 * 3 * 2 * (3 + 2)
    einsum = 2 * 5 * 3 * 4
    assert p.macs == lstm + gru + einsum
    #   LSTM per step and unit: 2 bias adds x 4 gates, 4 activations, 5 cell ops;  GRU: no bias, 3 + 5;  LRN: size + 5
    assert p.other_flops == 2 * 5 * 2 * 4 * (8 + 4 + 5) + 5 * 2 * 2 * (3 + 5) + 2 * 18 * (3 + 5)
    assert p.params == 96 + 128 + 64 + 18 + 12 + 12
    assert p.uncounted_ops == {}


def test_shapes_outside_the_onnx_standard_read_from_one_onnx_runtime_run(tmp_path):
    pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")
    nodes = [helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft"),  # no ONNX schema: shape unknown
             helper.make_node("MatMul", ["g", "w"], ["y"])]
    model = _model(nodes, [_x("x", 4)], [_out("y")], [_a("w", np.ones((4, 3), np.float32))], domains=["com.microsoft"])
    p = dnnbench.profile(f"onnx:{_write(tmp_path, model, 'contrib.onnx')}", batch_size=2)
    assert p.macs == 2 * 4 * 3 and p.other_flops == 2 * 4 and p.params == 12 and p.uncounted_ops == {}
    assert any("read from one ONNX Runtime run" in n for n in p.notes)
    # an op no one knows: listed by name, with what could not be counted after it; never a crash
    nodes[0] = helper.make_node("Frobnicate", ["x"], ["g"], domain="my.ops")
    model = _model(nodes, [_x("x", 4)], [_out("y")], [_a("w", np.ones((4, 3), np.float32))], domains=["my.ops"])
    p = dnnbench.profile(f"onnx:{_write(tmp_path, model, 'custom.onnx')}", batch_size=2)
    assert p.uncounted_ops == {"my.ops.Frobnicate": 1, "onnx.MatMul (shape unknown)": 1} and p.params == 12
    assert any("ONNX Runtime could not run it" in n for n in p.notes)


def test_paddle_style_dynamic_dims_minus_one_and_unnamed(tmp_path):
    np = pytest.importorskip("numpy")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, None, None])  # Paddle: -1 and '?'
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"])], [x], [_out("y")], [_a("w", np.ones((2, 3, 1, 1), np.float32))])
    p = dnnbench.profile(f"onnx:{_write(tmp_path, model, 'paddle.onnx')}", batch_size=2, input_size=8)
    assert p.input_shape == [[2, 3, 8, 8]] and p.macs == 2 * 2 * 64 * 3
