"""Is data loading the bottleneck of `dnnbench accuracy`? Evaluation images/s against pure inference images/s.

Generates JPEGs at ImageNet's typical size (500x375, ~80-100 KB, textured so the entropy decoder works),
evaluates a real torchvision model (random weights: throughput does not depend on them) with its real
preprocessing (weights.transforms(): decode, resize 256, crop 224, normalise), and times the same model on
ready-made tensors at the same batch size and thread count. Target (issue 5): evaluation >= 80 % of pure
inference. On a shared machine the load of others changes both figures by up to 2x within a minute, so the
two are interleaved: each round times pure inference, evaluates the whole set, times pure inference again,
and compares the evaluation with the faster of its two neighbours; the verdict is the median round.

    python benchmarks/accuracy_throughput.py [--model resnet18] [--images 192] [--batch-size 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

import dnnbench.api as api
from dnnbench.evaluate.accuracy import default_workers
from dnnbench.evaluate.imagedata import imagenet1k_wnids


def make_jpegs(root: str, n: int, size=(500, 375), classes: int = 8, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    wnids = imagenet1k_wnids()[:classes]
    w, h = size
    total = 0
    for i in range(n):
        d = os.path.join(root, wnids[i % classes])
        os.makedirs(d, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-24, 25, (h, w, 3))
        path = os.path.join(d, f"ILSVRC2012_val_{i:08d}.JPEG")
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        total += os.path.getsize(path)
    return total


def cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the DataLoader workers, once joined)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


PURE_CPU: list[float] = []  # CPU seconds per image of each pure-inference measurement


def pure_inference(module, batch_size: int, size: tuple[int, int], reps: int) -> float:
    x = torch.randn(batch_size, 3, *size)
    times = []
    with torch.inference_mode():
        module(x)  # warm-up
        c0 = cpu_s()
        for _ in range(reps):
            t0 = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t0)
        PURE_CPU.append((cpu_s() - c0) / (reps * batch_size))
    return batch_size / statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--images", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--reps", type=int, default=4, help="timed batches of pure inference per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    workers = default_workers() if args.workers is None else args.workers

    lm = api.load_model(args.model)  # random weights, real architecture and real preprocessing
    lm.module.eval().to(args.device)
    _, h, w = lm.inputs.tensors[0].shape

    def pure() -> float:
        if args.device == "cpu":
            return pure_inference(lm.module, args.batch_size, (h, w), args.reps)
        return _pure_cuda(lm.module, args.batch_size, (h, w), args.reps, args.device)

    rounds, eval_cpu = [], []
    with tempfile.TemporaryDirectory(prefix="dnnbench-acc-") as root:
        t0 = time.perf_counter()
        nbytes = make_jpegs(root, args.images)
        gen_s = time.perf_counter() - t0
        after = pure()
        for _ in range(args.rounds):
            before = after
            c0 = cpu_s()
            acc = api.accuracy(lm, root, batch_size=args.batch_size, workers=workers, device=args.device)
            eval_cpu.append((cpu_s() - c0) / acc.images)
            after = pure()
            rounds.append((before, acc, after, acc.images_per_s / max(before, after)))
    print(f"model:                    {lm.ref} (random weights), preprocess: {acc.preprocess_source}")
    print(f"data:                     {args.images} JPEGs 500x375, mean {nbytes / args.images / 1024:.0f} KiB "
          f"(generated in {gen_s:.1f} s)")
    print(f"setup:                    batch {args.batch_size}, {acc.workers} decoding workers, {acc.threads} torch threads, "
          f"{args.device}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for i, (before, a, after, ratio) in enumerate(rounds, 1):
        print(f"round {i}: pure inference {before:6.1f} -> {after:6.1f} images/s | evaluation {a.images_per_s:6.1f} "
              f"images/s (model {a.forward_s:.1f} s, waiting for data {a.data_wait_s:.1f} s of {a.wall_s:.1f} s) "
              f"| {100 * ratio:5.1f} %")
    ratios = sorted(r for *_, r in rounds)
    mid = rounds[[r for *_, r in rounds].index(ratios[len(ratios) // 2])]
    ratio = mid[3]
    print(f"pure inference:           {max(mid[0], mid[2]):.1f} images/s (median round)")
    print(f"evaluation (accuracy):    {mid[1].images_per_s:.1f} images/s (median round)")
    print(f"ratio:                    {100 * ratio:.1f} % of pure inference (target >= 80 %; rounds "
          f"{', '.join(f'{100 * r:.0f}' for r in ratios)} %)")
    # Load-independent view: CPU time per image. When both are CPU-bound on the same cores, the best
    # evaluation can do is pure / (pure + decoding) of the pure-inference rate.
    pure_c, eval_c = statistics.median(PURE_CPU), statistics.median(eval_cpu)
    print(f"CPU time per image:       pure inference {1e3 * pure_c:.0f} ms, evaluation {1e3 * eval_c:.0f} ms "
          f"(decoding + preprocessing + overhead: {1e3 * (eval_c - pure_c):.0f} ms); "
          f"CPU-bound bound on the ratio: {100 * pure_c / eval_c:.0f} %")
    for note in acc.notes:
        print(f"note: {note}")
    return 0 if ratio >= 0.8 else 1


def _pure_cuda(module, batch_size, size, reps, device) -> float:
    x = torch.randn(batch_size, 3, *size, device=device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    with torch.inference_mode():
        for _ in range(3):
            module(x)
        for _ in range(reps):
            start.record()
            module(x)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    return batch_size / statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
