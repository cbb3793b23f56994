"""Fault injection: a study killed at a random moment (SIGKILL, SIGINT, SIGTERM) loses nothing it stored.

Each trial starts ``python -m dnnbench study`` as a real process, signals it after a seeded delay, then reads
the store: no duplicate cell, no cell stored before the kill missing or changed into anything but a record
the killed study committed, every record parses, and a plain re-run completes the planned set (a dead
study's claims do not block it). ``--force`` trials run on a complete store and must never drop a cell.

What the killed process did is known from a journal, not guessed: a ``sitecustomize`` on PYTHONPATH wraps
``_Runner.store`` (a cell measured), ``Store.put`` (a cell committed: logged after the commit returns) and
``_Runner.run`` / ``api.run_plan`` (measuring begins: the anchor of most delays, since interpreter start-up
alone takes seconds here). The trials are shared with ``benchmarks/fault_injection.py``, which prints them.

Trials run in chains to keep to the time budget: on a fresh store, L plain runs are killed one after the
other (each the re-run of the one before), a re-run must then complete; then L ``--force`` runs are killed
on that complete store, and a re-run must complete again. Chain length 1 is the plain protocol.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REF = f"python:{ROOT / 'tests' / 'bench_models.py'}:tiny"
BATCH_SIZES = (1, 2)  # 4 cells: 2 profile, 2 time; more batch sizes only lengthen each trial
SIGNALS = ("SIGKILL", "SIGINT", "SIGTERM")
DELAY_S = (0.2, 3.0)
# What a delay counts from, with its weight: the process start (kills in imports and store opening), the
# runner starting to measure (profile cells), api.run_plan starting (the fork server, the first bench cell),
# the first bench cell finishing, and that cell's commit (a delay of 0-30 ms: mid-write).
ANCHORS = {"spawn": 1, "run": 2, "bench": 2, "finished": 2, "commit": 3}
PROCESS_TIMEOUT_S = 180.0  # a killed study that does not exit by then is reported as hung

# Loaded by every Python process of a trial (the study, its fork server and workers); it patches only the
# modules named below as they are imported, and only when the journal variable is set.
HOOK = textwrap.dedent('''
    import hashlib, json, os, sys, time

    _JOURNAL = os.environ.get("DNNBENCH_FAULT_JOURNAL")

    def _log(event, **data):
        line = json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **data}) + "\\n"
        fd = os.open(_JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def _digest(rec):
        return hashlib.sha256(json.dumps(rec.to_dict(), sort_keys=True, default=str).encode()).hexdigest()

    def _patch_store(mod):
        put = mod.Store.put

        def put_logged(self, cell, *args, **kwargs):
            digest = _digest(cell)  # before the write: an interrupt after the commit must not lose the line
            stored = put(self, cell, *args, **kwargs)
            if stored:
                _log("committed", cell_id=cell.cell_id, digest=digest)
            return stored
        mod.Store.put = put_logged

    def _patch_runner(mod):
        store, run = mod._Runner.store, mod._Runner.run

        def store_logged(self, plan, rec):
            _log("measured", cell_id=rec.cell_id, digest=_digest(rec))
            return store(self, plan, rec)

        def run_logged(self, todo):
            _log("run", todo=len(todo))
            return run(self, todo)
        mod._Runner.store, mod._Runner.run = store_logged, run_logged

    def _patch_api(mod):
        run_plan, finish = mod.run_plan, mod._finish_cell

        def run_plan_logged(*args, **kwargs):
            _log("run")
            return run_plan(*args, **kwargs)

        def finish_logged(cell, *args, **kwargs):
            out = finish(cell, *args, **kwargs)
            _log("finished", batch_size=cell.spec.batch_size, status=cell.status)
            return out
        mod.run_plan, mod._finish_cell = run_plan_logged, finish_logged

    # "module:function": Ctrl-C delivered to this process on that function's first call (a fixed point)
    _INTERRUPT = os.environ.get("DNNBENCH_FAULT_SIGINT_IN", "")

    def _patch_interrupt(mod):
        import signal

        name = _INTERRUPT.split(":", 1)[1]
        func = getattr(mod, name)

        def interrupted(*args, **kwargs):
            _log("sigint", at=_INTERRUPT)
            os.kill(os.getpid(), signal.SIGINT)  # the handler raises KeyboardInterrupt here, in the function
            time.sleep(5)
            return func(*args, **kwargs)
        setattr(mod, name, interrupted)

    if _JOURNAL:
        import importlib.abc
        import importlib.machinery

        _PATCHES = {"dnnbench.store.store": _patch_store, "dnnbench.runner": _patch_runner,
                    "dnnbench.api": _patch_api}
        if ":" in _INTERRUPT:
            _PATCHES[_INTERRUPT.split(":", 1)[0]] = _patch_interrupt

        class _Finder(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name not in _PATCHES:
                    return None
                spec = importlib.machinery.PathFinder.find_spec(name, path)
                if spec is None or spec.loader is None:
                    return spec
                execute = spec.loader.exec_module

                def exec_patched(module, _execute=execute, _name=name):
                    _execute(module)
                    _PATCHES[_name](module)
                spec.loader.exec_module = exec_patched
                return spec

        sys.meta_path.insert(0, _Finder())
''')


# -- running one process ---------------------------------------------------------------------------------
@dataclass
class Proc:
    """One study or bench process as it ended."""

    pid: int
    rc: int | None
    stdout: str
    stderr: str
    signalled: bool  # False: it had exited before the signal was due
    hung: bool = False
    orphans: int = 0  # processes of its group still alive 10 s after it ended (killed then)


def hook_env(workdir: Path) -> dict:
    """The environment of a trial's processes: the journal hook on PYTHONPATH, a journal file of their own."""
    hook = workdir / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hook), *filter(None, [env.get("PYTHONPATH")])])
    env["DNNBENCH_FAULT_JOURNAL"] = str(workdir / "journal.jsonl")
    env.setdefault("COLUMNS", "200")
    env.pop("DNNBENCH_DEBUG", None)
    return env


