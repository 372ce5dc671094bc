"""The CLI names conversations and customers by the first characters of their ids, as git
names commits: lists print 8, any unique prefix of 6 or more is taken, full UUIDs still work."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from click.testing import Result
from sqlalchemy import Engine, select

from conversations.db import session_factory, transaction
from conversations.models import Conversation, Customer
from tests.factories import ingest_sms

Cli = Callable[..., Result]


def customer_of(db: Engine, conversation_id: uuid.UUID) -> uuid.UUID:
    with session_factory(db)() as session:
        return session.get_one(Conversation, conversation_id).customer_id


def test_lists_print_eight_characters_and_show_takes_any_unique_prefix(
    db: Engine, dormouse_cli: Cli
) -> None:
    first = ingest_sms(db, "hello", sender="+14155550101").conversation_id
    second = ingest_sms(db, "hi", sender="+14155550102").conversation_id

    listed = dormouse_cli("conversations", "list")
    assert listed.exit_code == 0, listed.output
    rows = listed.output.splitlines()[1:]
    assert sorted(row.split()[0] for row in rows) == sorted([first.hex[:8], second.hex[:8]])
    assert str(first) not in listed.output

    for typed in (first.hex[:6], first.hex[:8].upper(), str(first)[:13], str(first), first.hex):
        shown = dormouse_cli("conversations", "show", typed)
        assert shown.exit_code == 0, (typed, shown.output)
        assert shown.output.startswith(f"conversation {first}: ")
        assert f"customer {customer_of(db, first)}" in shown.output


def test_a_prefix_that_names_nothing_is_one_line_saying_so(db: Engine, dormouse_cli: Cli) -> None:
    conversation_id = ingest_sms(db, "hello").conversation_id
    # The same length as the real id's prefix, differing in its first digit.
    absent = ("0" if conversation_id.hex[0] != "0" else "1") + conversation_id.hex[1:6]

    for typed, said in (
        (absent, f"no conversation starts with {absent}"),
        (conversation_id.hex[:5], "too short: give at least 6 hex digits"),
        ("zebra1", "'zebra1' is not a conversation id"),
    ):
        result = dormouse_cli("conversations", "show", typed)
        assert result.exit_code == 1
        assert said in result.output and len(result.output.strip().splitlines()) == 1


def test_an_ambiguous_prefix_names_the_matches_and_erases_nothing(
    db: Engine, dormouse_cli: Cli
) -> None:
    ids = [uuid.UUID(f"1a2b3c{n}d-0000-4000-8000-000000000000") for n in (4, 5, 6, 7)]
    with transaction(db) as session:
        session.add_all(Customer(id=i, attributes={}) for i in ids)

    result = dormouse_cli("customers", "erase", "1a2b3c", "--yes")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: 1a2b3c matches 4 customers: 1a2b3c4d…, 1a2b3c5d…, 1a2b3c6d…, …; "
        "give more characters"
    )

    result = dormouse_cli("customers", "erase", "1a2b3c-5d", "--yes")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"erased customer {ids[1]} (0 conversations)"
    with session_factory(db)() as session:
        assert list(session.scalars(select(Customer.id).order_by(Customer.id))) == [
            ids[0],
            ids[2],
            ids[3],
        ]


def test_customers_erase_asks_first_and_takes_everything(db: Engine, dormouse_cli: Cli) -> None:
    conversation_id = ingest_sms(db, "please forget me").conversation_id
    customer_id = customer_of(db, conversation_id)

    declined = dormouse_cli("customers", "erase", customer_id.hex[:8], input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert dormouse_cli("conversations", "show", conversation_id.hex[:8]).exit_code == 0

    erased = dormouse_cli("customers", "erase", customer_id.hex[:8], input="y\n")
    assert erased.exit_code == 0, erased.output
    assert f"erase customer {customer_id} and their 1 conversation?" in erased.output
    assert erased.output.strip().endswith(f"erased customer {customer_id} (1 conversation)")
    gone = dormouse_cli("conversations", "show", conversation_id.hex[:8])
    assert gone.output.strip() == f"Error: no conversation starts with {conversation_id.hex[:8]}"
