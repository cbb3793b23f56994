"""Fault injection figures: studies killed at seeded random moments, and what the store held afterwards.

    .venv/bin/python benchmarks/fault_injection.py [--trials N] [--backend sqlite|postgresql|both]
                                                    [--chain L] [--seed S]

Runs the trials of tests/test_fault_injection.py (the same code): ``dnnbench study`` on a tiny model is sent
SIGKILL, SIGINT (to its process group, as Ctrl-C) or SIGTERM after a seeded delay; half the trials run
``--force`` on a complete store. Per trial it prints the signal, the cells the killed study measured and
committed (from a journal its own process wrote), the cells stored before and after, duplicates, losses,
claims left behind, and whether the re-run that ends each chain of ``--chain`` trials completed the planned
set (``--chain 1``: a re-run after every trial; slower). PostgreSQL is a throwaway local server (Debian's
postgresql package, as the tests use).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import test_fault_injection as fi  # noqa: E402  (the trials themselves)


def _yes_no(value) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def table(trials: list) -> str:
    head = ("backend", "seed", "mode", "signal", "from", "delay_s", "rc", "measured", "committed", "before",
            "after", "dup", "losses", "claims_left", "not_ok", "re-run completes")
    rows = [head]
    for t in trials:
        p = t.proc
        sig = t.signal if p and p.signalled else f"({t.signal}: exited first)"
        rows.append((t.backend, str(t.seed), "--force" if t.force else "plain", sig, t.anchor, f"{t.delay_s:.3f}",
                     str(p.rc if p else "-"), str(t.measured), str(t.committed), str(t.stored_before),
                     str(t.stored_after), str(t.duplicates), str(len(t.losses)), str(t.leftover_claims),
                     str(t.not_ok_after), _yes_no(t.rerun_completes)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def summary(trials: list) -> str:
    by_sig: dict[str, list] = {}
    for t in trials:
        by_sig.setdefault(t.signal, []).append(t)
    lines = []
    for backend in sorted({t.backend for t in trials}):
        mine = [t for t in trials if t.backend == backend]
        sent = [t for t in mine if t.proc and t.proc.signalled]
        reruns = [t.rerun_completes for t in mine if t.rerun_completes is not None]
        lines.append(
            f"{backend}: {len(mine)} trials ({len(sent)} signalled: "
            + ", ".join(f"{s} {sum(1 for t in sent if t.signal == s)}" for s in fi.SIGNALS)
            + f"), measured {sum(t.measured for t in mine)} / committed {sum(t.committed for t in mine)} cells "
            f"in killed studies, in flight at the kill {sum(t.measured - t.committed for t in mine)}, duplicates "
            f"{sum(t.duplicates for t in mine)}, losses {sum(len(t.losses) for t in mine)}, other problems "
            f"{sum(len(t.problems) - len(t.losses) for t in mine)}, re-runs completed {sum(reruns)}/{len(reruns)}, "
            f"trials leaving claims {sum(1 for t in mine if t.leftover_claims)}, orphan processes "
            f"{sum(t.proc.orphans for t in mine if t.proc)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20, help="trials per backend [20]")
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--chain", type=int, default=fi.CHAIN,
                    help=f"plain (then --force) kills per fresh store before a re-run must complete [{fi.CHAIN}]")
    ap.add_argument("--seed", type=int, default=None, help="first seed [1000 for sqlite, 2000 for postgresql]")
    args = ap.parse_args(argv)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    work = Path(tempfile.mkdtemp(prefix="dnnbench-faults-"))
    trials, server = [], None
    t0 = time.perf_counter()
    try:
        for backend in backends:
            base = args.seed if args.seed is not None else (1000 if backend == "sqlite" else 2000)
            if backend == "sqlite":
                make_url = lambda k: f"sqlite:///{work / f'sqlite{k}.db'}"  # noqa: E731
            else:
                from tests.pg import PgServer, find_bindir

                bindir = find_bindir()
                if bindir is None:
                    print("postgresql: skipped: PostgreSQL binaries not found (apt-get install postgresql)")
                    continue
                server = PgServer(bindir).start()
                make_url = lambda k: server.create_db(f"faults{os.getpid()}_{k}")  # noqa: E731
            started = time.perf_counter()
            done = fi.run_trials(backend, args.trials, base, args.chain, make_url, work / backend)
            print(f"{backend}: {len(done)} trials in {time.perf_counter() - started:.0f} s", flush=True)
            trials += done
    finally:
        if server is not None:
            server.stop()
    print()
    print(table(trials))
    print()
    print(summary(trials))
    bad = [fi.describe(t) for t in trials if not t.ok]
    for line in bad:
        print("FAILED:", line)
    print(f"wall {time.perf_counter() - t0:.0f} s; work files in {work}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
