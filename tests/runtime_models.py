"""Tiny models for the runtime tests, referenced as python:tests/runtime_models.py:NAME.

Fixed seeds: a worker rebuilds the model from the reference and must get the same weights as the reference run.
"""

import torch
from torch import nn


def small_cnn():
    """Conv + BatchNorm + ReLU + pooling + two Linear layers: 10 classes from a 3x16x16 image."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                      nn.Flatten(), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    return m, torch.randn(1, 3, 16, 16)


class _Unexportable(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 4)

    def forward(self, x):
        # a special function neither ONNX exporter has a translation for
        return torch.special.i1e(self.lin(x))


def unexportable():
    torch.manual_seed(0)
    return _Unexportable(), torch.randn(1, 8)
