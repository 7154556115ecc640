"""Who approved an infrastructure exclusion: the operator console and the API record it beside the evidence.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute("ALTER TABLE exclusions ADD COLUMN approved_by TEXT NOT NULL DEFAULT ''")
