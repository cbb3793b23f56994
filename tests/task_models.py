"""Tiny models of every vision task, built through python: factories (``factory.task`` names the task).

Detectors take a list of images and return a list of dicts (boxes, scores, labels) whose size depends on the
data, as torchvision's do; the segmenter returns {"out": logits}; the video model takes (B, 3, T, H, W)
clips; the flow model takes two images and returns a flow field. Each builds in milliseconds.
"""

import torch
from torch import nn


class TinyDetector(nn.Module):
    """A list of CHW images in, a list of {"boxes", "scores", "labels"} out: as many boxes as pass a threshold."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.head = nn.Conv2d(width, 5 + 4, 1)

    def forward(self, images):
        out = []
        for img in images:
            f = self.head(torch.relu(self.conv(img[None])))[0]  # (9, H, W)
            logits = f[:5].flatten(1).T  # (HW, 5 classes)
            boxes = f[5:].flatten(1).T.abs().cumsum(-1)  # (HW, 4): x1 <= y1 <= x2 <= y2, positive
            scores, labels = logits.softmax(-1).max(-1)
            keep = scores > scores.mean()  # data-dependent: a different number of boxes per image
            out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return out


def detector():
    return TinyDetector(8), ([torch.randn(3, 32, 32), torch.randn(3, 32, 32)],)


def wide_detector():
    return TinyDetector(32), ([torch.randn(3, 32, 32)],)


detector.task = wide_detector.task = "detection"


class TinySegmenter(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 3, padding=1)

    def forward(self, x):
        return {"out": self.conv(x)}


def segmenter():
    return TinySegmenter(), (torch.randn(1, 3, 32, 32),)


segmenter.task = "segmentation"


def video():
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 6))
    return model, (torch.randn(1, 3, 4, 16, 16),)


video.task = "video"


class TinyFlow(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 2, 3, padding=1)

    def forward(self, a, b):
        return [self.conv(torch.cat([a, b], 1))]  # RAFT returns a list of flow refinements


def flow():
    return TinyFlow(), (torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16))


flow.task = "optical_flow"


def classifier():
    return (nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)),
            (torch.randn(1, 3, 32, 32),))


def wide_classifier():
    return (nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(32, 10)), (torch.randn(1, 3, 32, 32),))
