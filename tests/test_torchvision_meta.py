"""Every torchvision classifier: counted MACs and params against the weights' published metadata."""

import pytest
import torch
import torchvision.models as tvm

import dnnbench
from dnnbench.sources import load
from dnnbench.sources.meta_build import build_on_meta

MODELS = tvm.list_models(module=tvm)


def test_there_are_80_classification_models():
    assert len(MODELS) == 80


@pytest.mark.parametrize("name", MODELS)
def test_macs_and_params_match_published_metadata(name):
    meta = tvm.get_model_weights(name).DEFAULT.meta
    p = dnnbench.profile(load(f"torchvision:{name}", device="meta"), batch_size=1)
    published = meta["_ops"] * 1e9
    # _ops is published in GMACs with three decimals; tiny models (0.04 GMACs) can only be matched to
    # that precision, which is how torchvision's own test rounds it.
    assert abs(p.macs - published) <= 0.005 * published or round(p.macs / 1e9, 3) == meta["_ops"], (
        f"{name}: counted {p.macs}, published {published:.0f}")
    assert p.uncounted_ops == {}
    assert p.mode == "meta"
    if name == "inception_v3":
        # torchvision's num_params for Inception-v3 includes the auxiliary classifier, which the
        # inference-time model does not have: the difference must be exactly that head.
        aux = build_on_meta(lambda: tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)).AuxLogits
        assert p.params + sum(q.numel() for q in aux.parameters()) == meta["num_params"]
    else:
        assert p.params == meta["num_params"]


def test_native_input_sizes_come_from_the_weights():
    assert dnnbench.profile("inception_v3").input_shape == [[1, 3, 299, 299]]
    assert load("vit_h_14", device="meta").inputs.tensors[0].shape == (3, 518, 518)
    # another weights entry of the same model: another architecture and input size
    assert load("torchvision:vit_h_14.IMAGENET1K_SWAG_LINEAR_V1", device="meta").inputs.tensors[0].shape == (3, 224, 224)


def test_batch_64_is_64_times_batch_1_and_activation_memory_is_linear():
    p1 = dnnbench.profile("resnet18", batch_size=1)
    p64 = dnnbench.profile("resnet18", batch_size=64)
    assert p64.macs == 64 * p1.macs
    assert p64.other_flops == 64 * p1.other_flops
    sizes = [1, 2, 4, 8, 16]
    act = [dnnbench.profile("mobilenet_v2", batch_size=b).activation_peak_bytes for b in sizes]
    slope = (act[-1] - act[0]) / (sizes[-1] - sizes[0])
    for b, a in zip(sizes, act):
        assert a == pytest.approx(act[0] + slope * (b - 1), rel=1e-9)
    assert slope > 0


def test_profiling_leaves_a_real_model_unchanged():
    model = tvm.resnet18(weights=None)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks_before = (dict(torch.nn.modules.module._global_forward_hooks),
                    dict(torch.nn.modules.module._global_forward_pre_hooks))
    p = dnnbench.profile(model, batch_size=2)
    assert p.macs == 2 * 1_814_073_344
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) and after[k].device.type == "cpu" for k in before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert (dict(torch.nn.modules.module._global_forward_hooks),
            dict(torch.nn.modules.module._global_forward_pre_hooks)) == hooks_before
    # the meta build patch is undone too
    assert torch.nn.Module.register_parameter.__qualname__ == "Module.register_parameter"