def journal(env: dict, pid: int | None = None) -> list[dict]:
    path = Path(env["DNNBENCH_FAULT_JOURNAL"])
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut by SIGKILL mid-write
            continue
        if pid is None or entry["pid"] == pid:
            out.append(entry)
    return out


def study_command(store: str, force: bool, batch_sizes=BATCH_SIZES) -> list[str]:
    cmd = [sys.executable, "-m", "dnnbench", "study", REF, "--batch-sizes", ",".join(map(str, batch_sizes)),
           "--metrics", "profile,time", "--max-time-per-cell", "0.3", "--threads", "1", "--store", store]
    return cmd + ["--force"] if force else cmd


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _is_anchor(entry: dict, anchor: str) -> bool:
    if anchor == "run":
        return entry["event"] == "run" and "todo" in entry
    if anchor == "bench":
        return entry["event"] == "run" and "todo" not in entry
    return entry["event"] == "finished"  # "finished" and "commit"


def run_process(cmd: list[str], env: dict, sig: str | None = None, delay_s: float = 0.0, anchor: str = "run",
                timeout_s: float = PROCESS_TIMEOUT_S) -> Proc:
    """Run ``cmd``; with ``sig``, send it ``delay_s`` after the anchor (see ``ANCHORS``; if the process exits
    before its anchor comes, it is not signalled). SIGINT goes to the process group, as Ctrl-C in a terminal does; SIGKILL and SIGTERM go to
    the process alone, as ``kill`` and the OOM killer do."""
    workdir = Path(env["DNNBENCH_FAULT_JOURNAL"]).parent
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + timeout_s
    signalled = False
    if sig is not None:
        if anchor != "spawn":
            while p.poll() is None and time.monotonic() < deadline and not any(
                    _is_anchor(e, anchor) for e in journal(env, p.pid)):
                time.sleep(0.003 if anchor == "commit" else 0.02)
        time.sleep(delay_s)
        if p.poll() is None:
            signum = getattr(signal, sig)
            if sig == "SIGINT":
                os.killpg(p.pid, signum)
            else:
                os.kill(p.pid, signum)
            signalled = True
    hung = False
    try:
        p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        hung = True
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    # the fork server leaves at EOF on its stdin and workers die with it (PR_SET_PDEATHSIG): give them time
    orphans = 0
    end = time.monotonic() + 10
    while _alive(p.pid) and time.monotonic() < end:
        time.sleep(0.05)
    if _alive(p.pid):
        orphans = 1
        os.killpg(p.pid, signal.SIGKILL)
    return Proc(p.pid, p.returncode, out_path.read_text(), err_path.read_text(), signalled, hung, orphans)


