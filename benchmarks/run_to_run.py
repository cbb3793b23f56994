"""Run-to-run agreement: two consecutive `dnnbench bench` runs of a model (default resnet18 at batch 1 and 8).

Prints, per batch size, each run's median and 95 % CI (the drift-aware one bench reports), the noise
warnings each run attached, and how far the two medians are apart (goal: within 5 %, each CI <= 2 % or a
warning attached). First it measures how much this machine's own speed moves: medians of consecutive
1.5 s windows of a bare `time.perf_counter` loop around the same model at batch 1, in this process — the
floor under any harness's run-to-run agreement.

    python benchmarks/run_to_run.py
    python benchmarks/run_to_run.py --model resnet50 --batch-sizes 1,4 --max-time-per-cell 20
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def machine_drift(model: str, threads: int, windows: int = 8, window_s: float = 1.5) -> list[float]:
    import torch
    import torchvision

    torch.set_num_threads(threads)
    m = getattr(torchvision.models, model)().eval()
    x = torch.randn(1, 3, 224, 224)
    meds = []
    with torch.inference_mode():
        for _ in range(10):
            m(x)
        for _ in range(windows):
            t0, ts = time.perf_counter(), []
            while time.perf_counter() - t0 < window_s:
                t1 = time.perf_counter()
                m(x)
                ts.append(time.perf_counter() - t1)
            meds.append(statistics.median(ts))
    return meds


def bench(model: str, sizes: str, cap: float, threads: int) -> dict[int, dict]:
    exe = os.path.join(os.path.dirname(sys.executable), "dnnbench")
    out = subprocess.run([exe, "bench", model, "--batch-sizes", sizes, "--max-time-per-cell", str(cap),
                          "--threads", str(threads), "--sensors", "none", "--format", "json"],
                         check=True, capture_output=True, text=True).stdout
    return {c["batch_size"]: c for c in json.loads(out)["cells"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--max-time-per-cell", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    meds = machine_drift(args.model, args.threads)
    lo, hi = min(meds), max(meds)
    print(f"machine: {args.model} batch 1, bare loop, medians of 1.5 s windows: "
          + " ".join(f"{1e3 * m:.1f}" for m in meds) + f" ms (range {100 * (hi - lo) / lo:.0f} %)")

    runs = [bench(args.model, args.batch_sizes, args.max_time_per_cell, args.threads) for _ in range(2)]
    ok = True
    for b in sorted(runs[0]):
        line = []
        medians = []
        for i, run in enumerate(runs, 1):
            c = run[b]
            st = c["latency_s"]
            ci = st.get("ci_rel_halfwidth")
            codes = [w["code"] for w in c.get("warnings", [])]
            medians.append(st["median_s"])
            ci_txt = f"+/-{100 * ci:.1f} %" if ci is not None else "n/a"
            line.append(f"run {i}: {1e3 * st['median_s']:.2f} ms CI {ci_txt} n={st['n']} "
                        f"processes={st.get('ci_processes') or 1} warnings={codes}")
            if (ci is None or ci > 0.02) and not codes:
                ok = False
        diff = abs(medians[1] - medians[0]) / min(medians)
        ok = ok and diff <= 0.05
        print(f"batch {b:>3}: " + " | ".join(line) + f" | medians {100 * diff:.1f} % apart")
    print("goal (medians within 5 %, each CI <= 2 % or a warning):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
