"""What reconciliation relies on to find a PaymentIntent whose id the portal lost: Stripe's
list of PaymentIntents filtered by `created` (gte/lte, inclusive), newest first, page by page,
each with its metadata."""

import time


def payment_intent(client, **params):
    return client.v1.payment_intents.create(params={"amount": 2599, "currency": "eur", **params})


def test_intents_are_listed_by_their_creation_time_newest_first_with_their_metadata(client):
    made = [payment_intent(client, metadata={"paymentId": f"p{n}"}) for n in range(3)]
    created = made[0].created
    window = {"gte": created - 1, "lte": made[-1].created}
    listed = list(client.v1.payment_intents.list(
        params={"created": window, "limit": 2}).auto_paging_iter())  # two pages
    assert [pi.id for pi in listed] == [pi.id for pi in reversed(made)]
    assert [pi.metadata["paymentId"] for pi in listed] == ["p2", "p1", "p0"]
    # Bounds are inclusive; outside them, nothing.
    assert [pi.id for pi in client.v1.payment_intents.list(params={
        "created": {"gte": made[-1].created, "lte": made[-1].created}, "limit": 100}).data
        if pi.id == made[-1].id] == [made[-1].id]
    later = int(time.time()) + 3600
    assert client.v1.payment_intents.list(params={
        "created": {"gte": later, "lte": later + 60}}).data == []
    assert client.v1.payment_intents.list(params={
        "created": {"gte": 0, "lte": created - 3600}}).data == []
