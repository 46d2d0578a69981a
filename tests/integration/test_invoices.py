"""Invoices (issue 20): issued with a paid order, once, numbered without gaps per year even
when payments succeed at the same moment; shown as issued, to their customer and admins."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from portal.documents import numbering
from portal.documents.models import Invoice
from portal.extensions import db
from portal.models_base import utcnow
from portal.payments.services import confirm_with_card, start_checkout
from tests.helpers import committed, login, make_order
from tests.integration.api_support import card_pm, pay
from tests.integration.test_refunds import mailbox  # noqa: F401 - the fixture

YEAR = utcnow().year


def invoices() -> list[Invoice]:
    return list(db.session.scalars(sa.select(Invoice).order_by(Invoice.sequence)))


def test_a_paid_order_gets_its_invoice_once_with_the_next_number(client, people,
                                                                  stripe_client):
    first = pay(stripe_client, people["customer"], people["vendor"], amounts=(4999, 2500),
                tax=600)
    second = pay(stripe_client, people["customer"], people["vendor"], currency="JPY",
                 amounts=(8580,))
    assert [(i.number, i.payment_id) for i in invoices()] == [
        (f"INV-{YEAR}-000001", first.id), (f"INV-{YEAR}-000002", second.id)]
    facts = invoices()[0].facts
    assert (facts["subtotal"], facts["tax"], facts["total"], facts["currency"]) == (
        7499, 600, 8099, "USD")
    assert facts["card"] == {"brand": "visa", "last4": "4242"}
    assert [i["vendor"] for i in facts["items"]] == ["vera@example.test"] * 2

    login(client, people["customer"].email)
    detail = client.get(f"/payments/{first.id}").text
    assert f"Invoice INV-{YEAR}-000001</a>" in detail
    page = client.get(f"/payments/{first.id}/invoice").text
    assert f"Invoice INV-{YEAR}-000001" in page and "$80.99" in page and "$6.00" in page
    assert "Visa •••• 4242" in page and "ShopSphere Marketplace Ltd (demo)" in page
    assert "¥8,580" in client.get(f"/payments/{second.id}/invoice").text


def test_an_invoice_is_its_customers_and_the_admins_only(app, client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    url = f"/payments/{payment.id}/invoice"
    for who, status in (("other", 404), ("vendor", 404), ("admin", 200), ("customer", 200)):
        other = app.test_client()
        login(other, people[who].email)
        assert other.get(url).status_code == status, who
    login(client, people["customer"].email)
    assert client.get("/payments/not-an-id/invoice").status_code == 404


def test_an_issued_invoice_keeps_what_it_stated(client, people, stripe_client, test_app):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    config = test_app.extensions["portal_config"]
    name = config.INVOICE_COMPANY_NAME
    config.INVOICE_COMPANY_NAME = "Renamed Ltd"
    try:
        later = pay(stripe_client, people["customer"], people["vendor"])
    finally:
        config.INVOICE_COMPANY_NAME = name
    first, second = invoices()
    assert (first.payment_id, first.facts["seller"]["name"]) == (payment.id, name)
    assert (second.payment_id, second.facts["seller"]["name"]) == (later.id, "Renamed Ltd")


def test_a_rolled_back_number_is_given_again_not_lost(people):
    with committed():
        assert numbering.next_number("TST", YEAR) == 1
    db.session.begin_nested()
    assert numbering.next_number("TST", YEAR) == 2
    db.session.rollback()  # the document that took 2 was not issued
    with committed():
        assert numbering.next_number("TST", YEAR) == 2


@pytest.mark.commits
def test_payments_succeeding_at_once_get_consecutive_numbers(app, people, stripe_client):
    """Eight customers' payments settle at the same moment, each in a thread of its own on
    PostgreSQL: eight invoices numbered 1 to 8, none twice, none missing."""
    from portal.auth.models import User

    ready = []
    for _ in range(8):
        order = make_order(people["customer"], people["vendor"], amounts=(1000,))
        ready.append((start_checkout(order, source="api").payment.id,
                      card_pm(stripe_client)))
    db.session.commit()
    start, failures = threading.Barrier(len(ready)), []

    def settle(payment_id, pm):
        with app.app_context():
            try:
                from portal.ledger.models import Payment

                payment = db.session.get(Payment, payment_id)
                customer = db.session.get(User, payment.user_id)
                start.wait()
                payment, _ = confirm_with_card(customer, payment, pm)
                assert payment.status == "succeeded"
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=settle, args=args) for args in ready]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    db.session.expire_all()
    assert [i.sequence for i in invoices()] == list(range(1, 9))
    assert {i.payment_id for i in invoices()} == {pid for pid, _ in ready}


def test_each_succeeded_refund_gets_a_credit_note_stating_who_bears_it(client, people,
                                                                       stripe_client):
    from portal.documents.models import CreditNote
    from portal.refunds import services as refunds
    from tests.integration.test_item_refunds import item, shop_payment

    payment = shop_payment(stripe_client, people)  # vera €33.50, victor €23.70
    refunds.refund_now(people["admin"], payment, amount=None, reason="damaged", notes=None,
                       quantities={item(payment, "Mug").id: 1})
    refunds.refund_now(people["admin"], payment, amount=1000, reason="other", notes=None)
    db.session.expire_all()
    notes = list(db.session.scalars(sa.select(CreditNote).order_by(CreditNote.sequence)))
    assert [n.number for n in notes] == [f"CN-{YEAR}-000001", f"CN-{YEAR}-000002"]
    invoice = invoices()[0]
    assert {n.invoice_id for n in notes} == {invoice.id}
    # The mug: vera alone. The €10.00 shared: in proportion to the vendors' gross, each
    # within what they kept (as their refund lines take it): €5.86 and €4.14.
    assert notes[0].facts["vendors"] == [{"vendor": "vera@example.test", "amount": 1000}]
    assert notes[1].facts["vendors"] == [{"vendor": "vera@example.test", "amount": 586},
                                         {"vendor": "victor@example.test", "amount": 414}]
    login(client, people["customer"].email)
    page = client.get(f"/payments/{payment.id}").text
    assert f"Credit note CN-{YEAR}-000002</a> (€10.00)" in page
    note = client.get(f"/payments/{payment.id}/credit-notes/CN-{YEAR}-000001").text
    assert f"Invoice {invoice.number}" in note and "€10.00" in note
    assert "Item damaged or not as described" in note
    assert client.get(f"/payments/{payment.id}/credit-notes/CN-{YEAR}-000099").status_code \
        == 404


def pdf_text(response) -> str:
    import io

    from pypdf import PdfReader

    assert response.status_code == 200 and response.mimetype == "application/pdf"
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)


def test_the_invoice_and_credit_note_pdfs_state_what_their_pages_do(client, people,
                                                                    stripe_client):
    from portal.refunds import services as refunds

    payment = pay(stripe_client, people["customer"], people["vendor"], currency="KWD",
                  amounts=(12340,))  # three decimals
    refunds.refund_now(people["admin"], payment, amount=2000, reason="other", notes=None)
    login(client, people["customer"].email)
    page = client.get(f"/payments/{payment.id}/invoice").text
    assert f'href="/payments/{payment.id}/invoice.pdf"' in page
    r = client.get(f"/payments/{payment.id}/invoice.pdf")
    assert r.headers["Content-Disposition"] == f'attachment; filename="INV-{YEAR}-000001.pdf"'
    text = pdf_text(r)
    assert f"Invoice INV-{YEAR}-000001" in text and "KWD" in text and "12.340" in text
    assert "4242" in text and "ShopSphere Marketplace Ltd (demo)" in text
    text = pdf_text(client.get(f"/payments/{payment.id}/credit-notes/CN-{YEAR}-000001/pdf"))
    assert f"Credit note CN-{YEAR}-000001" in text and f"INV-{YEAR}-000001" in text
    assert "2.000" in text
    other = client.application.test_client()
    login(other, people["other"].email)
    assert other.get(f"/payments/{payment.id}/invoice.pdf").status_code == 404
    admin = client.application.test_client()  # admins reach any document from the payment
    login(admin, people["admin"].email)
    page = admin.get(f"/admin/payments/{payment.id}").text
    assert f'href="/payments/{payment.id}/invoice.pdf"' in page
    assert f'href="/payments/{payment.id}/credit-notes/CN-{YEAR}-000001/pdf"' in page
    assert pdf_text(admin.get(f"/payments/{payment.id}/invoice.pdf")).count("12.340") >= 1


def test_the_receipt_e_mail_carries_the_invoice_pdf(client, people, stripe_client,
                                                     mailbox):  # noqa: F811 - the fixture
    import io

    from pypdf import PdfReader

    from portal.outbox import services as outbox
    from portal.outbox.models import OutboxMessage
    from tests.integration.test_refunds import FakeSMTP

    payment = pay(stripe_client, people["customer"], people["vendor"], amounts=(4999,))
    message = db.session.scalar(sa.select(OutboxMessage.id).where(
        OutboxMessage.payment_id == payment.id, OutboxMessage.kind == "receipt_email"))
    assert outbox.deliver(str(message), force=True) == "sent"
    [receipt] = [m for m in FakeSMTP.sent if m["To"] == "carol@example.test"
                 and "receipt" in m["Subject"]]
    [attached] = list(receipt.iter_attachments())
    assert attached.get_filename() == f"INV-{YEAR}-000001.pdf"
    text = PdfReader(io.BytesIO(attached.get_content())).pages[0].extract_text()
    assert f"Invoice INV-{YEAR}-000001" in text and "$49.99" in text
    assert payment.status == "succeeded"