# -- reading the store -------------------------------------------------------------------------------------
@dataclass
class Snapshot:
    ids: list[str]  # cell_id of every stored run, duplicates included
    digests: dict[str, str]  # cell_id -> digest of the stored record document
    statuses: dict[str, str]
    kinds: dict[str, tuple[str, int]]  # cell_id -> (kind, batch size)
    claims: list[tuple[str, int]]  # (cell_id, pid) of every claim left
    error: str | None = None  # the store could not be read

    @property
    def duplicates(self) -> int:
        return len(self.ids) - len(set(self.ids))


def _doc_digest(doc) -> str:
    doc = json.loads(doc) if isinstance(doc, str) else doc
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def snapshot(url: str) -> Snapshot:
    """What a reader sees: every run's raw record, the records parsed (``Store.records``, ``Store.frame``)."""
    import sqlalchemy as sa

    from dnnbench.store import open_store
    from dnnbench.store import schema
    from dnnbench.store.store import StoreError

    try:
        with open_store(url, readonly=True) as st:
            with st.engine.connect() as conn:
                rows = conn.execute(sa.select(schema.runs.c.cell_id, schema.runs.c.record)
                                    .order_by(schema.runs.c.id)).all()
                claims = [(r.cell_id, r.pid) for r in conn.execute(sa.select(schema.claims))]
            records = st.records()  # CellRecord.from_dict of each: raises if a stored record does not parse
            frame = st.frame()
            count = st.count()
    except StoreError as exc:
        text = exc.one_line()
        if "no store at" in text or "holds no results" in text:  # killed before the store was created
            return Snapshot([], {}, {}, {}, [])
        return Snapshot([], {}, {}, {}, [], error=text)
    ids = [r.cell_id for r in rows]
    error = None
    if count != len(ids) or len(records) != len(ids) or len(frame) != len(ids):
        error = f"count() {count}, records() {len(records)}, frame() {len(frame)} rows for {len(ids)} runs"
    return Snapshot(ids, {r.cell_id: _doc_digest(r.record) for r in rows}, {r.cell_id: r.status for r in records},
                    {r.cell_id: (r.kind, r.batch_size) for r in records}, claims, error)


# -- one trial --------------------------------------------------------------------------------------------
@dataclass
class Trial:
    """One killed study: what was sent when, and what the store held before and after."""

    backend: str
    seed: int
    force: bool
    signal: str
    delay_s: float
    anchor: str
    proc: Proc | None = None
    measured: int = 0  # cells the killed study measured (handed to the store)
    committed: int = 0  # of those, committed before the signal took effect
    stored_before: int = 0
    stored_after: int = 0
    duplicates: int = 0
    losses: list[str] = field(default_factory=list)  # cells stored before (or committed) and gone or changed
    problems: list[str] = field(default_factory=list)  # every failed check, losses included
    leftover_claims: int = 0
    not_ok_after: int = 0  # cells stored with a status other than ok (re-measured by the re-run)
    rerun_completes: bool | None = None  # set on the last trial of a chain segment, after its re-run
    rerun_note: str = ""

    @classmethod
    def draw(cls, backend: str, seed: int, force: bool) -> "Trial":
        rng = random.Random(seed)
        sig = rng.choice(SIGNALS)
        anchor = rng.choices(tuple(ANCHORS), weights=tuple(ANCHORS.values()))[0]
        # "commit": within a few ms of a bench cell's end, when its record is being written
        delay = round(rng.uniform(0.0, 0.03) if anchor == "commit" else rng.uniform(*DELAY_S), 3)
        return cls(backend, seed, force, sig, delay, anchor)

    @property
    def ok(self) -> bool:
        return not self.problems and self.rerun_completes is not False


