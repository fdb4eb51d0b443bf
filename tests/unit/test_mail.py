"""Outgoing email: one line per header whatever the user typed, readable bodies, usable addresses."""

from __future__ import annotations

import asyncio
import email
import re
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import mail
from services.common.mail import (
    Email,
    InvalidAddress,
    MaildirMailer,
    MailNotSent,
    envelope_address,
    message_headers,
    prepared,
    render,
    render_mime,
)

SENDER = "Hydra <no-reply@hydra.localhost>"


def parsed(message: Email) -> email.message.Message:
    return email.message_from_bytes(render(message, SENDER))


def test_ascii_message_is_plain_seven_bit() -> None:
    mail = parsed(Email("a@example.com", "We received your request: Help", "Ticket: 42\n", "<1@hydra>"))
    assert mail["From"] == SENDER and mail["To"] == "a@example.com" and mail["Message-ID"] == "<1@hydra>"
    assert mail["Subject"] == "We received your request: Help"
    assert mail.get_content_charset() == "us-ascii" and mail.get_payload() == "Ticket: 42\n"


def test_line_breaks_in_user_text_cannot_add_headers() -> None:
    mail = parsed(Email("a@example.com", "Help\r\nBcc: victim@example.com\n", "x\n", "<2@hydra>"))
    assert mail["Bcc"] is None
    assert mail["Subject"] == "Help Bcc: victim@example.com"


def test_non_ascii_subject_and_body_round_trip() -> None:
    mail = parsed(Email("a@example.com", "Ça ne marche pas — 助けて", "Grüße, ticket 7\n", "<3@hydra>"))
    assert str(make_header(decode_header(mail["Subject"]))) == "Ça ne marche pas — 助けて"
    assert mail.get_payload(decode=True).decode(mail.get_content_charset()) == "Grüße, ticket 7\n"
    assert b"ticket 7" in mail.get_payload().encode()  # quoted-printable keeps ASCII readable


