"""Profile all 121 torchvision models that publish ``_ops`` at batch 8 (default) in one process.

For each model: MACs per item (image, clip, image pair) and params against the DEFAULT weights' ``_ops``
and ``num_params``, the counting mode (meta, or real for detectors and quantized models), and the wall
time of build + count. Differences that tests/test_torchvision_counts.py explains exactly are labelled
with their cause; any other difference is a MISMATCH and makes the exit status 1.

    python benchmarks/profile_torchvision.py [--batch-size 8] [--only PREFIX ...]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

t0 = time.perf_counter()
import torchvision.models as tvm  # noqa: E402

import dnnbench  # noqa: E402
from dnnbench.sources import load  # noqa: E402

# What tests/test_torchvision_counts.py asserts exactly, by model: why the published figure differs.
EXPLAINED = {
    **{n: "published model has the aux classifier (dnnbench drops it)" for n in
       ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
        "deeplabv3_mobilenet_v3_large")},
    "inception_v3": "num_params includes the aux head",
    "fasterrcnn_mobilenet_v3_large_fpn": "RoI heads: published ran on 0 proposals",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "RoI heads: published ran on 0 proposals",
    "maskrcnn_resnet50_fpn_v2": "RoI heads: published mask head ran on 100 detections",
    "keypointrcnn_resnet50_fpn": "RoI heads: published keypoint head ran on 1 detection",
    "maskrcnn_resnet50_fpn": "RoI heads: detections are data-dependent",
    "fasterrcnn_resnet50_fpn": "RoI heads: proposals are data-dependent",
    "fasterrcnn_resnet50_fpn_v2": "RoI heads: proposals are data-dependent",
}


def matches(macs: float, published_gmacs: float) -> bool:
    return abs(macs - published_gmacs * 1e9) <= 0.005 * published_gmacs * 1e9 or round(macs / 1e9, 3) == published_gmacs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--only", nargs="*", default=None, help="model name prefixes")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    names = [n for n in tvm.list_models() if "_ops" in tvm.get_model_weights(n).DEFAULT.meta]
    if args.only:
        names = [n for n in names if n.startswith(tuple(args.only))]
    t_import = time.perf_counter() - t0
    rows, failures, mismatches = [], [], []
    t1 = time.perf_counter()
    for name in names:
        s = time.perf_counter()
        meta = tvm.get_model_weights(name).DEFAULT.meta
        try:
            lm = load(f"torchvision:{name}", device="meta")
            p = dnnbench.profile(lm, batch_size=args.batch_size)
        except Exception as exc:  # a benchmark reports every failure and goes on
            failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        wall = time.perf_counter() - s
        per_item = p.macs / args.batch_size
        params_note = ""
        if name.startswith("quantized_"):
            params_note = "BatchNorm folded" + (", no aux head" if "inception" in name else "")
        macs_ok, params_ok = matches(per_item, meta["_ops"]), p.params == meta["num_params"]
        if macs_ok and (params_ok or params_note):
            status = "match" + (f" (params: {params_note})" if not params_ok else "")
        elif name in EXPLAINED:
            status = f"differs: {EXPLAINED[name]}"
        else:
            status = "MISMATCH"
            mismatches.append(name)
        if p.uncounted_ops:
            status += f"; uncounted {p.uncounted_ops}"
            mismatches.append(name)
        rows.append((name, lm.task, p.mode, per_item / 1e9, meta["_ops"], p.params, meta["num_params"], wall, status))
    total = time.perf_counter() - t1
    print(f"{'model':40s} {'task':21s} {'mode':5s} {'GMACs/item':>10s} {'published':>9s} "
          f"{'params':>10s} {'published':>10s} {'time':>6s}  status")
    for name, task, mode, g, pub, prm, pub_prm, wall, status in rows:
        print(f"{name:40s} {task:21s} {mode:5s} {g:10.4f} {pub:9.3f} {prm:10d} {pub_prm:10d} {wall:5.1f}s  {status}")
    exact = sum(1 for r in rows if r[-1].startswith("match"))
    print(f"\nmodels: {len(names)} at batch {args.batch_size}; counted {len(rows)}; match {exact}; "
          f"explained differences {len(rows) - exact - len(set(mismatches))}; mismatches {len(set(mismatches))}; "
          f"failures {len(failures)}")
    for f in failures:
        print("FAILED", f)
    for m in sorted(set(mismatches)):
        print("MISMATCH", m)
    slow = sorted(rows, key=lambda r: -r[7])[:5]
    print("slowest:", ", ".join(f"{r[0]} {r[7]:.1f} s" for r in slow))
    print(f"import {t_import:.1f} s; profiling wall time {total:.1f} s; total {time.perf_counter() - t0:.1f} s")
    return 1 if failures or mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