def _expected_rc(t: Trial) -> set[int]:
    if t.signal == "SIGKILL":
        return {-signal.SIGKILL}
    if t.signal == "SIGTERM":
        # the CLI stops on SIGTERM as on Ctrl-C (130); -SIGTERM: killed before its handler was in place (imports)
        return {130, -signal.SIGTERM}
    return {130, -signal.SIGINT}  # -SIGINT: Ctrl-C before the CLI's handler is in place (during imports)


def check_kill(t: Trial, before: Snapshot, after: Snapshot, entries: list[dict], planned: set[str] | None) -> None:
    """The invariants after a kill; fills the trial's figures and problems."""
    p = t.proc
    t.stored_before, t.stored_after, t.duplicates = len(set(before.ids)), len(set(after.ids)), after.duplicates
    measured = {e["cell_id"]: e["digest"] for e in entries if e["event"] == "measured"}
    committed = {e["cell_id"]: e["digest"] for e in entries if e["event"] == "committed"}
    t.measured, t.committed = len(measured), len(committed)
    t.leftover_claims = len(after.claims)
    t.not_ok_after = sum(1 for s in after.statuses.values() if s != "ok")
    if after.error:
        t.problems.append(f"the store cannot be read after the kill: {after.error}")
    if p.hung:
        t.problems.append(f"the study did not exit within {PROCESS_TIMEOUT_S:.0f} s of {t.signal}")
    elif p.signalled and p.rc == 0 and t.signal == "SIGINT" and " 0 left" in p.stdout:
        pass  # Ctrl-C after the last cell, during exit (the fork server's atexit shutdown): the study was done
    elif p.signalled and p.rc not in _expected_rc(t):
        t.problems.append(f"exit code {p.rc} after {t.signal} (expected {sorted(_expected_rc(t))}); "
                          f"stderr: {p.stderr.strip()[-300:]!r}")
    if not p.signalled and p.rc != 0:
        t.problems.append(f"the study ended by itself with exit code {p.rc}: {p.stderr.strip()[-300:]!r}")
    if after.duplicates:
        t.problems.append(f"{after.duplicates} duplicate cell_id(s) stored")
    for cid, digest in before.digests.items():
        new = after.digests.get(cid)
        if new is None:
            t.losses.append(f"{cid[:12]} (stored before the kill) is gone")
        elif new != digest and new not in (measured.get(cid), committed.get(cid)):
            t.losses.append(f"{cid[:12]} holds a record that is neither the old one nor one the study measured")
        elif new != digest and not t.force and before.statuses.get(cid) == "ok":
            t.losses.append(f"{cid[:12]} was replaced without --force")
    for cid, digest in committed.items():
        if after.digests.get(cid) != digest:
            t.losses.append(f"{cid[:12]} was committed by the killed study but is "
                            f"{'gone' if cid not in after.digests else 'another record'}")
    for cid in set(after.digests) - set(before.digests):
        if cid not in measured:
            t.problems.append(f"{cid[:12]} appeared but the killed study never measured it")
    if planned is not None and set(after.digests) - planned:
        t.problems.append(f"{len(set(after.digests) - planned)} stored cell(s) are not in the planned set")
    if t.force and t.stored_after < t.stored_before:
        t.problems.append(f"--force dropped the stored count from {t.stored_before} to {t.stored_after}")
    in_flight = set(measured) - set(committed)
    if len(in_flight) > 1:
        t.losses.append(f"{len(in_flight)} measured cells were never committed (at most the one in flight may be)")
    if p.signalled and t.signal == "SIGINT" and p.rc == 130:
        said = _said_stored(p.stdout + p.stderr)
        if said is not None and said != len(committed):
            t.problems.append(f"after Ctrl-C the study said {said} cells are stored; it committed {len(committed)}")
    t.problems[:0] = t.losses


def _said_stored(text: str) -> int | None:
    import re

    m = re.search(r"interrupted; (\d+) finished cells are stored", text)
    return int(m.group(1)) if m else None


