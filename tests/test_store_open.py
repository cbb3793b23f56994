"""Opening the store: readers (export, pick, report, load_results) never write, and every store problem is one
line with exit code 2. Each case checks the store's bytes and its folder's listing afterwards."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest

from dnnbench.store import CellRow, check_writable, open_store
from dnnbench.store import schema
from dnnbench.store import store as store_mod
from dnnbench.store.store import StoreError

READERS = ["export", "pick", "report"]
ROOT = os.geteuid() == 0


def _row(batch: int = 1) -> CellRow:
    cid = hashlib.sha256(f"open|{batch}".encode()).hexdigest()
    now = datetime.now(timezone.utc)
    return CellRow(cell_id=cid, fingerprint="f" * 16, environment={"cpu_model": "Test CPU", "cores": 2},
                   model_ref="torchvision:resnet18", runtime="eager", device="cpu", precision="fp32",
                   batch_size=batch, metric_group="time", status="ok", threads=2,
                   input_shape=[[batch, 3, 224, 224]], started_at=now, finished_at=now,
                   metrics={"latency_median_s": 0.01 * batch, "throughput_items_per_s": 100.0 / batch},
                   samples={"latency_s": [0.01 * batch] * 5})


def make_store(path, rows: int = 1) -> None:
    """A healthy store (WAL mode, as writers leave it) holding ``rows`` cells."""
    with open_store(str(path)) as st:
        for b in range(1, rows + 1):
            st.put(_row(b))


def snapshot(folder) -> dict[str, str]:
    """Every file of a folder (recursively) and the sha256 of its bytes."""
    out = {}
    for dirpath, dirnames, files in os.walk(folder):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), folder) + "/"] = "dir"
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def run(capsys, *args: str) -> tuple[int, str, str]:
    """The real entry point, in process: (exit code, stdout, stderr)."""
    from dnnbench.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("dnnbench: error: "), err
    assert "internal error" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def reader_args(reader: str, store: str, tmp_path) -> list[str]:
    if reader == "report":
        return ["report", "--store", store, "--out", str(tmp_path / "report-out")]
    return [reader, "--store", store]


@contextmanager
def read_only_dir(folder):
    """The folder made unwritable for this process: chmod for a user; chattr +i for root (chmod does not stop
    root). Skips when neither can be done here."""
    if not ROOT:
        os.chmod(folder, 0o555)
        try:
            yield
        finally:
            os.chmod(folder, 0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root, where chmod does not stop writes, and chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@contextmanager
def read_only_file(path):
    if not ROOT:
        os.chmod(path, 0o444)
        try:
            yield
        finally:
            os.chmod(path, 0o644)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root, where chmod does not stop writes, and chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _corrupt_tables(path) -> None:
    """Overwrite the root page of every dnnbench table (not the version table, so opening succeeds and the
    damage is met mid-read) with garbage."""
    con = sqlite3.connect(path)
    page = con.execute("PRAGMA page_size").fetchone()[0]
    roots = [r for n, r in con.execute("SELECT name, rootpage FROM sqlite_master WHERE type='table'")
             if n != schema.VERSION_TABLE]
    con.close()
    assert roots and not os.path.exists(f"{path}-wal")
    with open(path, "r+b") as fh:
        for r in roots:
            fh.seek((r - 1) * page)
            fh.write(b"\xde\xad\xbe\xef" * (page // 4))


def _drop_table(path) -> None:
    victim = "metrics" if "metrics" in schema.metadata.tables else sorted(schema.metadata.tables)[0]
    con = sqlite3.connect(path)
    con.execute(f"DROP TABLE {victim}")
    con.commit()
    con.close()


def bad_store(kind: str, folder) -> str:
    """A store path of the given kind of trouble, inside ``folder``."""
    p = folder / "results.db"
    if kind == "missing":
        return str(p)
    if kind == "missing-folder":
        return str(folder / "not-here" / "results.db")
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "foreign":
        p.write_text("model,latency\nresnet18,0.01\n")
    elif kind == "corrupt-page":
        make_store(p, rows=3)
        _corrupt_tables(str(p))
    elif kind == "missing-table":
        make_store(p)
        _drop_table(str(p))
    elif kind == "directory":
        p.mkdir()
        (p / "keep.txt").write_text("x")
    return str(p)


BAD = {
    "missing": "no store at",
    "missing-folder": "no store at",
    "empty": "holds no results",
    "foreign": "is not a SQLite database",
    "corrupt-page": "is damaged",
    "missing-table": "is missing",
    "directory": "is a directory",
}


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("reader", READERS)
def test_readers_refuse_bad_stores_in_one_line_and_touch_nothing(reader, kind, tmp_path, capsys):
    folder = tmp_path / "stores"
    folder.mkdir()
    store = bad_store(kind, folder)
    before = snapshot(folder)
    code, out, err = run(capsys, *reader_args(reader, store, tmp_path))
    assert_one_line_error(code, out, err, BAD[kind])
    assert snapshot(folder) == before  # no bytes changed, no -wal/-shm, no folder created
    assert not (tmp_path / "report-out").exists()


@pytest.mark.parametrize("journal", ["wal", "delete"])
@pytest.mark.parametrize("reader", READERS)
def test_readers_leave_a_healthy_store_byte_identical(reader, journal, tmp_path, capsys):
    """Also for a store in rollback-journal mode (copied, or written by other tools): readers never switch it
    to WAL."""
    folder = tmp_path / "stores"
    folder.mkdir()
    make_store(folder / "results.db")
    if journal != "wal":
        con = sqlite3.connect(folder / "results.db")
        con.execute(f"PRAGMA journal_mode={journal}")
        con.close()
    before = snapshot(folder)
    assert set(before) == {"results.db"}  # the writer closed: its -wal and -shm are gone
    code, out, err = run(capsys, *reader_args(reader, str(folder / "results.db"), tmp_path))
    assert "internal error" not in err and "Traceback" not in err, err
    if reader == "export":
        assert code == 0, err
        assert "torchvision:resnet18" in out
    elif reader == "report":
        assert code == 0, err
    else:
        assert code in (0, 2, 3), err  # answered, or a one-line "cannot answer from these results"
    assert snapshot(folder) == before


@pytest.mark.parametrize("reader", READERS)
def test_readers_read_a_healthy_store_in_a_read_only_folder(reader, tmp_path, capsys):
    folder = tmp_path / "stores"
    folder.mkdir()
    make_store(folder / "results.db")
    before = snapshot(folder)
    with read_only_dir(folder):
        code, out, err = run(capsys, *reader_args(reader, str(folder / "results.db"), tmp_path))
    assert "damaged" not in err and "internal error" not in err and "Traceback" not in err, err
    if reader == "export":
        assert code == 0, err
        assert "torchvision:resnet18" in out
    elif reader == "report":
        assert code == 0, err
    assert snapshot(folder) == before


def test_writer_on_a_read_only_folder_says_so_and_where_to_copy(tmp_path):
    folder = tmp_path / "stores"
    folder.mkdir()
    make_store(folder / "results.db")
    before = snapshot(folder)
    with read_only_dir(folder):
        with pytest.raises(StoreError) as ei:
            open_store(str(folder / "results.db"))
        with open_store(str(folder / "results.db"), readonly=True) as st:  # readers still can
            assert len(st.frame()) == 1
            with pytest.raises(StoreError, match="opened read-only"):
                check_writable(st)
    line = ei.value.one_line()
    assert "\n" not in line
    assert "not writable" in line and "can still read it" in line and "cp " in line and "damaged" not in line
    assert snapshot(folder) == before


def test_check_writable_refuses_a_read_only_store_file(tmp_path):
    p = tmp_path / "results.db"
    make_store(p)
    with open_store(str(p)) as st:
        check_writable(st)  # fine while writable
        with read_only_file(p):
            with pytest.raises(StoreError, match="is read-only") as ei:
                check_writable(st)
    assert "chmod u+w" in ei.value.one_line()


def test_load_results_reads_through_a_live_writers_wal(tmp_path):
    """A reader while a study holds the store open sees its committed cells, through the writer's -wal."""
    from dnnbench.runner import load_results

    p = tmp_path / "results.db"
    make_store(p)
    with open_store(str(p)) as writer:
        writer.put(_row(2))
        assert os.path.exists(f"{p}-wal")
        names = set(os.listdir(tmp_path))
        assert len(load_results(str(p))) == 2
        assert set(os.listdir(tmp_path)) == names


