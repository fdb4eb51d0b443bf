"""Alembic environment of the workflows service."""

from services.common.migrations import run_env
from services.workflows.models import Base

run_env(Base.metadata)
