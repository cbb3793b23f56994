"""Initial schema: environments, runs, metrics, samples.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "environments",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("info", sa.JSON, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "runs",
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
    )
    op.create_index("ix_runs_model_batch", "runs", ["model_ref", "batch_size"])
    op.create_table(
        "metrics",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Float),
        sa.Column("note", sa.Text),
    )
    op.create_table(
        "samples",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("values", sa.JSON, nullable=False),
    )


def downgrade():
    for table in ("samples", "metrics", "runs", "environments"):
        op.drop_table(table)
