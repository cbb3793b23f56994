"""The results store on real SQLite and a real PostgreSQL server: the same tests on both."""

import hashlib
import os
import sqlite3
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from dnnbench.store import CellRow, open_store
from dnnbench.store.store import StoreError


def row(model="torchvision:resnet18", batch=1, status="ok", **metrics):
    cid = hashlib.sha256(f"{model}|{batch}|{status}".encode()).hexdigest()
    return CellRow(
        cell_id=cid, fingerprint="f" * 16, environment={"cpu_model": "Test CPU", "cores": 2},
        model_ref=model, runtime="eager", device="cpu", precision="fp32", batch_size=batch,
        metric_group="time", status=status, threads=2, input_shape=[[batch, 3, 224, 224]],
        metrics=metrics or {"latency_median_s": 0.01 * batch, "throughput_items_per_s": 100.0},
        notes={"power_w": "unavailable: no sensor"} if status == "ok" else {},
        samples={"latency_s": [0.01 * batch] * 5}, warnings=["CV 12 % > 10 %: machine busy; close other programs"],
        message=None if status == "ok" else "out of memory",
    )


def test_roundtrip_tidy_frame(store_url):
    with open_store(store_url) as store:
        assert store.count() == 0
        for b in (1, 2, 4):
            assert store.put(row(batch=b))
        assert store.put(row(model="torchvision:vgg16", batch=64, status="oom", latency_median_s=None))
        df = store.frame()
    assert len(df) == 4
    assert {"model_ref", "batch_size", "status", "latency_median_s", "throughput_items_per_s", "power_w",
            "cpu_model"} <= set(df.columns)
    ok = df[df.status == "ok"].sort_values("batch_size")
    assert list(ok.latency_median_s) == pytest.approx([0.01, 0.02, 0.04])
    assert ok.power_w.isna().all()  # unavailable is NULL with a note, never 0
    assert all(u["power_w"] == "unavailable: no sensor" for u in ok.unavailable)  # and the note is read back
    assert df[df.status == "oom"].latency_median_s.isna().all()
    assert list(ok.warnings.iloc[0]) == [{"kind": "note", "message": "CV 12 % > 10 %: machine busy; close other programs",
                                          "remedy": ""}]
    assert list(ok.input_shape.iloc[0]) == [[1, 3, 224, 224]] and set(ok.cpu_model) == {"Test CPU"}


def test_same_cell_is_stored_once_and_samples_are_kept(store_url):
    with open_store(store_url) as store:
        r = row(batch=8)
        cid = r.to_record().cell_id
        assert store.put(r) is True
        assert store.put(r) is False
        assert store.count() == 1
        assert store.samples(cid) == {"latency_s": pytest.approx([0.08] * 5)}
        assert store.statuses([cid, "nope"]) == {cid: "ok"}
        assert store.put(r, replace=True) is True  # re-measured: replaced in one transaction
        assert store.count() == 1


def test_reopening_keeps_data(store_url):
    with open_store(store_url) as store:
        store.put(row())
    with open_store(store_url) as store:
        assert store.count() == 1


def test_non_dnnbench_database_is_refused_untouched(store_url):
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    engine.dispose()
    with pytest.raises(StoreError, match="is not a dnnbench store"):
        open_store(store_url)
    engine = sa.create_engine(store_url)
    assert set(sa.inspect(engine).get_table_names()) == {"customers"}
    engine.dispose()


def test_newer_schema_is_refused_untouched(store_url):
    with open_store(store_url) as store:
        store.put(row())
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE dnnbench_schema_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(StoreError, match="newer dnnbench"):
        open_store(store_url)
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM dnnbench_schema_version").scalar() == "9999"
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 1
    engine.dispose()


