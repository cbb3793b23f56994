"""Measured CPU memory against batch size, beside the static activation estimate (the paper's memory figure).

    .venv/bin/python benchmarks/memory_scaling.py                      # resnet50, batch 1..32
    .venv/bin/python benchmarks/memory_scaling.py --model vgg16 --batch-sizes 1,2,4,8,16

Each batch size is one ``dnnbench bench`` cell in a fresh worker process; its memory is the peak resident
set above the worker's baseline (before the model was built), and the peak of bytes torch's CPU allocator
held during one call (``cpu_activation_peak_bytes``: tensors only, without what glibc keeps after frees).
Prints both beside the static ``activation_peak_bytes`` per batch size, and bench's own fits (floor + slope x
batch, monotonic or not, the ratio of the slopes to the static estimate's; the issue's goal: within 30 %). Timing is cut
short (memory does not need a long sample) and runs in one process per cell: memory is measured in the
first process anyway.
"""

from __future__ import annotations

import argparse

import dnnbench

MIB = 2.0 ** 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    ap.add_argument("--max-time-per-cell", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    run = dnnbench.bench(args.model, batch_sizes=args.batch_sizes, max_time_per_cell=args.max_time_per_cell,
                         threads=args.threads, sensors="none", processes=1)
    fmt = lambda v: f"{v / MIB:.1f}" if v is not None else "unavailable"  # noqa: E731
    print(f"{args.model}: memory per cell (MiB)")
    print("batch  RSS above baseline  peak RSS  activation peak (allocator)  static activation peak  status")
    for c in run.cells:
        mem = c.memory
        print(f"{c.batch_size:5d}  {fmt(mem and mem.rss_above_baseline_bytes):>18}  {fmt(mem and mem.peak_rss_bytes):>8}"
              f"  {fmt(mem and mem.cpu_activation_peak_bytes):>27}"
              f"  {fmt(c.static.activation_peak_bytes if c.static else None):>22}  {c.status}")
    for fit, why in ((run.memory_fit, run.unavailable.get("memory_fit")),
                     (run.activation_fit, run.unavailable.get("activation_fit"))):
        if fit is None:
            print(f"fit: {why}")
            continue
        ok = fit.slope_ratio is not None and abs(fit.slope_ratio - 1) <= 0.30
        print(f"{fit.quantity}: {fit.floor_bytes / MIB:.1f} MiB + {fit.slope_bytes_per_item / MIB:.2f} MiB/item "
              f"(r2 {fit.r2:.3f}, {'monotonic' if fit.monotonic else 'NOT monotonic'}); static "
              f"{(fit.static_floor_bytes or 0) / MIB:.1f} MiB + {(fit.static_slope_bytes_per_item or 0) / MIB:.2f} MiB/item; "
              f"slope ratio {fit.slope_ratio:.2f} ({'within' if ok else 'outside'} 30 %)")


if __name__ == "__main__":
    main()
