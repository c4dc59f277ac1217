"""Delivery of the editions by e-mail (`scantrace report send`): who gets which edition
(a recipients CSV), the messages (the edition as PDF, its HTML attached), and the SMTP
connection (STARTTLS and login when set)."""

from __future__ import annotations

import csv
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

from tracing.report.editions import parse_edition
from tracing.report.settings import SmtpOptions


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    edition: tuple[str, str]  # ("", "") for the province edition


def read_recipients(path: Path) -> list[Recipient]:
    """`email,edition` (UTF-8, a BOM allowed; edition `province` or `agency=NAME`, ...);
    ValueError with the line number when a line is not one."""
    out: list[Recipient] = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [c.strip().lower() for c in next(reader, [])]
        if header[:2] != ["email", "edition"]:
            raise ValueError(f"{path.name}: the header must be email,edition")
        for line, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            if len(row) < 2 or "@" not in row[0] or any(c in row[0] for c in "\r\n,;<> "):
                raise ValueError(f"{path.name} line {line}: expected email,edition")
            try:
                edition = parse_edition(row[1])
            except ValueError as exc:
                raise ValueError(f"{path.name} line {line}: {exc}") from None
            out.append(Recipient(row[0].strip(), edition))
    if not out:
        raise ValueError(f"{path.name}: no recipient")
    return out


def build_message(
    sender: str,
    to: str,
    subject: str,
    body: str,
    attachments: Sequence[tuple[str, bytes, str]],
) -> EmailMessage:
    """A message with a text body and (file name, bytes, MIME type) attachments."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg.set_content(body)
    for name, data, mime in attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


class Mailer(Protocol):
    def send(self, messages: Sequence[EmailMessage]) -> None: ...


class SmtpMailer:
    """One SMTP session for all the messages: STARTTLS (verified against the system's CA
    store) and login when the settings ask for them."""

    def __init__(self, options: SmtpOptions) -> None:
        if not options.host:
            raise ValueError("no SMTP server: set SCANTRACE_REPORT__SMTP__HOST")
        if not options.sender:
            raise ValueError("no sender address: set SCANTRACE_REPORT__SMTP__SENDER")
        self.options = options

    def send(self, messages: Sequence[EmailMessage]) -> None:
        o = self.options
        with smtplib.SMTP(o.host, o.port, timeout=o.timeout_s) as smtp:
            smtp.ehlo()
            if o.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if o.user:
                smtp.login(o.user, o.password.get_secret_value())
            for msg in messages:
                smtp.send_message(msg)
