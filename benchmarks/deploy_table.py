"""Deployment runtimes and int8 on this machine: every runtime x {fp32, int8 static, int8-dynamic} that runs here.

A study (time + profile, one store) of mobilenet_v2, resnet18 and resnet50 at batch 1 and 8 under every runtime
that works here, then one table: time per image, speed-up vs eager fp32 of the same model and batch, the
deployable file's size, the fraction of MACs that ran int8, equivalence with eager fp32 (max |diff|, top-1
agreement), the fraction of the machine's measured peak; and the fastest configuration per model and batch.
Random weights and generated calibration (speed and size are the model's; accuracy is not measured here).

    python benchmarks/deploy_table.py                                   # the whole table (long on 2 cores)
    python benchmarks/deploy_table.py --models resnet18 --batch-sizes 1 --max-time-per-cell 3
    python benchmarks/deploy_table.py --from-store /path/results.db     # the table again from a finished study
"""

import argparse
import math
import os
import tempfile
import time

from dnnbench.runner import load_results, study


def _f(v, fmt: str, scale: float = 1.0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v * scale, fmt)


def table(df) -> None:
    df = df[df.metric_group != "profile"] if "metric_group" in df.columns else df
    ok = df[df.status == "ok"]
    ref = {(r.model_ref, r.batch_size): r.latency_per_item_s for r in ok.itertuples()
           if r.runtime == "eager" and r.precision == "fp32"}
    cols = ("model", "b", "runtime", "precision", "ms/image", "speed-up", "artifact MB", "int8 MACs",
            "max|diff|", "top1 agree", "% peak")
    rows = []
    for r in ok.sort_values(["model_ref", "batch_size", "runtime", "precision"]).itertuples():
        base = ref.get((r.model_ref, r.batch_size))
        get = lambda name: getattr(r, name, None)  # noqa: E731
        rows.append((r.model_ref, str(r.batch_size), r.runtime, r.precision, _f(r.latency_per_item_s, ".2f", 1e3),
                     _f(base / r.latency_per_item_s if base else None, ".2f") + ("x" if base else ""),
                     _f(get("artifact_bytes"), ".1f", 1 / 2 ** 20), _f(get("int8_macs_fraction"), ".1%"),
                     _f(get("equivalence_max_abs_diff"), ".3g"), _f(get("equivalence_top1_agreement"), ".1%"),
                     _f(get("fraction_of_peak"), ".1%")))
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    print()
    for (model, b), g in ok.groupby(["model_ref", "batch_size"]):
        best = g.loc[g.latency_per_item_s.idxmin()]
        base = ref.get((model, b))
        print(f"fastest for {model} at batch {b}: {best.runtime} {best.precision} "
              f"{best.latency_per_item_s * 1e3:.2f} ms/image"
              + (f" ({base / best.latency_per_item_s:.2f}x eager fp32)" if base else ""))
    bad = df[df.status != "ok"]
    for r in bad.itertuples():
        print(f"not measured: {r.model_ref} b{r.batch_size} {r.runtime} {r.precision}: {r.status}: {r.message}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet18", "resnet50"])
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--runtimes", default="all")
    ap.add_argument("--precisions", default="fp32,int8,int8-dynamic")
    ap.add_argument("--max-time-per-cell", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--store", default=None, help="default: a fresh temporary SQLite file")
    ap.add_argument("--from-store", default=None, help="measure nothing: the table of a study already in this store")
    args = ap.parse_args()
    if args.from_store:
        table(load_results(args.from_store))
        return
    store = args.store or os.path.join(tempfile.mkdtemp(prefix="dnnbench-deploy-"), "results.db")
    t0 = time.perf_counter()
    summary = study(args.models, batch_sizes=[int(b) for b in args.batch_sizes.split(",")], metrics="profile,time",
                    store=store, max_time_per_cell=args.max_time_per_cell, threads=args.threads,
                    runtimes=args.runtimes, precisions=args.precisions)
    print(f"store: {store}; {summary.measured} cells measured in {time.perf_counter() - t0:.0f} s; "
          f"left out: {summary.unavailable}")
    print()
    table(load_results(store))


if __name__ == "__main__":
    main()
