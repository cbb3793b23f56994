"""torchvision models of every task as first-class models: references, tasks, inputs, params, sets, listing.

Params are checked against torchvision's published ``num_params`` for all 121 models (on meta, no weights
allocated); MACs against ``_ops`` where the input alone decides them (segmentation, video, optical flow and
SSDlite: the inputs chosen here are the ones torchvision's figures count). The exact MAC counting of the
data-dependent detectors is tested with the counters.
"""

import json

import pytest
import torch
import torchvision.models as tvm
from torchvision.models._api import WeightsEnum

import dnnbench
from dnnbench.core.errors import UnavailableError, UnknownModelError
from dnnbench.core.specs import TASKS, LoadedModel
from dnnbench.sources import load, sets
from dnnbench.sources import torchvision_models as tv

GROUP_MODULES = {"classification": tvm, "detection": tvm.detection, "segmentation": tvm.segmentation,
                 "video": tvm.video, "optical_flow": tvm.optical_flow, "quantized": tvm.quantization}
BY_GROUP = {g: tvm.list_models(module=m) for g, m in GROUP_MODULES.items()}
FLOAT = [n for g, names in BY_GROUP.items() if g != "quantized" for n in names]
# the sizes the detectors' own transforms resize a square image to (torchvision's builders)
DETECTION_SIDE = {"fasterrcnn_mobilenet_v3_large_320_fpn": 320, "ssdlite320_mobilenet_v3_large": 320,
                  "ssd300_vgg16": 300}
# auxiliary heads: in torchvision's num_params (and, for segmentation, its _ops), not in an inference forward
WITH_AUX = {"inception_v3", "fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
            "deeplabv3_mobilenet_v3_large"}
SLOW_QUANTIZED = {"quantized_inception_v3", "quantized_resnext101_32x8d", "quantized_resnext101_64x4d"}


def _expected_task(group, name):
    if group == "detection":
        return ("instance_segmentation" if name.startswith("maskrcnn") else
                "keypoint_detection" if name.startswith("keypointrcnn") else "detection")
    return "classification" if group == "quantized" else group


def test_all_121_models_in_six_groups():
    assert {g: len(n) for g, n in BY_GROUP.items()} == {
        "classification": 80, "detection": 12, "segmentation": 6, "video": 9, "optical_flow": 2, "quantized": 12}
    assert len(tv.models()) == 121 == len(tvm.list_models())
    assert set(tv.models()) == set(tvm.list_models())
    for g, names in BY_GROUP.items():
        assert tv.models(g) == tuple(names)
    assert tv.models(task="instance_segmentation") == ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")
    assert tv.models(task="keypoint_detection") == ("keypointrcnn_resnet50_fpn",)
    assert len(tv.models(task="detection")) == 9
    assert {tv.task_of(n) for n in tv.models()} == set(TASKS)


@pytest.mark.parametrize("name", FLOAT)
def test_every_float_model_builds_on_meta_with_its_task_input_and_published_params(name):
    group = next(g for g, names in BY_GROUP.items() if name in names)
    entry = tvm.get_model_weights(name).DEFAULT
    lm = load(f"torchvision:{name}", device="meta")
    assert lm.ref == f"torchvision:{name}"
    assert lm.task == _expected_task(group, name)
    assert all(t.device.type == "meta" for t in list(lm.module.parameters()) + list(lm.module.buffers()))
    spec = lm.inputs
    if group == "detection":
        side = DETECTION_SIDE.get(name, 800)
        assert spec.as_list and spec.shapes(2) == [[2, 3, side, side]]
        args, kwargs = spec.make(2, device="meta")
        assert isinstance(args[0], list) and len(args[0]) == 2 and args[0][0].shape == (3, side, side)
    elif group == "segmentation":
        assert spec.shapes(1) == [[1, 3, 520, 520]] and not spec.as_list
    elif group == "video":
        crop = entry.transforms.keywords["crop_size"]
        assert spec.shapes(1) == [[1, 3, 16, *crop]]
    elif group == "optical_flow":
        assert spec.shapes(1) == [[1, 3, 512, 512], [1, 3, 512, 512]]
    else:
        assert len(spec.tensors) == 1 and spec.tensors[0].shape[0] == 3
    params = sum(p.numel() for p in lm.module.parameters())
    if name in WITH_AUX:
        # the heads an inference does not run were removed: the difference is exactly those heads, and the
        # model as torchvision builds it for its weights (inference=False) has the published count
        full, _ = tv.build(name, entry, "meta", inference=False)
        aux = full.AuxLogits if name == "inception_v3" else full.aux_classifier
        assert params + sum(p.numel() for p in aux.parameters()) == entry.meta["num_params"]
        assert sum(p.numel() for p in full.parameters()) == entry.meta["num_params"]
    else:
        assert params == entry.meta["num_params"]
    assert lm.preprocess is not None and lm.preprocess_source == f"torchvision {entry}.transforms()"


