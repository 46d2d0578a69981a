"""Money documents in a real browser (issue 20): a customer opens the invoice of a paid
order and of a refund the credit note, and downloads both as PDFs whose text states the
number, the amount and the currency."""

from __future__ import annotations

import io
import re

from playwright.sync_api import Page, expect
from pypdf import PdfReader

from portal.models_base import utcnow
from tests.e2e.test_checkout_flow import sign_in
from tests.e2e.test_refunds_flow import order, paid_in_the_sandbox  # noqa: F401 - fixture
from tests.helpers import committed

YEAR = utcnow().year


def downloaded_text(page: Page, link: str) -> str:
    with page.expect_download() as download:
        page.get_by_role("link", name=link).click()
    assert download.value.suggested_filename.endswith(".pdf")
    reader = PdfReader(io.BytesIO(download.value.path().read_bytes()))
    return "\n".join(p.extract_text() for p in reader.pages)


def test_a_customer_downloads_the_invoice_and_the_credit_note(
        page: Page, order, live):  # noqa: F811 - the fixture
    from portal.auth.services import find_user
    from portal.refunds import services as refunds

    _, payment = paid_in_the_sandbox(order, live)
    with committed():
        refunds.refund_now(find_user("boss@example.test"), payment, amount=2500,
                           reason="other", notes=None)
    sign_in(page, order["email"])
    page.goto(f"/payments/{payment.id}")
    page.get_by_role("link", name=f"Invoice INV-{YEAR}-000001").click()
    expect(page.get_by_role("heading", name=f"Invoice INV-{YEAR}-000001")).to_be_visible()
    expect(page.get_by_role("table", name="Items invoiced")).to_contain_text("$100.00")
    text = downloaded_text(page, "Download the PDF")
    assert f"Invoice INV-{YEAR}-000001" in text and "$100.00" in text and "USD" in text

    page.go_back()
    page.get_by_role("link", name=re.compile(f"Credit note CN-{YEAR}-000001")).click()
    expect(page.get_by_role("heading", name=f"Credit note CN-{YEAR}-000001")).to_be_visible()
    text = downloaded_text(page, "Download the PDF")
    assert f"Credit note CN-{YEAR}-000001" in text and "$25.00" in text
    assert f"Invoice INV-{YEAR}-000001" in text
