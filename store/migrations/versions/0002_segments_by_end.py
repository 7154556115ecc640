"""Segments indexed by their end: a month report reads every service's stored segments of the month at once.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS segments_by_end ON segments (end_ms)")
