"""Parsing real-world-shaped mail (tests/email_corpus): what the agent and the threading see."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.mail.parse import message_key, parse_email
from conversations.errors import WebhookRejected

CORPUS = Path(__file__).parent / "email_corpus"


def parsed(name: str):  # type: ignore[no-untyped-def]
    return parse_email((CORPUS / f"{name}.eml").read_bytes())


@pytest.mark.parametrize(
    ("sample", "sender", "text"),
    [
        ("plain", "ada@example.com", "I ordered a kettle last week (order 1042)"),
        ("html_only", "grace@example.org", "My invoice shows two charges for the same month."),
        ("alternative", "alan@example.net", "send my next order to 12 Bletchley Road instead."),
        ("iso_8859_1", "francois@example.fr", "ma commande n'est pas arrivée. Où est-elle"),
        ("shift_jis", "taro@example.jp", "注文した商品がまだ届きません。"),
        ("broken_charset", "bob@example.com", "Café order, please"),
    ],
)
def test_the_readable_text_comes_out_of_every_body_shape_and_charset(
    sample: str, sender: str, text: str
) -> None:
    message = parsed(sample)
    assert message.channel == "email"
    assert message.sender == sender
    assert text in message.text
    assert message.control is None


def test_html_is_rendered_to_text_without_markup_styles_or_scripts() -> None:
    text = parsed("html_only").text
    assert "<" not in text and "color:" not in text and "alert" not in text
    assert text.startswith("Hi team,")


def test_plain_text_is_preferred_over_the_html_alternative() -> None:
    assert parsed("alternative").text == "Please send my next order to 12 Bletchley Road instead."


def test_encoded_headers_are_decoded() -> None:
    assert parsed("iso_8859_1").metadata["subject"] == "Problème de livraison"
    assert parsed("shift_jis").metadata["subject"] == "配送について"


def test_gmail_quoted_reply_and_signature_are_stripped() -> None:
    message = parsed("gmail_reply")
    assert message.text == "Great, Thursday works for me.\n\nAda"


def test_outlook_quoted_reply_is_stripped() -> None:
    text = parsed("outlook_reply").text
    assert text.startswith("Thank you, the refund arrived.")
    assert "we refunded the second charge" not in text and "Sent:" not in text


def test_threading_ids_come_nearest_first_without_angle_brackets() -> None:
    message = parsed("gmail_reply")
    assert message.provider_id == "CAF=reply.1042@mail.example.com"
    assert message.replies_to == ("OUR-FIRST-REPLY@acme.test", "CAF=plain.1042@mail.example.com")
    assert message.metadata["message_id"] == "<CAF=reply.1042@mail.example.com>"
    assert message.metadata["subject"] == "Re: Order 1042 has not arrived"


def test_attachments_are_kept_as_metadata_only() -> None:
    message = parsed("with_attachment")
    assert message.text == "The box arrived crushed, photo attached."
    assert [(a["name"], a["type"]) for a in message.metadata["attachments"]] == [
        ("box.jpg", "image/jpeg"),
        ("receipt.pdf", "application/pdf"),
    ]
    assert all(a["size"] > 0 for a in message.metadata["attachments"])
    assert "JVBER" not in str(message.metadata)  # no content kept


def test_an_out_of_office_reply_is_automatic() -> None:
    message = parsed("out_of_office")
    assert message.control == "no_reply"
    assert message.metadata["automatic"] == "Auto-Submitted: auto-replied"


def test_a_bounce_is_automatic_names_the_failed_address_and_threads_to_our_mail() -> None:
    message = parsed("bounce")
    assert message.control == "no_reply"
    assert message.undeliverable == ("gone@example.com",)
    assert "OUR-FIRST-REPLY@acme.test" in message.replies_to


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-generated", "Auto-Submitted: auto-generated"),
        ("Precedence: bulk", "Precedence: bulk"),
        ("Precedence: list", "Precedence: list"),
        ("X-Autorespond: on", "X-Autorespond header"),
    ],
)
def test_loop_headers_mark_mail_automatic(header: str, reason: str) -> None:
    raw = f"From: a@example.com\r\n{header}\r\nSubject: x\r\n\r\nbody\r\n".encode()
    assert parse_email(raw).metadata["automatic"] == reason


@pytest.mark.parametrize("sender", ["noreply@shop.example", "postmaster@example.com"])
def test_no_reply_senders_are_automatic(sender: str) -> None:
    raw = f"From: {sender}\r\nSubject: x\r\n\r\nbody\r\n".encode()
    assert parse_email(raw).control == "no_reply"


@pytest.mark.parametrize("value", ["no", "No (typed by a person)", "no; x=y"])
def test_auto_submitted_no_is_a_person(value: str) -> None:
    raw = f"From: a@example.com\r\nAuto-Submitted: {value}\r\nSubject: x\r\n\r\nbody\r\n"
    assert parse_email(raw.encode()).control is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("From: ada@example.com\r\nReturn-Path: <>", "null Return-Path"),
        ("From: noreply+orders@shop.example", "sent by noreply"),
        ("From: no-reply-billing@shop.example", "sent by no-reply-billing"),
        ("From: ada@example.com\r\nPrecedence: bulk (weekly)", "Precedence: bulk"),
        (
            "From: ada@example.com\r\nAuto-Submitted: auto-replied (vacation)",
            "Auto-Submitted: auto-replied",
        ),
    ],
)
def test_more_loop_signs(headers: str, reason: str) -> None:
    raw = f"{headers}\r\nSubject: x\r\n\r\nbody\r\n".encode()
    assert parse_email(raw).metadata["automatic"] == reason


def test_a_message_without_message_id_gets_a_stable_hash() -> None:
    raw = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    first, again = parse_email(raw), parse_email(raw)
    assert first.provider_id == again.provider_id and first.provider_id.startswith("sha256:")


def test_a_very_long_message_id_is_hashed_to_fit() -> None:
    long_id = "x" * 300 + "@example.com"
    assert message_key(f"<{long_id}>").startswith("sha256:")
    assert len(message_key(f"<{long_id}>")) <= 128


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"just some words, no headers at all", "no header fields"),
        (b"Subject: hi\r\n\r\nno sender\r\n", "no valid From"),
        (b"From: not an address\r\nSubject: x\r\n\r\nbody\r\n", "no valid From"),
    ],
)
def test_what_is_not_an_email_is_refused_naming_why(raw: bytes, reason: str) -> None:
    with pytest.raises(WebhookRejected) as refused:
        parse_email(raw)
    assert refused.value.status == 400 and reason in refused.value.reason


# Issue 16: classes of real-world mail the corpus measurement (make email-corpus) found.
# Each message below is a short one written for this test.


def plain(body: str, headers: str = "From: ada@example.com\r\nSubject: Re: order 1042") -> bytes:
    return f"{headers}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}".encode()


def test_an_icloud_vacation_reply_is_automatic() -> None:
    headers = (
        "From: ada@icloud.example\r\nSubject: Auto reply: order 1042\r\nX-Apple-Action: VACATION"
    )
    message = parse_email(plain("I am away until Monday.", headers))
    assert message.control == "no_reply"


def test_an_auto_reply_subject_alone_is_automatic_but_a_reply_to_it_is_not() -> None:
    automatic = plain("Away.", "From: ada@example.com\r\nSubject: Automatic reply: order 1042")
    answer = plain("Back now.", "From: ada@example.com\r\nSubject: Re: Automatic reply: x")
    assert parse_email(automatic).control == "no_reply"
    assert parse_email(answer).control is None


def test_a_multipart_mixed_bounce_from_post_master_is_automatic() -> None:
    raw = (
        b"From: post_master@carrier.example\r\nTo: support@acme.test\r\n"
        b"Subject: Re: your message\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nError: Invalid user address\r\n--b--\r\n"
    )
    assert parse_email(raw).control == "no_reply"


def test_a_german_schrieb_quote_header_and_its_quote_are_dropped() -> None:
    body = (
        "Danke, das passt.\n\n"
        "Support via Acme <support@acme.test> schrieb:\n"
        "> Ihre Bestellung ist unterwegs.\n"
    )
    assert parse_email(plain(body)).text == "Danke, das passt."


def test_a_quote_header_in_a_language_no_library_knows_is_dropped() -> None:
    body = 'Köszönöm!\n\n2024.05.03. 10:12 keltezéssel, "Support" írta:\n> A rendelése úton van.\n'
    assert parse_email(plain(body)).text == "Köszönöm!"


@pytest.mark.parametrize("divider", ["---Original Message---", "-----Ursprüngliche Nachricht-----"])
def test_an_original_message_divider_and_what_follows_are_dropped(divider: str) -> None:
    body = f"Yes, please cancel it.\n\n{divider}\nShall we cancel order 1042?\n"
    assert parse_email(plain(body)).text == "Yes, please cancel it."


def test_a_forward_keeps_what_was_forwarded() -> None:
    body = (
        "See below, the courier says it was delivered.\n\n"
        "---------- Forwarded message ---------\n"
        "From: Courier <track@courier.example>\n"
        "Subject: Delivered\n\n"
        "Parcel 1042 was left at the back door.\n"
    )
    text = parse_email(plain(body, "From: ada@example.com\r\nSubject: Fwd: Delivered")).text
    assert text.startswith("See below, the courier says it was delivered.")
    assert "Parcel 1042 was left at the back door." in text


def test_a_reply_written_below_the_quote_is_kept() -> None:
    body = (
        "Hi,\n"
        "On Fri, 3 May 2024 at 10:12, Support <support@acme.test> wrote:\n"
        "> Which colour would you like?\n\n"
        "The blue one, please.\n"
    )
    text = parse_email(plain(body)).text
    assert text.startswith("Hi,") and text.endswith("The blue one, please.")
    assert "Which colour" not in text


def test_a_line_with_an_address_and_a_colon_is_not_taken_for_a_quote_header() -> None:
    body = "Please write to billing@example.com:\nthe invoice for order 1042 is wrong.\n"
    assert "the invoice for order 1042 is wrong." in parse_email(plain(body)).text


def test_blank_lines_before_the_header_fields_do_not_hide_them() -> None:
    raw = (
        b"\r\n\nFrom: Ada <ada@example.com>\nTo: help@shop.test\nSubject: hi\n\n"
        b"Where is my order?\n"
    )
    message = parse_email(raw)
    assert (message.sender, message.text) == ("ada@example.com", "Where is my order?")
