"""Tables of the results store (revision 0003). Changing them means adding an Alembic migration in migrations/versions."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Alembic's version table, under a name of our own so that another Alembic-managed database is never
# mistaken for a dnnbench store.
VERSION_TABLE = "dnnbench_schema_version"

environments = sa.Table(
    "environments", metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("info", sa.JSON, nullable=False),
    sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
)

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("cell_id", sa.String(64), nullable=False, unique=True),
    sa.Column("fingerprint", sa.String(64), sa.ForeignKey("environments.fingerprint"), nullable=False),
    sa.Column("study", sa.String(200)),
    sa.Column("model_ref", sa.String(500), nullable=False),
    sa.Column("weights", sa.String(500)),
    sa.Column("input_shape", sa.JSON),
    sa.Column("runtime", sa.String(50), nullable=False),
    sa.Column("device", sa.String(50), nullable=False),
    sa.Column("precision", sa.String(20), nullable=False),
    sa.Column("threads", sa.Integer),
    sa.Column("batch_size", sa.Integer, nullable=False),
    sa.Column("metric_group", sa.String(50), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("warnings", sa.JSON, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("tool_version", sa.String(50), nullable=False),
    # the cell's whole result record (core.record.CellRecord.to_dict): spec, raw samples, its own environment,
    # structured warnings, reasons. The columns above and the metrics table are derived from it, for queries.
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("hostname", sa.String(255)),
)
sa.Index("ix_runs_model_batch", runs.c.model_ref, runs.c.batch_size)

metrics = sa.Table(
    "metrics", metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),  # SI unit in the name: latency_median_s, ...
    sa.Column("value", sa.Float),  # NULL when unavailable; then `note` says why
    sa.Column("note", sa.Text),
)

# A cell being measured: a lease, so that two studies sharing cells measure each once. It expires at
# ``expires_at`` (renewed while its owner works) or as soon as its owner's process is gone.
claims = sa.Table(
    "claims", metadata,
    sa.Column("cell_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(100), nullable=False),  # a study's random id
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

DNNBENCH_TABLES = {"environments", "runs", "metrics", "claims"}