@pytest.mark.parametrize("name", BY_GROUP["segmentation"] + BY_GROUP["video"] + BY_GROUP["optical_flow"])
def test_the_chosen_inputs_give_torchvisions_published_ops(name):
    """torchvision's figures (pytorch/vision#6936) count segmentation at 520 x 520 with the aux head, video
    as a 16-frame clip and optical flow as a 512 x 512 pair: counted here, they match to the published
    decimals."""
    entry = tvm.get_model_weights(name).DEFAULT
    module, _ = tv.build(name, entry, "meta", inference=False)
    p = dnnbench.profile(LoadedModel(name, module, tv.input_spec(name, entry, module)))
    assert p.mode == "meta" and p.uncounted_ops == {}
    assert round(p.macs / 1e9, 3) == entry.meta["_ops"], (name, p.macs)
    assert p.params == entry.meta["num_params"]


def test_ssdlite_profiles_at_the_published_ops():
    p = dnnbench.profile("torchvision:ssdlite320_mobilenet_v3_large")
    assert p.input_shape == [[1, 3, 320, 320]]
    assert round(p.macs / 1e9, 3) == 0.583 and p.params == 3_440_060


def _packed_weights(module):
    """Elements of a quantized module's packed weights and biases (they are not nn.Parameters)."""
    n = 0
    for m in module.modules():
        if callable(getattr(m, "weight", None)):
            n += m.weight().numel()
            bias = m.bias() if callable(getattr(m, "bias", None)) else None
            n += 0 if bias is None else bias.numel()
    return n


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_QUANTIZED else n
                                  for n in BY_GROUP["quantized"]])
