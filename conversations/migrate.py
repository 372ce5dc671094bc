"""Run the Alembic migrations programmatically (``dormouse migrate``)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from conversations.data_dir import make_dir
from conversations.settings import Settings


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "conversations:migrations")
    # ConfigParser interpolation would choke on a % in a password.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def migrate(settings: Settings, revision: str = "head") -> None:
    if settings.effective_database_url.startswith("sqlite"):
        make_dir(settings.data_dir)
    command.upgrade(alembic_config(settings.effective_database_url), revision)
