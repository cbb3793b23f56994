"""The paper's study on this CPU: time + memory of the paper set over batch sizes 1..64.

Prints the total wall time and the share of it spent inside timed samples (goal >= 70 %): the rest is
worker start-up, model build, cold start, warm-up, static profiles and the store. Raw samples are read
back from the store, so the share is computed from what was actually kept.

    python benchmarks/study_paper.py                       # the full sweep (tens of minutes on 2 cores)
    python benchmarks/study_paper.py --models resnet18 alexnet --batch-sizes 1,4,16 --max-time-per-cell 5
"""

import argparse
import os
import tempfile
import time

from dnnbench.runner import load_results, study
from dnnbench.store import open_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["paper"])
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    ap.add_argument("--max-time-per-cell", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--store", default=None, help="default: a fresh temporary SQLite file")
    args = ap.parse_args()
    store = args.store or os.path.join(tempfile.mkdtemp(prefix="dnnbench-study-"), "results.db")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    t0 = time.perf_counter()
    summary = study(args.models, batch_sizes=sizes, metrics="time,memory", store=store,
                    max_time_per_cell=args.max_time_per_cell, threads=args.threads)
    wall = time.perf_counter() - t0
    df = load_results(store)
    timed = 0.0
    with open_store(store) as st:
        for cid in df.cell_id:
            timed += sum(st.samples(cid).get("latency_s", []))
    ok = int((df.status == "ok").sum())
    print(f"store:                      {store}")
    print(f"cells:                      {len(df)} ({ok} ok, {summary.statuses})")
    print(f"total wall time:            {wall:.1f} s")
    print(f"inside timed samples:       {timed:.1f} s = {100 * timed / wall:.1f} % of wall time (goal >= 70 %)")
    per_cell = df.groupby("model_ref").size()
    print(f"models:                     {len(per_cell)}; unavailable: {[u for u, _ in summary.unavailable]}")


if __name__ == "__main__":
    main()
