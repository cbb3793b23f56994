"""Opening, migrating, writing and reading the results store.

Every write of a cell is one transaction: a cell is either fully stored (run, metrics, samples) or not at
all. A cell is identified by ``cell_id`` (a digest of its configuration and the machine fingerprint);
the unique constraint on it makes two studies writing the same cell at once store it exactly once.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
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


PUT_ATTEMPTS = 3  # a write that collided with another process's on a shared row is tried this many times


class StoreError(DnnbenchError):
    """The store cannot be opened or used."""


@dataclass
class CellRow:
    """A cell given by its figures (planted test data, imports): stored as a record of kind "legacy"."""

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

    def to_record(self) -> "CellRecord":
        """This row as a record of kind "legacy" (its figures as given), the shape a migrated cell takes."""
        from dnnbench.store.legacy import legacy_record

        row = {"cell_id": self.cell_id, "fingerprint": self.fingerprint, "model_ref": self.model_ref,
               "runtime": self.runtime, "device": self.device, "precision": self.precision,
               "batch_size": self.batch_size, "metric_group": self.metric_group, "status": self.status,
               "config": self.config, "weights": self.weights, "input_shape": self.input_shape,
               "threads": self.threads, "message": self.message, "warnings": self.warnings,
               "started_at": self.started_at, "finished_at": self.finished_at}
        return legacy_record(row, self.metrics, self.notes, self.samples, self.environment, own_environment=True)


def default_store_url() -> str:
    """$DNNBENCH_STORE, else a SQLite file under $XDG_DATA_HOME (~/.local/share)/dnnbench/results.db."""
    env = os.environ.get("DNNBENCH_STORE")
    if env is not None:
        if not env.strip():
            # an empty variable is almost always a broken export, not a wish for the default file
            raise StoreError("DNNBENCH_STORE is set but empty", "it must name a SQLite file or a database URL",
                             "set it to a path or a URL like postgresql+psycopg://user@host/db, or unset it "
                             "to use ~/.local/share/dnnbench/results.db")
        return normalize_url(env.strip())
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return normalize_url(os.path.join(base, "dnnbench", "results.db"))


def normalize_url(target: str) -> str:
    """A SQLAlchemy URL as given, or a file path turned into a SQLite URL."""
    if "://" in target:
        return target
    return f"sqlite:///{os.path.abspath(os.path.expanduser(target))}"


SUPPORTED_BACKENDS = ("sqlite", "postgresql")
# servers SQLAlchemy knows but the store does not: JSON columns, locking and migrations are tested on two only
_OTHER_SERVERS = {"mysql", "mariadb", "mssql", "oracle", "cockroachdb", "duckdb", "snowflake"}
_URL_HINT = "pass a file path, or a URL like postgresql+psycopg://user@host/db"


def _parse_url(url_text: str) -> sa.URL:
    """The store's URL, refusing (in one line) what is malformed or names a database dnnbench cannot use."""
    try:
        url = make_url(url_text)
    except Exception as exc:
        raise StoreError(f"store address {url_text!r} is malformed", str(exc).splitlines()[0], _URL_HINT) from exc
    backend = url.get_backend_name()
    if backend in SUPPORTED_BACKENDS:
        return url
    if backend == "postgres":  # the libpq/Heroku spelling, which SQLAlchemy rejects
        raise StoreError(f"store URL scheme {url.drivername!r} is not understood",
                         "SQLAlchemy spells PostgreSQL 'postgresql'",
                         f"write {url_text.replace(url.drivername, 'postgresql+psycopg', 1)}")
    if backend in _OTHER_SERVERS:
        raise StoreError(f"{backend} is not supported as a results store",
                         "dnnbench stores results in SQLite (a file) or PostgreSQL", _URL_HINT)
    raise StoreError(f"unknown store URL scheme {url.drivername!r}",
                     "dnnbench stores results in SQLite (a file) or PostgreSQL", _URL_HINT)


def _sqlite_path(url: sa.URL) -> str | None:
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database
    return None if not db or db == ":memory:" else db


def _no_results(where: str, why: str) -> StoreError:
    return StoreError(f"the store at {where} holds no results", why,
                      f"run a study first (e.g. `dnnbench study resnet18 --quick --store {where}`), or pass --store "
                      "with the right path (it was not modified)")