def check_rerun(t: Trial, url: str, env: dict, planned: set[str] | None) -> Snapshot:
    """Re-run the plain command: it must complete and leave exactly the planned set; the cells stored before
    it are kept as they are, and it measures just the missing ones (a dead study's claim blocks nothing)."""
    before = snapshot(url)
    p = run_process(study_command(url, force=False), env)
    after = snapshot(url)
    mine = journal(env, p.pid)
    committed = {e["cell_id"] for e in mine if e["event"] == "committed"}
    notes = []
    if p.rc != 0 or p.hung:
        notes.append(f"exit code {p.rc}{' (hung)' if p.hung else ''}: {p.stderr.strip()[-300:]!r}")
    if " 0 left" not in p.stdout:
        notes.append(f"its summary does not say 0 left: {p.stdout.strip()[-200:]!r}")
    if after.error:
        notes.append(f"the store cannot be read: {after.error}")
    if after.duplicates:
        notes.append(f"{after.duplicates} duplicate cell_id(s)")
    if planned is not None and set(after.ids) != planned:
        notes.append(f"the store holds {len(set(after.ids))} cells, {len(set(after.ids) & planned)} of the "
                     f"{len(planned)} planned")
    bad = {c: s for c, s in after.statuses.items() if s != "ok"}
    if bad:
        notes.append(f"{len(bad)} cell(s) not ok: {sorted(set(bad.values()))}")
    kept_ok = {c for c, s in before.statuses.items() if s == "ok"}
    changed = [c for c in kept_ok if after.digests.get(c) != before.digests[c]]
    if changed:
        notes.append(f"{len(changed)} cell(s) stored before the re-run were changed by it")
    missing = (planned or set(after.ids)) - kept_ok
    if committed != missing:
        notes.append(f"it measured {len(committed)} cell(s); {len(missing)} were missing or not ok")
    # a dead study's claim rows may stay (nothing sweeps them) but must be dead: the re-run's own are released
    live = [c for c, pid in after.claims if pid == p.pid or _pid_alive(pid)]
    if live:
        notes.append(f"{len(live)} live claim(s) left after a completed study")
    t.rerun_completes = not notes
    t.rerun_note = "; ".join(notes)
    if notes:
        t.problems.append("re-run: " + t.rerun_note)
    return after


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def forget(url: str, cell_ids) -> None:
    """Delete cells from the store, as if a study had not reached them yet (to give a plain trial work)."""
    import sqlalchemy as sa

    from dnnbench.store import open_store
    from dnnbench.store import schema as t

    with open_store(url) as st, st.engine.begin() as conn:
        runs = sa.select(t.runs.c.id).where(t.runs.c.cell_id.in_(list(cell_ids)))
        conn.execute(t.metrics.delete().where(t.metrics.c.run_id.in_(runs)))
        conn.execute(t.runs.delete().where(t.runs.c.cell_id.in_(list(cell_ids))))


def plan_trials(backend: str, n: int, base_seed: int, chain: int) -> list[list[Trial]]:
    """Chains of ``2 * chain`` trials (``chain`` plain, then ``chain`` --force), n trials in all."""
    chains, i = [], 0
    while i < n:
        size = min(2 * chain, n - i)
        plain = (size + 1) // 2
        chains.append([Trial.draw(backend, base_seed + i + k, force=k >= plain) for k in range(size)])
        i += size
    return chains


def run_chain(trials: list[Trial], url: str, workdir: Path, planned: dict) -> list[Trial]:
    """Run one chain on a fresh store ``url``; ``planned`` (shared) holds the planned cell ids once known."""
    env = hook_env(workdir)
    segments = [[t for t in trials if not t.force], [t for t in trials if t.force]]
    for segment in segments:
        if not segment:
            continue
        for t in segment:
            before = snapshot(url)
            if not t.force and planned.get("ids") is not None and set(before.ids) >= planned["ids"]:
                # a plain study on a complete store measures nothing: forget a seeded part of it first
                rng = random.Random(t.seed)
                ids = sorted(planned["ids"])
                forget(url, rng.sample(ids, rng.randint(1, len(ids))))
                before = snapshot(url)
            if t.force and planned.get("ids") is not None and set(before.ids) != planned["ids"]:
                t.problems.append("the --force trial did not start on a complete store")
            t.proc = run_process(study_command(url, t.force), env, t.signal, t.delay_s, t.anchor)
            after = snapshot(url)
            check_kill(t, before, after, journal(env, t.proc.pid), planned.get("ids"))
            _learn_planned(planned, after)
        after = check_rerun(segment[-1], url, env, planned.get("ids"))
        if planned.get("ids") is None and segment[-1].rerun_completes and not _learn_planned(planned, after):
            segment[-1].problems.append(f"the completed store holds {sorted(after.kinds.values())}, not a "
                                        f"profile and a bench cell per batch size {BATCH_SIZES}")
            segment[-1].rerun_completes = False
    return trials


