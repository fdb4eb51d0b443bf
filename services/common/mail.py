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

from services.common.events.faults import PermanentError, Transient, Unreachable

# Every character that could end or break a header line, or that has no place in one: the C0 and C1
# controls, DEL, and the separators str.splitlines() breaks on (the email package folds with it).
_UNFIT_IN_HEADER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# The same in a body, but for tab and the line breaks a body may hold.
_UNFIT_IN_BODY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATES = re.compile("[\ud800-\udfff]")  # lone halves of a pair: no encoding can write them
_SPACES = re.compile(r"\s+")
_MAX_LINE = 998  # RFC 5322: longer lines must be encoded
# The envelope addresses mail can go to: an ASCII dot-atom local part (no SMTPUTF8) at a host name.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
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
        super().__init__(f"{sent} sent, then {type(cause).__name__}")  # never the text: it names people
        self.sent = sent
        self.cause = cause


class InvalidAddress(PermanentError):
    """The recipient is not an address mail can be sent to (no relay would take it)."""


class Unrenderable(PermanentError):
    """The message could not be written out (a value no encoding can carry)."""


class MailRefused(PermanentError):
    """The relay refused this message for good (a 5xx reply): sending it again cannot help."""


class MailDeferred(Transient):
    """The relay cannot take this message now (a 4xx reply): it is tried again later."""


class Mailer(Protocol):
    """Delivers emails in order, raising MailNotSent at the first one that fails."""

    async def send(self, emails: Sequence[Email]) -> None: ...


def _printable(value: str) -> str:
    """The text with each lone surrogate (which no encoding can write) replaced by U+FFFD."""
    return _SURROGATES.sub("\ufffd", value)


def _header(value: str) -> str:
    """A header value on one line whatever the user typed: every control character and line separator
    becomes a space, and the value is RFC 2047-encoded when not ASCII. It is encoded, never parsed."""
    value = _SPACES.sub(" ", _UNFIT_IN_HEADER.sub(" ", _printable(value))).strip()
    return value if value.isascii() else Header(value, "utf-8").encode()


def _body(value: str) -> str:
    """The body with the control characters a text message cannot carry replaced by spaces."""
    return _UNFIT_IN_BODY.sub(" ", _printable(value))


def envelope_address(value: str) -> str:
    """The address as it goes on the envelope and in To: (an internationalised host name in its ASCII
    form); InvalidAddress when it is not one a relay could take."""
    local, at, host = value.strip().rpartition("@")
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise InvalidAddress("the host name cannot be encoded") from None
    labels = ascii_host.split(".")
    if not (
        at
        and len(local) <= 64
        and _LOCAL_PART.fullmatch(local)
        and len(ascii_host) <= 253
        and len(labels) >= 2
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
    ):
        raise InvalidAddress("not an address mail can be sent to")
    return f"{local}@{ascii_host}"


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
    body = _body(email.body)
    if _plain_ascii(body):
        lines = [f"{name}: {value}" for name, value in headers.items()]
        if all(len(line) <= _FOLD_AT for line in lines):
            return ("\n".join(lines) + "\n" + _PLAIN_TAIL + body).encode("ascii")
    return render_mime(headers, body)


def _plain_ascii(body: str) -> bool:
    """Whether the body goes as it is: ASCII, no carriage returns, no line longer than RFC 5322 allows."""
    return body.isascii() and "\r" not in body and max(map(len, body.split("\n"))) <= _MAX_LINE


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
    # Quoted-printable for anything but short ASCII lines: it also wraps lines too long to send.
    seven_bit = body.isascii() and max(map(len, body.splitlines() or [""])) <= _MAX_LINE
    message.set_payload(body, "us-ascii" if seven_bit else _UTF8_QP)
    return message.as_bytes()


def prepared(email: Email, sender: str) -> tuple[str, bytes]:
    """The envelope recipient and the rendered message; a permanent error when either cannot be made."""
    to = envelope_address(email.to)
    try:
        return to, render(Email(to, email.subject, email.body, email.message_id), sender)
    except Exception as error:  # rendering is deterministic: the same message would fail every time
        raise Unrenderable(type(error).__name__) from error


def _send_each(emails: Sequence[Email], send_one: Callable[[Email], object]) -> None:
    """Calls send_one for each email in order; MailNotSent tells how far it got."""
    for sent, email in enumerate(emails):
        try:
            send_one(email)
        except Exception as error:
            raise MailNotSent(sent, error) from error


def _refusal(error: smtplib.SMTPException) -> Exception:
    """What an SMTP reply refusing a message means for it: 5xx for good, 4xx for now."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code = min((reply[0] for reply in error.recipients.values()), default=0)
    elif isinstance(error, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        code = error.smtp_code
    else:
        return error  # no reply about this message (the connection failed): an outage
    label = f"{type(error).__name__} {code}"
    if 500 <= code < 600:
        return MailRefused(label)
    if 400 <= code < 500:
        return MailDeferred(label)
    return error


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
            raise MailNotSent(0, Unreachable(error)) from error
        with smtp:
            _send_each(emails, lambda email: self._send_one(smtp, email))

    def _send_one(self, smtp: smtplib.SMTP, email: Email) -> None:
        to, message = prepared(email, self._sender)
        try:
            smtp.sendmail(self._envelope_sender, [to], message)
        except smtplib.SMTPException as error:
            refusal = _refusal(error)
            if refusal is error:
                raise
            raise refusal from error


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
        _, message = prepared(email, self._sender)  # before any file exists: a failure leaves none
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6)}{self._unique.format(next(self._count))}"
        temporary = self._dir / "tmp" / name
        try:
            with open(temporary, "xb") as file:
                file.write(message)
                if self._fsync:
                    file.flush()
                    os.fsync(file.fileno())
            os.rename(temporary, self._dir / "new" / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
