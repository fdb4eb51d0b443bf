"""Outgoing email: SMTP when HYDRA_SMTP_URL is set, else a maildir under the data dir."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import smtplib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.utils import parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # non-ASCII bodies stay readable, unlike base64


@dataclass(frozen=True)
class Email:
    """One message; message_id is stable per event so a resend can be recognised downstream."""

    to: str
    subject: str
    body: str
    message_id: str


class MailNotSent(Exception):
    """Sending stopped at one email of a batch; the `sent` emails before it were delivered."""

    def __init__(self, sent: int, cause: Exception) -> None:
        super().__init__(f"{sent} sent, then {type(cause).__name__}: {cause}")
        self.sent = sent
        self.cause = cause


class Mailer(Protocol):
    """Delivers emails in order, raising MailNotSent at the first one that fails."""

    async def send(self, emails: Sequence[Email]) -> None: ...


def _header(value: str) -> str:
    """A header value on one line (user text may hold line breaks), RFC 2047-encoded when not ASCII."""
    value = _LINE_BREAKS.sub(" ", value).strip()
    return value if value.isascii() else Header(value, "utf-8").encode()


_FOLD_AT = 78  # compat32 folds header lines longer than this
_PLAIN_TAIL = (
    'MIME-Version: 1.0\nContent-Type: text/plain; charset="us-ascii"\nContent-Transfer-Encoding: 7bit\n\n'
)


def render(email: Email, sender: str) -> bytes:
    """The message as sent, byte for byte what the compat32 policy makes of it.

    Short ASCII messages (every confirmation of a short title) are written out directly, at about a
    tenth of the email package's cost; anything that needs encoding or folding goes through it.
    """
    headers = message_headers(email, sender)
    body = email.body
    if body.isascii() and "\r" not in body and max(map(len, body.split("\n"))) <= 998:
        lines = [f"{name}: {value}" for name, value in headers.items()]
        if all(len(line) <= _FOLD_AT for line in lines):
            return ("\n".join(lines) + "\n" + _PLAIN_TAIL + body).encode("ascii")
    return render_mime(headers, body)


def message_headers(email: Email, sender: str) -> dict[str, str]:
    """The headers of a message, each value on one line and RFC 2047-encoded when not ASCII."""
    return {
        "From": _header(sender),
        "To": _header(email.to),
        "Subject": _header(email.subject),
        "Message-ID": _header(email.message_id),
    }


def render_mime(headers: dict[str, str], body: str) -> bytes:
    """The message built by the email package (compat32 policy: ~1/30 of EmailMessage's cost)."""
    message = Message()
    for name, value in headers.items():
        message[name] = value
    message.set_payload(body, "us-ascii" if body.isascii() else _UTF8_QP)
    return message.as_bytes()


def _send_each(emails: Sequence[Email], send_one: Callable[[Email], object]) -> None:
    """Calls send_one for each email in order; MailNotSent tells how far it got."""
    for sent, email in enumerate(emails):
        try:
            send_one(email)
        except Exception as error:
            raise MailNotSent(sent, error) from error


class SmtpMailer:
    """Delivers through an SMTP relay (smtp://host:port), one connection per batch."""

    def __init__(self, url: str, *, sender: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "smtp" or not parts.hostname:
            raise ValueError(f"HYDRA_SMTP_URL must look like smtp://host:port, got {url!r}")
        self._host, self._port = parts.hostname, parts.port or 25
        self._sender = sender
        self._envelope_sender = parseaddr(sender)[1]
        self._timeout = timeout

    async def send(self, emails: Sequence[Email]) -> None:
        await asyncio.to_thread(self._send, emails)

    def _send(self, emails: Sequence[Email]) -> None:
        try:
            smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        except Exception as error:
            raise MailNotSent(0, error) from error
        with smtp:
            _send_each(
                emails,
                lambda email: smtp.sendmail(self._envelope_sender, [email.to], render(email, self._sender)),
            )


class MaildirMailer:
    """The embedded default: each message becomes a file in a maildir (tmp/ first, then renamed into new/).

    With `fsync` off a crash can lose mail already counted as sent: for stacks whose database runs
    without fsync too (the benchmarks), where the per-message flush would cost more than the rest.
    """

    def __init__(self, directory: Path, *, sender: str, fsync: bool = True) -> None:
        self._dir = Path(directory)
        # Several services open the same maildir at start-up: creating it must not race.
        for sub in ("tmp", "new", "cur"):
            (self._dir / sub).mkdir(parents=True, exist_ok=True)
        self._sender = sender
        self._fsync = fsync
        self._unique = f"P{os.getpid()}Q{{}}.{socket.gethostname().replace('/', '_').replace(':', '_')}"
        self._count = itertools.count()

    async def send(self, emails: Sequence[Email]) -> None:
        await asyncio.to_thread(_send_each, emails, self._deliver)

    def _deliver(self, email: Email) -> None:
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6)}{self._unique.format(next(self._count))}"
        temporary = self._dir / "tmp" / name
        with open(temporary, "xb") as file:
            file.write(render(email, self._sender))
            if self._fsync:
                file.flush()
                os.fsync(file.fileno())
        os.rename(temporary, self._dir / "new" / name)