def _learn_planned(planned: dict, snap: Snapshot) -> bool:
    """The planned cell ids, from the first store seen holding a whole study (a cell's id is a digest of its spec
    and the machine, so every store of these trials plans the same ids)."""
    want = sorted([("profile", b) for b in BATCH_SIZES] + [("bench", b) for b in BATCH_SIZES])
    if sorted(snap.kinds.values()) == want and not snap.duplicates and set(snap.statuses.values()) == {"ok"}:
        planned.setdefault("ids", set(snap.ids))
        return True
    return False


def run_trials(backend: str, n: int, base_seed: int, chain: int, make_url, workdir: Path,
               parallel: int = 1) -> list[Trial]:
    """All trials of one backend; ``make_url(k)`` gives chain k a fresh store."""
    chains = plan_trials(backend, n, base_seed, chain)
    planned: dict = {}
    # the first chain alone: it establishes the planned set the others are checked against
    results = [run_chain(chains[0], make_url(0), workdir / "chain0", planned)]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        results += pool.map(lambda k: run_chain(chains[k], make_url(k), workdir / f"chain{k}", planned),
                            range(1, len(chains)))
    return [t for c in results for t in c]


def describe(t: Trial) -> str:
    return (f"{t.backend} seed {t.seed} {'--force ' if t.force else ''}{t.signal} after {t.delay_s} s "
            f"(from {t.anchor}): rc {t.proc.rc if t.proc else None}, measured {t.measured}, committed "
            f"{t.committed}, stored {t.stored_before}->{t.stored_after}: " + "; ".join(t.problems))


# -- the tests ---------------------------------------------------------------------------------------------
# per backend: 8 seeded trials in `make test` (each is a real study process, ~5 CPU-s; the seeds cover all three
# signals, plain and --force, kills at a commit); benchmarks/fault_injection.py runs 20 + 20 and prints the figures
TRIALS = int(os.environ.get("DNNBENCH_FAULT_TRIALS", "8"))
CHAIN = 4  # 4 plain and 4 --force kills per fresh store, a completing re-run after each four


def _assert_trials(trials: list[Trial]) -> None:
    assert len(trials) == TRIALS
    bad = [describe(t) for t in trials if not t.ok]
    assert not bad, "\n".join(bad)
    # the trials must have hit the store mid-study, or they prove nothing
    assert sum(t.committed for t in trials if t.proc and t.proc.signalled) > 0
    assert {t.signal for t in trials} == set(SIGNALS)


def test_study_killed_sqlite_loses_nothing(tmp_path):
    trials = run_trials("sqlite", TRIALS, 1000, CHAIN, lambda k: f"sqlite:///{tmp_path / f'chain{k}.db'}",
                        tmp_path)
    _assert_trials(trials)


def test_study_killed_postgresql_loses_nothing(tmp_path, pg_server):
    trials = run_trials("postgresql", TRIALS, 2000, CHAIN,
                        lambda k: pg_server.create_db(f"fault{os.getpid()}_{k}"), tmp_path)
    _assert_trials(trials)


def bench_command(batch_sizes=(1, 2, 4, 8)) -> list[str]:
    return [sys.executable, "-m", "dnnbench", "bench", REF, "--batch-sizes", ",".join(map(str, batch_sizes)),
            "--max-time-per-cell", "0.3", "--threads", "1", "--format", "json"]


