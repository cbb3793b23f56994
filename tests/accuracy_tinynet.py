"""A tiny colour classifier and a generated validation set for the accuracy tests.

Used as ``python:tests/accuracy_tinynet.py:build`` (the factory) with ``--weights CKPT``. Each class is a
mean colour; every image gets its own colour offset and pixel noise, so neighbouring classes overlap and a
trained model is good but not perfect — the test can then tell a right class map from a wrong one.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

# The first four ImageNet-1k synsets, so the same folders also read as ImageNet classes.
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
COLOURS = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [170, 170, 60]], dtype=np.float64)
JITTER = 45.0  # per-image colour offset (std): large enough that classes overlap a little
SIZE = (48, 40)  # width, height of generated images


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


PREPROCESS = T.Compose([T.Resize((16, 16)), T.ToTensor()])


def build():
    return TinyNet(len(WNIDS))


build.preprocess = PREPROCESS


def build_no_names():
    """The same network without class_names or preprocess: folders map by sorted name, default transform."""
    return TinyNet(len(WNIDS))


def build_with_names():
    return TinyNet(len(WNIDS))


build_with_names.preprocess = PREPROCESS
build_with_names.class_names = list(WNIDS)


def make_image(rng: np.random.Generator, label: int) -> Image.Image:
    colour = COLOURS[label] + rng.normal(0, JITTER, 3)
    pixels = colour + rng.normal(0, 12, (SIZE[1], SIZE[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_imagefolder(root, per_class: int, seed: int = 1, classes=WNIDS) -> list[tuple[str, int]]:
    """``root/<wnid>/img_XX.jpg`` (every fifth a PNG); returns (path, label) in sorted path order."""
    rng = np.random.default_rng(seed)
    out = []
    for label, wnid in enumerate(classes):
        os.makedirs(os.path.join(root, wnid), exist_ok=True)
        for i in range(per_class):
            ext = "png" if i % 5 == 4 else "jpg"
            path = os.path.join(root, wnid, f"img_{i:03d}.{ext}")
            make_image(rng, label % len(COLOURS)).save(path)
            out.append((path, label))
    return sorted(out)


def train(steps: int = 150, seed: int = 0) -> TinyNet:
    """Train on freshly generated images (in memory) until the colours separate; a couple of seconds on CPU."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 100)
    xs, ys = [], []
    for i in range(200):
        label = i % len(WNIDS)
        xs.append(PREPROCESS(make_image(rng, label)))
        ys.append(label)
    x, y = torch.stack(xs), torch.tensor(ys)
    model = TinyNet(len(WNIDS))
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    return model


def predict(model: nn.Module, paths: list[str], transform=PREPROCESS) -> torch.Tensor:
    """Logits of each file, computed directly: PIL decode, the transform, one forward — no dnnbench."""
    with torch.no_grad():
        x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
        return model.eval()(x)