def _check_sqlite_file(path: str, readonly: bool = False) -> None:
    """Refuse what cannot be a store before SQLite touches it (a directory, a foreign or damaged file, and for
    readers a missing or empty file). Reads only; the file is left untouched."""
    if os.path.isdir(path):
        raise StoreError(f"the store {path} is a directory, not a file", "a SQLite store is one file",
                         f"pass the file, e.g. --store {os.path.join(path, 'results.db')}")
    if not os.path.exists(path):
        if readonly:
            raise StoreError(f"no store at {path}", "nothing has been measured into it yet",
                             f"run a study first (e.g. `dnnbench study resnet18 --quick --store {path}`), or pass "
                             "--store with the right path")
        return
    if os.path.getsize(path) == 0:
        if readonly:  # SQLite would call it a fresh database; to a reader it is an empty store
            raise _no_results(path, "the file is empty (0 bytes)")
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise StoreError(f"cannot read the store {path}", exc.strerror or str(exc),
                         "check its permissions, or pass --store with another file") from exc
    if head != SQLITE_MAGIC:
        raise StoreError(f"{path} is not a SQLite database", "its header is wrong: the file is corrupted or of another kind",
                         "point --store at another file, or move this one away (it was not modified)")
    try:
        con = sqlite3.connect(_sqlite_readonly_uri(path), uri=True)
        try:
            con.execute("PRAGMA schema_version").fetchone()
            con.execute("SELECT name FROM sqlite_master").fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        # "unable to open", "locked", ...: the file may be healthy, so do not call it damaged
        raise StoreError(f"cannot read the store {path}", str(exc), _unreadable_fix(path)) from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is a damaged SQLite database", str(exc),
                         "restore it from a backup or point --store at another file (it was not modified)") from exc


def _unreadable_fix(path: str) -> str:
    folder = os.path.dirname(path) or "."
    if not _can_write(folder):
        return (f"its folder {folder} is not writable and SQLite could not read the store without writing there; "
                f"copy the store with its -wal file to a writable folder: cp {path}* {_copy_hint(path)}")
    return "check its permissions, that no other program holds it locked, or pass --store with another file"


