"""``dormouse operators add|list|remove|passwd``: the people who sign in to the console."""

from __future__ import annotations

import sys

import click

from cli.supervisor import api_base
from conversations.db import get_engine, session_factory, transaction
from conversations.errors import DormouseError
from conversations.operators import (
    add_operator,
    list_operators,
    new_password,
    remove_operator,
    set_password,
)
from conversations.settings import get_settings
from conversations.types import utcnow


@click.group()
def operators() -> None:
    """Operator accounts for the console (/console)."""


def _password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated): read from stdin (first line), or a new random one."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("--password-stdin: nothing on standard input")
        return password, False
    return new_password(), True


def _console_url() -> str:
    return f"{api_base(get_settings())}/console"


@operators.command("add")
@click.argument("name")
@click.option(
    "--password-stdin", is_flag=True, help="read the password from standard input (first line)"
)
def add(name: str, password_stdin: bool) -> None:
    """Create operator NAME. Prints a generated password once (it is stored only hashed),
    unless --password-stdin gives one."""
    password, generated = _password(password_stdin)
    try:
        with transaction(get_engine()) as session:
            add_operator(session, name, password, now=utcnow())
    except DormouseError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added operator {name}; sign in at {_console_url()}")
    if generated:
        click.echo(f"password (shown once, give it to {name}): {password}")


@operators.command("list")
def list_() -> None:
    """Every operator, with when their password last changed."""
    with session_factory(get_engine())() as session:
        found = list_operators(session)
    if not found:
        click.echo("no operators: add one with `dormouse operators add NAME`")
        return
    for op in found:
        click.echo(
            f"{op.name:24} added {op.created_at:%Y-%m-%d %H:%M}Z, "
            f"password set {op.password_changed_at:%Y-%m-%d %H:%M}Z"
        )


@operators.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove operator NAME; their open sessions end at their next request."""
    try:
        with transaction(get_engine()) as session:
            remove_operator(session, name)
    except DormouseError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed operator {name}")


@operators.command("passwd")
@click.argument("name")
@click.option(
    "--password-stdin", is_flag=True, help="read the password from standard input (first line)"
)
def passwd(name: str, password_stdin: bool) -> None:
    """Give NAME a new password (generated and printed once unless --password-stdin); the
    sessions signed in with the old one end."""
    password, generated = _password(password_stdin)
    try:
        with transaction(get_engine()) as session:
            set_password(session, name, password, now=utcnow())
    except DormouseError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"new password for {name}" + (f": {password}" if generated else " set"))
