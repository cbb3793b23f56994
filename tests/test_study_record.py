"""Studies on the record: --budget inside a bench group, --processes and the whole spec in the identity,
--force that loses nothing when interrupted, the environment of every cell, input sizes kept apart."""

import os

import pytest

from dnnbench.runner import study
from dnnbench.store import open_store

MODELS = os.path.join(os.path.dirname(__file__), "bench_models.py")
TINY = f"python:{MODELS}:tiny"
CONV = f"python:{MODELS}:tiny_conv"
FAST = dict(max_time_per_cell=0.3, threads=1, in_process=True, sensors="none")


def test_budget_is_checked_before_every_cell_of_a_bench_group(tmp_path):
    # parent commit: the budget was checked between models only, so a study overran by a whole sweep
    import time

    db = str(tmp_path / "b.db")

    def slow_first_cell(kind, data):  # the first cell ends after the budget is spent, whatever the machine
        if kind == "done" and data["row"].batch_size == 1:
            time.sleep(6)

    s = study([TINY], batch_sizes=[1, 2, 4, 8, 16, 32], metrics="time", store=db, budget=5,
              on_event=slow_first_cell, **FAST)
    assert s.stopped == "budget"
    assert (s.measured, s.left) == (1, 5)


def test_processes_isolation_and_input_size_are_part_of_the_identity(tmp_path):
    db = str(tmp_path / "p.db")
    a = study([TINY], batch_sizes=[1], metrics="time", store=db, processes=1, max_time_per_cell=0.3, threads=1,
              sensors="none")
    b = study([TINY], batch_sizes=[1], metrics="time", store=db, processes=2, max_time_per_cell=0.3, threads=1,
              sensors="none")
    c = study([TINY], batch_sizes=[1], metrics="time", store=db, **FAST)
    again = study([TINY], batch_sizes=[1], metrics="time", store=db, **FAST)
    assert (a.measured, b.measured, c.measured) == (1, 1, 1)  # three specs, three cells
    assert (again.measured, again.skipped_existing) == (0, 1)  # the same spec resumes
    with open_store(db) as st:
        specs = [r.spec for r in st.records()]
    assert sorted((s["isolation"], s["timing"]["processes"]) for s in specs) == [
        ("in-process", 1), ("subprocess", 1), ("subprocess", 2)]
    assert all(s["input_shape"] == [[1, 16]] for s in specs)
    assert all(r["machine"] for r in specs)


def test_force_interrupted_keeps_every_stored_cell(tmp_path):
    # parent commit: --force deleted the study's cells before measuring; Ctrl-C then left fewer than before
    db = str(tmp_path / "f.db")
    first = study([TINY], batch_sizes=[1, 2, 4], metrics="profile,time", store=db, **FAST)
    assert first.measured == 6
    seen = []

    def interrupt_after_one(kind, data):
        if kind == "done":
            seen.append(data)
            if len(seen) == 2:
                raise KeyboardInterrupt

    s = study([TINY], batch_sizes=[1, 2, 4], metrics="profile,time", store=db, force=True,
              on_event=interrupt_after_one, **FAST)
    assert s.stopped == "interrupted"
    with open_store(db) as st:
        assert st.count() == 6  # two replaced, four old ones still there
        assert len({r.cell_id for r in st.records()}) == 6


def test_each_stored_cell_has_its_own_environment_and_threads(tmp_path):
    db = str(tmp_path / "e.db")
    study([TINY], batch_sizes=[1, 2], metrics="time", store=db, **FAST)
    with open_store(db) as st:
        recs = st.records()
    assert len(recs) == 2
    for r in recs:
        assert r.environment["threads"] == 1 and r.spec["threads"] == 1  # --threads kept, per cell
        assert r.environment["hostname"]
    assert recs[0].environment["timestamp"] <= recs[1].environment["timestamp"]


def test_two_input_sizes_are_two_rows_of_the_bench_table(tmp_path):
    # parent commit: bench rows' input_shape was NULL and bench_table kept only the newest of the two
    from dnnbench.analysis.tables import bench_table, setups

    db = str(tmp_path / "s.db")
    study([CONV], batch_sizes=[1], metrics="time", store=db, **FAST)
    study([CONV], batch_sizes=[1], metrics="time", store=db, input_size="16", **FAST)
    with open_store(db) as st:
        df = st.frame()
    assert sorted(tuple(s[0]) for s in df.input_shape) == [(1, 3, 8, 8), (1, 3, 16, 16)]
    table = bench_table(df, setups(df)[0])
    assert len(table) == 2 and table["model"].str.contains("@3x16x16").any()


def test_a_failed_write_keeps_the_measurement_and_says_where(tmp_path, monkeypatch):
    import sqlalchemy as sa

    from dnnbench.runner import StoreWriteError
    from dnnbench.store.store import Store

    db = str(tmp_path / "w.db")

    def refuse(self, *a, **kw):
        raise sa.exc.OperationalError("INSERT", {}, Exception("attempt to write a readonly database"))

    monkeypatch.setattr(Store, "put", refuse)
    with pytest.raises(StoreWriteError, match="refused a write") as exc:
        study([TINY], batch_sizes=[1], metrics="profile", store=db)
    saved = tmp_path / "w.db.unstored.jsonl"
    assert str(saved) in str(exc.value)
    from dnnbench.core.record import CellRecord

    (line,) = saved.read_text().splitlines()
    rec = CellRecord.from_json(line)
    assert rec.kind == "profile" and rec.status == "ok" and rec.result["macs"] == 16 * 32 + 32 * 4


def test_two_concurrent_studies_measure_each_shared_cell_once(tmp_path):
    import re
    import subprocess
    import sys

    db = str(tmp_path / "c.db")
    args = ["--metrics", "profile,time", "--max-time-per-cell", "0.3", "--threads", "1", "--store", db]
    env = dict(os.environ, COLUMNS="200")
    procs = [subprocess.Popen([sys.executable, "-m", "dnnbench", "study", TINY, "--batch-sizes", sizes, *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for sizes in ("1,2,4,8", "2,4,8,16")]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    measured = [int(re.search(r"study: (\d+) cells measured", o).group(1)) for o, _ in outs]
    with open_store(db) as st:
        recs = st.records()
    assert len(recs) == len({r.cell_id for r in recs}) == 10  # 5 batch sizes x (profile, time): nothing twice
    assert sum(measured) == 10  # each shared cell was measured by one study only