def test_quantized_models_are_int8_for_their_engine(name):
    entry = tvm.get_model_weights(name).DEFAULT
    lm = load(f"torchvision:{name}", device="meta")
    assert lm.task == "classification"
    assert torch.backends.quantized.engine == entry.meta["backend"]
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in lm.module.modules())
    assert lm.inputs.shapes(1) == [[1, 3, *tv.native_input_size(entry)]]
    assert any(entry.meta["backend"] in n and "built on CPU" in n for n in lm.notes)
    # num_params is the float model's; the int8 model folds each batch norm into the conv before it, so it
    # holds one bias per channel instead of the norm's weight and bias: exactly the norm channels fewer
    float_name = name.removeprefix("quantized_")
    float_model = load(f"torchvision:{float_name}", device="meta").module
    norm_channels = sum(m.num_features for m in float_model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert _packed_weights(lm.module) == sum(p.numel() for p in float_model.parameters()) - norm_channels
    assert entry.meta["num_params"] == tvm.get_model_weights(float_name).DEFAULT.meta["num_params"]


def test_quantized_model_on_an_engine_this_torch_lacks_is_one_line(monkeypatch):
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", property(lambda self: ["qnnpack"]))
    with pytest.raises(UnavailableError) as exc:
        load("torchvision:quantized_resnet18", device="meta")
    line = exc.value.one_line()
    assert "quantized for the fbgemm engine" in line and "supports qnnpack" in line
    assert "torchvision:resnet18" in line


def test_quantized_model_on_cuda_says_cpu_only():
    with pytest.raises(UnavailableError, match="runs on CPU only"):
        load("torchvision:quantized_resnet18", device="cuda")


def test_weights_tags_pick_the_architecture_and_figures():
    lm = load("torchvision:keypointrcnn_resnet50_fpn.COCO_LEGACY", device="meta")
    assert lm.ref == "torchvision:keypointrcnn_resnet50_fpn.COCO_LEGACY" and lm.task == "keypoint_detection"
    d = tv.describe("keypointrcnn_resnet50_fpn", "COCO_LEGACY")
    assert d["macs"] == 133_924_000_000 and d["metrics"]["COCO-val2017"] == {"box_map": 0.506, "kp_map": 0.611}
    with pytest.raises(UnknownModelError, match="no weights 'COCO_V9'"):
        load("torchvision:keypointrcnn_resnet50_fpn.COCO_V9", device="meta")


def test_the_download_interception_is_always_undone():
    before = (WeightsEnum.get_state_dict, torch.nn.Module.load_state_dict)
    load("torchvision:deeplabv3_mobilenet_v3_large", device="meta")
    load("torchvision:quantized_shufflenet_v2_x0_5", device="meta")
    assert (WeightsEnum.get_state_dict, torch.nn.Module.load_state_dict) == before
    import torchvision.models.quantization.shufflenetv2 as qs
    import torchvision.models.quantization.utils as qu
    assert qs.quantize_model is qu.quantize_model


def test_cached_weights_load_through_torchvisions_own_builder(tmp_path, monkeypatch):
    """The weights file, as torchvision publishes it (with the aux head), read from the local cache: the
    builder loads it, then the aux head is removed; nothing is downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name = "deeplabv3_mobilenet_v3_large"
    entry = tvm.get_model_weights(name).DEFAULT
    with pytest.raises(UnavailableError, match="not in the local cache"):
        load(f"torchvision:{name}", weights="DEFAULT")
    torch.manual_seed(0)
    published = tvm.get_model(name, weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(published.state_dict(), tv.cached_weights_path(entry))
    lm = load(f"torchvision:{name}", weights="DEFAULT")
    assert lm.weights == str(entry) and lm.module.aux_classifier is None
    got, want = lm.module.state_dict(), published.state_dict()
    assert set(want) - set(got) == {k for k in want if k.startswith("aux_classifier.")} != set()
    assert all(torch.equal(got[k], want[k]) for k in got)


def test_segmentation_checkpoints_load_with_or_without_the_aux_head(tmp_path):
    name = "deeplabv3_mobilenet_v3_large"
    entry = tvm.get_model_weights(name).DEFAULT
    full, _ = tv.build(name, entry, "cpu", inference=False)
    with_aux, without = tmp_path / "with_aux.pth", tmp_path / "without.pth"
    torch.save(full.state_dict(), with_aux)
    tv.strip_aux_heads(full)
    torch.save(full.state_dict(), without)
    for path in (with_aux, without):
        lm = load(f"torchvision:{name}", weights=str(path))
        assert lm.module.aux_classifier is None
        assert sum(p.numel() for p in lm.module.parameters()) == sum(p.numel() for p in full.parameters())
        assert torch.equal(lm.module.classifier[4].weight, full.classifier[4].weight)


def test_describe_gives_each_tasks_published_metric():
    d = tv.describe("fasterrcnn_resnet50_fpn")
    assert (d["task"], d["metric"], d["metric_value"], d["dataset"]) == ("detection", "box_map", 0.37, "COCO-val2017")
    assert d["params"] == 41_755_286 and d["macs"] == 134_380_000_000
    assert d["input"] == "list of 3x800x800 images" and d["top1"] is None
    assert tv.describe("maskrcnn_resnet50_fpn")["metrics"]["COCO-val2017"] == {"box_map": 0.379, "mask_map": 0.346}
    seg = tv.describe("deeplabv3_resnet50")
    assert seg["metric"] == "miou" and seg["metrics"]["COCO-val2017-VOC-labels"] == {"miou": 0.664, "pixel_acc": 0.924}
    video = tv.describe("r3d_18")
    assert (video["top1"], video["dataset"], video["input"]) == (0.632, "Kinetics-400", "clip of 16 frames 3x112x112")
    flow = tv.describe("raft_small")
    assert flow["metric"] == "epe" and flow["metric_value"] == 1.9901  # pixels, not a percentage
    assert flow["input"] == "pair of 3x512x512 images"
    q = tv.describe("quantized_resnet18")
    assert q["group"] == "quantized" and q["task"] == "classification" and q["top1"] == pytest.approx(0.69494)
    # the loaded model carries the published figure too
    assert "box mAP 37.0 % on COCO-val2017" in load("fasterrcnn_resnet50_fpn", device="meta").reported.note


def test_sets_of_every_task():
    assert len(sets.expand("torchvision")) == 121
    for group, names in BY_GROUP.items():
        assert sets.is_set(group)
        assert [e.ref for e in sets.expand(group)] == [f"torchvision:{n}" for n in names]
    assert [e.label for e in sets.expand("paper")] == [r["paper_model"] for r in sets.paper_reference()]
    rows = sets.listing("detection")
    assert len(rows) == 12 and {r["task"] for r in rows} == {"detection", "instance_segmentation",
                                                             "keypoint_detection"}
    assert [r["model"] for r in sets.listing("rcnn", task="instance_segmentation")] == [
        "torchvision:maskrcnn_resnet50_fpn", "torchvision:maskrcnn_resnet50_fpn_v2"]


def test_unknown_model_names_close_matches_across_tasks():
    with pytest.raises(UnknownModelError) as exc:
        load("torchvision:fasterrcnn_resnet50_fpnn", device="meta")
    assert "did you mean fasterrcnn_resnet50_fpn" in exc.value.one_line()
    with pytest.raises(UnknownModelError, match="121 models"):
        load("torchvision:no_such_net_xyz", device="meta")


def test_models_listing_cli(cli):
    proc = cli("models", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 121 and {r["task"] for r in rows} == set(TASKS)
    proc = cli("models", "--task", "segmentation", "--format", "json")
    rows = json.loads(proc.stdout)
    assert len(rows) == 6 and all(r["metric"] == "miou" and 0 < r["metric_value"] < 1 for r in rows)
    proc = cli("models", "detection")
    assert proc.returncode == 0, proc.stderr
    for fragment in ("task", "box mAP", "mask mAP", "kp mAP", "keypoint_detection", "ssdlite320_mobilenet_v3_large",
                     "list of 3x320x320 images", "COCO-val2017"):
        assert fragment in proc.stdout, fragment


@pytest.mark.parametrize("args, fragment", [
    (("models", "--task", "tracking"), "unknown task 'tracking': tasks are classification, detection"),
    (("models", "zzz_nothing", "--task", "video"), "no model matches 'zzz_nothing' and task video"),
    (("profile", "ssdlite320_mobilenet_v3"), "did you mean ssdlite320_mobilenet_v3_large"),
])
def test_bad_listing_and_reference_are_one_line(cli, args, fragment):
    proc = cli(*args)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in lines[0], lines[0]


def test_a_model_that_cannot_be_built_on_meta_is_built_on_cpu_and_says_so(monkeypatch):
    def refuse(make):
        raise NotImplementedError("Cannot copy out of meta tensor; no data!")

    monkeypatch.setattr(tv, "build_on_meta", refuse)
    lm = load("torchvision:ssdlite320_mobilenet_v3_large", device="meta")
    assert {p.device.type for p in lm.module.parameters()} == {"cpu"}
    assert any(n.startswith("built on CPU: it cannot be built on meta tensors (NotImplementedError: Cannot copy")
               for n in lm.notes)
    assert sum(p.numel() for p in lm.module.parameters()) == 3_440_060