def _wal_mode(path: str) -> bool:
    """Whether the database file's header says it is in WAL mode (bytes 18-19 are 2; 1 is a rollback journal)."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    return len(head) == 20 and head[18] == 2


def _sqlite_readonly_query(path: str) -> dict[str, str]:
    """SQLite URI parameters that read the file without writing anything: its contents or files beside it."""
    query = {"mode": "ro"}
    if os.path.exists(path) and os.path.getsize(path) and _wal_mode(path) and not os.path.exists(path + "-wal"):
        # A WAL-mode file with no -wal beside it is fully checkpointed and open nowhere. mode=ro alone would
        # create -wal and -shm (and, read-only, could never remove them), and in a read-only folder it cannot
        # open at all; immutable=1 reads the file as it is. A writer that starts meanwhile writes into its own
        # -wal, so our pages change only if it also checkpoints during our read (then the read fails and
        # _translate says to run it again). When a -wal exists, a writer is (or was) active: read through it.
        query["immutable"] = "1"
    return query


def _sqlite_readonly_uri(path: str) -> str:
    from urllib.parse import quote, urlencode

    return f"file:{quote(os.path.abspath(path))}?{urlencode(_sqlite_readonly_query(path))}"


def _can_write(p: str) -> bool:
    """os.access, which also sees read-only mounts (EROFS) and immutable files, and honours the effective uid."""
    eff = os.access in os.supports_effective_ids
    mode = os.W_OK | (os.X_OK if os.path.isdir(p) else 0)
    return os.access(p, mode, effective_ids=True) if eff else os.access(p, mode)


def _read_only_mount(p: str) -> bool:
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _copy_hint(path: str) -> str:
    """A writable place to copy a store to, for the fix of an error about one that cannot be written."""
    base = os.path.basename(path) or "results.db"
    folder = os.path.abspath(os.path.dirname(path) or ".")
    for d in (os.getcwd(), os.path.expanduser("~"), tempfile.gettempdir()):
        d = os.path.abspath(d)
        cand = os.path.join(d, base)
        if d != folder and os.path.isdir(d) and _can_write(d) and not os.path.exists(cand):
            return cand
    return os.path.join(os.path.expanduser("~"), f"copy-of-{base}")


def _check_sqlite_writable(path: str) -> None:
    """Refuse, before anything is measured, a SQLite store this process could not write."""
    folder = os.path.dirname(os.path.abspath(path))
    readers = "commands that only read (report, export, pick) can still read it"
    if not os.path.exists(path):
        existing = folder
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not _can_write(existing):
            why = "it is on a read-only file system" if _read_only_mount(existing) else "this user may not write there"
            raise StoreError(f"cannot create the store {path}: {existing} is not writable", why,
                             f"pass --store with a path in a writable folder, e.g. --store {_copy_hint(path)}")
        return
    copy = _copy_hint(path)
    fix_copy = f"copy it to a writable folder and write there: cp {path} {copy}, then pass --store {copy}"
    if _read_only_mount(folder):
        raise StoreError(f"the store {path} cannot be written: it is on a read-only file system",
                         readers, fix_copy)
    for f in (path, path + "-wal", path + "-shm", path + "-journal"):
        if os.path.exists(f) and not _can_write(f):
            raise StoreError(f"the store file {f} is read-only",
                             f"its permissions or attributes (chattr +i) forbid writing; {readers}",
                             f"make it writable (chmod u+w {f}), or {fix_copy}")
    if not _can_write(folder):
        raise StoreError(f"the store {path} cannot be written: its folder {folder} is not writable",
                         f"SQLite writes its journal files (-wal, -shm) beside the store; {readers}",
                         f"make {folder} writable, or {fix_copy}")


def _check_pg_writable(conn: sa.Connection, where: str) -> None:
    """Refuse a PostgreSQL store whose sessions are read-only or whose tables this user may not write."""
    if conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on":
        standby = conn.exec_driver_sql("SELECT pg_is_in_recovery()").scalar()
        raise StoreError(f"the store at {where} refuses writes",
                         "the server is a read-only standby" if standby
                         else "its sessions are read-only (default_transaction_read_only is on)",
                         "point --store at the primary server" if standby
                         else "ask its administrator to turn default_transaction_read_only off for this "
                              "database or user; commands that only read can still read it")
    tables = sorted(schema.metadata.tables)
    exists = sa.text("SELECT to_regclass(:t) IS NOT NULL")
    may = sa.text("SELECT has_table_privilege(:t, 'INSERT') AND has_table_privilege(:t, 'DELETE')")
    present = [t for t in tables if conn.execute(exists, {"t": t}).scalar()]
    denied = [t for t in present if not conn.execute(may, {"t": t}).scalar()]
    if not present and not conn.exec_driver_sql("SELECT has_schema_privilege(current_schema(), 'CREATE')").scalar():
        denied = ["(create tables in its schema)"]
    if denied:
        user = conn.exec_driver_sql("SELECT current_user").scalar()
        raise StoreError(f"the store at {where} refuses writes", f"user {user} may not write {', '.join(denied)}",
                         f"GRANT INSERT, DELETE ON those tables (or CREATE on the schema) TO {user}, "
                         "or connect as the store's owner")
    conn.rollback()


def check_writable(store: "Store") -> None:
    """Raise StoreError (before anything is measured) if results could not be written to ``store``."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite":
        if url.query.get("mode") == "ro":
            raise StoreError(f"the store at {store.where} was opened read-only", "readers never write",
                             "open it with open_store(..., readonly=False) to write")
        path = _sqlite_path(url)
        if path:
            _check_sqlite_writable(path)
        return
    with store.engine.connect() as conn:
        _check_pg_writable(conn, store.where)


