"""``dormouse operators``: accounts for the console, passwords shown once or read from stdin."""

from __future__ import annotations

import re
from collections.abc import Callable

from click.testing import Result
from sqlalchemy import Engine, select

from conversations.db import session_factory, transaction
from conversations.models import Operator
from conversations.operators import verify_password


def can_sign_in(db: Engine, name: str, password: str) -> bool:
    with transaction(db) as session:
        return verify_password(session, name, password) is not None


def test_add_prints_a_password_once_that_signs_in(
    dormouse_cli: Callable[..., Result], db: Engine
) -> None:
    added = dormouse_cli("operators", "add", "ada")
    assert added.exit_code == 0, added.output
    assert "/console" in added.output
    password = re.search(r"password \(shown once, give it to ada\): (\S+)", added.output)
    assert password, added.output
    assert can_sign_in(db, "ada", password.group(1))
    with session_factory(db)() as session:
        stored = session.scalars(select(Operator.password_hash)).one()
    assert password.group(1) not in stored and stored.startswith("$argon2id$")


def test_password_stdin_list_passwd_remove(dormouse_cli: Callable[..., Result], db: Engine) -> None:
    added = dormouse_cli("operators", "add", "grace", "--password-stdin", input="first password\n")
    assert added.exit_code == 0 and "first password" not in added.output
    assert can_sign_in(db, "grace", "first password")
    assert "grace" in dormouse_cli("operators", "list").output
    changed = dormouse_cli(
        "operators", "passwd", "grace", "--password-stdin", input="second one!!\n"
    )
    assert changed.exit_code == 0, changed.output
    assert not can_sign_in(db, "grace", "first password")
    assert can_sign_in(db, "grace", "second one!!")
    assert dormouse_cli("operators", "remove", "grace").exit_code == 0
    assert "no operators" in dormouse_cli("operators", "list").output


def test_refusals_are_one_line(dormouse_cli: Callable[..., Result], db: Engine) -> None:
    assert dormouse_cli("operators", "add", "ada").exit_code == 0
    again = dormouse_cli("operators", "add", "ada")
    assert again.exit_code == 1 and "operator 'ada' exists already" in again.output
    bad = dormouse_cli("operators", "add", "Ada Lovelace")
    assert bad.exit_code == 1 and "lower-case letters" in bad.output
    short = dormouse_cli("operators", "add", "bob", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    gone = dormouse_cli("operators", "remove", "nobody")
    assert gone.exit_code == 1 and "no operator 'nobody'" in gone.output
