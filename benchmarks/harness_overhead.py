"""What the bench harness costs: per-call overhead on an identity model, and resnet18 against a bare loop.

    .venv/bin/python benchmarks/harness_overhead.py [--seconds S] [--rounds R] [--threads N]

1. Identity: ``dnnbench.bench`` (in-process) on ``nn.Identity`` measures nothing but the harness and the
   module call; its median is the per-call overhead (target <= 20 us on CPU).
2. resnet18, batch 1: the harness's median against a bare ``time.perf_counter`` loop over the same module
   and input in the same process (target: within 3 %). Harness and bare loop alternate (ABBA) for
   ``--rounds`` rounds so that a drifting machine affects both alike; the per-round ratios are printed and
   their median is the figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch


def identity():
    """Factory for python:benchmarks/harness_overhead.py:identity."""
    return torch.nn.Identity(), torch.randn(1, 8)


def bare_loop(module, x, seconds: float) -> list[float]:
    """The simplest honest timing: warm up, then perf_counter around each call."""
    with torch.inference_mode():
        for _ in range(5):
            module(x)
        samples = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            module(x)
            samples.append(time.perf_counter() - t0)
    return samples


def main() -> int:
    import dnnbench
    from dnnbench.host.environment import default_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="time per harness cell and per bare loop")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=default_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, "
          f"torch {torch.__version__}")

    here = os.path.abspath(__file__)
    run = dnnbench.bench(f"python:{here}:identity", [1], threads=args.threads, in_process=True,
                         max_time_per_cell=args.seconds, target_ci=0.01)
    c = run.cell(1)
    st = c.latency_s
    print(f"identity: harness per-call overhead median {st.median_s * 1e6:.2f} us "
          f"(95 % CI {st.ci_low_s * 1e6:.2f}-{st.ci_high_s * 1e6:.2f} us, min {st.min_s * 1e6:.2f} us, "
          f"{st.n} samples) -> {'PASS' if st.median_s <= 20e-6 else 'FAIL'} (<= 20 us)")
    lm = dnnbench.load_model("resnet18")
    lm.module.eval()
    x = lm.inputs.make(1)[0][0]
    bare_identity = statistics.median(bare_loop(torch.nn.Identity(), x, 1.0))
    print(f"identity: bare perf_counter loop median {bare_identity * 1e6:.2f} us (the module call alone)")

    ratios = []
    for r in range(args.rounds):
        # ABBA order: whichever runs second in a round must not always be the harness
        if r % 2 == 0:
            bare = statistics.median(bare_loop(lm.module, x, args.seconds))
        run = dnnbench.bench(lm, [1], threads=args.threads, in_process=True, max_time_per_cell=args.seconds)
        if r % 2 == 1:
            bare = statistics.median(bare_loop(lm.module, x, args.seconds))
        cell = run.cell(1)
        h = cell.latency_s.median_s
        ratios.append(h / bare)
        warn = "; ".join(w.code for w in cell.warnings) or "none"
        print(f"resnet18 b=1 round {r + 1}: bare loop median {bare * 1e3:.3f} ms, harness median {h * 1e3:.3f} ms "
              f"(CI +/-{100 * (cell.latency_s.ci_rel_halfwidth or float('nan')):.2f} %, n={cell.latency_s.n}, "
              f"warnings: {warn}), harness/bare {h / bare:.4f}")
    ratio = statistics.median(ratios)
    ok = abs(ratio - 1) <= 0.03
    print(f"resnet18 b=1: median harness/bare ratio {ratio:.4f} ({100 * (ratio - 1):+.2f} %) -> "
          f"{'PASS' if ok else 'FAIL'} (within 3 %)")
    return 0 if ok and st.median_s <= 20e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