def _known_revisions() -> tuple[set[str], str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    return {r.revision for r in script.walk_revisions()}, script.get_current_head()


def _inspect(conn: sa.Connection, where: str) -> str | None:
    """The store's schema revision, None for an empty database; errors for foreign, newer or damaged ones."""
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
    missing = sorted(set(schema.metadata.tables) - tables) if rev == head else []
    if missing:
        # at the current revision the schema is known exactly: a missing table is damage, not an old store
        raise StoreError(f"the store at {where} is damaged: table {', '.join(missing)} is missing",
                         f"its schema revision {rev} says it should be there",
                         "restore it from a backup, or point --store at a new file (this one was not modified)")
    return rev


def _translate(where: str, path: str | None, immutable: bool):
    """A handle_error hook: damage or a read-only file found mid-query becomes one StoreError line."""

    def hook(ctx) -> None:
        orig = ctx.original_exception
        text = (str(orig).strip().splitlines() or [""])[0]
        # exactly DatabaseError ("malformed", "not a database"): its subclasses (IntegrityError, ...) are callers' own
        if type(orig) is sqlite3.DatabaseError:
            if immutable and path and os.path.exists(path + "-wal"):
                raise StoreError(f"the store at {where} changed while it was read", "a study started writing to it",
                                 "run the command again") from orig
            raise StoreError(f"the store at {where} is damaged", text,
                             "restore it from a backup, or point --store at another file (it was not modified)") from orig
        if (isinstance(orig, sqlite3.OperationalError) and "readonly database" in text) or \
                getattr(orig, "sqlstate", None) == "25006" or getattr(orig, "pgcode", None) == "25006":
            if path:
                _check_sqlite_writable(path)  # says why, when the file system is the reason
            raise StoreError(f"the store at {where} refuses writes", text,
                             "commands that only read can still read it; write to a writable copy") from orig

    return hook


def _make_engine(url: sa.URL, where: str = "", readonly: bool = False) -> sa.Engine:
    backend = url.get_backend_name()
    path = _sqlite_path(url)
    immutable = False
    try:
        if backend == "sqlite":
            if readonly and path:
                from urllib.parse import quote

                query = _sqlite_readonly_query(path)
                immutable = "immutable" in query
                url = sa.URL.create("sqlite", database=f"file:{quote(os.path.abspath(path))}",
                                    query={**query, "uri": "true"})
            engine = sa.create_engine(url, connect_args={"timeout": 120})
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise MissingExtraError(f"the database driver for {backend} is not installed", str(exc),
                                "pip install 'dnnbench[postgres]'") from exc
    except (sa.exc.NoSuchModuleError, sa.exc.ArgumentError) as exc:
        raise StoreError(f"store URL {where or url} cannot be used", str(exc).strip().splitlines()[0],
                         _URL_HINT) from exc
    sa.event.listen(engine, "handle_error", _translate(where, path, immutable))
    if backend == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=120000")
            if readonly:
                cur.execute("PRAGMA query_only=ON")  # also for :memory:, which has no file to open read-only
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn):
            # writers take the write lock at the start: concurrent writers queue instead of deadlocking;
            # readers cannot take it and need not
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    elif readonly:
        @sa.event.listens_for(engine, "connect")
        def _connect_ro(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cur.close()
            dbapi_conn.commit()
    return engine


def open_store(target: str | None = None, readonly: bool = False) -> "Store":
    """Open the store at a URL or file path. Writers (the default) create it if needed and migrate it to the
    current schema, after checking it can be written; readers (``readonly=True``) never create, migrate or
    write anything, and refuse a missing, empty or old store in one line."""
    if target is not None and not str(target).strip():
        raise StoreError("the store address is empty", "--store needs a file path or a database URL",
                         "pass --store PATH or URL, or leave it out for the default store")
    url_text = normalize_url(str(target).strip()) if target else default_store_url()
    url = _parse_url(url_text)
    backend = url.get_backend_name()
    path = _sqlite_path(url)
    where = path or url.render_as_string(hide_password=True)
    if path:
        _check_sqlite_file(path, readonly)
        if not readonly:
            _check_sqlite_writable(path)
            try:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of the store {path}", exc.strerror or str(exc),
                                 "pass --store with a path in a writable folder") from exc
    engine = _make_engine(url, where, readonly)
    try:
        with engine.connect() as conn:
            rev = _inspect(conn, where)
            if not readonly and backend == "postgresql":
                _check_pg_writable(conn, where)  # before migrating: a refused CREATE TABLE would say less
            conn.rollback()
        _, head = _known_revisions()
        if readonly:
            if rev is None:
                raise _no_results(where, "it is an empty database (no dnnbench tables)")
            if rev != head:
                # Read queries are written for the current schema only; an old one would fail half-way or
                # silently lack columns. Migrating is a write, which readers never do.
                raise StoreError(f"the store at {where} has an older schema ({rev}; this dnnbench reads {head})",
                                 "readers never migrate a store",
                                 "run a writing command such as `dnnbench study` on it once (it upgrades the "
                                 "store in place), or read it with the dnnbench version that wrote it")
        else:
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
        fix = _unreadable_fix(path) if path else "check the address, that the server is running, and the credentials"
        raise StoreError(f"cannot open the store at {where}", str(exc.orig).strip().splitlines()[0], fix) from exc
    except sa.exc.DatabaseError as exc:
        engine.dispose()
        raise StoreError(f"cannot open the store at {where}", str(exc.orig).strip().splitlines()[0],
                         "point --store at a dnnbench store or an empty database") from exc
    return Store(engine, where, backend)


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
    def put(self, cell: "CellRecord | CellRow", study: str | None = None, replace: bool = False) -> bool:
        """Store one cell's record in one transaction. False if that cell is stored already and not ``replace``.

        ``replace``: the stored cell with the same id (if any) is deleted in the same transaction that stores
        the new one, so an interruption leaves the old cell in place (``study --force``, an error retried).
        """
        if isinstance(cell, CellRow):
            study = study or cell.study
            cell = cell.to_record()
        for attempt in range(PUT_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    return self._write(conn, cell, study, replace)
            except sa.exc.IntegrityError:
                if cell.cell_id in self.statuses([cell.cell_id]):
                    return False  # another process stored the same cell between our check and our insert
                # another process wrote a row this one shares at the same moment (the first cells of two studies
                # of one machine on a new store both add the machine's environment row): the transaction was
                # rolled back, the cell is not stored; written again, it is
                if attempt == PUT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def put_many(self, records: "Iterable[CellRecord]", study: str | None = None, replace: bool = False) -> int:
        """Store ``records`` in ONE transaction: all of them or none (an import). How many were stored (the
        others were stored already and not ``replace``d)."""
        try:
            with self.engine.begin() as conn:
                return sum(self._write(conn, rec, study, replace) for rec in records)
        except sa.exc.IntegrityError as exc:
            raise StoreError(f"nothing was stored in {self.where}", "another process stored some of the same "
                             "cells at the same time", "run the command again (it skips what is stored)") from exc

    def _write(self, conn: sa.Connection, rec: "CellRecord", study: str | None, replace: bool) -> bool:
        """Write one record inside the caller's transaction. False if stored already and not ``replace``."""
        from dnnbench.core.view import metrics

        doc = rec.to_dict()
        cid = doc["cell_id"]
        spec = rec.spec
        view = metrics(rec)
        fingerprint = rec.fingerprint or "unknown"
        t = schema
        old = conn.execute(sa.select(t.runs.c.id).where(t.runs.c.cell_id == cid)).first()
        if old is not None:
            if not replace:
                return False
            conn.execute(t.metrics.delete().where(t.metrics.c.run_id == old[0]))
            conn.execute(t.runs.delete().where(t.runs.c.id == old[0]))
        if not conn.execute(sa.select(t.environments.c.fingerprint)
                            .where(t.environments.c.fingerprint == fingerprint)).first():
            conn.execute(t.environments.insert().values(
                fingerprint=fingerprint, info=rec.environment, first_seen=datetime.now(timezone.utc)))
        run_id = conn.execute(t.runs.insert().values(
            cell_id=cid, fingerprint=fingerprint, study=study, model_ref=rec.model,
            weights=_weights(rec), input_shape=_input_shape(rec),
            runtime=spec.get("runtime", "eager"), device=spec.get("device", "meta"),
            precision=spec.get("precision", "fp32"), threads=spec.get("threads"),
            batch_size=rec.batch_size, metric_group=group_of(rec), config=spec, status=rec.status,
            message=rec.message or None, warnings=doc["warnings"], started_at=_when(rec.started_at),
            finished_at=_when(rec.finished_at), tool_version=rec.tool_version or __version__, record=doc,
            hostname=rec.environment.get("hostname"),
        )).inserted_primary_key[0]
        names = set(view.values) | set(view.notes)
        if names:  # the derived metric columns, for queries; the record is the truth
            conn.execute(t.metrics.insert(), [
                {"run_id": run_id, "name": n, "value": view.values.get(n), "note": view.notes.get(n)}
                for n in sorted(names)])
        conn.execute(t.claims.delete().where(t.claims.c.cell_id == cid))
        return True

    # -- leases: a cell being measured is claimed, so that concurrent studies measure it once ----------
    def claim(self, cell_ids: Iterable[str], owner: str, ttl_s: float) -> dict[str, str]:
        """Claim the cells for ``owner`` for ``ttl_s`` seconds (renewing its own claims).

        Returns the cells that another live owner holds: cell_id -> who ("study 3f2a on host, pid 123").
        A claim is live until it expires, or until its owner's process is gone (same host).
        """
        ids = list(cell_ids)
        if not ids:
            return {}
        import socket

        host, pid = socket.gethostname(), os.getpid()
        now = datetime.now(timezone.utc)
        until = now + timedelta(seconds=ttl_s)
        for attempt in range(PUT_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    return self._claim(conn, ids, owner, host, pid, now, until)
            except sa.exc.IntegrityError:
                # another study inserted a claim for one of these cells between our read and our insert
                # (PostgreSQL reads committed rows only): read again, and its claim now shows as held
                if attempt == PUT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _claim(conn: sa.Connection, ids: list[str], owner: str, host: str, pid: int, now: datetime,
               until: datetime) -> dict[str, str]:
        t = schema.claims
        held: dict[str, str] = {}
        # leases that died (expired, or their process on this host is gone) are cleared, not left behind
        stale = [r.cell_id for r in conn.execute(sa.select(t.c.cell_id, t.c.owner, t.c.host, t.c.pid,
                                                           t.c.expires_at)) if not _live(r, now, host)]
        for i in range(0, len(stale), 500):
            conn.execute(t.delete().where(t.c.cell_id.in_(stale[i:i + 500])))
        rows = {r.cell_id: r for r in conn.execute(sa.select(t).where(t.c.cell_id.in_(ids)))}
        for cid in ids:
            r = rows.get(cid)
            if r is not None and r.owner != owner and _live(r, now, host):
                held[cid] = f"study {r.owner[:8]} on {r.host}, pid {r.pid}"
                continue
            if r is not None:
                conn.execute(t.delete().where(t.c.cell_id == cid))
            conn.execute(t.insert().values(cell_id=cid, owner=owner, host=host, pid=pid, claimed_at=now,
                                           expires_at=until))
        return held

    def renew(self, owner: str, ttl_s: float) -> int:
        """Extend every claim ``owner`` holds by ``ttl_s`` from now (a heartbeat); how many it holds."""
        t = schema.claims
        until = datetime.now(timezone.utc) + timedelta(seconds=ttl_s)
        with self.engine.begin() as conn:
            return conn.execute(t.update().where(t.c.owner == owner).values(expires_at=until)).rowcount

    def release(self, cell_ids: Iterable[str], owner: str) -> None:
        ids = list(cell_ids)
        if ids:
            with self.engine.begin() as conn:
                conn.execute(schema.claims.delete().where(schema.claims.c.cell_id.in_(ids),
                                                          schema.claims.c.owner == owner))

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

    def records(self, cell_ids: Iterable[str] | None = None) -> list["CellRecord"]:
        """The stored records (all, or those of ``cell_ids``), in the order they were stored."""
        from dnnbench.core.record import CellRecord

        q = sa.select(schema.runs.c.record).order_by(schema.runs.c.id)
        if cell_ids is not None:
            q = q.where(schema.runs.c.cell_id.in_(list(cell_ids)))
        with self.engine.connect() as conn:
            return [CellRecord.from_dict(_loads(doc)) for (doc,) in conn.execute(q)]

    def record(self, cell_id: str) -> "CellRecord | None":
        found = self.records([cell_id])
        return found[0] if found else None

    def samples(self, cell_id: str) -> dict[str, list[float]]:
        rec = self.record(cell_id)
        return dict(rec.samples) if rec else {}

    def environments(self) -> dict[str, dict]:
        """Machine fingerprint -> the environment of its newest cell (each cell keeps its own in its record)."""
        r = schema.runs
        newest = sa.select(sa.func.max(r.c.id)).group_by(r.c.fingerprint)  # one record per machine, not all
        with self.engine.connect() as conn:
            docs = [_loads(doc) for (doc,) in conn.execute(sa.select(r.c.record).where(r.c.id.in_(newest)))]
        return {d["spec"].get("machine") or d["environment"].get("fingerprint"): d["environment"] for d in docs}

    def frame(self):
        """One tidy table: a row per cell, a column per metric (units in the names), from the records.

        ``unavailable`` holds, per row, the notes of the metric view: why each missing figure is missing.
        """
        import pandas as pd

        t = schema
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.runs.c.study, t.runs.c.record).order_by(t.runs.c.id)).all()
        return records_frame([(study, _loads(doc)) for study, doc in rows], pd)


