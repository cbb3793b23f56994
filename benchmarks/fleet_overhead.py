"""What a fleet study costs beyond its cells: a study of tiny cells on a local Ray cluster of N = 1, 2 nodes.

Starts a loopback cluster (a head that only coordinates, N nodes of one 1-thread setup, all on this machine),
runs a study of tiny time cells into a fresh PostgreSQL database (tests/pg.py), and prints the wall time, the
cells' own time (each record's start to finish), the scheduling overhead per cell — node-seconds not spent
inside a cell, per cell: (N x wall - sum of cell times) / cells, start-up included — the same once the nodes
are warm (from one cell's end to the next one's on a node, less that cell's own time; median), when the first
cell was stored, and cells per minute. The same cells run by a local study give the baseline. Every process it starts is killed
at the end (by the marker in its environment; never `ray stop`).

    .venv/bin/python benchmarks/fleet_overhead.py [--cells 12] [--nodes 1,2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TINY = "python:tests/bench_models.py:tiny"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _marked(token: str):
    import psutil

    needle = f"DNNBENCH_FLEET_BENCH={token}".encode()  # read raw: Ray's agents retitle themselves
    out = []
    for p in psutil.process_iter():
        try:
            with open(f"/proc/{p.pid}/environ", "rb") as fh:
                if needle in fh.read():
                    out.append(p)
        except Exception:
            continue
    return out


def _stop(token: str) -> None:
    for _ in range(5):
        procs = _marked(token)
        if not procs:
            return
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except Exception:
                pass
        time.sleep(1)


def _node(args, env) -> None:
    subprocess.run([sys.executable, "-m", "dnnbench", "node", "start", *args], cwd=ROOT, env=env, check=True,
                   capture_output=True, text=True, timeout=300)


def run(n: int, cells: int, pg) -> dict:
    from dnnbench import fleet, runner

    token, port = uuid.uuid4().hex, _free_port()
    env = {**os.environ, "DNNBENCH_FLEET_BENCH": token, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        t = time.perf_counter()
        _node(["--head", "--no-measure", "--port", str(port), "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
               "--object-store-memory", str(80 << 20), "--temp-dir", f"/tmp/dnb-bench-{token[:8]}"], env)
        for i in range(n):
            _node(["--address", f"127.0.0.1:{port}", "--threads", "1", "--name", f"n{i}", "--num-cpus", "1",
                   "--object-store-memory", str(80 << 20)], env)
        up_s = time.perf_counter() - t
        cfg = runner.StudyConfig(metrics="time", batch_sizes=tuple(range(1, cells + 1)), max_time_per_cell=0.3,
                                 target_ci=0.2)
        done: list[tuple[float, str, float]] = []
        marks: dict[str, float] = {"start": time.perf_counter()}

        def grab(kind, data):
            marks.setdefault(kind, time.perf_counter())
            if kind == "done" and data.get("stored"):
                done.append((time.perf_counter(), data.get("node") or "?", data.get("cell_s", 0.0)))

        s = fleet.study([TINY], cfg, cluster=f"127.0.0.1:{port}", store=pg.create_db(f"b{token[:8]}"), on_event=grab)
    finally:
        _stop(token)
    over = (n * s.wall_s - s.cell_s) / max(1, s.measured)
    return {"nodes": n, "cluster_up_s": up_s, "cells": s.measured, "left": s.left, "wall_s": s.wall_s,
            "cell_s": s.cell_s, "overhead_per_cell_s": over, "steady_s": steady(done),
            "cells_per_min": 60 * s.measured / s.wall_s, "planned_s": marks.get("plan", marks["start"]) - marks["start"],
            "first_s": (min(d[0] for d in done) - marks["start"]) if done else None}


def steady(done: list[tuple[float, str, float]]) -> float | None:
    """Per-cell overhead once a node is warm: from one cell's end to the next one's on the same node, less the
    next cell's own time (median over the node's cells after its first)."""
    import statistics

    gaps = []
    for node in {d[1] for d in done}:
        mine = sorted(d for d in done if d[1] == node)
        gaps += [b[0] - a[0] - b[2] for a, b in zip(mine, mine[1:])]
    return statistics.median(gaps) if gaps else None


def local(cells: int, pg) -> dict:
    from dnnbench import runner

    records, done = [], []

    def grab(kind, data):
        if kind == "done":
            records.append(data["row"].record)
            r = data["row"].record
            done.append((time.perf_counter(), "local", _duration(r.started_at, r.finished_at)))

    from dnnbench.fleet import _duration

    t = time.perf_counter()
    first = []

    def grab(kind, data, _grab=grab):
        if kind == "done" and not first:
            first.append(time.perf_counter() - t)
        _grab(kind, data)

    s = runner.study([TINY], runner.StudyConfig(metrics="time", batch_sizes=tuple(range(1, cells + 1)),
                                                max_time_per_cell=0.3, target_ci=0.2, threads=1),
                     store=pg.create_db(f"l{uuid.uuid4().hex[:8]}"), on_event=grab)
    wall = time.perf_counter() - t
    cell_s = sum(_duration(r.started_at, r.finished_at) for r in records)
    return {"nodes": "local", "cells": s.measured, "wall_s": wall, "cell_s": cell_s,
            "overhead_per_cell_s": (wall - cell_s) / max(1, s.measured),
            "steady_s": steady(done), "cells_per_min": 60 * s.measured / wall, "first_s": first[0] if first else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=12)
    ap.add_argument("--nodes", default="1,2")
    args = ap.parse_args()
    from tests.pg import PgServer, find_bindir

    pg = PgServer(find_bindir()).start()
    try:
        rows = [local(args.cells, pg)] + [run(int(n), args.cells, pg) for n in args.nodes.split(",")]
    finally:
        pg.stop()
    print(f"{'nodes':>6} {'cells':>5} {'wall s':>8} {'cells s':>8} {'overhead s/cell':>16} {'warm s/cell':>12} "
          f"{'cells/min':>10}")
    for r in rows:
        warm = "-" if r["steady_s"] is None else f"{r['steady_s']:.2f}"
        print(f"{r['nodes']!s:>6} {r['cells']:>5} {r['wall_s']:>8.1f} {r['cell_s']:>8.1f} "
              f"{r['overhead_per_cell_s']:>16.2f} {warm:>12} {r['cells_per_min']:>10.1f}"
              + (f"   first cell stored after {r['first_s']:.1f} s" if r.get("first_s") is not None else "")
              + (f" (planned after {r['planned_s']:.1f} s); cluster up in {r['cluster_up_s']:.0f} s, {r['left']} left"
                 if "cluster_up_s" in r else ""))


if __name__ == "__main__":
    main()
