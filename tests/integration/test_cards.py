"""The cards page, checkout with a saved card, and the webhooks that keep the list in step
with Stripe (issue 4). Browser flows are in tests/e2e/test_cards_flow.py."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
import sqlalchemy as sa

from portal.cards import services as cards
from portal.cards.models import SavedCard
from portal.extensions import db
from portal.ledger.models import Payment
from portal.webhooks.models import StripeEvent
from tests.helpers import committed, event_body, login, make_order, make_user, sign
from tests.integration.api_support import card_pm

HX = {"HX-Request": "true"}
MASTERCARD = "5555555555554444"
SECRET = "whsec_portal_tests"


@pytest.fixture
def alice():
    return make_user("alice@example.test")


@pytest.fixture
def saved(alice, stripe_client):
    """Alice with a Visa (default) and a Mastercard on file."""
    with committed():
        visa = cards.save_card(alice, card_pm(stripe_client))
    with committed():
        master = cards.save_card(alice, card_pm(stripe_client, MASTERCARD))
    return visa.stripe_payment_method_id, master.stripe_payment_method_id


def post_event(client, event_type: str, obj: dict, event_id: str):
    body = event_body(event_id, event_type, obj)
    r = client.post("/api/payments/webhook", data=body,
                    headers={"Stripe-Signature": sign(body, SECRET),
                             "Content-Type": "application/json"})
    assert r.status_code == 200
    return db.session.get(StripeEvent, event_id).status


def saved_ids(user) -> list[str]:
    db.session.expire_all()
    return [c.stripe_payment_method_id for c in cards.cards_of(user)]


def test_cards_page_lists_brand_last4_expiry_and_the_default(client, alice, saved):
    login(client, alice.email)
    page = client.get("/cards").text
    assert "Visa •••• 4242" in page and "Mastercard •••• 4444" in page
    assert "12/2030" in page
    assert page.count(">Default</span>") == 1
    assert 'aria-label="Make Mastercard •••• 4444 the default"' in page
    assert 'aria-label="Make Visa •••• 4242 the default"' not in page  # it is the default


def test_set_default_over_htmx_returns_only_the_list(client, alice, saved):
    visa, master = saved
    login(client, alice.email)
    r = client.post(f"/cards/{master}/default", headers=HX)
    assert r.status_code == 200
    assert r.text.lstrip().startswith("<div id=\"card-list\"") and "<html" not in r.text
    assert "Your default card was changed." in r.text
    assert 'aria-label="Make Visa •••• 4242 the default"' in r.text
    assert cards.default_card_id(alice) == master


def test_remove_over_htmx_detaches_and_the_remaining_card_becomes_default(
        client, alice, saved, stripe_client):
    visa, master = saved
    login(client, alice.email)
    r = client.post(f"/cards/{visa}/remove", headers=HX)
    assert "The card was removed." in r.text and "Visa •••• 4242" not in r.text
    assert saved_ids(alice) == [master] and cards.default_card_id(alice) == master
    assert stripe_client.v1.payment_methods.retrieve(visa).customer is None


def test_another_customers_card_is_404_on_the_page_actions(client, alice, saved):
    bob = make_user("bob@example.test")
    login(client, bob.email)
    assert "Visa •••• 4242" not in client.get("/cards").text
    for action in ("default", "remove"):
        assert client.post(f"/cards/{saved[0]}/{action}").status_code == 404
    assert saved_ids(alice) == list(saved) and cards.default_card_id(alice) == saved[0]


def test_expiry_marks():
    card = SavedCard(exp_month=11, exp_year=2026)
    today = date(2026, 11, 26)
    assert card.expiry_state(today) == "expires_soon"
    assert SavedCard(exp_month=12, exp_year=2026).expiry_state(today) == "expires_soon"
    assert SavedCard(exp_month=1, exp_year=2027).expiry_state(today) is None
    assert SavedCard(exp_month=10, exp_year=2026).expiry_state(today) == "expired"
    assert SavedCard(exp_month=12, exp_year=2025).expiry_state(today) == "expired"


def test_add_card_form_gets_a_setup_intent_of_the_users_customer(client, alice, stripe_client):
    login(client, alice.email)
    r = client.get("/cards/new", headers=HX)
    assert r.status_code == 200 and 'id="setup-element"' in r.text
    seti = r.text.split('name="setup_intent" value="')[1].split('"')[0]
    setup = stripe_client.v1.setup_intents.retrieve(seti)
    assert setup.customer == cards.customer_of(alice.id).stripe_customer_id


def test_finishing_a_setup_saves_its_card_once(client, alice, stripe_client):
    login(client, alice.email)
    with committed():
        customer = cards.ensure_customer(alice).stripe_customer_id
    pm = card_pm(stripe_client)
    seti = stripe_client.v1.setup_intents.create(params={
        "customer": customer, "payment_method": pm, "confirm": True,
        "allowed_payment_method_types": ["card"]})
    assert seti.status == "succeeded"
    r = client.post("/cards", data={"setup_intent": seti.id}, headers=HX)
    assert "Visa •••• 4242 was saved." in r.text
    assert saved_ids(alice) == [pm] and cards.default_card_id(alice) == pm
    # The same card through a second SetupIntent: not saved twice, the duplicate detached.
    again = card_pm(stripe_client)
    seti2 = stripe_client.v1.setup_intents.create(params={
        "customer": customer, "payment_method": again, "confirm": True,
        "allowed_payment_method_types": ["card"]})
    r = client.post("/cards", data={"setup_intent": seti2.id}, headers=HX)
    assert "This card is already saved." in r.text
    assert saved_ids(alice) == [pm]
    assert stripe_client.v1.payment_methods.retrieve(again).customer is None


def test_someone_elses_setup_intent_saves_nothing(client, alice, stripe_client):
    bob = make_user("bob@example.test")
    with committed():
        bob_customer = cards.ensure_customer(bob).stripe_customer_id
    seti = stripe_client.v1.setup_intents.create(params={
        "customer": bob_customer, "payment_method": card_pm(stripe_client), "confirm": True,
        "allowed_payment_method_types": ["card"]})
    login(client, alice.email)
    with committed():
        cards.ensure_customer(alice)
    r = client.post("/cards", data={"setup_intent": seti.id}, headers=HX)
    assert "Setup not found." in r.text
    assert saved_ids(alice) == [] and saved_ids(bob) == []


# --- webhooks ----------------------------------------------------------------------------------

def test_card_detached_directly_in_stripe_disappears_after_the_webhook(client, alice, saved,
                                                                      stripe_client):
    visa, master = saved
    pm = stripe_client.v1.payment_methods.detach(visa)
    assert post_event(client, "payment_method.detached", pm.to_dict(), "evt_detach") == (
        "processed")
    assert saved_ids(alice) == [master]
    assert cards.default_card_id(alice) == master  # the default moved to what remains


def test_card_attached_elsewhere_appears_and_duplicates_are_detached(client, alice, saved,
                                                                     stripe_client):
    customer = cards.customer_of(alice.id).stripe_customer_id
    discover = card_pm(stripe_client, "6011111111111117")
    stripe_client.v1.payment_methods.attach(discover, params={"customer": customer})
    assert post_event(client, "payment_method.attached",
                      stripe_client.v1.payment_methods.retrieve(discover).to_dict(),
                      "evt_attach") == "processed"
    assert saved_ids(alice)[-1] == discover
    # The same Visa number attached again (e.g. by a payment with "save this card").
    dup = card_pm(stripe_client)
    stripe_client.v1.payment_methods.attach(dup, params={"customer": customer})
    post_event(client, "payment_method.attached",
               stripe_client.v1.payment_methods.retrieve(dup).to_dict(), "evt_attach_dup")
    assert dup not in saved_ids(alice)
    assert stripe_client.v1.payment_methods.retrieve(dup).customer is None


def test_expiry_updated_in_stripe_is_mirrored(client, alice, saved, stripe_client):
    visa = saved[0]
    stripe_client.v1.payment_methods.update(visa, params={"card": {"exp_month": 4,
                                                                   "exp_year": 2033}})
    obj = stripe_client.v1.payment_methods.retrieve(visa).to_dict()
    assert post_event(client, "payment_method.updated", obj, "evt_upd") == "processed"
    db.session.expire_all()
    card = db.session.scalar(sa.select(SavedCard).where(
        SavedCard.stripe_payment_method_id == visa))
    assert (card.exp_month, card.exp_year) == (4, 2033)


def test_default_chosen_in_stripe_is_mirrored(client, alice, saved, stripe_client):
    visa, master = saved
    customer = cards.customer_of(alice.id).stripe_customer_id
    cus = stripe_client.v1.customers.update(customer, params={
        "invoice_settings": {"default_payment_method": master}})
    assert post_event(client, "customer.updated", cus.to_dict(), "evt_cus") == "processed"
    db.session.expire_all()
    assert cards.default_card_id(alice) == master


def test_card_replaced_by_the_card_updater_is_mirrored(client, alice, saved, sandbox,
                                                       stripe_client):
    import urllib.parse
    import urllib.request

    visa = saved[0]
    request = urllib.request.Request(  # the sandbox's stand-in for Stripe's card updater
        f"{sandbox.url}/_sandbox/payment_methods/{visa}/automatically_update",
        data=urllib.parse.urlencode({"exp_month": 9, "exp_year": 2033,
                                     "last4": "1016"}).encode(),
        headers={"Authorization": "Bearer sk_test_portal"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - loopback
        assert r.status == 200
    obj = stripe_client.v1.payment_methods.retrieve(visa).to_dict()
    assert post_event(client, "payment_method.automatically_updated", obj, "evt_au") == (
        "processed")
    login(client, alice.email)
    page = client.get("/cards").text
    assert "Visa •••• 1016" in page and "09/2033" in page and "Visa •••• 4242" not in page


def test_events_of_cards_not_ours_are_ignored(client, stripe_client):
    pm = stripe_client.v1.payment_methods.retrieve(card_pm(stripe_client)).to_dict()
    assert post_event(client, "payment_method.updated", pm, "evt_other") == "ignored"


def test_setup_intent_succeeded_saves_the_card(client, alice, stripe_client):
    with committed():
        customer = cards.ensure_customer(alice).stripe_customer_id
    pm = card_pm(stripe_client)
    seti = stripe_client.v1.setup_intents.create(params={
        "customer": customer, "payment_method": pm, "confirm": True,
        "allowed_payment_method_types": ["card"]})
    obj = json.loads(json.dumps(seti.to_dict()))
    assert post_event(client, "setup_intent.succeeded", obj, "evt_seti") == "processed"
    assert saved_ids(alice) == [pm]


# --- checkout with a saved card -----------------------------------------------------------------

@pytest.fixture
def order(alice):
    return make_order(alice, make_user("maker@example.test", "vendor"), amounts=(4999,))


def test_checkout_offers_the_saved_cards_with_the_default_preselected(client, alice, saved,
                                                                      order):
    visa, master = saved
    with committed():
        cards.set_default(alice, master)
    login(client, alice.email)
    page = client.get(f"/checkout/{order.id}").text
    checked = re.findall(r'value="(pm_\w+)"\s+checked', page)
    assert checked == [master]
    assert "Visa •••• 4242" in page and "A new card" in page


def test_one_click_pay_with_a_saved_card(client, alice, saved, order):
    login(client, alice.email)
    client.get(f"/checkout/{order.id}")
    r = client.post(f"/checkout/{order.id}/pay", data={"payment_method": saved[1]})
    assert r.status_code == 200
    assert r.json == {"status": "succeeded", "next": f"/checkout/{order.id}/complete"}
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))
    assert (payment.status, payment.card_last4, payment.payment_method_id) == (
        "succeeded", "4444", saved[1])


def test_one_click_pay_with_a_3ds_card_hands_authentication_to_stripe_js(client, alice, order,
                                                                         stripe_client):
    with committed():
        pm = cards.save_card(alice, card_pm(stripe_client, "4000002760003184"))
    login(client, alice.email)
    client.get(f"/checkout/{order.id}")
    r = client.post(f"/checkout/{order.id}/pay",
                    data={"payment_method": pm.stripe_payment_method_id})
    assert r.json["status"] == "requires_action" and r.json["clientSecret"].startswith("pi_")


def test_one_click_pay_with_another_customers_card_is_404(client, alice, saved, stripe_client):
    bob = make_user("bob@example.test")
    bobs = make_order(bob, make_user("maker@example.test", "vendor"))
    login(client, bob.email)
    client.get(f"/checkout/{bobs.id}")
    assert client.post(f"/checkout/{bobs.id}/pay",
                       data={"payment_method": saved[0]}).status_code == 404
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == bobs.id))
    assert payment.status == "requires_payment_method"
    assert stripe_client.v1.payment_intents.retrieve(
        payment.stripe_payment_intent_id).payment_method is None


def test_save_this_card_sets_up_future_usage_on_the_intent(client, alice, order, stripe_client):
    login(client, alice.email)
    client.get(f"/checkout/{order.id}")
    assert client.post(f"/checkout/{order.id}/save-card", data={"save": "true"}).json == {
        "ok": True}
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))
    pi = stripe_client.v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    assert pi.setup_future_usage == "off_session"
    assert pi.customer == cards.customer_of(alice.id).stripe_customer_id


@pytest.mark.parametrize("setup_intent", ["", "seti_1/../../customers", "seti x"])
def test_a_setup_that_cannot_be_an_id_is_not_found_without_asking_stripe(client, alice,
                                                                          setup_intent):
    """Issue 15: an empty setup_intent sent GET /v1/setup_intents/ to Stripe (a 500)."""
    login(client, alice.email)
    client.get("/cards/new")  # alice has a Stripe customer now
    r = client.post("/cards", data={"setup_intent": setup_intent})
    assert r.status_code == 400 and "Setup not found." in r.text
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SavedCard)) == 0


# --- Stripe unreachable -------------------------------------------------------------------------

@pytest.fixture
def broken(pg_url):
    """A client of the portal whose Stripe cannot be reached."""
    from portal import create_app
    from portal.config import Config
    from tests.conftest import portal_env

    return create_app(Config.from_env(portal_env(pg_url, "http://127.0.0.1:9"),
                                      extra={"WTF_CSRF_ENABLED": False})).test_client()


def test_one_click_pay_while_stripe_is_unreachable_is_503_and_changes_nothing(
        client, broken, alice, saved, order):
    login(client, alice.email)
    client.get(f"/checkout/{order.id}")  # the intent exists
    login(broken, alice.email)
    r = broken.post(f"/checkout/{order.id}/pay", data={"payment_method": saved[0]})
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 30
    assert r.json == {"status": "error", "error": "We could not reach the payment processor; "
                                                  "please try again in a moment."}
    db.session.expire_all()
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order.id))
    assert (payment.status, payment.payment_method_id) == ("requires_payment_method", None)


@pytest.mark.parametrize("headers", [HX, {}])
def test_changing_cards_while_stripe_is_unreachable_is_503_and_changes_nothing(
        broken, alice, saved, headers):
    visa, master = saved
    login(broken, alice.email)
    for action in ("default", "remove"):
        r = broken.post(f"/cards/{master}/{action}", headers=headers)
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 30
        assert "could not reach the payment processor" in r.headers["X-Error-Message"]
        assert "could not reach the payment processor" in r.text  # the list, for a reload
    assert saved_ids(alice) == [visa, master] and cards.default_card_id(alice) == visa


def test_the_add_card_form_while_stripe_is_unreachable_is_503(broken):
    bob = make_user("bob@example.test")  # no Stripe customer yet: it cannot be made
    login(broken, bob.email)
    r = broken.get("/cards/new", headers=HX)
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 30
    assert "Try again" in r.text and cards.customer_of(bob.id) is None
