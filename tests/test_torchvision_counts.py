"""Every torchvision model that publishes ``_ops``/``num_params`` (121: 80 classifiers, 12 detectors,
6 segmenters, 9 video models, 2 optical-flow models, 12 quantized classifiers): counted MACs and params
at batch 1, through ``dnnbench.sources.load``, against the DEFAULT weights' metadata.

torchvision computed ``_ops`` (pytorch/vision#6936) with a TorchDispatchMode FLOP counter after Chillee's
(convolution, mm/addmm/bmm MACs) on one forward of the pretrained model in eval mode: classifiers at
their crop size, segmentation at 520 x 520, video at 16 frames of the crop, RAFT on a 512 x 512 pair,
detectors on one image (any square image: their transform resizes it to min_size). Where the published
figure differs from dnnbench's, the difference is asserted exactly below:

- segmentation (fcn_*, deeplabv3_*): the published model has the auxiliary classifier (``aux_loss=True``
  with weights; it runs in the eval forward); dnnbench's inference model drops it.
- quantized_*: ``num_params`` is the float model's; the int8 model has BatchNorm folded into the conv
  (C parameters per BatchNorm instead of the conv's C bias + BN's 2C: C fewer) and, for Inception-v3,
  no auxiliary head. Their MACs equal the float model's.
- two-stage detectors: the box head runs once per RPN proposal, the mask/keypoint head once per
  detection -- counts that depend on the weights' values. The published figure is the one torchvision's
  pretrained weights gave on its input (table PUBLISHED_ROIS); dnnbench, with random weights, counts
  what they give. Everything before the RoI heads matches exactly.
"""

import pytest
import torch
import torchvision.models as tvm
from torch import nn

import dnnbench
from dnnbench.core.specs import InputSpec, LoadedModel, TensorSpec
from dnnbench.counting.profile import profile_model
from dnnbench.sources import load
from dnnbench.sources.meta_build import build_on_meta

PUBLISHED = [n for n in tvm.list_models() if "_ops" in tvm.get_model_weights(n).DEFAULT.meta]
SEGMENTATION_WITH_AUX = {n for n in PUBLISHED if n.startswith(("fcn_", "deeplabv3_"))}
# (RPN proposals the box head ran on, detections the mask/keypoint head ran on) in torchvision's count.
PUBLISHED_ROIS = {
    "fasterrcnn_resnet50_fpn": (1000, 0),
    "fasterrcnn_resnet50_fpn_v2": (1000, 0),
    # rpn_score_thresh=0.05: the pretrained RPN scored no proposal above it on torchvision's input
    "fasterrcnn_mobilenet_v3_large_fpn": (0, 0),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (0, 0),
    "maskrcnn_resnet50_fpn": (1000, 0),
    "maskrcnn_resnet50_fpn_v2": (1000, 100),
    "keypointrcnn_resnet50_fpn": (1000, 1),
}
NEEDS_REAL = {n for n in PUBLISHED if n.startswith("quantized_")} | {
    n for n in PUBLISHED if tvm.get_model_builder(n).__module__.startswith("torchvision.models.detection")}


def matches(macs: float, published_gmacs: float) -> bool:
    # _ops has three decimals: tiny models (0.04 GMACs) can only match at that precision
    return abs(macs - published_gmacs * 1e9) <= 0.005 * published_gmacs * 1e9 or round(macs / 1e9, 3) == published_gmacs


def _count_part(module: nn.Module, *item_shape: int) -> dnnbench.Profile:
    return profile_model(LoadedModel("part", module, InputSpec((TensorSpec(item_shape),))), 1)


def _roi_costs(model: nn.Module) -> tuple[int, int]:
    """MACs of the box head per proposal, and of the mask/keypoint head per detection."""
    heads = model.roi_heads
    box = _count_part(heads.box_head, 256, 7, 7).macs + _count_part(heads.box_predictor, 1024).macs
    det = 0
    if getattr(heads, "mask_head", None) is not None:
        det = _count_part(heads.mask_head, 256, 14, 14).macs + _count_part(heads.mask_predictor, 256, 14, 14).macs
    if getattr(heads, "keypoint_head", None) is not None:
        det = (_count_part(heads.keypoint_head, 256, 14, 14).macs
               + _count_part(heads.keypoint_predictor, 512, 14, 14).macs)
    return box, det


def test_there_are_121_published_models():
    groups = {}
    for n in PUBLISHED:
        module = tvm.get_model_builder(n).__module__.split(".")
        group = module[2] if len(module) > 3 else "classification"
        groups[group] = groups.get(group, 0) + 1
    assert groups == {"classification": 80, "detection": 12, "segmentation": 6, "video": 9, "optical_flow": 2,
                      "quantization": 12}


