"""The webhook intake pool's app (wsgi_webhooks.py, issue 17 item 9): the main app's webhook,
/healthz, and nothing else."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.webhooks.models import StripeEvent
from tests.helpers import post_event
from tests.integration.conftest import _config


@pytest.fixture(scope="module")
def intake(pg_url, sandbox):
    import wsgi_webhooks

    return wsgi_webhooks.create_intake_app(_config(pg_url, sandbox)).test_client()


def test_it_stores_a_signed_delivery_once_and_refuses_a_forged_one(intake):
    obj = {"id": "in_intake_1", "object": "invoice"}
    for _ in range(2):
        r = post_event(intake, "invoice.paid", obj, "evt_intake_1")
        assert r.status_code == 200
    assert post_event(intake, "invoice.paid", obj, "evt_intake_2",
                      secret="whsec_forged").status_code == 400
    db.session.expire_all()
    assert db.session.scalars(sa.select(StripeEvent.id)).all() == ["evt_intake_1"]


def test_it_answers_nothing_but_the_webhook_and_its_health(intake):
    assert intake.get("/healthz").json == {"ok": True}
    for path in ("/", "/login", "/api/payments/openapi.json", "/admin/payments"):
        r = intake.get(path)
        assert r.status_code == 404 and r.json["success"] is False, path
    assert intake.get("/api/payments/webhook").status_code == 405
