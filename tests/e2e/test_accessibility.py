"""Every page of every role, in Chromium at a phone's width (390 px) and a laptop's (1280 px):
axe-core finds no serious or critical violation, and the page does not scroll sideways (wide
tables scroll inside their own container).

To check a new page, add a `Screen` to SCREENS: its name (role-page, also the screenshot's
file name), who signs in (None: signed out), its path (a function of the data the `shop`
fixture made, when it needs an id) and, if the page needs a step before it is checked (a
form sent, a button pressed), `ready`.

axe-core is pinned and checked by `make axe` (tests/vendor/, never served by the portal).
With SCREENSHOTS_DIR set, each check also saves `<name>-<width>.png` there
(`scripts/screenshots.py`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from portal.config import ROOT
from portal.extensions import db
from portal.webhooks.models import StripeEvent
from tests.e2e.conftest import sa, scalar, wait_for
from tests.helpers import PASSWORD, committed, make_order, make_user, truncate_all

AXE = ROOT / "tests" / "vendor" / "axe.min.js"
WIDTHS = (390, 1280)
BLOCKING = ("serious", "critical")
SHOTS = os.environ.get("SCREENSHOTS_DIR")
# Which screens to save (comma-separated names; none: all).
ONLY = set(filter(None, os.environ.get("SCREENSHOTS_ONLY", "").split(",")))

CUSTOMER, VENDOR, ADMIN = "buyer@example.test", "maker@example.test", "boss@example.test"
EMAILS = {"customer": CUSTOMER, "vendor": VENDOR, "admin": ADMIN}


def _wrong_password(page: Page) -> None:
    page.get_by_label("Email").fill(CUSTOMER)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()


def _card_form(page: Page) -> None:
    page.get_by_role("button", name="Add a card").click()
    expect(page.get_by_label("Card number")).to_be_visible()


def _new_card(page: Page) -> None:
    page.get_by_role("radio", name="A new card").check()
    expect(page.get_by_label("Card number")).to_be_visible()


def _refund_form_error(page: Page) -> None:
    page.get_by_label("Amount to refund").fill("100000")
    page.get_by_role("button", name="Request refund").click()
    expect(page.get_by_label("Amount to refund")).to_have_attribute("aria-invalid", "true")


def _refund_confirmation(page: Page) -> None:
    page.get_by_role("checkbox").first.check()
    page.get_by_role("button", name="Approve selected…").click()
    expect(page.get_by_role("button", name="Approve and refund")).to_be_visible()


def _payout_confirmation(page: Page) -> None:
    page.get_by_role("button", name="Approve and send").first.click()
    expect(page.get_by_role("heading", name="Confirm the payouts")).to_be_visible()


@dataclass(frozen=True)
class Screen:
    name: str
    role: str | None
    path: str | Callable[[dict], str]
    ready: Callable[[Page], None] | None = None

    def url(self, data: dict) -> str:
        return self.path if isinstance(self.path, str) else self.path(data)


SCREENS = [
    Screen("signed-out-login", None, "/login"),
    Screen("signed-out-login-error", None, "/login", _wrong_password),
    Screen("signed-out-not-found", None, "/no-such-page"),
    Screen("customer-orders", "customer", "/orders"),
    Screen("customer-checkout", "customer", lambda d: f"/checkout/{d['unpaid']}"),
    Screen("customer-checkout-new-card", "customer", lambda d: f"/checkout/{d['unpaid']}",
           _new_card),
    Screen("customer-completion", "customer", lambda d: f"/checkout/{d['order']}/complete"),
    Screen("customer-history", "customer", "/payments"),
    Screen("customer-payment", "customer", lambda d: f"/payments/{d['payment']}"),
    Screen("customer-invoice", "customer", lambda d: f"/payments/{d['payment']}/invoice"),
    Screen("customer-refund-error", "customer", lambda d: f"/payments/{d['payment']}",
           _refund_form_error),
    Screen("customer-cards", "customer", "/cards"),
    Screen("customer-cards-add", "customer", "/cards", _card_form),
    Screen("customer-forbidden", "customer", "/admin/payments"),
    Screen("vendor-dashboard", "vendor", "/vendor"),
    Screen("vendor-sales", "vendor", "/vendor/sales"),
    Screen("vendor-payout", "vendor", lambda d: f"/vendor/payouts/{d['payout']}"),
    Screen("vendor-sale", "vendor", lambda d: f"/vendor/sales/{d['payment']}"),
    Screen("vendor-refund-request", "vendor",
           lambda d: f"/vendor/sales/{d['payment']}/refund"),
    Screen("admin-payments", "admin", "/admin/payments"),
    Screen("admin-search", "admin", "/admin/payments?q=buyer%40&currency=USD"),
    Screen("admin-search-error", "admin", "/admin/payments?min=abc"),
    Screen("admin-payment", "admin", lambda d: f"/admin/payments/{d['payment']}"),
    Screen("admin-refunds", "admin", "/admin/refunds"),
    Screen("admin-refunds-confirm", "admin", "/admin/refunds", _refund_confirmation),
    Screen("admin-payouts", "admin", "/admin/payouts"),
    Screen("admin-payouts-confirm", "admin", "/admin/payouts", _payout_confirmation),
    Screen("admin-payout", "admin", lambda d: f"/vendor/payouts/{d['payout']}"),
    Screen("admin-analytics", "admin", "/admin/analytics"),
    Screen("admin-events", "admin", "/admin/events"),
    Screen("admin-event", "admin", lambda d: f"/admin/events/{d['event']}"),
    Screen("admin-audit", "admin", "/admin/audit"),
    Screen("admin-outbox", "admin", "/admin/outbox"),
    Screen("admin-api-docs", "admin", "/api/payments/docs"),
]


@pytest.fixture(autouse=True)
def _clean():
    """The module's data is made once, by `shop`, instead of before each test."""
    yield