def test_corrupted_sqlite_file_is_refused_untouched(tmp_path):
    bad = tmp_path / "results.db"
    bad.write_bytes(b"this is not a database\x00" * 100)
    before = bad.read_bytes()
    with pytest.raises(StoreError, match="not a SQLite database"):
        open_store(str(bad))
    assert bad.read_bytes() == before
    # a valid header with garbage pages
    good = tmp_path / "good.db"
    with open_store(str(good)) as store:
        store.put(row())
    data = bytearray(good.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    good.write_bytes(bytes(data))
    before = good.read_bytes()
    with pytest.raises(StoreError):
        open_store(str(good))
    assert good.read_bytes() == before


def test_default_location_and_env_override(tmp_path, monkeypatch):
    from dnnbench.store import default_store_url

    monkeypatch.delenv("DNNBENCH_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_url() == f"sqlite:///{tmp_path}/dnnbench/results.db"
    monkeypatch.setenv("DNNBENCH_STORE", str(tmp_path / "x.db"))
    assert default_store_url() == f"sqlite:///{tmp_path}/x.db"


def test_unreachable_server_is_one_clear_error():
    with pytest.raises(StoreError, match="cannot open the store"):
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none")


class _Racing:
    """A transaction's connection that lets another process write first: before the first insert into
    ``table`` it runs ``other_write()`` (committed on another connection), then goes on."""

    def __init__(self, conn, table: str, other_write, raced: list):
        self.conn, self.table, self.other_write, self.raced = conn, table, other_write, raced

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def execute(self, stmt, *args, **kwargs):
        if getattr(stmt, "is_insert", False) and stmt.table.name == self.table and not self.raced:
            self.raced.append(stmt)
            self.other_write(stmt)
        return self.conn.execute(stmt, *args, **kwargs)


def test_a_cell_whose_write_collides_on_the_machines_row_is_written_again(pg_server, monkeypatch):
    """Two studies of one machine start on a new store: both first cells add the machine's environment row at
    once, and one transaction fails on it. That cell is not stored by anyone; put must not say "stored by
    another process" (False) and drop it, but write it again."""
    from dnnbench.store import store as store_mod

    url = pg_server.create_db(f"collide{os.getpid()}")
    other = sa.create_engine(url)
    real, raced = store_mod.Store._write, []

    def add_the_row_first(stmt):
        with other.begin() as c:
            c.execute(stmt)

    monkeypatch.setattr(store_mod.Store, "_write", lambda self, conn, *a: real(
        self, _Racing(conn, "environments", add_the_row_first, raced), *a))
    try:
        with open_store(url) as st:
            r = row(batch=7)
            assert st.put(r) is True and raced  # the collision happened, and the cell is stored anyway
            assert st.statuses([r.to_record().cell_id]) == {r.to_record().cell_id: "ok"}
            assert st.put(r) is False  # stored now: a second write is the "already stored" case
    finally:
        other.dispose()


def test_a_claim_that_collides_with_another_studys_claim_reports_it_held(pg_server, monkeypatch):
    """Two studies claim the same cell at once on PostgreSQL: both read "nobody holds it", one insert fails
    on the key. The loser must read again and see the cell as held, not stop with an internal error (seen
    in CI: two studies writing one store)."""
    import socket
    from datetime import timedelta

    from dnnbench.store import schema
    from dnnbench.store import store as store_mod

    url = pg_server.create_db(f"claimrace{os.getpid()}")
    other = sa.create_engine(url)
    real, raced = store_mod.Store._claim, []

    def claim_it_first(_stmt):
        now = datetime.now(timezone.utc)
        with other.begin() as c:
            c.execute(schema.claims.insert().values(
                cell_id="c1", owner="other-study", host=socket.gethostname(), pid=os.getpid(), claimed_at=now,
                expires_at=now + timedelta(seconds=60)))

    monkeypatch.setattr(store_mod.Store, "_claim", staticmethod(
        lambda conn, *a: real(_Racing(conn, "claims", claim_it_first, raced), *a)))
    try:
        with open_store(url) as st:
            held = st.claim(["c1", "c2"], "this-study", ttl_s=60)
            assert raced  # the collision happened
            assert held == {"c1": f"study other-st on {socket.gethostname()}, pid {os.getpid()}"}
            assert st.renew("this-study", 60) == 1  # it holds c2, the cell nobody else claimed
    finally:
        other.dispose()