def group_of(rec: "CellRecord") -> str:
    """The metric group a record belongs to: profile, accuracy, or the bench figures it holds."""
    if rec.kind in ("profile", "accuracy"):
        return rec.kind
    if rec.kind == "legacy":
        return str(rec.spec.get("group", "legacy"))
    measured_power = rec.spec.get("sensors", "none") != "none" or rec.spec.get("estimate_tdp_w") is not None
    return "time+memory+power" if measured_power else "time+memory"


def records_frame(rows, pd=None):
    """The tidy frame of (study, record document) pairs: every figure through ``core.view.metrics``."""
    from dnnbench.core.record import CellRecord
    from dnnbench.core.view import metrics

    if pd is None:
        import pandas as pd
    out = []
    for study, doc in rows:
        rec = CellRecord.from_dict(doc)
        view = metrics(rec)
        env = rec.environment or {}
        spec = rec.spec
        out.append({
            "cell_id": rec.cell_id, "study": study, "model_ref": rec.model, "task": _task(rec, view.values),
            "weights": _weights(rec),
            "input_shape": _input_shape(rec), "runtime": spec.get("runtime", "eager"),
            "device": spec.get("device", "meta"), "precision": spec.get("precision", "fp32"),
            "threads": spec.get("threads"), "batch_size": rec.batch_size, "metric_group": group_of(rec),
            "kind": rec.kind, "provenance": spec.get("provenance", "measured"), "status": rec.status,
            "message": rec.message or None,
            "warnings": [w.to_dict() for w in rec.warnings], "started_at": _when(rec.started_at),
            "finished_at": _when(rec.finished_at), "tool_version": rec.tool_version, "fingerprint": rec.fingerprint,
            "cpu_model": env.get("cpu_model"), "gpu_name": env.get("gpu_name"), "hostname": env.get("hostname"),
            "device_name": spec.get("device_name") or env.get("device_name"),  # imported devices: their name
            "unavailable": dict(view.notes),
            **{n: float("nan") for n in view.notes if n not in view.values},  # a column, NULL with its reason
            **view.values,
        })
    return pd.DataFrame(out)


