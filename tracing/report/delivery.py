"""`scantrace report send`: each recipient's edition rendered once, printed to PDF, and
mailed with its HTML attached; or, in a dry run, the list of what would be sent."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from email.message import EmailMessage

from tracing.report.editions import edition, file_stem
from tracing.report.html_sections import edition_name
from tracing.report.i18n import Labels, Lang
from tracing.report.mail import Mailer, Recipient, SmtpMailer, build_message
from tracing.report.model import Report
from tracing.report.settings import ReportOptions
from tracing.report.text import document_title


def _files(report: Report, unit: tuple[str, str]) -> tuple[str, str]:
    stem = f"scantrace-report-{report.period.label}"
    if unit[0]:
        stem += f"-{file_stem(*unit)}"
    return f"{stem}.pdf", f"{stem}.html"


def messages(
    report: Report,
    recipients: Sequence[Recipient],
    options: ReportOptions,
    lang: Lang,
    render: bool = True,
) -> list[tuple[Recipient, str, EmailMessage | None]]:
    """(recipient, subject, message) for each recipient; no message when not `render`
    (a dry run still checks that every edition exists)."""
    from tracing.report.pdf import html_to_pdf
    from tracing.report.render_html import render_html

    labels = Labels(lang)
    made: dict[tuple[str, str], list[tuple[str, bytes, str]]] = {}
    out: list[tuple[Recipient, str, EmailMessage | None]] = []
    for r in recipients:
        cut = edition(report, *r.edition)
        subject = f"{document_title(cut, labels)} ({edition_name(cut, labels)})"
        if not render:
            out.append((r, subject, None))
            continue
        if r.edition not in made:
            html = render_html(cut, lang)
            pdf_name, html_name = _files(report, r.edition)
            made[r.edition] = [
                (pdf_name, html_to_pdf(html, options.chromium), "application/pdf"),
                (html_name, html.encode("utf-8"), "text/html"),
            ]
        body = "\n".join(
            [subject, "", options.authority or labels("authority.default"), options.province]
        )
        sender = options.smtp.sender
        out.append((r, subject, build_message(sender, r.email, subject, body, made[r.edition])))
    return out


def deliver(
    report: Report,
    recipients: Sequence[Recipient],
    options: ReportOptions,
    lang: str,
    dry_run: bool,
    mailer: Mailer | None = None,
) -> Iterator[str]:
    """Send (or list, in a dry run) each recipient's edition; yields one line each."""
    language: Lang = "en" if lang == "en" else "vi"
    if dry_run:
        for r, subject, _ in messages(report, recipients, options, language, render=False):
            pdf, html = _files(report, r.edition)
            yield f"would send {pdf} and {html} to {r.email}: {subject}"
        return
    chosen = mailer if mailer is not None else SmtpMailer(options.smtp)
    made = messages(report, recipients, options, language)
    chosen.send([m for _, _, m in made if m is not None])
    for r, subject, _ in made:
        yield f"sent to {r.email}: {subject}"
