"""Precision "int8" of earlier dnnbench was dynamic quantization of the linear layers: it becomes "int8-dynamic".

"int8" now means static int8 calibrated on sample inputs, convolutions included. A stored cell measured as
"int8" is renamed in its record (spec, runtime info), its columns, and its cell_id (the digest of the renamed
spec, so that a study asking for int8-dynamic finds it), in the migration's one transaction. Nothing else
changes.

Revision ID: 0003
Revises: 0002
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def upgrade():
    from dnnbench.core.record import rename_dynamic_int8

    conn = op.get_bind()
    runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("cell_id", sa.String),
                    sa.column("precision", sa.String), sa.column("config", sa.JSON), sa.column("record", sa.JSON))
    rows = conn.execute(sa.select(runs.c.id, runs.c.record).where(runs.c.precision == "int8")).all()
    for run_id, record in rows:
        doc = rename_dynamic_int8(_json(record))
        conn.execute(runs.update().where(runs.c.id == run_id).values(
            record=doc, cell_id=doc["cell_id"], precision="int8-dynamic", config=doc["spec"]))
    claims = sa.table("claims", sa.column("cell_id", sa.String))
    if rows:  # a lease on an old id would never be released by its (old) owner
        conn.execute(claims.delete())


def downgrade():
    raise NotImplementedError("dnnbench stores are migrated forward only; keep a copy to go back")
