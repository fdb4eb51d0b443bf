"""Rendering of outgoing email: one line per header whatever the user typed, readable bodies."""

from __future__ import annotations

import email
from email.header import decode_header, make_header

import pytest

from services.common import mail
from services.common.mail import Email, message_headers, render, render_mime

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
