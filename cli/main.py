"""``dormouse``: run Dormouse (all in one, or each part alone) and look at what it holds.

The group is ``cli/root.py``; each module below adds its verbs to it.
"""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from cli import processes, records, simulate  # noqa: F401 - they add their commands
from cli.operators import operators
from cli.root import cli
from cli.timeouts import timeouts
from cli.webhooks import webhooks
from conversations.settings import get_settings
from conversations.settings_errors import EXIT_CONFIGURATION, explain

cli.add_command(timeouts)
cli.add_command(operators)
cli.add_command(webhooks)


def main() -> None:
    from sqlalchemy.exc import OperationalError

    try:
        cli(prog_name="dormouse")
    except ValidationError as exc:
        for line in explain(exc):
            click.echo(f"dormouse: {line}", err=True)
        sys.exit(EXIT_CONFIGURATION)
    except OperationalError as exc:
        # Most often: run from another directory, so the default DATA_DIR (./var) is not
        # the one `make up` uses. Say where we looked instead of a page of traceback.
        settings = get_settings()
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
        click.echo(
            f"dormouse: cannot use the database {settings.effective_database_url} "
            f"(DATA_DIR={settings.data_dir}): {reason}. Run from the directory `make up` runs "
            "in, or set DATA_DIR / DATABASE_URL.",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
