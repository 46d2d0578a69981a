"""A document's PDF: the same Jinja body as its page, in documents/pdf.html, by WeasyPrint
(the only module that imports it). Nothing is fetched while rendering: the documents link no
image, font or stylesheet, and a URL that a stored fact might smuggle in is refused."""

from __future__ import annotations

from flask import render_template
from weasyprint import HTML


def _no_fetching(url: str, *args, **kwargs):
    raise ValueError(f"documents fetch nothing ({url[:80]})")


def render(body: str, title: str, **context) -> bytes:
    """The PDF of ``body`` (a template under documents/) with ``context``."""
    html = render_template("documents/pdf.html", body=body, title=title, **context)
    return HTML(string=html, url_fetcher=_no_fetching).write_pdf()
