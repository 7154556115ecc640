"""Probe agents: how far each location's numbered results are stored, so a batch sent twice is stored once.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute("CREATE TABLE IF NOT EXISTS agent_progress (location TEXT PRIMARY KEY, last_seq BIGINT NOT NULL, "
               "last_result_ms BIGINT, last_ingest_ms BIGINT NOT NULL)")
