"""The API reference in a real browser (issue 19, item 4): an admin follows the navigation's
link and reads the refund endpoint in Swagger UI, loaded from the portal's own static files,
with the example of its request and of each response (the error shape included) and its
Markdown rendered; nothing is logged as an error and no request leaves 127.0.0.1 (the
portal's CSP unchanged: a blocked request would be a console error)."""

from __future__ import annotations

from urllib.parse import urlparse

from playwright.sync_api import Page, expect

from tests.e2e.test_refunds_flow import staff_sign_in
from tests.helpers import make_user


def watched(page: Page) -> tuple[list[str], list[str]]:
    """Console errors and uncaught exceptions; requests that are not to 127.0.0.1."""
    problems: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    def request(r):
        url = urlparse(r.url)
        if url.scheme != "data" and url.hostname != "127.0.0.1":
            outside.append(r.url)

    page.on("request", request)
    return problems, outside


def test_an_admin_reads_the_refund_endpoint_with_its_examples(page: Page, app_ctx, live):
    make_user("boss@example.test", "admin")
    problems, outside = watched(page)
    staff_sign_in(page, "boss@example.test", "admin")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API reference").click()
    expect(page.get_by_role("heading", name="API reference", level=1)).to_be_visible()
    refund = page.get_by_role("button", name="POST /api/payments/refund Process refund")
    refund.click()
    expect(refund).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("main")).to_have_count(1)  # the viewer's own <main> is a region

    # The description's Markdown: `amount` is code, not text between backticks.
    description = page.get_by_role("paragraph").filter(has_text="Admins only.")
    expect(description.get_by_role("code")).to_have_text(["amount", "items"])
    expect(description).not_to_contain_text("`")

    # The request's example, then a success and an error response, each with its example.
    request_example = page.get_by_role("tabpanel", name="Example Value").first
    expect(request_example).to_contain_text('"paymentId": "3f6c9a1e-')
    expect(request_example).to_contain_text('"amount": 5000')
    responses = page.get_by_role("row")
    expect(responses.filter(has_text="OK").filter(has_text='"refund"')).to_contain_text(
        '"status": "succeeded"')
    not_refundable = responses.filter(has_text="Invalid request")
    expect(not_refundable).to_contain_text('"success": false')
    expect(not_refundable).to_contain_text('"code": "invalid_refund_amount"')

    # On a phone the reference fits the screen (what is wider scrolls inside it).
    page.set_viewport_size({"width": 390, "height": 844})
    expect(refund).to_be_visible()
    box = refund.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390

    assert problems == []
    assert outside == []
