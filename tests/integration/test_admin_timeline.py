"""One payment's timeline for admins (issue 18, item 2): what happened to it in time order,
with its events, refunds, lines, payouts and messages; refund and resend the receipt from
there."""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa

from portal.audit.models import AuditEntry
from portal.extensions import db
from portal.outbox.models import OutboxMessage
from portal.refunds.models import RefundRequest
from tests.helpers import login, post_event
from tests.integration.api_support import pay


def timeline_rows(html: str) -> list[str]:
    body = html.split('aria-label="Timeline"', 1)[1].split("</table>", 1)[0]
    return [re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<tr><td>.*?</td>\s*<td>(.*?)</td>", body, re.S)]


def test_the_timeline_tells_the_payments_story_and_refunds_from_it(
        client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"],
                  vendor2=people["vendor2"])
    intent = stripe_client.v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    assert post_event(client, "payment_intent.succeeded", intent.to_dict(),
                      "evt_timeline_1").status_code == 200
    login(client, people["admin"].email)
    url = f"/admin/payments/{payment.id}"
    page = client.get(url).text
    assert f"https://dashboard.stripe.com/test/payments/{payment.stripe_payment_intent_id}" \
        in page
    assert 'href="/admin/events/evt_timeline_1"' in page
    rows = timeline_rows(page)
    assert rows[0] == "Payment created" and "Payment succeeded" in rows
    assert rows.count("Sale line") == 2 and "Receipt email" in rows

    asked = {"amount": "25.00", "reason": "damaged"}
    r = client.post(f"{url}/refund", data=asked)  # first the amount, to confirm
    assert r.status_code == 200
    assert "Refund $25.00 to carol@example.test's card (•••• 4242)?" in r.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest)) == 0
    r = client.post(f"{url}/refund", data={**asked, "confirm": "yes", "expected": "2500"})
    assert r.status_code == 302
    page = client.get(url).text
    assert "Refund of $25.00: succeeded." in page
    rows = timeline_rows(page)
    for action in ("refund.requested", "refund.approved", "refund.succeeded", "Refund email"):
        assert action in rows, action
    assert rows.count("Refund line") == 2
    assert "$25.00, by ada@example.test" in page  # who, in the audit entries
    assert "Item damaged or not as described" in page


def test_a_bad_refund_says_why_and_refunds_nothing(client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    login(client, people["admin"].email)
    for amount, message in (("ten", "is not a number"),
                            ("500.00", "Only $100.00 of this payment can still be refunded.")):
        r = client.post(f"/admin/payments/{payment.id}/refund",
                        data={"amount": amount, "reason": "other"})
        assert r.status_code == 400 and message in r.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RefundRequest)) == 0


def test_resending_the_receipt_sends_it_again_and_is_audited(client, people, stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    query = sa.select(OutboxMessage).where(OutboxMessage.payment_id == payment.id,
                                           OutboxMessage.kind == "receipt_email")
    before = db.session.scalars(query).one().attempts
    login(client, people["admin"].email)
    r = client.post(f"/admin/payments/{payment.id}/resend-receipt", follow_redirects=True)
    assert "Receipt e-mailed again: kept." in r.text  # no SMTP server in the tests
    db.session.expire_all()
    assert db.session.scalars(query).one().attempts == before + 1
    assert "outbox.resent" in db.session.scalars(sa.select(AuditEntry.action)).all()


def test_an_unknown_payment_is_404_and_non_admins_cannot_see_one(app, client, people,
                                                                  stripe_client):
    payment = pay(stripe_client, people["customer"], people["vendor"])
    login(client, people["admin"].email)
    assert client.get(f"/admin/payments/{uuid.uuid4()}").status_code == 404
    assert client.get("/admin/payments/not-an-id").status_code == 404
    customer = app.test_client()
    login(customer, people["customer"].email)
    assert customer.get(f"/admin/payments/{payment.id}").status_code == 404
    assert customer.post(f"/admin/payments/{payment.id}/refund",
                         data={"amount": "1", "reason": "other"}).status_code == 404
