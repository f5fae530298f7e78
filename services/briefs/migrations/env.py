"""Alembic environment for briefs."""

from services.briefs.models import metadata
from shared.migrations import run_env

run_env(metadata)
