"""Bad settings said the way they were typed: one line per environment variable, exit 2.

pydantic names a field in lower case inside a 30-line report; whoever set ``PORT=81O1``
needs the variable as they spelled it, the value it has and what it accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

# The exit status of a process refused its configuration: `dormouse up` does not restart it.
EXIT_CONFIGURATION = 2

_ACCEPTS = {
    "int_parsing": "accepts a whole number",
    "int_from_float": "accepts a whole number",
    "float_parsing": "accepts a number",
    "bool_parsing": "accepts true or false",
    "string_type": "accepts text",
}


# Their values are never printed: an error line ends up in logs and terminals.
_SECRET_WORDS = ("SECRET", "TOKEN", "KEY", "PASSWORD", "_URL")


def _shown(name: str, value: object) -> str:
    if any(word in name.upper() for word in _SECRET_WORDS) and name.upper() != "PUBLIC_URL":
        return " (value not shown)"
    return f"={value!r}"


def typed_name(field: str, environ: Mapping[str, str] | None = None) -> str:
    """The environment variable of ``field`` as it was typed (settings ignore case)."""
    environ = os.environ if environ is None else environ
    for key in environ:
        if key.lower() == field.lower():
            return key
    return field.upper()


def _accepts(error: Mapping[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _ACCEPTS:
        return _ACCEPTS[kind]
    for bound, said in (("gt", "above"), ("ge", "at least"), ("lt", "below"), ("le", "at most")):
        if bound in ctx:
            return f"accepts a number {said} {ctx[bound]}"
    return str(error["msg"]).removeprefix("Value error, ")


def explain(exc: ValidationError, environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per bad setting: ``PORT='81O1': accepts a whole number``."""
    lines = []
    for error in exc.errors():
        accepts = _accepts(error)
        if not error["loc"]:  # a rule between settings: its message names them
            lines.append(accepts)
            continue
        name = typed_name(str(error["loc"][0]), environ)
        # A validator's own message may start with the name already.
        accepts = accepts.removeprefix(f"{name.upper()}: ")
        lines.append(f"{name}{_shown(name, error['input'])}: {accepts}")
    return lines
