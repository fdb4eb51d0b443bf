"""Alembic environment of the gatekeeper."""

from edge.gatekeeper.models import Base
from services.common.migrations import run_env

run_env(Base.metadata)
