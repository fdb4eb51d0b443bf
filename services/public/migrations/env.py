"""Alembic environment of the public service."""

from services.common.migrations import run_env
from services.public.models import Base

run_env(Base.metadata)
