"""Profile every architecture ``timm.list_models()`` gives, at batch 1 on meta tensors; print where the time goes.

    python benchmarks/profile_timm.py [--every N] [--jobs J] [--form train|deploy] [--batch B]

Target (issue 15): the whole zoo in at most 5 minutes on a 2-core machine. Printed: models, failures (with
their one-line errors), models with uncounted ops, wall and CPU time, and the split between building the
model (timm's constructors on the meta device) and counting it. ``--every 10`` times every 10th model (a
sample, for development on a shared machine); ``--jobs 2`` splits the zoo over two worker processes.
CPU seconds are reported because wall time on a shared machine measures the neighbours too.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time


def _profile_slice(args) -> list[tuple]:
    names, batch, form = args
    import dnnbench
    from dnnbench.core.errors import DnnbenchError
    from dnnbench.sources import load

    gc.freeze()  # the imported libraries are never garbage: collections need not walk them again
    rows = []
    for name in names:
        c0, t0 = time.process_time(), time.perf_counter()
        t1 = None
        error, uncounted, macs, params = None, {}, None, None
        try:
            lm = load(f"timm:{name}", device="meta")
            t1 = time.perf_counter()
            p = dnnbench.profile(lm, batch_size=batch, form=form)
            uncounted, macs, params = p.uncounted_ops, p.macs, p.params
        except DnnbenchError as exc:
            error = exc.one_line()
        except Exception as exc:  # noqa: BLE001 - a crash is a finding of this benchmark, not its end
            error = f"CRASH {type(exc).__name__}: {str(exc)[:200]}"
        t2 = time.perf_counter()
        t1 = t2 if t1 is None else t1
        rows.append((name, t1 - t0, t2 - t1, time.process_time() - c0, error, uncounted, macs, params))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=1, help="profile every Nth model only (a sample)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1: this process)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--form", default="train", choices=("train", "deploy"))
    ap.add_argument("--limit", type=int, default=None, help="the first N models (after --every)")
    opts = ap.parse_args(argv)
    t0, c0 = time.perf_counter(), time.process_time()
    import timm

    import dnnbench  # noqa: F401

    names = timm.list_models()[::opts.every][:opts.limit]
    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    if opts.jobs <= 1:
        rows = _profile_slice((names, opts.batch, opts.form))
        cpu_workers = 0.0
    else:
        import multiprocessing as mp

        slices = [(names[i::opts.jobs], opts.batch, opts.form) for i in range(opts.jobs)]
        with mp.get_context("fork").Pool(opts.jobs) as pool:
            parts = pool.map(_profile_slice, slices)
        rows = [r for part in parts for r in part]
        cpu_workers = sum(r[3] for r in rows)
    wall = time.perf_counter() - t1
    cpu = time.process_time() - c0 + cpu_workers
    failures = [(r[0], r[4]) for r in rows if r[4]]
    uncounted = [(r[0], r[5]) for r in rows if r[5]]
    build, count = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"timm {timm.__version__}: {len(names)} of {len(timm.list_models())} architectures"
          f"{f' (every {opts.every}th)' if opts.every > 1 else ''}, batch {opts.batch}, form {opts.form}, "
          f"{opts.jobs} process(es), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"import time:          {t_import:.1f} s")
    print(f"profiling wall time:  {wall:.1f} s  (target: the whole zoo in 300 s)")
    print(f"CPU time:             {cpu:.1f} s  ({1e3 * cpu / max(len(names), 1):.0f} ms a model)")
    print(f"  building on meta:   {build:.1f} s wall, summed over models")
    print(f"  counting:           {count:.1f} s wall, summed over models")
    print(f"ok: {len(rows) - len(failures)}/{len(rows)}; failures: {len(failures)}; "
          f"models with uncounted ops: {len(uncounted)}")
    for name, error in failures:
        print(f"  FAILED {name}: {error}")
    for name, ops in uncounted:
        print(f"  uncounted {name}: {ops}")
    slow = sorted(rows, key=lambda r: -(r[1] + r[2]))[:8]
    print("slowest:", ", ".join(f"{r[0]} {r[1]:.1f}+{r[2]:.1f} s" for r in slow))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
