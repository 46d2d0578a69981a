"""Small helpers for HTMX requests: partial rendering and the Vary header."""

from __future__ import annotations

from flask import Response, render_template, request


def is_htmx() -> bool:
    """True when the request was made by htmx (and not a history-restore full load)."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get(
        "HX-History-Restore-Request"
    )


def render(page_template: str, partial_template: str, **context) -> str:
    """Render the partial alone for htmx, the full page otherwise (the page includes it)."""
    return render_template(partial_template if is_htmx() else page_template, **context)


def add_vary(response: Response) -> Response:
    """Caches must not serve a partial for a full page or the other way round."""
    response.vary.add("HX-Request")
    return response
