"""The paper's study on this CPU: time + memory of the paper set over batch sizes 1..64.

Prints the total wall time and the share of it spent inside timed samples (goal >= 70 %): the rest is
worker start-up, model build, cold start, warm-up, static profiles and the store. Raw samples are read
back from the store, so the share is computed from what was actually kept.

    python benchmarks/study_paper.py                       # the full sweep (tens of minutes on 2 cores)
    python benchmarks/study_paper.py --models resnet18 alexnet --batch-sizes 1,4,16 --max-time-per-cell 5
    python benchmarks/study_paper.py --from-store /path/results.db  # the figures again, from a finished study

Besides the total it prints where the rest of the wall time went, per batch size: samples cut as warm-up
after the fact, cold starts (first call of each worker process) and everything else in the cell (worker
fork, model build, memory baseline, statistics, store write), plus the time between cells (static profiles,
planning).
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
    ap.add_argument("--from-store", default=None, help="measure nothing: the figures of a study already in this store "
                                                       "(wall time = first cell start to last cell end)")
    args = ap.parse_args()
    if args.from_store:
        df = load_results(args.from_store)
        wall = (df.finished_at.max() - df.started_at.min()).total_seconds()
        report(args.from_store, df, wall, None)
        return
    store = args.store or os.path.join(tempfile.mkdtemp(prefix="dnnbench-study-"), "results.db")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    t0 = time.perf_counter()
    summary = study(args.models, batch_sizes=sizes, metrics="time,memory", store=store,
                    max_time_per_cell=args.max_time_per_cell, threads=args.threads)
    wall = time.perf_counter() - t0
    report(store, load_results(store), wall, summary)


def _number(v) -> float:
    """A stored figure, or 0 for a cell that has none (an error cell made no cold call): never NaN in a sum."""
    return 0.0 if v is None or v != v else float(v)


def report(store, df, wall, summary) -> None:
    rows = []
    with open_store(store) as st:
        for r in df.itertuples():
            s = st.samples(r.cell_id)
            rows.append(dict(batch_size=r.batch_size, cell_s=(r.finished_at - r.started_at).total_seconds(),
                             timed_s=sum(s.get("latency_s", [])), warmup_s=sum(s.get("warmup_s", [])),
                             cold_s=sum(s.get("process_cold_start_s", [])) or _number(getattr(r, "cold_start_s", None)),
                             processes=len(s.get("latency_process_samples", [])) or 1))
    timed = sum(r["timed_s"] for r in rows)
    ok = int((df.status == "ok").sum())
    statuses = summary.statuses if summary else df.status.value_counts().to_dict()
    print(f"store:                      {store}")
    print(f"cells:                      {len(df)} ({ok} ok, {statuses})")
    print(f"total wall time:            {wall:.1f} s")
    print(f"inside timed samples:       {timed:.1f} s = {100 * timed / wall:.1f} % of wall time (goal >= 70 %)")
    print(f"models:                     {df.model_ref.nunique()}"
          + (f"; unavailable: {[u for u, _ in summary.unavailable]}" if summary else ""))
    print()
    print("batch  cells  procs  cell wall s  timed %  warm-up cut %  cold starts %  other in cell %")
    for b in sorted({r["batch_size"] for r in rows}):
        g = [r for r in rows if r["batch_size"] == b]
        cw = sum(r["cell_s"] for r in g)
        pct = lambda k: 100 * sum(r[k] for r in g) / cw if cw else float("nan")  # noqa: E731
        other = 100 - pct("timed_s") - pct("warmup_s") - pct("cold_s")
        print(f"{b:5d}  {len(g):5d}  {sum(r['processes'] for r in g) / len(g):5.1f}  {cw:11.1f}  {pct('timed_s'):7.1f}"
              f"  {pct('warmup_s'):13.1f}  {pct('cold_s'):13.1f}  {other:15.1f}")
    inside = sum(r["cell_s"] for r in rows)
    print(f"between cells (profiles, planning, store): {wall - inside:.1f} s = {100 * (wall - inside) / wall:.1f} % of wall")


if __name__ == "__main__":
    main()
