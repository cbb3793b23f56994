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