def test_constraint_errors_stay_the_callers_own(tmp_path):
    """Only damage becomes a StoreError: a unique violation (two studies storing one cell) stays IntegrityError."""
    import sqlalchemy as sa

    with open_store(str(tmp_path / "results.db")) as st, st.engine.connect() as conn:
        conn.exec_driver_sql("CREATE TEMP TABLE t (a INTEGER UNIQUE)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with pytest.raises(sa.exc.IntegrityError):
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")


def test_old_schema_is_refused_by_readers_untouched(tmp_path, monkeypatch):
    p = tmp_path / "results.db"
    make_store(p)
    before = snapshot(tmp_path)
    known, head = store_mod._known_revisions()
    monkeypatch.setattr(store_mod, "_known_revisions", lambda: (known | {"9999_future"}, "9999_future"))
    with pytest.raises(StoreError, match="older schema") as ei:
        open_store(str(p), readonly=True)
    assert "dnnbench study" in ei.value.one_line()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["foreign", "corrupt-page", "missing-table", "directory"])
def test_writers_refuse_bad_stores_leaving_no_wal_files(kind, tmp_path):
    folder = tmp_path / "stores"
    folder.mkdir()
    store = bad_store(kind, folder)
    before = snapshot(folder)
    with pytest.raises(StoreError) as ei:
        with open_store(store) as st:
            st.frame()  # a corrupt page is met when read
    assert "\n" not in ei.value.one_line()
    assert snapshot(folder) == before