@dataclass
class BenchTrial:
    seed: int | None
    delay_s: float
    at: str  # what the delay counts from, or the function Ctrl-C is injected in
    proc: Proc | None = None
    finished: list[int] = field(default_factory=list)  # batch sizes the journal saw finish
    payload: dict | None = None
    parse_error: str | None = None

    @property
    def records(self) -> list[int]:
        return [r["spec"]["batch_size"] for r in (self.payload or {}).get("records", [])]


def bench_trial(workdir: Path, seed: int | None = None, inject: str | None = None) -> BenchTrial:
    """``bench --format json`` with Ctrl-C: SIGINT to its process group at a seeded moment after its first cell
    finished (``seed``), or raised in the function ``inject`` ("module:function") on its first call."""
    env = hook_env(workdir)
    if inject:
        t = BenchTrial(None, 0.0, inject)
        env["DNNBENCH_FAULT_SIGINT_IN"] = inject
        t.proc = run_process(bench_command(), env)
        t.proc.signalled = any(e["event"] == "sigint" for e in journal(env, t.proc.pid))
    else:
        t = BenchTrial(seed, round(random.Random(seed).uniform(0.0, 0.5), 3), "finished")
        t.proc = run_process(bench_command(), env, "SIGINT", t.delay_s, "finished")
    t.finished = [e["batch_size"] for e in journal(env, t.proc.pid) if e["event"] == "finished"]
    try:
        t.payload = json.loads(t.proc.stdout)
    except ValueError as exc:
        t.parse_error = f"{exc}; stdout {t.proc.stdout[:200]!r}"
    return t


def _assert_interrupted_json(t: BenchTrial) -> None:
    assert t.proc.signalled, "bench finished before the signal: the trial proves nothing"
    assert t.parse_error is None, f"stdout after Ctrl-C is not JSON: {t.parse_error}; stderr {t.proc.stderr[-300:]}"
    assert isinstance(t.payload, dict) and t.payload.get("interrupted") is True, t.proc.stdout[:300]
    # every cell that finished is printed; the one in progress may be lost (interrupted between its end and
    # the list that returns it)
    assert set(t.records) <= set(t.finished) and len(t.finished) - len(t.records) <= 1, (t.records, t.finished)


@pytest.fixture(scope="module")
def bench_after_first_cell(tmp_path_factory):
    return bench_trial(tmp_path_factory.mktemp("bench"), seed=7)


def test_bench_interrupted_prints_finished_records_as_json(bench_after_first_cell):
    t = bench_after_first_cell
    _assert_interrupted_json(t)
    assert t.records, "the first cell had finished before Ctrl-C: it must be printed"


def test_bench_interrupted_exits_130(bench_after_first_cell):
    t = bench_after_first_cell
    assert t.proc.signalled
    assert t.proc.rc == 130, (t.proc.rc, t.proc.stderr[-300:])


def test_bench_interrupted_before_any_cell_prints_empty_json(tmp_path):
    t = bench_trial(tmp_path, inject="dnnbench.counting.profile:profile_model")
    _assert_interrupted_json(t)
    assert t.records == [] and t.proc.rc == 130


def test_checks_catch_a_lost_replaced_or_duplicated_cell():
    """The checker itself: a cell gone, a cell silently changed, a duplicate and a claimed-but-missing commit."""
    def snap(ids, digests):
        return Snapshot(ids, digests, {c: "ok" for c in digests}, {}, [])

    t = Trial("sqlite", 0, False, "SIGKILL", 1.0, "run", proc=Proc(1, -signal.SIGKILL, "", "", True))
    before = snap(["a", "b"], {"a": "1", "b": "2"})
    after = snap(["b", "b", "c"], {"b": "9", "c": "3"})
    entries = [{"event": "measured", "cell_id": "d", "digest": "4"}, {"event": "committed", "cell_id": "d",
                                                                       "digest": "4"}]
    check_kill(t, before, after, entries, None)
    text = "; ".join(t.problems)
    assert "a (stored before the kill) is gone" in text and "b holds a record that is neither" in text
    assert "d was committed by the killed study but is gone" in text and "1 duplicate" in text
    assert "c appeared but the killed study never measured it" in text and not t.ok
