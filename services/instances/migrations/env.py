"""Alembic environment of the instances service."""

from services.common.migrations import run_env
from services.instances.models import Base

run_env(Base.metadata)