@pytest.mark.parametrize("name", PUBLISHED)
def test_macs_and_params_match_published_metadata(name):
    meta = tvm.get_model_weights(name).DEFAULT.meta
    lm = load(f"torchvision:{name}", device="meta")
    p = dnnbench.profile(lm, batch_size=1)
    assert p.uncounted_ops == {}
    assert p.mode == ("real" if name in NEEDS_REAL else "meta"), p.notes
    macs, params = p.macs, p.params

    if name in SEGMENTATION_WITH_AUX:
        # the published model is the one with the auxiliary classifier: count it, and check that dnnbench's
        # figures are that model's less exactly the aux head's MACs and params
        published_model = build_on_meta(lambda: tvm.get_model(name, weights=None, weights_backbone=None,
                                                               num_classes=21, aux_loss=True))
        full = profile_model(LoadedModel(name, published_model, lm.inputs), 1)
        aux = {r.name: r for r in full.layers if r.name.startswith("aux_classifier")}
        assert macs == full.macs - sum(r.macs for r in aux.values())
        assert params == full.params - sum(q.numel() for q in published_model.aux_classifier.parameters())
        macs, params = full.macs, full.params
    elif name.startswith("quantized_"):
        float_name = name.removeprefix("quantized_")
        kw = {"aux_logits": False, "init_weights": False} if float_name in ("googlenet", "inception_v3") else {}
        float_model = build_on_meta(lambda: tvm.get_model(float_name, weights=None, **kw))
        folded = sum(b.num_features for b in float_model.modules() if isinstance(b, nn.BatchNorm2d))
        float_params = sum(q.numel() for q in float_model.parameters())
        assert params == float_params - folded  # each BatchNorm folded into its conv: C parameters fewer
        params = float_params
        if float_name == "inception_v3":  # torchvision's num_params for Inception-v3 includes its aux head
            with_aux = build_on_meta(lambda: tvm.inception_v3(weights=None, aux_logits=True, init_weights=False))
            params += sum(q.numel() for q in with_aux.AuxLogits.parameters())
        assert p.dtype == "qint8"
    elif name == "inception_v3":
        aux = build_on_meta(lambda: tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)).AuxLogits
        params += sum(q.numel() for q in aux.parameters())
    elif name in PUBLISHED_ROIS:
        per_proposal, per_detection = _roi_costs(lm.module)
        rows = {r.name: r for r in p.layers}
        proposals = rows["roi_heads.box_roi_pool"].output_bytes // (4 * 256 * 7 * 7)
        pool = rows.get("roi_heads.mask_roi_pool") or rows.get("roi_heads.keypoint_roi_pool")
        detections = pool.output_bytes // (4 * 256 * 14 * 14) if pool is not None else 0
        roi_macs = sum(r.macs for r in p.layers if r.name.startswith("roi_heads"))
        # what ran after the RPN is exactly its proposals' and detections' share...
        assert roi_macs == proposals * per_proposal + detections * per_detection
        assert 0 < proposals <= lm.module.rpn.post_nms_top_n() and detections <= lm.module.roi_heads.detections_per_img
        assert any("data-dependent ops ran" in n and "torchvision.nms" in n for n in p.notes)
        # ...and with torchvision's proposals and detections, the count is the published one
        n_prop, n_det = PUBLISHED_ROIS[name]
        macs = macs - roi_macs + n_prop * per_proposal + n_det * per_detection
    assert matches(macs, meta["_ops"]), f"{name}: counted {macs}, published {meta['_ops']} GMACs"
    assert params == meta["num_params"], f"{name}: counted {params}, published {meta['num_params']}"


def test_detectors_are_counted_on_real_tensors_and_say_why():
    p = dnnbench.profile(load("torchvision:ssdlite320_mobilenet_v3_large", device="meta"))
    assert p.mode == "real"
    assert any("cannot run on meta tensors" in n for n in p.notes)
    assert any("data-dependent ops ran" in n and "torchvision.nms" in n for n in p.notes)
    # the same count twice: real inputs and synthetic values come from fixed seeds
    again = dnnbench.profile(load("torchvision:ssdlite320_mobilenet_v3_large", device="meta"))
    assert (again.macs, again.other_flops) == (p.macs, p.other_flops)


def test_a_real_detector_is_counted_and_left_usable():
    # on meta, AnchorGenerator moves its cell_anchors (a plain list attribute) to the meta device; the
    # fallback to real tensors then failed with "Cannot copy out of meta tensor" and blamed the input size
    model = tvm.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None).eval()
    p = dnnbench.profile(LoadedModel("frcnn", model, InputSpec((TensorSpec((3, 160, 160)),), as_list=True)))
    assert p.mode == "real" and p.macs > 0 and p.uncounted_ops == {}
    assert all(a.device.type == "cpu" for a in model.rpn.anchor_generator.cell_anchors)
    assert not any("random values" in n for n in p.notes)  # real weights: everything computed
    with torch.no_grad():
        model([torch.rand(3, 160, 160)])  # still runs