# Quality metrics that only one task publishes: an accuracy record carrying one is of that task.
_TASK_OF_METRIC = (("mask_map", "instance_segmentation"), ("kp_map", "keypoint_detection"), ("box_map", "detection"),
                   ("miou", "segmentation"), ("pixel_acc", "segmentation"), ("epe", "optical_flow"))


def _task(rec, values: dict) -> str:
    """What the model does (core.specs.TASKS): from the spec (bench cells of other tasks), the result
    (profile cells), a planted row's config, else the task-specific metric it carries; else classification."""
    task = rec.spec.get("task") or rec.result.get("task") or (rec.spec.get("config") or {}).get("task")
    if isinstance(task, str) and task:
        return task
    return next((t for name, t in _TASK_OF_METRIC if name in values), "classification")


def _weights(rec) -> str | None:
    return rec.spec.get("weights") or (rec.result.get("reported") or {}).get("weights") or rec.result.get("weights")


def _input_shape(rec):
    return rec.spec.get("input_shape") or rec.result.get("input_shape")


def _loads(doc):
    import json

    return json.loads(doc) if isinstance(doc, str) else doc


def _when(text) -> datetime:
    if isinstance(text, datetime):
        return text
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return datetime.now(timezone.utc)


def _live(claim, now: datetime, host: str) -> bool:
    expires = claim.expires_at if claim.expires_at.tzinfo else claim.expires_at.replace(tzinfo=timezone.utc)
    if expires <= now:
        return False
    if claim.host == host:  # its owner's process is gone: the lease died with it
        try:
            os.kill(claim.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True
