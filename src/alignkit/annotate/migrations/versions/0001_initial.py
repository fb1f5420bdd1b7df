"""The first schema: users, projects, members, items, assignments, labels.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(80), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        _created_at(),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("per_item", sa.Integer, nullable=False),
        sa.Column("guidelines", sa.Text, nullable=False),
        sa.Column("gold_threshold", sa.Float, nullable=False),
        _created_at(),
    )
    op.create_table(
        "members",
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("prompt", sa.JSON, nullable=False),
        sa.Column("responses", sa.JSON, nullable=False),
        sa.Column("gold", sa.JSON, nullable=True),
        sa.Column("extra", sa.JSON, nullable=False),
        _created_at(),
        sa.UniqueConstraint("project_id", "external_id"),
    )
    op.create_index("ix_items_project_id", "items", ["project_id"])
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("shown", sa.JSON, nullable=False),
        sa.Column("position", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _created_at(),
        sa.UniqueConstraint("item_id", "user_id"),
    )
    for column in ("project_id", "item_id", "user_id"):
        op.create_index(f"ix_assignments_{column}", "assignments", [column])
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("assignment_id", sa.Integer, sa.ForeignKey("assignments.id", ondelete="CASCADE"),
                  nullable=False, unique=True),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        _created_at(),
    )


def downgrade() -> None:
    for table in ("labels", "assignments", "items", "members", "projects", "users"):
        op.drop_table(table)