@pytest.fixture(scope="module")
def shop(live, redis_url):
    """A customer with a paid order (a refund requested on it, a saved card) and an unpaid
    one; the vendor's sale closed into a payout; the webhooks, outbox messages and audit
    entries all of that leaves behind."""
    import stripe

    from portal.auth.services import find_user
    from portal.cards.services import save_card
    from portal.ledger.models import Payment, Payout
    from portal.models_base import utcnow
    from portal.payments.services import confirm_with_card, start_checkout
    from portal.payouts.services import run_payouts
    from portal.refunds.services import request_refund

    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `make axe`", pytrace=False)
    sandbox = stripe.StripeClient("sk_test_portal", base_addresses={"api": live.sandbox.url})

    def card(number):
        return sandbox.v1.payment_methods.create(params={"type": "card", "card": {
            "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}).id

    with live.app.app_context():
        truncate_all()
        customer, vendor = make_user(CUSTOMER), make_user(VENDOR, "vendor")
        make_user(ADMIN, "admin")
        paid = make_order(customer, vendor, amounts=(4999, 4212), tax=800)
        unpaid = make_order(customer, vendor, amounts=(2500,), shipping=450)
        # 0077: funds available at once, so that a payout run takes the sale.
        payment, _ = confirm_with_card(customer, start_checkout(paid).payment,
                                       card("4000000000000077"))
        assert payment.status == "succeeded"
        payment_id = payment.id
        with committed():
            customer = find_user(CUSTOMER)
            save_card(customer, card("5555555555554444"), make_default=True)
        with committed():
            run_payouts(until=utcnow())
        with committed():  # a refund of the first item, asked by support for the customer
            first = db.session.get(Payment, payment_id)  # (whose form stays open for more)
            request_refund(find_user(ADMIN), first, amount=None, reason="damaged",
                           notes="Too bright", quantities={paid.items[0].id: 1})
        event = wait_for(lambda: scalar(sa.select(StripeEvent.id).where(
            StripeEvent.status == "processed").limit(1)))
        payout = scalar(sa.select(Payout.id).where(Payout.status != "open").limit(1))
        assert payout is not None
        data = {"unpaid": unpaid.id, "order": paid.id, "payment": payment_id,
                "event": event, "payout": payout}
        db.session.remove()
    yield data
    with live.app.app_context():
        truncate_all()
        db.session.remove()


@pytest.fixture(scope="module")
def sessions(browser, live, shop):
    """Each role signed in once: the cookies every check of that role starts with."""
    states = {}
    for role, email in EMAILS.items():
        context = browser.new_context(base_url=live.url)
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        states[role] = context.storage_state()
        context.close()
    return states


AXE_RUN = """async (impacts) => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.filter(v => impacts.includes(v.impact)).map(v => ({
    rule: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({
      target: n.target.join(' '), html: n.html.slice(0, 160),
      why: (n.failureSummary || '').split('\\n').slice(1, 3).join(' ')}))}));
}"""

# What sticks out of the window: the outermost elements whose right edge is past it.
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const label = el => el.getAttribute('aria-label');
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.classList.length ? '.' + [...el.classList].join('.') : '') +
    (label(el) ? `[aria-label="${label(el)}"]` : '');
  const path = el => {
    const parts = [];
    for (; el && el !== document.body; el = el.parentElement) parts.unshift(name(el));
    return parts.join(' > ');
  };
  const right = el => Math.round(el.getBoundingClientRect().right);
  const wide = [...document.body.querySelectorAll('*')].filter(el => right(el) > width);
  return {
    scrollWidth: document.documentElement.scrollWidth, clientWidth: width,
    culprits: wide.filter(el => !wide.includes(el.parentElement)).slice(0, 5)
      .map(el => `${path(el)} (right edge ${right(el)} px)`)};
}"""


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("screen", SCREENS, ids=[s.name for s in SCREENS])
def test_no_serious_violation_and_no_sideways_scroll(screen: Screen, width, browser, live,
                                                     shop, sessions):
    context = browser.new_context(
        base_url=live.url, viewport={"width": width, "height": 844 if width < 600 else 800},
        storage_state=sessions[screen.role] if screen.role else None,
        bypass_csp=True)  # axe is injected as an inline script; the portal's CSP forbids it
    try:
        page = context.new_page()
        page.goto(screen.url(shop))
        page.wait_for_load_state("networkidle")
        if screen.ready:
            screen.ready(page)
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate(AXE_RUN, list(BLOCKING))
        layout = page.evaluate(OVERFLOW)
        if SHOTS and (not ONLY or screen.name in ONLY):
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(SHOTS) / f"{screen.name}-{width}.png"), full_page=True)
    finally:
        context.close()
    problems = [f"{v['impact']} {v['rule']} ({v['help']}): {n['target']}  {n['why']}  {n['html']}"
                for v in violations for n in v["nodes"]]
    if layout["scrollWidth"] > layout["clientWidth"]:
        problems.append(f"the page is {layout['scrollWidth']} px wide in a {width} px window: "
                        + "; ".join(layout["culprits"]))
    assert not problems, f"{screen.name} at {width} px ({page.url}):\n  " + "\n  ".join(problems)
