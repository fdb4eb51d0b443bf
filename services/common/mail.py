"""Outgoing email: SMTP when HYDRA_SMTP_URL is set, else a maildir under the data dir."""

from __future__ import annotations

import asyncio
import mailbox
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Email:
    """One message; message_id is stable per event so a resend can be recognised downstream."""

    to: str
    subject: str
    body: str
    message_id: str


class Mailer(Protocol):
    """Sends an email or raises."""

    async def send(self, email: Email) -> None: ...


def _message(email: Email, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    message.set_content(email.body)
    return message


class SmtpMailer:
    """Delivers through an SMTP relay (smtp://host:port)."""

    def __init__(self, url: str, *, sender: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "smtp" or not parts.hostname:
            raise ValueError(f"HYDRA_SMTP_URL must look like smtp://host:port, got {url!r}")
        self._host, self._port = parts.hostname, parts.port or 25
        self._sender = sender
        self._timeout = timeout

    async def send(self, email: Email) -> None:
        await asyncio.to_thread(self._send, _message(email, self._sender))

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            smtp.send_message(message)


class MaildirMailer:
    """The embedded default: each message becomes a file in a maildir."""

    def __init__(self, directory: Path, *, sender: str) -> None:
        # Several services open the same maildir at start-up: create it race-free before Maildir looks.
        for sub in ("tmp", "new", "cur"):
            (Path(directory) / sub).mkdir(parents=True, exist_ok=True)
        self._box = mailbox.Maildir(directory, create=False)
        self._sender = sender

    async def send(self, email: Email) -> None:
        await asyncio.to_thread(self._box.add, _message(email, self._sender))
