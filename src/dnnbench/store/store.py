"""Opening, migrating, writing and reading the results store.

Every write of a cell is one transaction: a cell is either fully stored (run, metrics, samples) or not at
all. A cell is identified by ``cell_id`` (a digest of its configuration and the machine fingerprint);
the unique constraint on it makes two studies writing the same cell at once store it exactly once.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dnnbench.core.errors import DnnbenchError, MissingExtraError
from dnnbench.core.version import __version__
from dnnbench.store import schema

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_MAGIC = b"SQLite format 3\x00"
PG_MIGRATION_LOCK = 0x646E6E62  # "dnnb": serialises concurrent migrations on PostgreSQL


class StoreError(DnnbenchError):
    """The store cannot be opened or used."""


@dataclass
class CellRow:
    """One measured cell as stored: its configuration, status, metrics (SI names) and raw samples."""

    cell_id: str
    fingerprint: str
    environment: dict[str, Any]
    model_ref: str
    runtime: str
    device: str
    precision: str
    batch_size: int
    metric_group: str
    status: str
    config: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    input_shape: list | None = None
    threads: int | None = None
    message: str | None = None
    warnings: list[str] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # metric name -> why it is unavailable
    samples: dict[str, list[float]] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    finished_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    study: str | None = None


def default_store_url() -> str:
    """$DNNBENCH_STORE, else a SQLite file under $XDG_DATA_HOME (~/.local/share)/dnnbench/results.db."""
    env = os.environ.get("DNNBENCH_STORE")
    if env:
        return normalize_url(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return normalize_url(os.path.join(base, "dnnbench", "results.db"))


def normalize_url(target: str) -> str:
    """A SQLAlchemy URL as given, or a file path turned into a SQLite URL."""
    if "://" in target:
        return target
    return f"sqlite:///{os.path.abspath(os.path.expanduser(target))}"


def _sqlite_path(url: sa.URL) -> str | None:
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database
    return None if not db or db == ":memory:" else db


def _check_sqlite_file(path: str) -> None:
    """Refuse a file that is not a SQLite database, reading only its header (the file is left untouched)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head != SQLITE_MAGIC:
        raise StoreError(f"{path} is not a SQLite database", "its header is wrong: the file is corrupted or of another kind",
                         "point --store at another file, or move this one away (it was not modified)")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            con.execute("PRAGMA schema_version").fetchone()
            con.execute("SELECT name FROM sqlite_master").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is a damaged SQLite database", str(exc),
                         "restore it from a backup or point --store at another file (it was not modified)") from exc


def _known_revisions() -> tuple[set[str], str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    return {r.revision for r in script.walk_revisions()}, script.get_current_head()


def _inspect(conn: sa.Connection, where: str) -> str | None:
    """The store's schema revision, None for an empty database; errors for foreign or newer databases."""
    from alembic.runtime.migration import MigrationContext

    tables = set(sa.inspect(conn).get_table_names())
    if not tables:
        return None
    if schema.VERSION_TABLE not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise StoreError(f"{where} is not a dnnbench store", f"it holds other tables ({shown})",
                         "point --store at a new file or an empty database (this one was not modified)")
    rev = MigrationContext.configure(conn, opts={"version_table": schema.VERSION_TABLE}).get_current_revision()
    known, head = _known_revisions()
    if rev is not None and rev not in known:
        raise StoreError(f"{where} was written by a newer dnnbench (schema {rev})",
                         f"this dnnbench {__version__} knows schemas up to {head}",
                         "upgrade dnnbench: pip install -U dnnbench (the store was not modified)")
    return rev


def _make_engine(url: sa.URL) -> sa.Engine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": 120})

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=120000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn):
            # take the write lock at the start: concurrent writers queue instead of deadlocking
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise MissingExtraError(f"the database driver for {backend} is not installed", str(exc),
                                "pip install 'dnnbench[postgres]'") from exc