@pytest.mark.parametrize("reader", ["export", "pick"])
@pytest.mark.parametrize("address, needle", [
    ("foo://x", "unknown store URL scheme 'foo'"),
    ("mysql://user@localhost/results", "mysql is not supported"),
    ("mysql+pymysql://user@localhost/results", "mysql is not supported"),
    ("postgres://user@localhost/results", "postgresql+psycopg://"),
])
def test_unsupported_addresses_are_one_line(reader, address, needle, capsys):
    code, out, err = run(capsys, reader, "--store", address)
    line = assert_one_line_error(code, out, err, needle)
    assert "dnnbench[postgres]" not in line


@pytest.mark.parametrize("reader", READERS)
def test_empty_dnnbench_store_variable_is_refused(reader, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DNNBENCH_STORE", "")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    args = [reader] + (["--out", str(tmp_path / "rep")] if reader == "report" else [])
    code, out, err = run(capsys, *args)
    assert_one_line_error(code, out, err, "DNNBENCH_STORE is set but empty")
    assert not (tmp_path / "xdg").exists()


def test_readonly_open_creates_nothing(tmp_path):
    target = tmp_path / "a" / "b" / "results.db"
    with pytest.raises(StoreError, match="no store at"):
        open_store(str(target), readonly=True)
    assert list(tmp_path.iterdir()) == []


# ---- PostgreSQL ------------------------------------------------------------------------------------

def test_postgres_readers_never_migrate_and_read_only_sessions_refuse_writers(pg_server):
    import psycopg
    import sqlalchemy as sa

    empty = pg_server.create_db(f"ro_empty_{os.getpid()}")
    with pytest.raises(StoreError, match="holds no results"):
        open_store(empty, readonly=True)
    engine = sa.create_engine(empty)
    assert sa.inspect(engine).get_table_names() == []  # a reader created no tables
    engine.dispose()

    url = pg_server.create_db(f"ro_full_{os.getpid()}")
    with open_store(url) as st:
        st.put(_row())
        check_writable(st)
    with open_store(url, readonly=True) as st:
        assert len(st.frame()) == 1
        with pytest.raises(StoreError, match="refuses writes"):
            check_writable(st)  # the reader's own sessions are read-only
    db = url.rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={pg_server.port} user=dnnbench dbname=postgres", autocommit=True) as c:
        c.execute(f'ALTER DATABASE "{db}" SET default_transaction_read_only = on')
    with pytest.raises(StoreError, match="refuses writes") as ei:
        open_store(url)
    assert "default_transaction_read_only" in ei.value.one_line()
    with open_store(url, readonly=True) as st:
        assert len(st.frame()) == 1
