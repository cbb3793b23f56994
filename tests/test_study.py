"""Study runner and export: resumable after SIGKILL, concurrent writers, budget, real subprocesses."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import sqlalchemy as sa

from dnnbench.store import open_store
from dnnbench.runner import load_results, parse_duration, parse_metrics, study

SLOW_MODEL = """
import time
import torch
from torch import nn

class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
    def forward(self, x):
        time.sleep({delay})
        return self.fc(x)

def build():
    return Slow(), torch.zeros(1, 8)
"""


def _model(tmp_path, delay=0.0, name="slow.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(SLOW_MODEL.format(delay=delay)))
    return f"python:{path}:build"


def _study_cmd(ref, store, batches, *extra):
    return [sys.executable, "-m", "dnnbench", "study", ref, "--metrics", "profile", "--batch-sizes", batches,
            "--store", store, *extra]


def _cells(store):
    engine = sa.create_engine(store if "://" in store else f"sqlite:///{store}")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT cell_id, model_ref, batch_size, metric_group, status FROM runs").all()
    engine.dispose()
    return rows


def test_profile_study_stores_one_row_per_cell_and_resumes(tmp_path):
    db = str(tmp_path / "r.db")
    ref = _model(tmp_path)
    s = study([ref], batch_sizes=[1, 2, 4], metrics="profile", store=db)
    assert (s.measured, s.skipped_existing, s.left) == (3, 0, 0)
    again = study([ref], batch_sizes=[1, 2, 4, 8], metrics="profile", store=db)
    assert (again.measured, again.skipped_existing) == (1, 3)
    forced = study([ref], batch_sizes=[1, 2], metrics="profile", store=db, force=True)
    assert (forced.measured, forced.skipped_existing) == (2, 0)
    df = load_results(db)
    assert sorted(df.batch_size) == [1, 2, 4, 8]
    assert list(df.sort_values("batch_size").macs) == [b * 8 * 4 for b in (1, 2, 4, 8)]


def test_sigkill_then_rerun_measures_only_missing_cells(tmp_path, store_url):
    ref = _model(tmp_path, delay=0.4)
    batches = "1,2,3,4,5,6,7,8"
    proc = subprocess.Popen(_study_cmd(ref, store_url, batches), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            n = len(_cells(store_url))
        except Exception:
            n = 0  # the store may not exist yet
        if n >= 3:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kept = _cells(store_url)
    assert 3 <= len(kept) < 8, "the kill should land mid-study"
    rerun = subprocess.run(_study_cmd(ref, store_url, batches), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(kept)} cells already in the store" in rerun.stderr.replace("\n", " ")
    assert f"{8 - len(kept)} cells measured" in rerun.stdout
    final = _cells(store_url)
    # same cell set as an uninterrupted run, none duplicated
    uninterrupted = str(tmp_path / "clean.db")
    clean = subprocess.run(_study_cmd(ref, uninterrupted, batches), capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    key = lambda rows: sorted((r.model_ref, r.batch_size, r.metric_group, r.status) for r in rows)  # noqa: E731
    assert key(final) == key(_cells(uninterrupted))
    assert len({r.cell_id for r in final}) == len(final) == 8


def test_two_studies_writing_one_store_at_once(tmp_path, store_url):
    ref = _model(tmp_path, delay=0.05)
    a = subprocess.Popen(_study_cmd(ref, store_url, "1,2,3,4,5,6"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b = subprocess.Popen(_study_cmd(ref, store_url, "4,5,6,7,8,9"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for p in (a, b):
        _, errs = p.communicate(timeout=300)
        assert p.returncode == 0, errs.decode()
    rows = _cells(store_url)
    assert sorted(r.batch_size for r in rows) == list(range(1, 10))
    assert len({r.cell_id for r in rows}) == len(rows)


def test_budget_stops_between_cells(tmp_path):
    db = str(tmp_path / "r.db")
    ref = _model(tmp_path, delay=0.5)
    s = study([ref], batch_sizes=[1, 2, 3, 4, 5, 6], metrics="profile", store=db, budget="1s")
    assert s.stopped == "budget"
    assert 1 <= s.measured < 6 and s.left == 6 - s.measured
    assert len(_cells(db)) == s.measured


def test_bench_cells_are_stored_with_raw_samples(tmp_path):
    db = str(tmp_path / "r.db")
    ref = _model(tmp_path)
    s = study([ref], batch_sizes=[1, 4], metrics="time,memory", store=db, max_time_per_cell=0.5, threads=1)
    assert s.measured == 2 and s.statuses == {"ok": 2}
    df = load_results(db)
    assert set(df.metric_group) == {"time+memory"}
    assert (df.latency_median_s > 0).all() and (df.throughput_items_per_s > 0).all()
    assert (df.peak_rss_bytes > 0).all()
    with open_store(db) as st:
        for cid, n in zip(df.cell_id, df.latency_samples):
            assert len(st.samples(cid)["latency_s"]) == n


def test_export_formats(tmp_path, cli):
    db = str(tmp_path / "r.db")
    study([_model(tmp_path)], batch_sizes=[1, 2], metrics="profile", store=db)
    out = tmp_path / "r.json"
    proc = cli("export", "--store", db, "--format", "json", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert [r["batch_size"] for r in rows] == [1, 2] and rows[1]["macs"] == 2 * 32
    proc = cli("export", "--store", db, "--format", "csv")
    assert proc.returncode == 0 and proc.stdout.splitlines()[0].startswith("cell_id,")
    assert len(proc.stdout.strip().splitlines()) == 3
    pq = tmp_path / "r.parquet"
    proc = cli("export", "--store", db, "--format", "parquet", "--output", str(pq))
    assert proc.returncode == 0, proc.stderr
    import pandas as pd

    assert list(pd.read_parquet(pq).macs) == [32.0, 64.0]


@pytest.mark.parametrize("args, fragment", [
    (("study", "resnet18", "--metrics", "speed"), "unknown metric speed"),
    (("study", "resnet18", "--budget", "soon"), "duration 'soon' is malformed"),
    (("study", "resnet18", "--batch-sizes", "0"), "batch"),
])
def test_study_bad_input(cli, tmp_path, args, fragment):
    proc = cli(*args, "--store", str(tmp_path / "x.db"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr


def test_export_of_empty_store_says_how_to_fill_it(cli, tmp_path):
    proc = cli("export", "--store", str(tmp_path / "empty.db"))
    assert proc.returncode == 2 and "dnnbench study" in proc.stderr


def test_parsers():
    assert parse_duration("1h30m") == 5400 and parse_duration("90s") == 90 and parse_duration("2m") == 120
    assert parse_metrics("time,profile") == ("profile", "time")
