"""Migrations run down and up again on the backend under test."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from conversations.db import make_engine
from conversations.migrate import alembic_config, migrate
from conversations.models import Base
from conversations.settings import Settings
from tests.conftest import Backend


def test_downgrade_to_base_and_upgrade_to_head(migrated: Backend) -> None:
    settings = Settings(data_dir=migrated.data_dir, database_url=migrated.database_url)
    cfg = alembic_config(migrated.database_url)
    command.downgrade(cfg, "base")
    engine = make_engine(migrated.database_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(settings)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migrations_create_exactly_what_the_models_declare(migrated: Backend) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(migrated.database_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