def open_store(target: str | None = None) -> "Store":
    """Open (creating if needed, migrating to the current schema) the store at a URL or file path."""
    url_text = normalize_url(target) if target else default_store_url()
    try:
        url = make_url(url_text)
    except Exception as exc:
        raise StoreError(f"store address {url_text!r} is malformed", str(exc),
                         "give a file path or a URL like postgresql+psycopg://user@host/db") from exc
    path = _sqlite_path(url)
    where = path or url.render_as_string(hide_password=True)
    if path:
        _check_sqlite_file(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    engine = _make_engine(url)
    try:
        with engine.connect() as conn:
            rev = _inspect(conn, where)
            conn.rollback()
        _, head = _known_revisions()
        if rev != head:
            _migrate(engine, where)
        if path:
            # WAL lets readers (report, export) work while a study writes
            raw = engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA journal_mode=WAL")
            finally:
                raw.close()
    except DnnbenchError:
        engine.dispose()
        raise
    except sa.exc.OperationalError as exc:
        engine.dispose()
        raise StoreError(f"cannot open the store at {where}", str(exc.orig).strip().splitlines()[0],
                         "check the address, that the server is running, and the credentials") from exc
    except sa.exc.DatabaseError as exc:
        engine.dispose()
        raise StoreError(f"cannot open the store at {where}", str(exc.orig).strip().splitlines()[0],
                         "point --store at a dnnbench store or an empty database") from exc
    return Store(engine, where, url.get_backend_name())


def _migrate(engine: sa.Engine, where: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        _inspect(conn, where)  # re-check under the lock: another process may have migrated meanwhile
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Store:
    """A results store. Use as a context manager or call close()."""

    def __init__(self, engine: sa.Engine, where: str, backend: str):
        self.engine = engine
        self.where = where
        self.backend = backend

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    # -- writing -------------------------------------------------------------------------------
    def put(self, row: CellRow) -> bool:
        """Store one cell in one transaction. False if a cell with the same id is already stored."""
        t = schema
        try:
            with self.engine.begin() as conn:
                if conn.execute(sa.select(t.runs.c.id).where(t.runs.c.cell_id == row.cell_id)).first():
                    return False
                if not conn.execute(sa.select(t.environments.c.fingerprint)
                                    .where(t.environments.c.fingerprint == row.fingerprint)).first():
                    conn.execute(t.environments.insert().values(
                        fingerprint=row.fingerprint, info=row.environment, first_seen=datetime.now(timezone.utc)))
                run_id = conn.execute(t.runs.insert().values(
                    cell_id=row.cell_id, fingerprint=row.fingerprint, study=row.study, model_ref=row.model_ref,
                    weights=row.weights, input_shape=row.input_shape, runtime=row.runtime, device=row.device,
                    precision=row.precision, threads=row.threads, batch_size=row.batch_size,
                    metric_group=row.metric_group, config=row.config, status=row.status, message=row.message,
                    warnings=list(row.warnings), started_at=row.started_at, finished_at=row.finished_at,
                    tool_version=__version__,
                )).inserted_primary_key[0]
                names = set(row.metrics) | set(row.notes)
                if names:
                    conn.execute(t.metrics.insert(), [
                        {"run_id": run_id, "name": n, "value": _finite(row.metrics.get(n)), "note": row.notes.get(n)}
                        for n in sorted(names)])
                if row.samples:
                    conn.execute(t.samples.insert(), [
                        {"run_id": run_id, "name": n, "values": [float(v) for v in vals]}
                        for n, vals in sorted(row.samples.items())])
        except sa.exc.IntegrityError:
            # another process stored the same cell between our check and our insert
            return False
        return True

    def delete_cells(self, cell_ids: Iterable[str]) -> int:
        """Remove cells (for --force re-measurement); returns how many were removed."""
        ids = list(cell_ids)
        if not ids:
            return 0
        t = schema
        with self.engine.begin() as conn:
            run_ids = [r[0] for r in conn.execute(sa.select(t.runs.c.id).where(t.runs.c.cell_id.in_(ids)))]
            if not run_ids:
                return 0
            conn.execute(t.samples.delete().where(t.samples.c.run_id.in_(run_ids)))
            conn.execute(t.metrics.delete().where(t.metrics.c.run_id.in_(run_ids)))
            conn.execute(t.runs.delete().where(t.runs.c.id.in_(run_ids)))
        return len(run_ids)

    # -- reading -------------------------------------------------------------------------------
    def statuses(self, cell_ids: Iterable[str]) -> dict[str, str]:
        """cell_id -> stored status, for the ids that are stored."""
        ids = list(cell_ids)
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                q = sa.select(schema.runs.c.cell_id, schema.runs.c.status).where(schema.runs.c.cell_id.in_(chunk))
                out.update({cid: st for cid, st in conn.execute(q)})
        return out

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(schema.runs)).scalar_one()

    def samples(self, cell_id: str) -> dict[str, list[float]]:
        t = schema
        with self.engine.connect() as conn:
            q = (sa.select(t.samples.c.name, t.samples.c["values"]).join(t.runs, t.runs.c.id == t.samples.c.run_id)
                 .where(t.runs.c.cell_id == cell_id))
            return {n: list(v) for n, v in conn.execute(q)}

    def environments(self) -> dict[str, dict]:
        with self.engine.connect() as conn:
            return {fp: info for fp, info in conn.execute(sa.select(schema.environments.c.fingerprint,
                                                                    schema.environments.c.info))}

    def frame(self):
        """One tidy table: a row per cell, a column per metric (units in the names)."""
        import pandas as pd

        t = schema
        with self.engine.connect() as conn:
            runs = pd.DataFrame(conn.execute(sa.select(
                t.runs.c.id, t.runs.c.cell_id, t.runs.c.study, t.runs.c.model_ref, t.runs.c.weights,
                t.runs.c.input_shape, t.runs.c.runtime, t.runs.c.device, t.runs.c.precision, t.runs.c.threads,
                t.runs.c.batch_size, t.runs.c.metric_group, t.runs.c.status, t.runs.c.message, t.runs.c.warnings,
                t.runs.c.started_at, t.runs.c.finished_at, t.runs.c.tool_version, t.runs.c.fingerprint,
            ).order_by(t.runs.c.id)).mappings().all())
            mets = pd.DataFrame(conn.execute(sa.select(t.metrics.c.run_id, t.metrics.c.name, t.metrics.c.value))
                                .mappings().all())
            envs = {fp: info for fp, info in conn.execute(sa.select(t.environments.c.fingerprint, t.environments.c.info))}
        if runs.empty:
            return runs
        if not mets.empty:
            wide = mets.pivot(index="run_id", columns="name", values="value")
            runs = runs.merge(wide, left_on="id", right_index=True, how="left")
        for col in ("cpu_model", "gpu_name", "hostname"):
            runs[col] = runs["fingerprint"].map(lambda fp, c=col: (envs.get(fp) or {}).get(c))
        return runs.drop(columns=["id"]).reset_index(drop=True)


def _finite(v):
    if v is None:
        return None
    v = float(v)
    return v if v == v and v not in (float("inf"), float("-inf")) else None
