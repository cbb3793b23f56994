import pytest

from dnnbench.core.errors import RefSyntaxError
from dnnbench.core.refs import ModelRef, parse_ref


@pytest.mark.parametrize("text, expected", [
    ("resnet50", ModelRef("torchvision", "resnet50")),
    ("torchvision:resnet50", ModelRef("torchvision", "resnet50")),
    ("torchvision:vit_h_14.IMAGENET1K_SWAG_LINEAR_V1", ModelRef("torchvision", "vit_h_14", "IMAGENET1K_SWAG_LINEAR_V1")),
    ("timm:resnet50.a1_in1k", ModelRef("timm", "resnet50", "a1_in1k")),
    ("timm:inception_v4", ModelRef("timm", "inception_v4")),
    ("python:pkg.mod:factory", ModelRef("python", "factory", None, "pkg.mod")),
    ("python:path/to/file.py:build", ModelRef("python", "build", None, "path/to/file.py")),
    ("onnx:models/resnet50.onnx", ModelRef("onnx", "resnet50", None, "models/resnet50.onnx")),
])
def test_grammar(text, expected):
    ref = parse_ref(text)
    assert ref == expected
    # the canonical spelling parses back to the same reference
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("onnx:model.pt", "malformed onnx reference"),
    ("onnx:", "malformed onnx reference"),
    ("tf:resnet50", "unknown model source 'tf'"),
    ("torchvision:resnet50.", "malformed"),
    ("timm:", "malformed"),
    ("python:factory_only", "malformed python reference"),
    ("python:pkg.mod:not-an-identifier", "not a Python identifier"),
    ("python:pkg mod:build", "neither a dotted module path"),
])
def test_malformed_references_say_how_to_fix(text, fragment):
    with pytest.raises(RefSyntaxError) as info:
        parse_ref(text)
    line = info.value.one_line()
    assert fragment in line
    assert "Fix:" in line and "\n" not in line
