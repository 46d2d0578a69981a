"""Checkout: one PaymentIntent per order, right amounts, and nobody else's order."""

import re
import threading

import pytest
import sqlalchemy as sa

from portal import stripe_gateway as gateway
from portal.extensions import db
from portal.ledger.models import Payment
from portal.outbox.models import OutboxMessage
from portal.payments.services import confirm_with_card, start_checkout
from tests.helpers import committed, login, make_order, make_user


@pytest.fixture
def shop():
    customer = make_user("alice@example.test")
    vendor = make_user("vendor@example.test", "vendor")
    return customer, vendor


def checked_out(client, customer, vendor):
    """An order of ``customer`` whose checkout page was opened: (order, payment)."""
    order = make_order(customer, vendor)
    login(client, customer.email)
    assert client.get(f"/checkout/{order.id}").status_code == 200
    return order, db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))


def client_secret(html: str) -> str:
    return re.search(r'data-client-secret="([^"]+)"', html).group(1)


def intents_for(stripe_client, order_id) -> list:
    listed = stripe_client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
    return [pi for pi in listed if pi.to_dict()["metadata"].get("orderId") == str(order_id)]


def test_checkout_page_mounts_the_payment_element_for_one_intent(client, shop, stripe_client):
    customer, vendor = shop
    order = make_order(customer, vendor, amounts=(1999, 500), tax=200, shipping=300)
    login(client, customer.email)
    first = client.get(f"/checkout/{order.id}")
    assert first.status_code == 200
    html = first.text
    assert 'id="payment-element"' in html and "Pay $29.99" in html
    assert "Test mode" in html
    second = client.get(f"/checkout/{order.id}")  # reload
    assert client_secret(second.text) == client_secret(html)
    [pi] = intents_for(stripe_client, order.id)
    assert pi.amount == 2999 and pi.currency == "usd"
    assert pi.metadata["userId"] == str(customer.id)
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))
    assert payment.stripe_payment_intent_id == pi.id and payment.status == "requires_payment_method"
    assert payment.user_agent is not None and payment.ip_address == "127.0.0.1"


@pytest.mark.commits
def test_concurrent_double_submit_makes_one_intent(app, shop, stripe_client):
    customer, vendor = shop
    order = make_order(customer, vendor, amounts=(4200,))
    email, order_id = customer.email, order.id  # plain values: threads have no session
    secrets, errors = [], []

    def pay():
        c = app.test_client()
        login(c, email)
        r = c.get(f"/checkout/{order_id}")
        (secrets if r.status_code == 200 else errors).append(
            client_secret(r.text) if r.status_code == 200 else r.status_code)

    threads = [threading.Thread(target=pay) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(secrets)) == 1
    assert len(intents_for(stripe_client, order.id)) == 1
    assert db.session.scalar(
        sa.select(sa.func.count()).select_from(Payment).where(Payment.order_id == order.id)) == 1


def test_jpy_order_charges_yen_not_hundredths(client, shop, stripe_client):
    customer, vendor = shop
    order = make_order(customer, vendor, currency="JPY", amounts=(5400, 2400), tax=780)
    login(client, customer.email)
    r = client.get(f"/checkout/{order.id}")
    assert "Pay ¥8,580" in r.text
    [pi] = intents_for(stripe_client, order.id)
    assert (pi.amount, pi.currency) == (8580, "jpy")


def test_another_customer_gets_404_everywhere(client, shop, app):
    customer, vendor = shop
    order, payment = checked_out(client, customer, vendor)
    mallory = make_user("mallory@example.test")
    other = app.test_client()
    login(other, mallory.email)
    for path in (f"/checkout/{order.id}", f"/checkout/{order.id}/complete",
                 f"/payments/{payment.id}", f"/payments/{payment.id}/status",
                 "/checkout/not-a-uuid", "/payments/not-a-uuid"):
        r = other.get(path)
        assert r.status_code == 404, path
        assert "$49.99" not in r.text
    # ...while the owner still sees their pages.
    assert client.get(f"/payments/{payment.id}").status_code == 200


def test_pages_require_login(client, shop):
    customer, vendor = shop
    order = make_order(customer, vendor)
    r = client.get(f"/checkout/{order.id}")
    assert r.status_code == 302 and "/login" in r.location


def test_paid_order_redirects_to_its_payment(client, shop, stripe_client):
    customer, vendor = shop
    order, payment = checked_out(client, customer, vendor)
    pm = stripe_client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 1, "exp_year": 2031, "cvc": "314"}})
    stripe_client.v1.payment_intents.confirm(payment.stripe_payment_intent_id,
                                            params={"payment_method": pm.id})
    complete = client.get(f"/checkout/{order.id}/complete")
    assert "Succeeded" in complete.text and "Visa •••• 4242" in complete.text
    assert "hx-trigger" not in complete.text  # final: no more polling
    again = client.get(f"/checkout/{order.id}")
    assert again.status_code == 302 and again.location.endswith(f"/payments/{payment.id}")