@pytest.mark.parametrize(
    ("message", "direct"),
    [
        (Email("a@example.com", "We received your request: Help", "Ticket: 42\n", "<1@hydra>"), True),
        (Email("a@example.com", "Subject", "", "<2@hydra>"), True),
        (Email("a@example.com", "Line\nbreak", "no trailing newline", "<3@hydra>"), True),
        (Email("a@example.com", "x" * 69, "From here on\n\n.\n", "<4@hydra>"), True),  # 78: kept
        (Email("a@example.com", "x" * 70, "long subject\n", "<5@hydra>"), False),  # 79: folded
        (Email("a@example.com", "Grüße", "ascii body\n", "<6@hydra>"), True),  # encoded, short
        (Email("a@example.com", "Subject", "Grüße\n", "<7@hydra>"), False),
        (Email("a@example.com", "Subject", "crlf\r\nbody\r\n", "<8@hydra>"), False),
        (Email("a@example.com", "Subject", "y" * 999 + "\n", "<9@hydra>"), False),
    ],
)
def test_the_direct_rendering_is_byte_for_byte_the_email_packages(
    message: Email, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = render_mime(message_headers(message, SENDER), message.body)
    if direct:  # written out without the email package
        monkeypatch.setattr(mail, "render_mime", None)
    assert render(message, SENDER) == expected


# Every character that ends or breaks a line somewhere (str.splitlines, RFC 5322) or has no place in text.
HOSTILE = "\v\f\x00\x01\x1b\x1c\x1d\x1e\x1f\x7f\x85\x9f\u2028\u2029\r\n\t\ud800\udfff"
hostile_text = st.text(st.one_of(st.characters(), st.sampled_from(HOSTILE)), max_size=300)
STANDARD_HEADERS = [
    "From",
    "To",
    "Subject",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
]


def subject_of(message: email.message.Message) -> str:
    """The Subject as a reader sees it: unfolded (RFC 5322), then decoded (RFC 2047)."""
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", message["Subject"])
    return str(make_header(decode_header(unfolded))).strip()


@pytest.mark.parametrize("breaker", list(HOSTILE))
@pytest.mark.parametrize("padding", [0, 80])  # short: written out directly; long: folded by the email package
def test_no_character_in_a_subject_can_break_the_header_or_rendering(breaker: str, padding: int) -> None:
    subject = "x" * padding + f"Help{breaker}Bcc: victim@example.com"
    mail = parsed(Email("a@example.com", subject, f"body{breaker}end\n", "<h@hydra>"))
    assert mail.keys() == STANDARD_HEADERS
    assert subject_of(mail).replace("\ufffd", " ") == "x" * padding + "Help Bcc: victim@example.com"


@settings(max_examples=300, deadline=None)
@given(subject=hostile_text, body=hostile_text, to=hostile_text)
def test_rendering_never_raises_and_user_text_never_adds_a_header(subject: str, body: str, to: str) -> None:
    raw = render(Email(to, subject, body, "<h@hydra>"), SENDER)
    mail = email.message_from_bytes(raw)
    assert mail.keys() == STANDARD_HEADERS
    assert all(len(line) <= 998 for line in raw.split(b"\n"))
    shown = subject_of(mail)
    assert not any(c in shown for c in HOSTILE)
    assert body.strip() == "" or mail.get_payload(decode=True)  # the body is there


def test_a_body_loses_only_the_characters_a_text_message_cannot_carry() -> None:
    mail = parsed(
        Email("a@example.com", "S", "line one\tcol\nnul\x00here\vtab\ud800\n" + "z" * 1200, "<b@h>")
    )
    text = mail.get_payload(decode=True).decode(mail.get_content_charset())
    assert text == "line one\tcol\nnul here tab\ufffd\n" + "z" * 1200
    assert mail["Content-Transfer-Encoding"] == "quoted-printable"  # the long line is wrapped


@pytest.mark.parametrize(
    ("address", "envelope"),
    [
        ("alice@example.com", "alice@example.com"),
        (" o'brien+tag@mail.example.co.uk ", "o'brien+tag@mail.example.co.uk"),
        ("bob@bücher.example", "bob@xn--bcher-kva.example"),
    ],
)
def test_addresses_mail_can_go_to(address: str, envelope: str) -> None:
    assert envelope_address(address) == envelope


@pytest.mark.parametrize(
    "address",
    [
        "",
        "no-at-sign",
        "a@localhost",
        "bad<>@example.com",
        "two@at@example.com",
        "a@example.com\r\nBcc: victim@example.com",
        "a\v@example.com",
        "a@exa\x00mple.com",
        "josé@example.com",  # needs SMTPUTF8, which is not spoken
        "a@-example.com",
        "a..b@example.com",
        "a" * 65 + "@example.com",
        "a@" + "b" * 64 + ".com",
        "\ud800@example.com",
    ],
)
def test_addresses_no_relay_would_take_are_permanent_errors(address: str) -> None:
    with pytest.raises(InvalidAddress):
        prepared(Email(address, "S", "b", "<i@h>"), SENDER)


@settings(max_examples=300, deadline=None)
@given(hostile_text)
def test_an_address_is_either_usable_or_invalid_never_anything_else(address: str) -> None:
    try:
        envelope = envelope_address(address)
    except InvalidAddress:
        return
    assert envelope.isascii() and envelope.count("@") == 1 and not any(c in envelope for c in HOSTILE + " <>")


def test_a_maildir_message_that_cannot_be_sent_leaves_no_file(tmp_path: Path) -> None:
    mailer = MaildirMailer(tmp_path, sender=SENDER)
    emails = [Email("ok@example.com", "S", "b", "<1@h>"), Email("bad<>@example.com", "S", "b", "<2@h>")]
    with pytest.raises(MailNotSent) as failed:
        asyncio.run(mailer.send(emails))
    assert failed.value.sent == 1 and isinstance(failed.value.cause, InvalidAddress)
    assert list((tmp_path / "tmp").iterdir()) == [] and len(list((tmp_path / "new").iterdir())) == 1
