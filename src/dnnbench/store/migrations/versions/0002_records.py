"""Result records: every run keeps its whole record (JSON) and hostname; samples fold into the record; claims.

Each cell of revision 0001 becomes a record of kind "legacy" (its figures, notes, warnings and raw samples
as stored, its machine's environment); its cell_id becomes the record's digest. Nothing is dropped
before it has been copied, all in the migration's one transaction.

Revision ID: 0002
Revises: 0001
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def upgrade():
    from dnnbench.store.legacy import legacy_record

    conn = op.get_bind()
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("record", sa.JSON, nullable=True))
        batch.add_column(sa.Column("hostname", sa.String(255), nullable=True))
    runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("cell_id", sa.String), sa.column("record", sa.JSON))
    envs = {fp: _json(info) for fp, info in conn.execute(sa.text("SELECT fingerprint, info FROM environments"))}
    metrics: dict = {}
    for run_id, name, value, note in conn.execute(sa.text("SELECT run_id, name, value, note FROM metrics")):
        m, n = metrics.setdefault(run_id, ({}, {}))
        m[name] = value
        if note:
            n[name] = note
    samples: dict = {}
    for run_id, name, values in conn.execute(sa.text('SELECT run_id, name, "values" FROM samples')):
        samples.setdefault(run_id, {})[name] = _json(values)
    for row in conn.execute(sa.text("SELECT * FROM runs")).mappings().all():
        row = dict(row)
        for key in ("input_shape", "config", "warnings"):
            row[key] = _json(row[key])
        m, n = metrics.get(row["id"], ({}, {}))
        rec = legacy_record(row, m, n, samples.get(row["id"], {}), envs.get(row["fingerprint"]))
        conn.execute(runs.update().where(runs.c.id == row["id"]).values(
            record=rec.to_dict(), cell_id=rec.cell_id))
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("record", existing_type=sa.JSON, nullable=False)
    op.drop_table("samples")
    op.create_table(
        "claims",
        sa.Column("cell_id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade():
    raise NotImplementedError("dnnbench stores are migrated forward only; keep a copy to go back")