def test_stripe_unreachable_fails_closed(pg_url, shop):
    from portal import create_app
    from portal.config import Config
    from tests.conftest import portal_env

    app = create_app(Config.from_env(portal_env(pg_url, "http://127.0.0.1:9"),
                                     extra={"WTF_CSRF_ENABLED": False}))
    customer, vendor = shop
    order = make_order(customer, vendor)
    c = app.test_client()
    login(c, customer.email)
    r = c.get(f"/checkout/{order.id}")
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 30
    assert "could not reach the payment processor" in r.text and "Nothing was charged" in r.text
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))
    assert payment.stripe_payment_intent_id is None and payment.status == "pending"


def test_stripe_unreachable_with_an_intent_makes_no_promise(pg_url, client, shop):
    from portal import create_app
    from portal.config import Config
    from tests.conftest import portal_env

    customer, vendor = shop
    order, _ = checked_out(client, customer, vendor)  # the intent exists
    broken = create_app(Config.from_env(portal_env(pg_url, "http://127.0.0.1:9"),
                                        extra={"WTF_CSRF_ENABLED": False})).test_client()
    login(broken, customer.email)
    r = broken.get(f"/checkout/{order.id}")
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 30
    assert "Nothing was charged" not in r.text and "If you already paid" in r.text


def test_status_polls_back_off_and_stop(client, shop):
    customer, vendor = shop
    order = make_order(customer, vendor)
    payment = Payment(user_id=customer.id, order_id=order.id, amount=order.total,
                      currency="USD", status="processing",
                      stripe_payment_intent_id="pi_unknown_to_stripe")
    db.session.add(payment)
    db.session.commit()
    login(client, customer.email)
    first = client.get(f"/payments/{payment.id}/status")
    assert 'hx-trigger="load delay:1s"' in first.text and "poll=1" in first.text
    later = client.get(f"/payments/{payment.id}/status?poll=40")
    assert 'hx-trigger="load delay:10s"' in later.text and "poll=41" in later.text
    last = client.get(f"/payments/{payment.id}/status?poll=60")
    assert "hx-trigger" not in last.text and "reload this page later" in last.text


def test_payment_not_started_offers_to_pay_and_does_not_poll(client, shop):
    customer, vendor = shop
    order = make_order(customer, vendor)
    payment = Payment(user_id=customer.id, order_id=order.id, amount=order.total,
                      currency="USD", status="pending")
    db.session.add(payment)
    db.session.commit()
    login(client, customer.email)
    r = client.get(f"/payments/{payment.id}")
    assert "has not been started" in r.text and "hx-trigger" not in r.text


def test_a_checkout_that_lost_the_race_for_the_intent_uses_the_stored_one(shop, stripe_client,
                                                                         monkeypatch):
    """Stripe is called with no lock held: should a concurrent checkout (whose request
    differed, e.g. a Stripe customer made meanwhile) store its intent first, this one
    leaves its own unused and carries on with the stored one."""
    customer, vendor = shop
    order = make_order(customer, vendor)
    theirs = stripe_client.v1.payment_intents.create(params={
        "amount": order.total, "currency": "usd", "metadata": {"orderId": str(order.id)}})
    create = gateway.create_payment_intent

    def racing(**params):
        mine = create(**params)
        db.session.execute(sa.update(Payment).where(Payment.order_id == order.id)
                           .values(stripe_payment_intent_id=theirs.id))
        db.session.commit()  # the concurrent checkout's apply phase
        return mine

    monkeypatch.setattr(gateway, "create_payment_intent", racing)
    with committed():
        checkout = start_checkout(order)
    assert checkout.intent.id == theirs.id == checkout.payment.stripe_payment_intent_id
    assert checkout.payment.status == "requires_payment_method"


def test_a_confirmation_stripe_refuses_changes_nothing(client, shop):
    customer, vendor = shop
    _, payment = checked_out(client, customer, vendor)
    before = (payment.status, payment.updated_at, payment.payment_method_id)
    with pytest.raises(gateway.GatewayError) as refused, committed():
        confirm_with_card(customer, payment, "pm_unknown_to_stripe")
    assert refused.value.status == 400 and not refused.value.retryable
    db.session.expire_all()
    payment = db.session.get(Payment, payment.id)
    assert (payment.status, payment.updated_at, payment.payment_method_id) == before
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0
